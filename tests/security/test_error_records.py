"""Everything broken is told to the person (issue 9, item 7).

An invalid renderloop.yaml and a batch file whose name is not a batch id end
up in a committed renders/studio-error.json (shown by the person's next
pull), never only in the worker's log; a setting this machine cannot use is
a clear non-zero exit (tests/security/test_machine_settings.py).
"""
from __future__ import annotations

import json

from tests.helpers import BATCH_YAML, Sandbox, cli, git


def run_worker(sandbox: Sandbox):
    return cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")


def commit_and_push(sandbox: Sandbox, files: dict[str, str], message: str = "change") -> None:
    for rel, text in files.items():
        sandbox.write(rel, text)
    git(sandbox.mac, "add", "-A")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", message)
    git(sandbox.mac, "push", "-q")


def studio_error(sandbox: Sandbox) -> dict | None:
    shown = git(sandbox.remote, "show", "main:renders/studio-error.json", check=False)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def test_an_invalid_renderloop_yaml_is_committed_as_an_error_record_and_cleared_when_fixed(sandbox: Sandbox) -> None:
    config = (sandbox.mac / "renderloop.yaml").read_text(encoding="utf-8")
    broken = config + "worker:\n  comfyui: [http://127.0.0.1:9]\n"
    commit_and_push(sandbox, {"renderloop.yaml": broken, "batches/hero.yaml": BATCH_YAML}, "point the worker")
    line = len(broken.splitlines())

    result = run_worker(sandbox)

    assert result.returncode == 1  # --once: said at the end too
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"renderloop.yaml:{line}: 'worker.comfyui' is a machine setting: put it in "), last
    record = studio_error(sandbox)
    assert record is not None and record["status"] == "invalid"
    assert [(p["path"], p["line"]) for p in record["problems"]] == [("renderloop.yaml", line)]
    assert record["problems"][0]["message"].startswith("'worker.comfyui' is a machine setting: put it in ")
    subjects = git(sandbox.remote, "log", "--format=%s", "main").stdout.splitlines()
    assert subjects[0].startswith("render: nothing can be rendered as it stands (renderloop.yaml:")
    assert not any(s.startswith("render(hero)") for s in subjects)  # nothing rendered meanwhile

    pulled = git(sandbox.mac, "pull")  # the person is told on their next pull
    assert f"the worker cannot render: renderloop.yaml:{line}: 'worker.comfyui' is a machine setting" in pulled.stderr

    assert run_worker(sandbox).returncode == 1  # again: no second record for the same problems
    assert git(sandbox.remote, "log", "--format=%s", "main").stdout.splitlines()[0] == subjects[0]

    commit_and_push(sandbox, {"renderloop.yaml": config}, "fix")
    assert run_worker(sandbox).returncode == 0
    assert studio_error(sandbox) is None
    subjects = git(sandbox.remote, "log", "--format=%s", "main").stdout.splitlines()
    assert "render: the studio is valid again, error cleared" in subjects
    assert sum(s.startswith("render(hero)") for s in subjects) == 3


def test_a_batch_file_with_an_invalid_name_is_committed_as_an_error_record(sandbox: Sandbox) -> None:
    commit_and_push(sandbox, {"batches/Hero Q4.yaml": BATCH_YAML, "batches/fine.yaml": BATCH_YAML})
    result = run_worker(sandbox)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "batches/Hero Q4.yaml:1: batch name 'Hero Q4' is not allowed: use lowercase letters, digits, single "
        "hyphens or underscores, at most 80 characters; rename the file")
    record = studio_error(sandbox)
    assert record is not None
    assert record["problems"] == [{
        "path": "batches/Hero Q4.yaml", "line": 1,
        "message": "batch name 'Hero Q4' is not allowed: use lowercase letters, digits, single hyphens or "
                   "underscores, at most 80 characters; rename the file",
    }]
    subjects = git(sandbox.remote, "log", "--format=%s", "main").stdout.splitlines()
    assert sum(s.startswith("render(fine)") for s in subjects) == 3  # the other batches go on

    git(sandbox.mac, "pull", "-q")
    git(sandbox.mac, "mv", "batches/Hero Q4.yaml", "batches/hero-q4.yaml")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "rename")
    git(sandbox.mac, "push", "-q")
    assert run_worker(sandbox).returncode == 0
    assert studio_error(sandbox) is None
