"""Pushes a hosted remote accepts: spaced, with the commits made meanwhile coalesced into the next push."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.errors import FatalError
from studio.layout import Studio
from tests.helpers import Sandbox, git
from win_side.commits import commit_paths
from win_side.pusher import Pusher
from win_side.repo import WorkerRepo
from win_side.worker import HOSTED_PUSH_INTERVAL, push_interval

LOG_PUSHES = """#!/bin/sh
while read old new ref; do echo "$(date +%s.%N) $new" >> "{log}"; done
"""


def _log_pushes(remote: Path, log: Path) -> None:
    hook = remote / "hooks" / "post-receive"
    hook.write_text(LOG_PUSHES.format(log=log.as_posix()), encoding="utf-8", newline="\n")
    hook.chmod(0o755)


def test_pushes_are_spaced_and_commits_in_between_go_together(sandbox: Sandbox) -> None:
    log = sandbox.root / "pushes.log"
    _log_pushes(sandbox.remote, log)
    repo = WorkerRepo(Studio.at(sandbox.worker))
    pusher = Pusher(repo, interval=1.0)
    pusher.start()
    try:
        for index in range(8):  # a commit every 0.15 s, as a fast backend makes them
            sandbox.write(f"renders/b/{index}.json", "{}\n", where=sandbox.worker)
            commit_paths(repo, f"render {index}", [f"renders/b/{index}.json"])
            pusher.request()
            time.sleep(0.15)
        assert pusher.flush(10)
    finally:
        pusher.stop()
    assert git(sandbox.remote, "rev-parse", "main").stdout == git(sandbox.worker, "rev-parse", "HEAD").stdout
    pushed = [float(line.split()[0]) for line in log.read_text().splitlines()]
    assert 2 <= len(pushed) <= 3, pushed  # 8 commits over 1.2 s: the first at once, then one a second
    assert all(b - a >= 0.95 for a, b in zip(pushed, pushed[1:])), pushed


def test_no_spacing_to_a_remote_on_this_disk_and_10_s_to_any_other(sandbox: Sandbox) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    assert push_interval(repo, None) == 0.0
    assert push_interval(repo, 3.0) == 3.0
    git(sandbox.worker, "remote", "set-url", "origin", "https://git.example.com/studio.git")
    assert push_interval(repo, None) == HOSTED_PUSH_INTERVAL == 10.0
    assert push_interval(repo, 0.0) == 0.0
    with pytest.raises(FatalError, match="--push-interval -1"):
        push_interval(repo, -1.0)
