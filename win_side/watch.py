"""Noticing new commits on the remote, at once.

When the remote is a bare repository on this disk (the person pushes
straight to the worker over SSH), its refs are watched with watchdog.  A
push shows up as ``refs/heads/<b>.lock`` renamed onto the ref (no
"modified" event) or as a rewrite of ``packed-refs``, so any event under
``refs/`` or on ``packed-refs`` is a poke: debounced, then ``git rev-parse``
says whether the branch really moved.  Watchdog can drop events (on Windows
especially), so a slow periodic check runs as a backstop.

Otherwise the remote is polled with ``git ls-remote`` and only a moved ref
leads to a fetch. Each check starts git and, on Windows, the credential
manager or a whole ssh handshake: by default every :data:`NETWORK_POLL`
seconds, gentle on both machines.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import unquote, urlparse

from studio import git
from studio.git import GitError
from win_side.repo import WorkerRepo
from win_side.threads import keep_running

if TYPE_CHECKING:  # watchdog is imported only when watching
    from watchdog.observers.api import BaseObserver

log = logging.getLogger("renderloop.worker")

DEBOUNCE = 0.015
NETWORK_POLL = 12.0  # seconds between checks of a remote not on this disk, unless told otherwise
# inotify reports files being opened and closed unwritten: reads, not pushes.
_READS = frozenset({"opened", "closed_no_write"})


def local_remote_repo(repo: WorkerRepo) -> Optional[Path]:
    """The git dir of the remote when it is a repository on this disk, else None."""
    url = git.remote_url(repo.root, repo.remote)
    if not url:
        return None
    if url.startswith("file://"):
        path = Path(unquote(urlparse(url).path))
        if len(url) > 9 and url[8:10].endswith(":"):  # file:///C:/...
            path = Path(unquote(urlparse(url).path.lstrip("/")))
    elif "://" in url or (":" in url.split("/")[0] and len(url.split(":")[0]) > 1):
        return None  # ssh://, https://, host:path (a one-letter "host" is a Windows drive)
    else:
        path = Path(url)
    if not path.is_absolute():
        path = (repo.root / path).resolve()
    if (path / "HEAD").is_file() and (path / "refs").is_dir():
        return path  # bare
    if (path / ".git" / "refs").is_dir():
        return path / ".git"
    return None


class Watcher:
    """Calls ``poke`` soon after the remote branch moves."""

    def __init__(self, repo: WorkerRepo, poke: Callable[[], None], poll: Optional[float], backstop: float) -> None:
        self.repo = repo
        self.poke = poke
        self.poll = poll or NETWORK_POLL
        self.backstop = backstop
        self.bare = local_remote_repo(repo) if repo.has_remote() else None
        self.mode = "none" if not repo.has_remote() else ("watch" if self.bare else "poll")
        self._event = threading.Event()
        self._stop = threading.Event()
        self._observer: Optional[BaseObserver] = None
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> None:
        if self.mode == "none":
            return
        if self.mode == "watch":
            self._start_observer()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _start_observer(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        bare = self.bare
        assert bare is not None
        event = self._event

        class Handler(FileSystemEventHandler):
            def on_any_event(self, ev: FileSystemEvent) -> None:
                if ev.event_type in _READS:  # our own rev-parse reads the refs: heeding it loops forever
                    return
                paths = [str(ev.src_path), str(getattr(ev, "dest_path", "") or "")]
                if any("refs" in p or p.endswith("packed-refs") for p in paths):
                    event.set()

        try:
            observer = Observer()
            observer.schedule(Handler(), str(bare / "refs"), recursive=True)
            observer.schedule(Handler(), str(bare), recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as exc:  # too many watches, unsupported file system...
            log.warning("cannot watch %s (%s); polling every %g s instead", bare, exc, self.poll)
            self.mode = "poll"
            return
        self._observer = observer
        log.info("watching %s for pushes (backstop check every %g s)", bare, self.backstop)

    def _run(self) -> None:
        if self.mode == "poll":
            log.info("polling %s every %g s", git.remote_url(self.repo.root, self.repo.remote), self.poll)
        keep_running("watcher", self._turn, self._stop)

    def _turn(self) -> bool:
        """One turn of the thread's loop; False when stopping."""
        if self._event.wait(timeout=self.backstop if self.mode == "watch" else self.poll):
            if self._stop.is_set():
                return False
            self._stop.wait(DEBOUNCE)  # a push touches several files: let it settle
            self._event.clear()
        self.check()
        return True

    def check(self) -> bool:
        """Poke when the remote branch differs from what we last fetched."""
        try:
            remote = self._remote_head()
        except GitError as exc:
            log.debug("remote check failed: %s", exc)
            return False
        seen = git.rev_parse(self.repo.root, self.repo.remote_ref)
        if remote is not None and remote != seen:
            self.poke()
            return True
        return False

    def _remote_head(self) -> Optional[str]:
        if self.bare is not None and self.mode == "watch":
            return git.rev_parse(self.bare, f"refs/heads/{self.repo.branch}")
        return git.ls_remote_head(self.repo.root, self.repo.remote, self.repo.branch or "", timeout=30)
