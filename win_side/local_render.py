"""Render one batch on this Mac with mflux, the worker's way (``renderloop local BATCH``).

The conscious fallback when the worker is unreachable.  It is the worker's
own reconciler (``win_side.reconcile``) restricted to one batch, with the
mflux backend under its safety wrapper: the same records, the same one
commit per image with the same trailers, pushed when the remote answers
and otherwise left to wait in this clone.  Images that failed before (on
the worker too) are tried again: asking for a local render is asking for
another try.

It lives in ``win_side`` though the command runs on a Mac: it is the
worker's machinery (its reconciler, its clone lock, a backend), which
``mac_side`` may not import, and it shares none of the author's tools.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from studio import git
from studio.config import load_config
from studio.errors import FatalError
from studio.layout import BATCH_SUFFIXES, BATCHES, checked_batch_id
from studio.machine import load_machine
from win_side.backends.base import BackendOptions
from win_side.backends.mflux import MfluxBackend
from win_side.progress import Progress
from win_side.reconcile import ReconcileOptions, Reconciler, Summary
from win_side.repo import RemoteUnreachable, WorkerRepo
from win_side.worker import StopSwitch, checked_worker_name, open_studio

log = logging.getLogger("renderloop.local")


@dataclass
class LocalResult:
    batch: str
    summary: Summary
    waiting: int  # commits not pushed
    has_remote: bool
    interrupted: bool = False  # stopped by the person
    gave_up: list[str] = field(default_factory=list)  # why the backend stopped (memory never freed...)


def render_locally(
    repo: Path, batch: str, progress: Progress, switch: StopSwitch, *, cooldown: Optional[float] = None,
    min_available_gb: Optional[float] = None, timeout: Optional[float] = None,
) -> LocalResult:
    machine = load_machine({"mac.cooldown": cooldown, "mac.min_available_gb": min_available_gb, "mac.timeout": timeout})
    studio = open_studio(repo)
    config = load_config(studio)
    clone = WorkerRepo(studio)
    _check_batch(clone, batch)
    options = BackendOptions(config=config, studio_root=studio.root, state_dir=clone.state, window=1,
                             machine=machine.settings)
    backend = MfluxBackend(options)  # says how to install mflux before anything else happens
    name = checked_worker_name(machine.worker.name)
    clone.acquire()
    gave_up: list[str] = []
    try:
        # The person's clone has hooks enabled: a sync rebase would fire post-rewrite, which
        # stages reviews and so blocks every later rebase. Like the worker, run none of them.
        git.run_no_repository_code(clone.state)
        reconciler = Reconciler(
            clone, backend, ReconcileOptions(worker=name, push=True, retry_failed=True, only={batch}), progress
        )
        backend.lanes[0].on_gave_up = lambda reason: _give_up(reconciler, gave_up, reason)
        log.info("rendering %s on %s with mflux (one image at a time)", batch, name)
        switch.arm(reconciler)
        summary = reconciler.run_once()
    finally:
        clone.release()
    waiting = clone.unpushed() if clone.has_remote() else 0
    return LocalResult(batch, summary, waiting, clone.has_remote(), switch.requested, gave_up)


def _give_up(reconciler: Reconciler, gave_up: list[str], reason: str) -> None:
    gave_up.append(reason)
    reconciler.stopping.set()
    reconciler.poke()


def _check_batch(clone: WorkerRepo, batch: str) -> None:
    """The batch file is here, or on the remote (pushed from elsewhere; the sync brings it)."""
    checked_batch_id(batch)
    studio = clone.studio
    names = [f"{BATCHES}/{batch}{suffix}" for suffix in BATCH_SUFFIXES]
    if any((studio.root / name).is_file() for name in names):
        return
    if clone.has_remote():
        try:
            clone.fetch()
        except RemoteUnreachable:
            pass
        if any(git.ok(studio.root, "cat-file", "-e", f"{clone.remote_ref}:{name}") for name in names):
            return
    known = ", ".join(p.stem for p in studio.batch_files()) or "none yet"
    raise FatalError(f"no batch file batches/{batch}.yaml in {studio.root} (batches: {known})")

