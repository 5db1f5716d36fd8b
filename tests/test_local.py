"""`renderloop local`: a batch rendered on this machine with (stand-in) mflux, the worker's way."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from studio.record import RenderRecord
from tests import mflux_standin
from tests.mflux_standin import standin_log  # noqa: F401 - a fixture
from tests.helpers import BATCH_YAML, Sandbox, cli, git

EXTRA_YAML = """\
version: 1
model: flux-schnell
width: 256
height: 256
prompts:
  - slug: lighthouse
    prompt: "A lighthouse in fog"
  - slug: ferry
    prompt: "A ferry at night"
"""
FAST = ("--cooldown", "0.3", "--min-available-gb", "0", "--timeout", "30")


def commit_batch(sandbox: Sandbox, name: str, text: str, where: Path | None = None) -> None:
    repo = where or sandbox.mac
    sandbox.write(f"batches/{name}.yaml", text, where=repo)
    git(repo, "add", f"batches/{name}.yaml")
    git(repo, "commit", "-q", "--no-verify", "-m", f"batch {name}")
    git(repo, "push", "-q")


def local(clone: Path, batch: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("local", batch, "-C", str(clone), *(extra or FAST))


def render_subjects(repo: Path, ref: str = "HEAD") -> list[str]:
    return [s for s in git(repo, "log", "--format=%s", ref).stdout.splitlines() if s.startswith("render(")]


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_local_renders_commits_and_pushes_as_the_worker_would(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "hero", BATCH_YAML)
    result = local(sandbox.mac, "hero")
    assert result.returncode == 0, result.stderr
    assert "hero: 3 rendered, 0 failed on this Mac; pushed" in result.stdout
    assert "write the review with: renderloop review hero" in result.stdout

    # one commit per image with the worker's trailers, on the remote
    log = git(sandbox.remote, "log", "--format=%s%n%(trailers:only,unfold)%x00", "main").stdout
    entries = [e.strip() for e in log.split("\0") if e.strip().startswith("render(hero)")]
    assert len(entries) == 3
    assert all(f"Renderloop-Worker: {socket.gethostname()}" in e for e in entries)
    assert all("Renderloop-Status: done" in e for e in entries)
    folder = sandbox.mac / "renders" / "hero"
    for slug, command in [("harbor-at-dawn", "mflux-generate-z-image-turbo"), ("night-train", "mflux-generate")]:
        record = RenderRecord.model_validate_json((folder / f"{slug}.json").read_bytes())
        assert record.status == "done" and record.backend == "mflux"
        assert record.backend_ids == {"command": command}
        assert record.cost_usd == 0.0 and record.render_seconds is not None

    spans = mflux_standin.runs(standin_log)
    assert len(spans) == 3
    assert mflux_standin.max_concurrency(spans) == 1
    assert min(mflux_standin.gaps(spans)) >= 0.3

    again = local(sandbox.mac, "hero")
    assert again.returncode == 0 and "hero: nothing to render, every image is done" in again.stdout
    assert len(mflux_standin.runs(standin_log)) == 3

    # the worker agrees: nothing left to render
    git(sandbox.worker, "pull", "-q")
    again = cli("worker", "-C", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert again.returncode == 0, again.stderr
    assert len(render_subjects(sandbox.worker)) == 3


def test_only_the_named_batch_is_rendered(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "hero", BATCH_YAML)
    commit_batch(sandbox, "extra", EXTRA_YAML)
    assert local(sandbox.mac, "extra").returncode == 0
    subjects = render_subjects(sandbox.mac)
    assert len(subjects) == 2 and all(s.startswith("render(extra)") for s in subjects)


def test_two_local_runs_on_one_machine_take_turns(sandbox: Sandbox, standin_log: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two studios (clones) on one Mac: never two mflux processes at once, and the cooldown between."""
    commit_batch(sandbox, "hero", BATCH_YAML)
    commit_batch(sandbox, "extra", EXTRA_YAML)
    git(sandbox.worker, "pull", "-q")
    monkeypatch.setenv("STANDIN_SECONDS", "0.4")
    cooldown = 0.3
    args = ("--cooldown", str(cooldown), "--min-available-gb", "0", "--timeout", "30")
    procs = [
        subprocess.Popen([sys.executable, "-m", "renderloop", "local", batch, "-C", str(clone), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for clone, batch in [(sandbox.mac, "hero"), (sandbox.worker, "extra")]
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    spans = mflux_standin.runs(standin_log)
    assert len(spans) == 5
    concurrency = mflux_standin.max_concurrency(spans)
    shortest = min(mflux_standin.gaps(spans))
    assert concurrency == 1
    assert shortest >= cooldown
    # the two processes really competed: their runs interleave, and the one that waited said so
    order = [e["ppid"] for e in mflux_standin.events(standin_log) if e["event"] == "start"]
    assert order != sorted(order, key=order.index), f"no contention: {order}"
    assert any("another mflux run is going on this machine" in err for _, err in outputs)
    print(f"\nMEASURED two concurrent `renderloop local`: {len(spans)} runs, max concurrency {concurrency}, "
          f"shortest gap {shortest:.3f} s (cooldown {cooldown} s)")
    assert all("pushed" in out for out, _ in outputs), outputs
    # the person's clone (hooks enabled) rebased over the other push and was left clean
    assert git(sandbox.mac, "status", "--porcelain").stdout == ""
    git(sandbox.mac, "pull", "-q")
    assert len(render_subjects(sandbox.mac, "origin/main")) == 5


def test_an_unreachable_remote_leaves_commits_waiting(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML)
    away = sandbox.root / "remote-away.git"
    sandbox.remote.rename(away)
    result = local(sandbox.mac, "extra")
    assert result.returncode == 0, result.stderr
    assert "2 rendered" in result.stdout and "2 commits could not be pushed yet" in result.stdout
    assert len(render_subjects(sandbox.mac)) == 2
    away.rename(sandbox.remote)
    git(sandbox.mac, "push", "-q")
    assert len(render_subjects(sandbox.remote, "main")) == 2


def test_a_failed_image_is_committed_with_mflux_output(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML.replace("A ferry at night", "A ferry at night standin:nowrite"))
    result = local(sandbox.mac, "extra")
    assert result.returncode == 0, result.stderr
    assert "1 rendered, 1 failed" in result.stdout
    record = RenderRecord.model_validate_json((sandbox.mac / "renders" / "extra" / "ferry.json").read_bytes())
    assert record.status == "failed" and record.error is not None
    assert record.error.kind == "backend-error"
    assert "exited 0 but wrote no image" in record.error.message
    assert "Battery percentage is below the limit" in record.error.detail
    assert not (sandbox.mac / "renders" / "extra" / "ferry.png").exists()
    assert any("render(extra): ferry failed [backend-error]" in s for s in render_subjects(sandbox.remote, "main"))


def test_a_hung_image_is_killed_and_recorded_as_a_timeout(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML.replace("A ferry at night", "A ferry standin:hang"))
    t0 = time.monotonic()
    result = local(sandbox.mac, "extra", "--cooldown", "0", "--min-available-gb", "0", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    record = RenderRecord.model_validate_json((sandbox.mac / "renders" / "extra" / "ferry.json").read_bytes())
    assert record.error is not None and record.error.kind == "timeout"
    events = mflux_standin.events(standin_log)
    assert all(dead(e["pid"]) for e in events if e["event"] == "start")
    assert all(dead(e["child"]) for e in events if e["event"] == "child")
    assert time.monotonic() - t0 < 30


def test_failures_are_tried_again_locally(sandbox: Sandbox, standin_log: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML)
    monkeypatch.setenv("STANDIN_MODE", "oom")
    first = local(sandbox.mac, "extra")
    monkeypatch.delenv("STANDIN_MODE")
    assert "0 rendered, 2 failed" in first.stdout
    record = RenderRecord.model_validate_json((sandbox.mac / "renders" / "extra" / "ferry.json").read_bytes())
    assert record.error is not None and record.error.kind == "out-of-memory"
    second = local(sandbox.mac, "extra")
    assert second.returncode == 0 and "2 rendered, 0 failed" in second.stdout


def test_memory_gate_giving_up_stops_the_run(sandbox: Sandbox, standin_log: Path) -> None:
    Path(os.environ["RENDERLOOP_MACHINE_CONFIG"]).write_text("mac:\n  memory_wait: 0.5\n", encoding="utf-8")
    commit_batch(sandbox, "extra", EXTRA_YAML)
    result = local(sandbox.mac, "extra", "--cooldown", "0", "--min-available-gb", "100000000")
    assert result.returncode == 1
    assert "waiting for memory" in result.stderr
    assert "stopped: only" in result.stderr and "mflux needs 100000000 GB" in result.stderr
    assert mflux_standin.events(standin_log) == []
    assert render_subjects(sandbox.mac) == []


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to a process is POSIX")
def test_ctrl_c_kills_the_running_mflux(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML.replace("A lighthouse in fog", "A lighthouse standin:hang"))
    proc = subprocess.Popen([sys.executable, "-m", "renderloop", "local", "extra", "-C", str(sandbox.mac), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(e["event"] == "child" for e in mflux_standin.events(standin_log)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err
    events = mflux_standin.events(standin_log)
    assert all(dead(e["pid"]) for e in events if e["event"] == "start")
    assert all(dead(e["child"]) for e in events if e["event"] == "child")
    assert "run `renderloop local` again" in err
    assert not (sandbox.mac / "renders" / "extra" / "lighthouse.json").exists()
    print(f"\nMEASURED Ctrl+C: mflux and its child gone, renderloop local exited in {took:.2f} s")


def test_a_batch_pushed_from_elsewhere_is_fetched_and_rendered(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML, where=sandbox.worker)  # the person's other laptop, say
    result = local(sandbox.mac, "extra")
    assert result.returncode == 0, result.stderr
    assert "extra: 2 rendered, 0 failed on this Mac; pushed" in result.stdout
    assert len(render_subjects(sandbox.remote, "main")) == 2


def test_unknown_batch_is_one_clear_line(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "hero", BATCH_YAML)
    result = local(sandbox.mac, "nope")
    assert result.returncode == 1
    assert "no batch file batches/nope.yaml" in result.stderr and "(batches: hero)" in result.stderr


def test_without_mflux_it_says_how_to_install_it(sandbox: Sandbox) -> None:
    commit_batch(sandbox, "hero", BATCH_YAML)
    result = local(sandbox.mac, "hero")
    assert result.returncode == 1
    assert "mflux is not installed" in result.stderr and "Apple silicon" in result.stderr
    assert 'pip install -e ".[mflux]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_uncommitted_review_edits_are_never_touched(sandbox: Sandbox, standin_log: Path) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML)
    review = sandbox.mac / "renders" / "extra" / "review.md"
    review.parent.mkdir(parents=True)
    review.write_text("## ferry\n\nverdict: keep\n")
    result = local(sandbox.mac, "extra")
    assert result.returncode == 0, result.stderr
    assert review.read_text() == "## ferry\n\nverdict: keep\n"
    assert mflux_standin.events(standin_log)  # it rendered, around the person's review
    assert "renders/extra/review.md" not in git(sandbox.mac, "show", "--name-only", "--format=", "HEAD").stdout


@pytest.mark.parametrize(("flag", "value"), [("--cooldown", "-1"), ("--timeout", "0"), ("--min-available-gb", "-2")])
def test_bad_knobs_are_refused(sandbox: Sandbox, standin_log: Path, flag: str, value: str) -> None:
    commit_batch(sandbox, "extra", EXTRA_YAML)
    result = cli("local", "extra", "-C", str(sandbox.mac), flag, value)
    assert result.returncode == 1
    assert flag in result.stderr
