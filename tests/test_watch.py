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


def test_a_remote_over_the_network_is_polled_gently_by_default(sandbox: Sandbox) -> None:
    from win_side.watch import NETWORK_POLL

    repo = WorkerRepo(Studio.at(sandbox.worker))
    assert Watcher(repo, lambda: None, poll=None, backstop=60).mode == "watch"  # on this disk: watched
    for url in ("ssh://studio-pc/C:/studio.git", "ana@studio-pc:studio.git", "https://example.com/studio.git"):
        git(sandbox.worker, "remote", "set-url", "origin", url)
        watcher = Watcher(repo, lambda: None, poll=None, backstop=60)
        assert (watcher.mode, watcher.poll) == ("poll", NETWORK_POLL)
        assert 10 <= NETWORK_POLL <= 15  # git.exe + credential manager, or a full ssh handshake, each check
        assert Watcher(repo, lambda: None, poll=3, backstop=60).poll == 3  # asked for: as asked
