"""``renderloop local BATCH``: render one batch on this Mac with mflux, the worker's way.

The conscious fallback when the worker is unreachable.  It is the worker's
own reconciler (``win_side.reconcile``) restricted to one batch, with the
mflux backend under its safety wrapper: the same records, the same one
commit per image with the same trailers, pushed when the remote answers
and otherwise left to wait in this clone.  Images that failed before (on
the worker too) are tried again: asking for a local render is asking for
another try.
"""
from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Optional

from studio import git
from studio.config import load_config
from studio.errors import FatalError
from studio.layout import BATCH_SUFFIXES, BATCHES, batch_id_problem
from win_side.backends.base import BackendOptions
from win_side.backends.mflux import MfluxBackend
from win_side.progress import make_progress
from win_side.reconcile import ReconcileOptions, Reconciler, Summary
from win_side.repo import RemoteUnreachable, WorkerRepo
from win_side.worker import StopOnSignals, open_studio

log = logging.getLogger("renderloop.local")

def run_local(
    repo: Path, batch: str, *, cooldown: Optional[float] = None, min_available_gb: Optional[float] = None,
    timeout: Optional[float] = None,
) -> int:
    studio = open_studio(repo)
    config = load_config(studio)
    _check_knobs(cooldown, min_available_gb, timeout)
    clone = WorkerRepo(studio)
    _check_batch(clone, batch)
    options = BackendOptions(
        config=config, studio_root=studio.root, state_dir=clone.state, window=1,
        cooldown_seconds=cooldown, min_available_gb=min_available_gb, timeout_seconds=timeout,
    )
    backend = MfluxBackend(options)  # says how to install mflux before anything else happens
    name = socket.gethostname()
    progress = make_progress()
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
        with StopOnSignals(reconciler) as signals:
            summary = reconciler.run_once()
    finally:
        progress.close()
        clone.release()
    return _report(clone, batch, summary, interrupted=signals.count > 0, gave_up=gave_up)


def _give_up(reconciler: Reconciler, gave_up: list[str], reason: str) -> None:
    gave_up.append(reason)
    reconciler.stopping.set()
    reconciler.poke()


def _report(clone: WorkerRepo, batch: str, summary: Summary, *, interrupted: bool, gave_up: list[str]) -> int:
    waiting = clone.unpushed() if clone.has_remote() else 0
    if summary.rendered or summary.failed or interrupted or gave_up:
        line = f"{batch}: {summary.rendered} rendered, {summary.failed} failed on this Mac"
    else:
        line = f"{batch}: nothing to render, every image is done"
    if waiting:
        line += f"; {waiting} commit{'s' if waiting != 1 else ''} could not be pushed yet (see above):"
        line += " `git pull --rebase` and `git push` send them later"
    elif clone.has_remote():
        line += "; pushed"
    print(line)
    if summary.rendered or summary.failed:
        print(f"write the review with: renderloop review {batch}")
    if gave_up:
        print(f"renderloop: error: stopped: {gave_up[0]}", file=sys.stderr)
        return 1
    if interrupted:
        print("renderloop: stopped; run `renderloop local` again to render the rest", file=sys.stderr)
        return 130
    return 0


def _check_batch(clone: WorkerRepo, batch: str) -> None:
    """The batch file is here, or on the remote (pushed from elsewhere; the sync brings it)."""
    problem = batch_id_problem(batch)
    if problem:
        raise FatalError(problem)
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


def _check_knobs(cooldown: Optional[float], min_available_gb: Optional[float], timeout: Optional[float]) -> None:
    for flag, value in (("--cooldown", cooldown), ("--min-available-gb", min_available_gb)):
        if value is not None and value < 0:
            raise FatalError(f"{flag} {value:g}: give zero or more")
    if timeout is not None and timeout <= 0:
        raise FatalError(f"--timeout {timeout:g}: give the longest an image may take, in seconds")
