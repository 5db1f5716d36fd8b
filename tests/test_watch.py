"""The watcher: a push to a bare remote on this disk pokes the worker; reading the remote does not."""
from __future__ import annotations

import threading
import time

from studio.layout import Studio
from tests.helpers import Sandbox, git
from win_side.repo import WorkerRepo
from win_side.watch import Watcher


def test_a_push_pokes_and_reading_the_refs_does_not(sandbox: Sandbox) -> None:
    poked = threading.Event()
    watcher = Watcher(WorkerRepo(Studio.at(sandbox.worker)), poked.set, poll=30, backstop=60)
    checks: list[float] = []
    check = watcher.check
    watcher.check = lambda: checks.append(time.monotonic()) or check()  # type: ignore[method-assign]
    watcher.start()
    try:
        assert watcher.mode == "watch"
        time.sleep(0.2)  # the observer is up
        for _ in range(3):  # what the watcher's own check does: read refs/heads/main (inotify: opened, closed unwritten)
            git(sandbox.remote, "rev-parse", "refs/heads/main")
        time.sleep(0.5)
        assert checks == [], "reading the remote's refs woke the watcher (it would wake itself forever)"
        assert not poked.is_set()
        sandbox.write("notes.txt", "a change\n")
        git(sandbox.mac, "add", "notes.txt")
        git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "a change")
        git(sandbox.mac, "push", "-q")
        assert poked.wait(5), "the push was not noticed"
        time.sleep(0.5)
        assert len(checks) <= 3  # one push, a few events, debounced: not a loop
    finally:
        watcher.stop()
