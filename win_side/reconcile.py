"""The reconciler: make the render records match the batch files.

One pass gathers (batch files, records), decides (what is missing or
stale), acts (render through the backend's lanes) and records (one commit
per image, pushed in the background).  Every step can crash and be re-run:
records and images are written atomically and committed together, and on
start whatever a killed run left behind is recovered or cleaned up.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Optional, Sequence, TypedDict

from studio.batch import Job
from studio.config import StudioConfig, load_config
from studio.errors import FatalError, InvalidFile, Problem
from studio.git import GitError
from studio.layout import RENDERS, Studio, batch_id_problem
from studio.png import NotPng, check_png
from studio.record import RenderError, RenderRecord, sha256_hex
from studio.spec import Spec
from win_side import faults
from win_side.backends.base import Backend, RenderFailed, RenderRequest, RenderResult
from studio.capability import Capability, rel_path
from studio.clock import utcnow
from win_side.commits import (
    Transformed, check_attributes, clear_batch_error, clear_studio_error, commit_paths, commit_render,
    publish_capability, record_batch_error, record_studio_error, render_message,
)
from win_side.jobqueue import Item, RenderOutcome, RenderQueue
from win_side.pending import PendingRenders
from win_side.power import CLOCK, Power, keep_awake_for
from win_side.plan import Plan, make_plan
from win_side.progress import Progress
from win_side.pusher import Pusher
from win_side.repo import RemoteUnreachable, WorkerRepo, git_reason

if TYPE_CHECKING:  # the worker builds the watcher; this module only starts and stops it
    from win_side.watch import Watcher

log = logging.getLogger("renderloop.worker")

Key = tuple[str, str]
PENDING_RETRY = 60.0  # seconds between attempts to write renders kept after a write failed


@dataclass
class ReconcileOptions:
    worker: str  # this worker's name, in records and commit trailers
    push: bool = True
    retry_failed: bool = False
    only: Optional[set[str]] = None  # restrict to these batches (``renderloop local``)
    backend_wait: Optional[float] = None  # run_once: give up after every lane failed this long (None: never)
    push_interval: float = 0.0  # seconds between two pushes at least (a hosted remote's rate limit)


class _RecordCommon(TypedDict):
    """The fields a render record has whether the image was done or failed."""

    batch: str
    slug: str
    spec: Spec
    spec_hash: str
    backend: str
    worker: str
    queued_at: Optional[datetime]


@dataclass
class Summary:
    rendered: int = 0
    failed: int = 0
    refused: int = 0  # batches whose renders folder is a link or a file
    pushed: bool = True
    sync_error: Optional[str] = None  # why the last sync with the remote failed, if it did
    pending: int = 0  # finished renders that could not be written into the studio yet
    backend_down: Optional[str] = None  # run_once gave up: no lane answered for backend_wait seconds
    # What stops the whole studio, or a misnamed batch, from rendering (committed as renders/studio-error.json).
    studio_problems: list[Problem] = field(default_factory=list)


class Reconciler:
    def __init__(self, repo: WorkerRepo, backend: Backend, options: ReconcileOptions,
                 progress: Optional[Progress] = None, power: Optional[Power] = None) -> None:
        self.repo = repo
        self.backend = backend
        self.options = options
        self.progress = progress or Progress()
        self.summary = Summary()
        self.active: dict[Key, str] = {}  # queued or rendering -> spec_hash
        self.desired: dict[Key, str] = {}
        self._state = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self.poked = threading.Event()
        self.stopping = threading.Event()
        self.fatal: Optional[Exception] = None  # why the committer stopped the worker
        self.outcomes: queue.Queue[Optional[RenderOutcome]] = queue.Queue()
        self.renders = RenderQueue(backend.lanes, self.outcomes.put)
        self.pusher = (
            Pusher(repo, on_integrated=self.poke, interval=options.push_interval)
            if options.push and repo.has_remote() else None
        )
        self.pending = PendingRenders(repo.state)
        self._told: set[tuple[str, str, str]] = set()  # write failures already logged
        self._committer = threading.Thread(target=self._commit_loop, name="committer", daemon=True)
        # awake while images are queued; a resume re-checks the remote
        self.power = power or Power(CLOCK, keep_awake_for(), on_resume=self.poke)

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self.power.start()
        self.renders.start()
        self._committer.start()
        if self.pusher:
            self.pusher.start()

    def poke(self) -> None:
        """Something changed (the remote moved, a result went stale): reconcile again soon."""
        self.poked.set()

    def stop(self, push_timeout: float = 10.0) -> None:
        """Stop rendering, commit what is finished, push it. Safe to call twice."""
        self.stopping.set()
        self.renders.stop()
        self.outcomes.put(None)
        self._committer.join(timeout=30)
        if self.pusher:
            self.pusher.stop()
            self.summary.pushed = self.pusher.flush(push_timeout)
        self.summary.pending = len(self.pending)
        self.backend.close()
        self.power.stop()

    def wait_idle(self) -> None:
        """Block until every planned image is committed (or we are stopping)."""
        while not self.stopping.is_set():
            if self._idle.wait(0.2) and self.outcomes.empty():
                with self._state:
                    if not self.active:
                        return

    # -- gather, decide ---------------------------------------------------

    def recover(self) -> None:
        """Commit renders a killed run finished but did not commit; clean the rest."""
        complete = self.repo.recover()
        for record, paths in complete:
            commit_paths(self.repo, render_message(record), paths)
            log.info("committed %s/%s, finished before an interruption", record.batch, record.slug)
        if complete and self.pusher:
            self.pusher.request()
        self.commit_pending()

    def commit_pending(self) -> None:
        """Write and commit the renders an earlier write failure left waiting in the state folder."""
        committed = 0
        for record, png in self.pending.entries():
            try:
                commit_render(self.repo, record, png)
            except Exception as exc:  # still failing: it keeps waiting, and is not rendered again
                reason = (record.batch, record.slug, _why(exc))
                log.log(logging.DEBUG if reason in self._told else logging.WARNING,
                        "still cannot write %s/%s into the studio (%s); it waits in %s", *reason, self.pending.folder)
                self._told.add(reason)
                continue
            self.pending.drop((record.batch, record.slug))
            committed += 1
            log.info("committed %s/%s, kept after an earlier write failed", record.batch, record.slug)
        if committed and self.pusher:
            self.pusher.request()

    def sync(self) -> None:
        """Fetch the remote and put our commits on top of it."""
        if not self.repo.has_remote():
            return
        try:
            self.repo.fetch()
        except RemoteUnreachable as exc:
            log.warning("cannot fetch (%s); working from the last known state", exc)
            self.summary.sync_error = f"cannot fetch: {exc}"
            return
        self.summary.sync_error = None
        try:
            self.repo.integrate()
        except FatalError as exc:
            log.error("%s", exc)
            self.summary.sync_error = str(exc)

    def reconcile(self) -> Plan | None:
        """Plan against the clone as it is now and queue what is missing."""
        self.commit_pending()
        with self.repo.lock:
            try:
                config = load_config(self.repo.studio)
            except InvalidFile as exc:
                log.error("renderloop.yaml is invalid, nothing can be planned until it is fixed:\n%s", exc)
                self._record_studio_errors(exc.problems + misnamed_batches(self.repo.studio))
                return None
            plan = make_plan(
                self.repo.studio, config, retry_failed=self.options.retry_failed, only=self.options.only
            )
            with self._state:
                self.desired = plan.desired
            refused = refused_folders(plan)
            for problem in refused:
                log.error("%s", problem.message)
            self.summary.refused = len(plan.refused)
            self._record_studio_errors(misnamed_batches(self.repo.studio), refused)
            self._record_batch_errors(plan)
        self.progress.planned(plan.totals)
        # Before any GPU time or fal money: would the repository's attributes change what we commit?
        check_attributes(self.repo, [self.repo.studio.rel(p) for job in plan.jobs for p in (
            self.repo.studio.png_path(job.batch, job.slug), self.repo.studio.record_path(job.batch, job.slug))])
        adopt = getattr(self.backend, "adopt", None)
        if adopt is not None:  # before anything is submitted: prompts a killed run left on the backend
            adopt({(job.batch, job.slug): job.spec_hash for job in plan.jobs})
        self._enqueue(plan.jobs, config)
        self._publish(config)
        return plan

    def _publish(self, config: StudioConfig) -> None:
        """Commit what the backend can render (``workers/<name>.json``) when its answer changed."""
        describe = getattr(self.backend, "describe", None)
        if describe is None:
            return
        try:
            found = describe(config)
            if found is None:
                return
            capability = Capability(worker=self.options.worker, updated_at=utcnow(), **found)
            if publish_capability(self.repo, capability) is not None:
                log.info("published what this worker can render: %s", rel_path(self.options.worker))
                if self.pusher:
                    self.pusher.request()
        except Exception:  # the capability file is advice for the person's hook: never stop rendering for it
            log.exception("could not publish what this worker can render")

    def _record_studio_errors(self, problems: list[Problem], refused: Sequence[Problem] = ()) -> None:
        """What no batch-error record can hold is committed as renders/studio-error.json, so the person sees it.

        ``refused``: batches whose renders folder is a link or a file (the summary counts them apart).
        """
        self.summary.studio_problems = list(problems)
        problems = [*problems, *refused]
        if self.options.only is not None:
            return  # `renderloop local`: the person is right here
        try:
            if problems:
                changed = record_studio_error(self.repo, problems, self.options.worker)
            else:
                changed = clear_studio_error(self.repo, self.options.worker)
        except FatalError as exc:  # renders/ itself is a link or a file: said for each batch below
            log.error("cannot record renders/studio-error.json: %s", exc)
            return
        if changed:
            log.info("%s renders/studio-error.json", "recorded" if problems else "cleared")
            if self.pusher:
                self.pusher.request()

    def _record_batch_errors(self, plan: Plan) -> None:
        changed = False
        for batch, (path, error) in sorted(plan.invalid.items()):
            if record_batch_error(self.repo, batch, path, error, self.options.worker):
                log.error("%s is invalid; recorded renders/%s/batch-error.json:\n%s", path.name, batch, error)
                changed = True
        for batch in plan.clear_errors:
            if clear_batch_error(self.repo, batch, self.options.worker):
                log.info("batch %s is valid again (or gone): cleared its error record", batch)
                changed = True
        if changed and self.pusher:
            self.pusher.request()

    def _enqueue(self, jobs: list[Job], config: StudioConfig) -> None:
        fresh: list[RenderRequest] = []
        with self._state:
            for job in jobs:
                key = (job.batch, job.slug)
                if self.active.get(key) == job.spec_hash or self.pending.holds(key, job.spec_hash):
                    continue
                if key in self.active:  # the spec changed while it waited: replace it
                    self.renders.drop(lambda waiting: waiting.key == key)  # called at once: no late binding
                fresh.append(
                    RenderRequest(job.batch, job.slug, job.spec, job.spec_hash, config.models[job.spec.model])
                )
        if not fresh:
            return
        failures = self.backend.preflight(fresh)
        with self._state:
            for request in fresh:
                self.active[request.key] = request.spec_hash
                self._idle.clear()
            self.power.busy(True)
        for request in fresh:
            failure = failures.get(request.key)
            if failure is not None:
                self.outcomes.put(RenderOutcome(Item(request), failure))
            else:
                self.renders.put(request)
        log.info("queued %d image%s", len(fresh) - len(failures), "" if len(fresh) - len(failures) == 1 else "s")

    # -- record ------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            outcome = self.outcomes.get()
            if outcome is None:
                if self.stopping.is_set():
                    self._drain()
                    return
                continue
            self._commit(outcome)

    def _drain(self) -> None:
        while True:
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                return
            if outcome is not None:
                self._commit(outcome)

    def _commit(self, outcome: RenderOutcome) -> None:
        request = outcome.item.request
        key = request.key
        with self._state:
            wanted = self.desired.get(key)
        try:
            if wanted != request.spec_hash:
                log.info("%s/%s changed while it rendered; discarded, will render the new spec", *key)
                self.poke()
                return
            record, png = render_record(request, outcome.result, queued_at=outcome.item.queued_at,
                                        backend=self.backend.name, worker=self.options.worker)
            faults.point("rendered")
            try:
                if commit_render(self.repo, record, png) is None:
                    log.info("%s/%s: the same record as committed already; nothing to commit", *key)
            except Exception as exc:  # a path too long, a file held open, a git error: keep the render
                where = self.pending.keep(record, png)
                log.error("could not write %s/%s into the studio (%s); kept it in %s, committed on a later pass",
                          *key, _why(exc), where)
                return
            if record.status == "done":
                self.summary.rendered += 1
            else:
                self.summary.failed += 1
            self.progress.finished(record, outcome.item.lane or self.backend.name)
            if self.pusher:
                self.pusher.request()
        except Transformed as exc:  # nothing can be committed as rendered: stop, say why
            self.fatal = exc
            self.stopping.set()
            self.poke()
        except Exception:  # never let one image take the committer down
            log.exception("could not commit %s/%s; it will be rendered again", *key)
        finally:
            with self._state:
                if self.active.get(key) == request.spec_hash:
                    del self.active[key]
                if not self.active:
                    self._idle.set()
                    self.power.busy(False)

    # -- the two ways to run ---------------------------------------------------

    def run_once(self) -> Summary:
        """Recover, sync, render everything missing, commit, push; then stop."""
        self.recover()
        self.sync()
        self.start()
        try:
            self.reconcile()
            self._wait_idle_or_give_up()
        finally:
            self.stop(push_timeout=10.0)
        if self.fatal is not None:
            raise self.fatal
        return self.summary

    def _wait_idle_or_give_up(self) -> None:
        """:meth:`wait_idle`, unless every lane stops answering for ``backend_wait`` seconds."""
        limit = self.options.backend_wait
        if limit is None:
            self.wait_idle()
            return
        said = False
        while not self.stopping.is_set():
            if self._idle.wait(0.2) and self.outcomes.empty():
                with self._state:
                    if not self.active:
                        return
            down_for = self.renders.down_for()
            if down_for is None:
                said = False
                continue
            lanes = self.renders.down_lanes()
            names = ", ".join(label for label, _ in lanes)
            if not said:
                log.warning("%s not answering; giving up in %g s", names, limit)
                said = True
            if down_for >= limit:
                problem = lanes[-1][1] if lanes else ""
                self.summary.backend_down = f"{names} did not answer for {limit:g} s" + (f" ({problem})" if problem else "")
                return

    def run_forever(self, watcher: Watcher) -> Summary:
        """Reconcile whenever the watcher pokes, until stopped."""
        self.recover()
        self.start()
        watcher.start()
        try:
            self.sync()
            self.reconcile()
            retried = time.monotonic()
            while not self.stopping.is_set():
                if self.pending.waiting() and time.monotonic() - retried > PENDING_RETRY:
                    retried = time.monotonic()
                    self.poke()  # a render waits to be written: try again now and then, even if nothing moves
                if not self.poked.wait(timeout=0.5):
                    continue
                self.poked.clear()
                if self.stopping.is_set():
                    break
                started = time.monotonic()
                self.sync()
                self.reconcile()
                log.debug("reconciled in %.0f ms", (time.monotonic() - started) * 1000)
        finally:
            watcher.stop()
            self.stop()
        if self.fatal is not None:
            raise self.fatal
        return self.summary


def render_record(request: RenderRequest, result: RenderResult | RenderFailed, *, queued_at: Optional[datetime],
                  backend: str, worker: str) -> tuple[RenderRecord, Optional[bytes]]:
    """The record of one image (and its PNG when done).

    Timestamps are whole seconds, and a backend computes the start back from
    the finish: a start before the queueing is rounding, so it is the queueing.
    A cached answer (nothing executed) says so, with no render time.
    """
    if isinstance(result, RenderResult):
        try:
            check_png(result.png)
        except NotPng:
            result = RenderFailed("backend-error", "the backend returned something that is not a PNG",
                                  detail=repr(result.png[:32]), backend_ids=result.backend_ids)
    common = _RecordCommon(
        batch=request.batch, slug=request.slug, spec=request.spec, spec_hash=request.spec_hash,
        backend=backend, worker=worker, queued_at=queued_at,
    )
    if isinstance(result, RenderResult):
        started = result.started_at if queued_at is None else max(result.started_at, queued_at)
        record = RenderRecord(
            status="done", backend_ids=result.backend_ids, started_at=started,
            finished_at=max(result.finished_at, started),
            render_seconds=None if result.cached else round(result.render_seconds, 2),
            cached=True if result.cached else None,
            png_sha256=sha256_hex(result.png), cost_usd=result.cost_usd, **common,
        )
        return record, result.png
    record = RenderRecord(
        status="failed", backend_ids=result.backend_ids,
        error=RenderError(kind=result.kind, message=_one_line(result.message), detail=result.detail),
        **common,
    )
    return record, None

def misnamed_batches(studio: Studio) -> list[Problem]:
    """Batch files whose name is not a batch id: they have no renders folder for an error record."""
    problems = []
    for path in studio.batch_files():
        why = batch_id_problem(path.stem)
        if why:
            problems.append(Problem(studio.rel(path), 1, f"{why}; rename the file"))
    return problems


def refused_folders(plan: Plan) -> list[Problem]:
    """Batches whose ``renders/<batch>`` is a link or a file: it cannot hold their error record."""
    return [Problem(f"{RENDERS}/{batch}", 1, f"batch {batch} is not rendered: {why}; {RENDERS}/{batch} must be a "
                    "real folder") for batch, why in sorted(plan.refused.items())]


def _why(exc: Exception) -> str:
    """What went wrong, in one line: git's own reason for a git command (not the whole command line)."""
    return (git_reason(exc.stderr) if isinstance(exc, GitError) else "") or _one_line(str(exc))


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
