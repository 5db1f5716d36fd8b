"""The worker: render every batch in a clone, commit and push, until stopped (``renderloop worker``).

Its per-image lines go to the ``renderloop.worker`` logger and its counts to
the :class:`~win_side.progress.Progress` it is given; the command chooses how
both are shown, and stops it through a :class:`StopSwitch`.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from studio import git, layout
from studio.config import builtin_config, load_config
from studio.errors import FatalError, InvalidFile
from studio.limits import worker_name_problem
from studio.layout import Studio
from studio.machine import Machine, load_machine
from win_side.backends import make_backend
from win_side.backends.base import BackendOptions
from win_side.longpaths import path_budget_problem
from win_side.keeper import ComfyKeeper, models_dir_problem
from win_side.notify import FORMATS, Notifier, batch_end_callback
from win_side.progress import Progress
from win_side.reconcile import ReconcileOptions, Reconciler, Summary
from win_side.repo import WorkerRepo
from win_side.watch import Watcher, local_remote_repo

log = logging.getLogger("renderloop.worker")

HOSTED_PUSH_INTERVAL = 10.0  # at most 6 pushes a minute to a remote that is not on this disk
NOTIFY_AT_END = 5.0  # seconds the webhook's last tries may take when the worker ends by itself (--once)...
NOTIFY_ON_SIGNAL = 0.5  # ...and when it was asked to stop: any wait ends within a second


@dataclass
class WorkerOptions:
    repo: Path
    backend: Optional[str] = None  # None: worker.backend in this machine's settings, else comfyui
    once: bool = False
    poll: Optional[float] = None
    window: Optional[int] = None
    comfyui: list[str] = field(default_factory=list)
    fal_url: Optional[str] = None
    placeholder_seconds: float = 0.0
    name: Optional[str] = None
    push: bool = True
    retry_failed: bool = False
    # The flags; each None (not given) is taken from this machine's settings (environment,
    # machine.yaml: studio.machine), never from the repository:
    notify: Optional[str] = None  # a webhook told when a batch ends
    notify_format: Optional[str] = None  # win_side.notify.FORMATS (default json)
    comfyui_start: Optional[str] = None  # the command that starts ComfyUI when it does not answer
    models_dir: Optional[str] = None  # ComfyUI's models folder: missing means a drive not mounted
    comfyui_ready_timeout: float = 600.0  # how long a started ComfyUI may take to answer
    backend_wait: Optional[float] = None  # --once: seconds to wait for a backend that does not answer (default 60)
    push_interval: Optional[float] = None  # None: 0 for a remote on this disk, HOSTED_PUSH_INTERVAL otherwise
    log_file: Optional[str] = None  # also write the log there (the command opens it)


def open_studio(repo: Path) -> Studio:
    """The worker's clone: a git checkout with renderloop.yaml at its top."""
    return layout.open_studio(repo, require_git=True)


def machine_settings(options: WorkerOptions) -> Machine:
    """This machine's worker settings: the flags over the environment over machine.yaml."""
    return load_machine({
        "worker.backend": options.backend, "worker.name": options.name, "worker.comfyui": options.comfyui,
        "worker.window": options.window,
        "worker.poll": options.poll, "worker.fal_url": options.fal_url, "worker.notify": options.notify,
        "worker.notify_format": options.notify_format, "worker.comfyui_start": options.comfyui_start,
        "worker.models_dir": options.models_dir, "worker.log_file": options.log_file,
        "worker.push_interval": options.push_interval, "worker.backend_wait": options.backend_wait,
    })


@dataclass(frozen=True)
class WorkerResult:
    root: Path  # the worker's clone
    summary: Summary
    waiting: int  # commits not pushed
    state: Path  # the clone's private state folder (renders kept after a write failed wait in its pending/)
    no_remote: Optional[str] = None  # the remote the clone lacks, when it was to push
    identity: Optional[str] = None  # "name <email>" the worker committed as, when git had none configured


class StopSwitch:
    """Asks a running reconciler to stop cleanly: commit what is finished, push, return.

    ``armed`` is False until a reconciler runs (before that there is nothing
    to finish and stopping is leaving).  Safe to call from a signal handler.
    """

    def __init__(self) -> None:
        self.requested = False
        self.event = threading.Event()  # the backends' stop: their waits end when it is set
        self._reconciler: Optional[Reconciler] = None

    @property
    def armed(self) -> bool:
        return self._reconciler is not None

    def arm(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler
        if self.requested:
            self.request()

    def request(self) -> None:
        self.requested = True
        self.event.set()
        if self._reconciler is not None:
            self._reconciler.stopping.set()
            self._reconciler.poke()


def run_worker(options: WorkerOptions, progress: Progress, switch: StopSwitch,
               machine: Optional[Machine] = None) -> WorkerResult:
    """Render until stopped (or once); ``machine``: :func:`machine_settings` of ``options``, when already read."""
    if machine is None:
        machine = machine_settings(options)  # a setting this machine cannot use: a clear exit, before anything
    settings = machine.worker
    options = replace(options, backend=settings.backend,
                      notify=settings.notify, notify_format=settings.notify_format,
                      comfyui_start=settings.comfyui_start, models_dir=settings.models_dir,
                      backend_wait=settings.backend_wait, push_interval=settings.push_interval,
                      log_file=settings.log_file)
    studio = open_studio(options.repo)
    try:
        config = load_config(studio)
    except InvalidFile as exc:  # the reconciler commits it as renders/studio-error.json, and waits for a fix
        log.error("renderloop.yaml is invalid:\n%s", exc)
        config = builtin_config()
    repo = WorkerRepo(studio)
    git.run_no_repository_code(repo.state)
    worker_name = checked_worker_name(machine.worker.name)  # flag, env, machine.yaml, else the host name
    identity = _own_identity(studio.root, worker_name)
    backend_options = BackendOptions(
        config=config,
        studio_root=studio.root,
        state_dir=repo.state,
        machine=machine.settings,
        window=machine.worker.window,
        placeholder_seconds=options.placeholder_seconds,
        comfyui_urls=list(machine.worker.comfyui),
        fal_url=machine.worker.fal_url,
        stop=switch.event,
    )
    problem = path_budget_problem(studio.root)
    if problem:
        log.warning("%s", problem)
    missing = models_dir_problem(options.models_dir)
    if missing and options.once:
        raise FatalError(missing)
    if missing:  # a drive unlocked after logon: the ComfyUI lanes wait for it, naming it, before each batch
        log.warning("%s", missing)
    notifier = _notifier(options)
    progress.on_batch_end = batch_end_callback(notifier, worker_name)
    keeper: Optional[ComfyKeeper] = None
    repo.acquire()
    try:
        keeper = _keeper(options, backend_options.comfyui_urls)
        backend = make_backend(settings.backend, backend_options)
        reconciler = Reconciler(
            repo, backend,
            ReconcileOptions(worker=worker_name, push=options.push, retry_failed=options.retry_failed,
                             backend_wait=options.backend_wait if options.once else None,
                             push_interval=push_interval(repo, options.push_interval)),
            progress,
        )
        lanes = ", ".join(lane.name for lane in backend.lanes)
        log.info("worker %s on %s: backend %s (%s), window %d",
                 worker_name, studio.root, settings.backend, lanes, backend_options.window)
        if identity:
            log.warning("no git identity configured here: committing as %s "
                        "(set user.name and user.email to commit as someone else)", identity)
        if options.push and not repo.has_remote() and not options.once:
            log.warning("this clone has no remote %r: commits stay here until you add one", repo.remote)
        switch.arm(reconciler)
        if options.once:
            summary = reconciler.run_once()
        else:
            watcher = Watcher(repo, reconciler.poke, poll=machine.worker.poll, backstop=machine.worker.backstop)
            summary = reconciler.run_forever(watcher)
    finally:
        repo.release()
        if keeper is not None:
            keeper.stop()
        if notifier is not None:  # asked to stop (SIGINT/SIGTERM): no waiting on a slow webhook past a second
            notifier.stop(timeout=NOTIFY_ON_SIGNAL if switch.requested else NOTIFY_AT_END)
    no_remote = repo.remote if options.push and not repo.has_remote() else None
    waiting = repo.unpushed() if options.push and not no_remote else 0
    log.info("%d rendered, %d failed%s", summary.rendered, summary.failed,
             f", {waiting} commits wait to be pushed" if waiting else "")
    if summary.sync_error and options.once:
        waits = f"; {waiting} commits could not be pushed; they wait in {studio.root}" if waiting else ""
        raise FatalError(f"{summary.sync_error}{waits}")
    if summary.backend_down:
        raise FatalError(f"{summary.backend_down}; nothing was rendered for what waits")
    if summary.studio_problems and options.once:  # committed as renders/studio-error.json; and said here
        raise InvalidFile(summary.studio_problems)
    return WorkerResult(studio.root, summary, waiting, repo.state, no_remote, identity)


def _keeper(options: WorkerOptions, urls: list[str]) -> Optional[ComfyKeeper]:
    """With a start command: the ComfyUI at the first URL kept running; waits (bounded) until it answers."""
    if not options.comfyui_start or options.backend != "comfyui":
        return None
    url = urls[0] if urls else "http://127.0.0.1:8188"  # as studio.machine wrote it: http://host:port
    keeper = ComfyKeeper(options.comfyui_start, url, ready_timeout=options.comfyui_ready_timeout).start()
    if not keeper.wait_ready(options.comfyui_ready_timeout):
        log.warning("ComfyUI at %s is not answering yet; its images wait for it", url)
    return keeper


def _notifier(options: WorkerOptions) -> Optional[Notifier]:
    if not options.notify:
        return None
    from win_side.backends.http import is_http_url

    if not is_http_url(options.notify):
        raise FatalError(f"--notify {options.notify!r}: give an http(s) URL, like https://ntfy.sh/my-studio")
    fmt = next((f for f in FORMATS if f == (options.notify_format or "json")), None)
    if fmt is None:
        raise FatalError(f"--notify-format {options.notify_format!r}: choose from {', '.join(FORMATS)}")
    return Notifier(options.notify, fmt).start()


def checked_worker_name(flag: Optional[str], configured: Optional[str] = None) -> str:
    """The worker's name (``--name``, else the settings, else the host name), or a clear error.

    It goes into every record and commit trailer: a plain token, so that no
    name can add a line (a forged trailer) or hide characters.
    """
    candidates = ((flag, "--name"), (configured, "worker.name"), (socket.gethostname(), "the host name"))
    name, source = next(((value, where) for value, where in candidates if value), ("", "the host name"))
    problem = worker_name_problem(name)
    if problem:
        raise FatalError(f"{source}: {problem}" + ("" if source == "--name" else "; give one with --name"))
    return name


def _own_identity(root: Path, name: str) -> Optional[str]:
    """Commit as this worker where git knows no one (a fresh box); "name <email>" when so, else None."""
    unset = git.identity_unset(root)
    if not unset:
        return None
    user = f"renderloop worker {name}" if "user.name" in unset else None
    local = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip(".-") or "worker"
    email = f"{local}@renderloop.invalid" if "user.email" in unset else None
    git.commit_as(user, email)
    return f"{user or git.config_get(root, 'user.name')} <{email or git.config_get(root, 'user.email')}>"


def push_interval(repo: WorkerRepo, chosen: Optional[float]) -> float:
    """Seconds between pushes: as chosen, else none to a remote on this disk and 10 s to any other."""
    if chosen is not None:
        if chosen < 0:
            raise FatalError(f"--push-interval {chosen:g}: give a number of seconds, 0 or more")
        return chosen
    return 0.0 if local_remote_repo(repo) is not None else HOSTED_PUSH_INTERVAL
