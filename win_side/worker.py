"""``renderloop worker``: render every batch in a clone, commit and push, until stopped."""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Optional, Union

from studio import git, layout, processes
from studio.config import load_config
from studio.errors import FatalError
from studio.layout import Studio
from win_side.backends import make_backend
from win_side.backends.base import BackendOptions
from win_side.progress import make_progress
from win_side.reconcile import ReconcileOptions, Reconciler
from win_side.repo import WorkerRepo
from win_side.watch import Watcher

log = logging.getLogger("renderloop.worker")

# What signal.signal returns: a function, SIG_DFL/SIG_IGN, or None when the handler was not set from Python.
SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]


@dataclass
class WorkerOptions:
    repo: Path
    backend: str = "comfyui"
    once: bool = False
    poll: Optional[float] = None
    window: Optional[int] = None
    comfyui: list[str] = field(default_factory=list)
    fal_url: Optional[str] = None
    placeholder_seconds: float = 0.0
    name: Optional[str] = None
    push: bool = True
    retry_failed: bool = False


def open_studio(repo: Path) -> Studio:
    """The worker's clone: a git checkout with renderloop.yaml at its top."""
    return layout.open_studio(repo, require_git=True)


def run_worker(options: WorkerOptions) -> int:
    studio = open_studio(options.repo)
    config = load_config(studio)
    repo = WorkerRepo(studio)
    git.run_no_repository_code(repo.state)
    worker_name = options.name or config.worker.name or socket.gethostname()
    backend_options = BackendOptions(
        config=config,
        studio_root=studio.root,
        state_dir=repo.state,
        window=options.window or config.worker.window,
        placeholder_seconds=options.placeholder_seconds,
        comfyui_urls=options.comfyui or list(config.worker.comfyui),
        fal_url=options.fal_url or config.worker.fal_url,
    )
    progress = make_progress()
    repo.acquire()
    backend = None
    try:
        backend = make_backend(options.backend, backend_options)
        reconciler = Reconciler(
            repo, backend,
            ReconcileOptions(worker=worker_name, push=options.push, retry_failed=options.retry_failed),
            progress,
        )
        lanes = ", ".join(lane.name for lane in backend.lanes)
        log.info("worker %s on %s: backend %s (%s), window %d",
                 worker_name, studio.root, options.backend, lanes, backend_options.window)
        with StopOnSignals(reconciler):
            if options.once:
                summary = reconciler.run_once()
            else:
                poll = options.poll or config.worker.poll_seconds
                watcher = Watcher(repo, reconciler.poke, poll=poll, backstop=config.worker.backstop_seconds)
                summary = reconciler.run_forever(watcher)
    finally:
        progress.close()
        repo.release()
    waiting = repo.unpushed() if options.push and repo.has_remote() else 0
    log.info("%d rendered, %d failed%s", summary.rendered, summary.failed,
             f", {waiting} commits wait to be pushed" if waiting else "")
    if summary.unreachable and options.once:
        waits = f"; {waiting} commits could not be pushed; they wait in {studio.root}" if waiting else ""
        raise FatalError(f"cannot fetch: {summary.unreachable}{waits}")
    if summary.refused and options.once:
        print(f"renderloop: error: {summary.refused} batch(es) not rendered: their renders folder leaves the "
              "studio (see above)", file=sys.stderr)
        return 1
    if waiting and not summary.pushed:
        print(f"renderloop: error: {waiting} commits could not be pushed; they wait in {studio.root}",
              file=sys.stderr)
        return 1
    return 0


class StopOnSignals:
    """First Ctrl+C (or SIGTERM): stop cleanly. Second: leave at once.

    Files are only ever replaced atomically, so leaving at once never
    leaves a partial file in the tree.
    """

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.count = 0
        self.previous: dict[int, SignalHandler] = {}

    def handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            print("renderloop: stopping now", file=sys.stderr)
            processes.kill_all()  # git runs in its own process group: the console's Ctrl+C does not reach it
            os._exit(130)
        log.info("stopping: committing what is finished (Ctrl+C again to leave at once)")
        self.reconciler.stopping.set()
        self.reconciler.poke()

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
                sig = getattr(signal, name, None)
                if sig is not None:
                    self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            # None: the handler was not set from Python; the default is the closest we can restore
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
