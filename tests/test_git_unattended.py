"""The worker's git, unattended: locks left by a dying git, clones owned by someone else, paths Windows
cannot hold, and background threads that survive what nobody expected."""
from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from studio.layout import Studio
from tests.helpers import Sandbox, cli, git
from win_side import repo as repo_module
from win_side.pusher import Pusher
from win_side.repo import WorkerRepo
from win_side.watch import Watcher

# -- .lock files a dying git holds (issue 15, item 5) ------------------------------------------------


def _nap(clone: Path, seconds: float, then: str = "true") -> subprocess.Popen[bytes]:
    """A real git process working in ``clone`` for ``seconds`` (an alias runs a shell; git waits for it)."""
    return subprocess.Popen(["git", "-c", f"alias.nap=!sleep {seconds}; {then}", "nap"], cwd=clone)


def test_a_lock_nobody_holds_is_removed_at_once(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    lock = sandbox.worker / ".git" / "index.lock"
    lock.touch()
    (sandbox.worker / ".git" / "refs" / "heads" / "main.lock").touch()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="renderloop.worker"):
        WorkerRepo(Studio.at(sandbox.worker)).recover()
    assert time.monotonic() - started < 5
    assert not lock.exists() and not (sandbox.worker / ".git/refs/heads/main.lock").exists()
    assert "removing index.lock left by an interrupted git command" in caplog.text
    assert "removing refs/heads/main.lock" in caplog.text


def test_recovery_waits_for_a_dying_git_to_let_go_of_its_lock(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    lock = sandbox.worker / ".git" / "index.lock"
    lock.write_text("being written")
    dying = _nap(sandbox.worker, 1.5, then="rm -f .git/index.lock")
    try:
        time.sleep(0.3)  # git is up
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="renderloop.worker"):
            WorkerRepo(Studio.at(sandbox.worker)).recover()
        waited = time.monotonic() - started
    finally:
        dying.wait(timeout=10)
    assert 0.8 < waited < repo_module.LOCK_WAIT_SECONDS
    assert f"waiting for git (pid {dying.pid}) to finish with index.lock" in caplog.text
    assert "removing index.lock" not in caplog.text  # its owner removed it
    assert git(sandbox.worker, "status", "--porcelain").returncode == 0


def test_a_git_that_keeps_its_lock_is_named_not_overrun(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo_module, "LOCK_WAIT_SECONDS", 1.0)
    lock = sandbox.worker / ".git" / "index.lock"
    lock.touch()
    busy = _nap(sandbox.worker, 30)
    try:
        time.sleep(0.3)
        with pytest.raises(Exception) as raised:
            WorkerRepo(Studio.at(sandbox.worker)).recover()
    finally:
        busy.kill()
        busy.wait()
    assert f"git (pid {busy.pid}) is still working in {sandbox.worker} after 1 s and holds index.lock" in str(
        raised.value
    )
    assert lock.exists()


# -- a clone or a hub owned by someone else (issue 15, item 6) ----------------------------------------


def test_a_clone_owned_by_someone_else_names_the_safe_directory_command(sandbox: Sandbox) -> None:
    env = {**os.environ, "GIT_TEST_ASSUME_DIFFERENT_OWNER": "1"}  # git's own switch for this check
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"renderloop: error: git refuses to work in {sandbox.worker}: it belongs to another user")
    assert last.endswith(f"git config --global --add safe.directory {sandbox.worker}")


def test_a_hub_owned_by_someone_else_is_named_not_silently_ignored(sandbox: Sandbox) -> None:
    git(sandbox.worker, "config", "--global", "--add", "safe.directory", str(sandbox.worker))
    env = {**os.environ, "GIT_TEST_ASSUME_DIFFERENT_OWNER": "1"}
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"git refuses to work in {sandbox.remote}" in last
    assert last.endswith(f"git config --global --add safe.directory {sandbox.remote}")


# -- paths Windows cannot check out (issue 15, item 2) -------------------------------------------------


@pytest.mark.parametrize("rel, why", [
    ("notes/aux.txt", "'aux.txt' is a reserved device name on Windows"),
    ("notes/a:b.txt", "'a:b.txt' contains ':'"),
    ("notes/draft.", "'draft.' ends with a dot"),
])
def test_the_pre_commit_hook_refuses_a_path_windows_cannot_hold(sandbox: Sandbox, rel: str, why: str) -> None:
    sandbox.write(rel, "x\n")
    git(sandbox.mac, "add", rel)
    result = git(sandbox.mac, "commit", "-q", "-m", "notes", check=False)
    assert result.returncode != 0
    assert f"{rel}:1: the Windows worker cannot check this path out: {why}" in result.stderr
    assert git(sandbox.mac, "rev-parse", "HEAD~1", check=False).returncode != 0  # nothing was committed


def test_the_worker_names_the_commit_it_cannot_check_out_and_renders_what_it_has(sandbox: Sandbox) -> None:
    from tests.helpers import BATCH_YAML

    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")
    git(sandbox.worker, "pull", "-q")  # the worker has the batch
    # then a path git refuses to check out (git's NTFS rule, on every platform: as Git for Windows refuses `a:b`)
    sandbox.write("notes/git~1/x.txt", "x\n")
    git(sandbox.mac, "-c", "core.protectNTFS=false", "add", "notes")
    git(sandbox.mac, "-c", "core.protectNTFS=false", "commit", "-q", "--no-verify", "-m", "unlucky notes")
    git(sandbox.mac, "push", "-q")
    bad = git(sandbox.mac, "rev-parse", "--short", "HEAD").stdout.strip()
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"renderloop: error: commit {bad} unlucky notes adds 'notes/git~1/x.txt', a path git "
                           "cannot check out on this machine (invalid path)"), last
    rendered = git(sandbox.worker, "log", "--format=%s", "--grep=^render(").stdout.splitlines()
    assert len(rendered) == 3  # what it had was rendered all the same


# -- threads that survive (issue 15, item 7) ---------------------------------------------------------


def test_the_pusher_survives_an_exception_and_pushes(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.write("notes.txt", "from the worker\n", where=sandbox.worker)
    git(sandbox.worker, "add", "notes.txt")
    git(sandbox.worker, "commit", "-q", "-m", "a note")
    repo = WorkerRepo(Studio.at(sandbox.worker))
    real = repo.unpushed
    failures = [RuntimeError("injected")]

    def unpushed() -> int:
        if failures:
            raise failures.pop()
        return real()

    monkeypatch.setattr(repo, "unpushed", unpushed)
    pusher = Pusher(repo)
    with caplog.at_level(logging.INFO, logger="renderloop.worker"):
        pusher.start()
        pusher.request()
        head = git(sandbox.worker, "rev-parse", "HEAD").stdout
        deadline = time.monotonic() + 20
        while git(sandbox.remote, "rev-parse", "main").stdout != head and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = pusher._thread.is_alive()
        pusher.stop()
    assert git(sandbox.remote, "rev-parse", "main").stdout == head, "the pusher did not push after the exception"
    assert alive
    assert "the pusher thread failed: RuntimeError: injected; will try again in 1 s" in caplog.text


def test_the_watcher_survives_an_exception_and_notices_a_push(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    poked = threading.Event()
    watcher = Watcher(repo, poked.set, poll=0.2, backstop=0.2)
    real = watcher._remote_head
    failures = [OSError("injected")]

    def remote_head() -> str | None:
        if failures:
            raise failures.pop()
        return real()

    monkeypatch.setattr(watcher, "_remote_head", remote_head)
    with caplog.at_level(logging.INFO, logger="renderloop.worker"):
        watcher.start()
        try:
            deadline = time.monotonic() + 10
            while failures and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not failures, "the watcher never checked"
            sandbox.write("notes.txt", "a change\n")
            git(sandbox.mac, "add", "notes.txt")
            git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "a change")
            git(sandbox.mac, "push", "-q")
            assert poked.wait(10), "the watcher died with the exception"
        finally:
            watcher.stop()
    assert "the watcher thread failed: OSError: injected; will try again in 1 s" in caplog.text
