"""The worker with the placeholder backend, on real git: bare remote and clones."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.record import RenderRecord
from tests.helpers import BATCH_YAML, Sandbox, cli, git


def run_worker(sandbox: Sandbox, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", *extra)


def commit_batch(sandbox: Sandbox, name: str = "hero", text: str = BATCH_YAML, verify: bool = False) -> None:
    sandbox.write(f"batches/{name}.yaml", text)
    git(sandbox.mac, "add", f"batches/{name}.yaml")
    git(sandbox.mac, "commit", "-q", "-m", f"batch {name}", *([] if verify else ["--no-verify"]))
    git(sandbox.mac, "push", "-q")


def render_commits(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s", "--grep=^render(").stdout.splitlines()


def test_once_renders_commits_each_image_and_pushes(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    # one commit per image, with the trailers of SPEC section 4
    log = git(sandbox.remote, "log", "--format=%s%n%(trailers:only,unfold)%x00").stdout
    entries = [e.strip() for e in log.split("\0") if e.strip().startswith("render(")]
    assert len(entries) == 3
    harbor = next(e for e in entries if "harbor-at-dawn" in e.splitlines()[0])
    assert harbor.splitlines()[0].startswith("render(hero): harbor-at-dawn [z-image-turbo, ")
    assert "Renderloop-Batch: hero" in harbor
    assert "Renderloop-Slug: harbor-at-dawn" in harbor
    assert "Renderloop-Status: done" in harbor
    assert "Renderloop-Worker: " in harbor
    # the remote has exactly the worker's branch
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout
    # each commit holds exactly its PNG and record
    for sha in git(sandbox.worker, "log", "--format=%H", "--grep=^render(").stdout.split():
        files = git(sandbox.worker, "show", "--name-only", "--format=", sha).stdout.split()
        assert len(files) == 2 and {Path(f).suffix for f in files} == {".png", ".json"}


def test_records_follow_the_schema_and_pngs_match(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    folder = sandbox.worker / "renders" / "hero"
    record = RenderRecord.model_validate_json((folder / "harbor-at-dawn.json").read_bytes())
    png = (folder / "harbor-at-dawn.png").read_bytes()
    assert record.status == "done" and record.error is None
    assert record.spec.seed == 1234 and (record.spec.width, record.spec.height) == (512, 384)
    assert record.spec_hash == record.spec.hash
    assert record.backend == "placeholder"
    assert record.queued_at and record.started_at and record.finished_at
    assert record.queued_at <= record.started_at <= record.finished_at
    import hashlib

    assert record.png_sha256 == hashlib.sha256(png).hexdigest()
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (512, 384)
        assert json.loads(image.text["renderloop"])["seed"] == 1234
    night = RenderRecord.model_validate_json((folder / "night-train.json").read_bytes())
    assert night.spec.model == "flux-schnell" and night.spec.steps == 4


def test_second_run_with_nothing_new_makes_no_commit(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    before = git(sandbox.worker, "rev-parse", "HEAD").stdout
    assert run_worker(sandbox).returncode == 0
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == before
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""


def test_edited_seed_rerenders_only_that_slug(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    git(sandbox.mac, "pull", "-q")
    commit_batch(sandbox, text=BATCH_YAML.replace("seed: 1234", "seed: 99"))
    assert run_worker(sandbox).returncode == 0
    commits = render_commits(sandbox.worker)
    assert len(commits) == 4
    assert commits[0].startswith("render(hero): harbor-at-dawn")
    record = json.loads((sandbox.worker / "renders/hero/harbor-at-dawn.json").read_text())
    assert record["spec"]["seed"] == 99


def test_deleted_render_is_rendered_again(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    git(sandbox.mac, "pull", "-q")
    git(sandbox.mac, "rm", "-q", "renders/hero/night-train.png", "renders/hero/night-train.json")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "render night-train again")
    git(sandbox.mac, "push", "-q")
    assert run_worker(sandbox).returncode == 0
    assert (sandbox.worker / "renders/hero/night-train.png").is_file()
    assert render_commits(sandbox.worker)[0].startswith("render(hero): night-train")


def test_placeholder_is_deterministic_and_exact_size(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    first = (sandbox.worker / "renders/hero/harbor-at-dawn.png").read_bytes()
    git(sandbox.mac, "pull", "-q")
    git(sandbox.mac, "rm", "-q", "renders/hero/harbor-at-dawn.png", "renders/hero/harbor-at-dawn.json")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "again")
    git(sandbox.mac, "push", "-q")
    assert run_worker(sandbox).returncode == 0
    assert (sandbox.worker / "renders/hero/harbor-at-dawn.png").read_bytes() == first


def test_invalid_batch_gets_an_error_record_and_others_render(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    commit_batch(sandbox, "broken", "version: 1\nmodel: z-image-turbo\nprompts:\n  - slug: Bad Slug\n    prompt: x\n")
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    error = json.loads((sandbox.worker / "renders/broken/batch-error.json").read_text())
    assert error["path"] == "batches/broken.yaml"
    assert error["problems"][0]["line"] == 4 and "Bad Slug" in error["problems"][0]["message"]
    assert len(render_commits(sandbox.worker)) == 4  # 3 images + the error record
    # running again does not commit the same error twice
    head = git(sandbox.worker, "rev-parse", "HEAD").stdout
    assert run_worker(sandbox).returncode == 0
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == head
    # fixing the file clears the error and renders it
    git(sandbox.mac, "pull", "-q")
    commit_batch(sandbox, "broken", "version: 1\nmodel: z-image-turbo\nprompts:\n  - slug: good-slug\n    prompt: x\n")
    assert run_worker(sandbox).returncode == 0
    assert not (sandbox.worker / "renders/broken/batch-error.json").exists()
    assert (sandbox.worker / "renders/broken/good-slug.png").is_file()


def test_failed_record_stands_until_retry_failed(sandbox: Sandbox) -> None:
    """A failed record is the answer for its spec until deleted or --retry-failed."""
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    git(sandbox.mac, "pull", "-q")
    path = sandbox.mac / "renders/hero/night-train.json"
    record = json.loads(path.read_text())
    record.update(status="failed", png_sha256=None,
                  error={"kind": "missing-model", "message": "flux1-schnell.safetensors is not installed", "detail": None})
    path.write_text(json.dumps(record, indent=2) + "\n")
    git(sandbox.mac, "rm", "-q", "renders/hero/night-train.png")
    git(sandbox.mac, "commit", "-q", "-am", "pretend it failed", "--no-verify")
    git(sandbox.mac, "push", "-q")
    assert run_worker(sandbox).returncode == 0
    assert len(render_commits(sandbox.worker)) == 3  # the failure stands
    assert run_worker(sandbox, "--retry-failed").returncode == 0
    assert render_commits(sandbox.worker)[0].startswith("render(hero): night-train [flux-schnell")
    assert json.loads((sandbox.worker / "renders/hero/night-train.json").read_text())["status"] == "done"


def test_recovers_from_an_interrupted_run(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox).returncode == 0
    git(sandbox.mac, "pull", "-q")
    commit_batch(sandbox, "second", "version: 1\nmodel: z-image-turbo\nwidth: 256\nheight: 256\nprompts:\n"
                 "  - slug: one\n    prompt: one\n  - slug: two\n    prompt: two\n  - slug: three\n    prompt: x\n")
    # what a kill leaves: a complete but uncommitted pair, a PNG without record,
    # a temp file and a stale index.lock
    assert run_worker(sandbox, "--no-push").returncode == 0
    for _ in range(3):
        git(sandbox.worker, "reset", "-q", "--soft", "HEAD~1")
    git(sandbox.worker, "reset", "-q")
    (sandbox.worker / "renders/second/two.json").unlink()  # a PNG left without its record
    (sandbox.worker / "renders/second/.three.png.abc.tmp").write_bytes(b"partial")
    (sandbox.worker / "renders/second/three.json").unlink()
    (sandbox.worker / "renders/second/three.png").write_bytes(b"\x89PNG half")
    (sandbox.worker / ".git/index.lock").write_text("")
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    assert "finished before an interruption" in result.stderr
    subjects = render_commits(sandbox.worker)
    assert sorted(s.split(":")[1].split()[0] for s in subjects[:3]) == ["one", "three", "two"]
    assert git(sandbox.worker, "status", "--porcelain", "--ignored").stdout == ""
    for slug in ("one", "two", "three"):
        record = RenderRecord.model_validate_json((sandbox.worker / f"renders/second/{slug}.json").read_bytes())
        import hashlib

        assert hashlib.sha256((sandbox.worker / f"renders/second/{slug}.png").read_bytes()).hexdigest() == record.png_sha256


def test_push_race_is_rebased_never_forced(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    assert run_worker(sandbox, "--no-push").returncode == 0
    # meanwhile the person pushes another batch
    commit_batch(sandbox, "other", "version: 1\nmodel: flux-schnell\nprompts:\n  - slug: late\n    prompt: late\n")
    person_head = git(sandbox.mac, "rev-parse", "HEAD").stdout.strip()
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    remote_log = git(sandbox.remote, "log", "--format=%H").stdout.split()
    assert person_head in remote_log  # the person's commit survived
    assert len(render_commits(sandbox.remote)) == 4
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout


def test_unreachable_remote_keeps_commits_locally_then_pushes(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    moved = sandbox.remote.with_name("away.git")
    sandbox.remote.rename(moved)
    try:
        started = time.monotonic()
        result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", timeout=90)
    finally:
        moved.rename(sandbox.remote)
    # nothing was fetched, so nothing was known to render: the batch came with the clone? no:
    # the worker clone predates the batch, so it only learns of it once the remote is back
    # --once could not sync: it says so in its last line, naming the remote, and exits 1
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"renderloop: error: cannot fetch: origin ({sandbox.remote})"), last
    assert time.monotonic() - started < 60
    assert run_worker(sandbox).returncode == 0
    # now: render with the remote gone during the push
    git(sandbox.mac, "pull", "-q")
    commit_batch(sandbox, "later", "version: 1\nmodel: flux-schnell\nprompts:\n  - slug: late\n    prompt: late\n")
    git(sandbox.worker, "pull", "-q")
    sandbox.remote.rename(moved)
    try:
        result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", timeout=120)
    finally:
        moved.rename(sandbox.remote)
    assert result.returncode == 1
    assert "could not be pushed" in result.stderr
    assert "will try again" in result.stderr
    assert "render(later): late" in git(sandbox.worker, "log", "-1", "--format=%s").stdout
    assert run_worker(sandbox).returncode == 0
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout


def test_a_second_worker_on_the_same_clone_is_refused(sandbox: Sandbox) -> None:
    commit_batch(sandbox)
    proc = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "worker", "--repo", str(sandbox.worker), "--backend",
         "placeholder", "--placeholder-seconds", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        pid_file = sandbox.worker / ".git/renderloop/worker.pid"
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = run_worker(sandbox)
        assert result.returncode == 1
        assert f"another worker (pid {proc.pid})" in result.stderr
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to a child process is POSIX here")
def test_continuous_worker_notices_a_push_and_stops_cleanly_on_ctrl_c(sandbox: Sandbox) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "worker", "--repo", str(sandbox.worker), "--backend",
         "placeholder", "--poll", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.5)  # started and watching
        pushed = time.monotonic()
        commit_batch(sandbox)
        deadline = pushed + 20
        while time.monotonic() < deadline and len(render_commits(sandbox.remote)) < 3:
            time.sleep(0.05)
        latency = time.monotonic() - pushed
        assert len(render_commits(sandbox.remote)) == 3, "the worker did not render the pushed batch"
        assert latency < 10
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "watching" in err  # the remote is a bare repository on this disk
        assert "stopping" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_empty_comfyui_list_is_a_clear_error_not_a_bug(sandbox: Sandbox) -> None:
    machine = Path(os.environ["RENDERLOOP_MACHINE_CONFIG"])  # this machine's settings (tests: a temporary file)
    machine.write_text("worker:\n  comfyui: []\n", encoding="utf-8")
    result = cli("worker", "--repo", str(sandbox.worker), "--once", "--no-push")
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"{machine}:2: worker.comfyui: list at least one ComfyUI server, like http://127.0.0.1:8188 (got [])\n"
    )


@pytest.mark.parametrize("url", ["", "ftp://studio-pc:8188", "http://[::1", "studio-pc:port"])
def test_a_comfyui_server_that_is_no_url_is_one_line_naming_it(sandbox: Sandbox, url: str) -> None:
    result = run_worker(sandbox, "--backend", "comfyui", "--comfyui", url)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"renderloop: error: --comfyui: ComfyUI server {url!r} is not an http(s) URL "
                             f"like http://127.0.0.1:8188 (got [{url!r}])\n")
    assert render_commits(sandbox.worker) == []


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--window", "0", "give 1 or more"),
    ("--poll", "-1", "give more than zero"),
    ("--placeholder-seconds", "-0.5", "give zero or more"),
    ("--poll", "nan", "give a finite number"),
    ("--backend-wait", "inf", "give a finite number"),
])
def test_out_of_range_options_are_refused_in_one_line(sandbox: Sandbox, flag: str, value: str, why: str) -> None:
    result = run_worker(sandbox, flag, value)
    assert result.returncode == 1
    assert result.stderr == f"renderloop: error: {flag} {float(value):g}: {why}\n"
    assert render_commits(sandbox.worker) == []
