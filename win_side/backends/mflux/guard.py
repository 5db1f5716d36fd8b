"""The safety wrapper around mflux: one run at a time on this machine, never starved.

mflux loads a whole model into the Mac's unified memory; two at once, or
one started while the memory is taken, can freeze the machine.  Every mflux
run therefore goes through :meth:`MfluxGuard.run`, which

1. takes a machine-wide lock (a lock file held with an OS file lock, so a
   killed holder frees it at once): a second ``renderloop local`` waits and
   says so;
2. waits out the cooldown since the last run ended (the end time is kept
   next to the lock, so the pause holds across processes);
3. waits until enough memory is available (psutil), giving up after a limit;
4. starts the command in a process group of its own (``studio.processes``,
   as git is started) and waits for it, killing the whole group on timeout,
   on cancel and on Ctrl+C.

Nothing here knows about images; the mflux backend builds the command.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import psutil

from studio import processes
from studio.fsutil import write_text_atomic
from studio.oslock import FileLock

log = logging.getLogger("renderloop.mflux")

LOCK_ENV = "RENDERLOOP_MFLUX_LOCK"
GB = 1024**3
KILL_GRACE_SECONDS = 2.0


class GuardError(Exception):
    """A run the guard stopped or could not start."""


class TimedOut(GuardError):
    def __init__(self, seconds: float, output: str) -> None:
        super().__init__(f"mflux ran longer than {seconds:g} s and was stopped")
        self.output = output


class Interrupted(GuardError):
    """The caller cancelled (the worker is stopping); the run was killed."""


class NotEnoughMemory(GuardError):
    pass


@dataclass(frozen=True)
class GuardSettings:
    cooldown: float = 15.0
    min_available_gb: float = 8.0
    memory_wait: float = 600.0
    timeout: float = 1800.0
    lock_path: Optional[Path] = None  # None: $RENDERLOOP_MFLUX_LOCK, else ~/.cache/renderloop/mflux.lock
    poll: float = 0.1  # how often a wait looks again
    kill_grace: float = KILL_GRACE_SECONDS


@dataclass(frozen=True)
class RunOutcome:
    returncode: int
    output: str
    seconds: float


def default_lock_path() -> Path:
    override = os.environ.get(LOCK_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "renderloop" / "mflux.lock"


def available_memory() -> int:
    return int(psutil.virtual_memory().available)


class MfluxGuard:
    def __init__(self, settings: GuardSettings, *, memory: Callable[[], int] = available_memory) -> None:
        self.settings = settings
        self.lock_path = settings.lock_path or default_lock_path()
        self._memory = memory

    def run(
        self, argv: Sequence[str], *, cwd: Path, output_path: Path, cancel: threading.Event,
        on_tick: Optional[Callable[[], None]] = None,
    ) -> RunOutcome:
        """Run ``argv`` under every safeguard; its output goes to ``output_path``."""
        with machine_lock(self.lock_path, cancel, self.settings.poll) as state:
            stop_orphan(state, self.settings.kill_grace)
            self._cool_down(state.last_finished(), cancel)
            self._wait_for_memory(cancel)
            try:
                return self._run_process(argv, cwd, output_path, cancel, on_tick, state)
            finally:
                state.mark_finished()

    def _cool_down(self, last_finished: Optional[float], cancel: threading.Event) -> None:
        if last_finished is None or self.settings.cooldown <= 0:
            return
        remaining = last_finished + self.settings.cooldown - time.time()
        if remaining <= 0:
            return
        log.info("cooling down: next mflux run in %.1f s", remaining)
        if cancel.wait(remaining):
            raise Interrupted("stopped during the cooldown")

    def _wait_for_memory(self, cancel: threading.Event) -> None:
        need = self.settings.min_available_gb * GB
        if need <= 0:
            return
        deadline = time.monotonic() + self.settings.memory_wait
        said = 0.0
        while True:
            free = self._memory()
            if free >= need:
                return
            now = time.monotonic()
            if now >= deadline:
                raise NotEnoughMemory(
                    f"only {_gb(free)} GB of memory available, mflux needs {_gb(need)} GB "
                    f"(gave up after {self.settings.memory_wait:g} s); close some programs or lower "
                    "local.min_available_gb"
                )
            if now - said >= 30 or said == 0.0:
                log.warning(
                    "waiting for memory: %s GB available, need %s GB before starting mflux "
                    "(giving up in %.0f s)", _gb(free), _gb(need), deadline - now,
                )
                said = now
            if cancel.wait(min(max(self.settings.poll, 0.05) * 5, deadline - now)):
                raise Interrupted("stopped while waiting for memory")

    def _run_process(
        self, argv: Sequence[str], cwd: Path, output_path: Path, cancel: threading.Event,
        on_tick: Optional[Callable[[], None]], state: "LockState",
    ) -> RunOutcome:
        t0 = time.monotonic()
        with open(output_path, "wb") as out:
            proc = processes.start(argv, cwd, stdout=out, stderr=subprocess.STDOUT)
            try:
                state.mark_started(proc.pid)
                self._wait(proc, t0, output_path, cancel, on_tick)
            except BaseException:  # timeout, cancel, Ctrl+C: nothing of mflux may survive us
                kill_group(proc, self.settings.kill_grace)
                raise
            finally:
                processes.forget(proc)
        return RunOutcome(proc.returncode, read_output(output_path), round(time.monotonic() - t0, 3))

    def _wait(
        self, proc: subprocess.Popen[bytes], t0: float, output_path: Path, cancel: threading.Event,
        on_tick: Optional[Callable[[], None]],
    ) -> None:
        timeout = self.settings.timeout
        while True:
            try:
                proc.wait(timeout=self.settings.poll)
                return
            except subprocess.TimeoutExpired:
                pass
            if cancel.is_set():
                log.warning("stopping: killing the running mflux (pid %d)", proc.pid)
                raise Interrupted("stopped while mflux was running")
            if time.monotonic() - t0 > timeout:
                log.error("mflux ran longer than %g s: killing it (pid %d) and its children", timeout, proc.pid)
                kill_group(proc, self.settings.kill_grace)
                raise TimedOut(timeout, read_output(output_path))
            if on_tick is not None:
                on_tick()


def _gb(size: float) -> str:
    return f"{size / GB:.1f}".removesuffix(".0")


def kill_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop ``proc`` and every process it started: politely (POSIX: SIGTERM to its group), then for good."""
    if sys.platform != "win32":  # Windows has no polite signal to a tree
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    processes.kill_tree(proc)  # children that ignored SIGTERM, and the leader
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - an unkillable process
        log.error("mflux (pid %d) did not die", proc.pid)


def stop_orphan(state: "LockState", grace: float = KILL_GRACE_SECONDS) -> None:
    """Kill an mflux run whose renderloop was killed before it could stop it.

    The OS frees the lock when its holder dies, but the holder's mflux may
    live on in its own process group; the next holder ends it, so there is
    never more than one.  The start time tells the run from a new process
    that happens to reuse its pid.
    """
    data = state.read()
    pid, created = data.get("child_pid"), data.get("child_created")
    if not isinstance(pid, int) or not isinstance(created, (int, float)):
        return
    try:
        orphan = psutil.Process(pid)
        alive = abs(orphan.create_time() - float(created)) < 0.5 and orphan.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        alive = False
    if alive:
        log.warning("an mflux run (pid %d) outlived the renderloop that started it: stopping it", pid)
        if sys.platform == "win32":  # pragma: no cover - Windows only
            _kill_family_windows(pid)
        else:
            _signal_group(pid, signal.SIGTERM)
            _wait_gone(orphan, grace)
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(orphan, 5)
    state.clear_child()


def _wait_gone(process: psutil.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def _signal_group(pgid: int, sig: int) -> None:
    if sys.platform == "win32":  # never called there: Windows kills the process tree instead
        raise NotImplementedError("process groups are POSIX only")
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_family_windows(pid: int) -> None:  # pragma: no cover - Windows only
    """Windows has no process groups to signal: kill the process and all it started."""
    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=5)


def read_output(path: Path, limit: int = 64_000) -> str:
    """The end of a run's output (mflux prints progress bars; the end is what matters)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# --- the machine-wide lock --------------------------------------------------------------------


class LockState:
    """What the lock holder shares with the next one: who runs, and when the last run ended."""

    def __init__(self, lock_path: Path) -> None:
        self.path = lock_path.with_name(lock_path.name + ".json")

    def read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def last_finished(self) -> Optional[float]:
        value = self.read().get("last_finished")
        return float(value) if isinstance(value, (int, float)) else None

    def mark_started(self, pid: int) -> None:
        try:
            created: Optional[float] = psutil.Process(pid).create_time()
        except psutil.Error:
            created = None
        self._write(running_since=time.time(), child_pid=pid, child_created=created)

    def mark_finished(self) -> None:
        self._write(
            running_since=None, child_pid=None, child_created=None, last_finished=time.time(), last_pid=os.getpid()
        )

    def clear_child(self) -> None:
        self._write(child_pid=None, child_created=None)

    def mark_holder(self) -> None:
        self._write(pid=os.getpid(), running_since=None)

    def _write(self, **changes: object) -> None:
        data = self.read()
        data.update(changes)
        try:
            write_text_atomic(self.path, json.dumps(data, sort_keys=True) + "\n")
        except OSError as exc:  # the lock itself still protects; only the cooldown memory is lost
            log.warning("could not record mflux state in %s: %s", self.path, exc)


class _Turns:
    """Marks of processes waiting for the lock, so that two processes take turns.

    Without them the process that just finished a run takes the lock again
    at once, and another ``renderloop local`` waits for its whole batch.
    """

    def __init__(self, lock_path: Path) -> None:
        self.folder = lock_path.parent
        self.prefix = f"{lock_path.name}.waiting."
        self.mine = self.folder / f"{self.prefix}{os.getpid()}"

    def wait(self) -> None:
        try:
            self.mine.touch()
        except OSError:
            pass

    def done(self) -> None:
        self.mine.unlink(missing_ok=True)

    def others_waiting(self) -> bool:
        for mark in self.folder.glob(f"{self.prefix}*"):
            pid = mark.name[len(self.prefix):]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            if psutil.pid_exists(int(pid)):
                return True
            mark.unlink(missing_ok=True)  # left by a process that died
        return False


class machine_lock:
    """``with machine_lock(path, cancel) as state:``: hold the one mflux slot of this machine."""

    def __init__(self, path: Path, cancel: threading.Event, poll: float = 0.1) -> None:
        self.path = path
        self.cancel = cancel
        self.poll = max(poll, 0.01)
        self._lock: Optional[FileLock] = None

    def __enter__(self) -> LockState:
        lock = FileLock(self.path)
        state = LockState(self.path)
        turns = _Turns(self.path)
        said = False
        try:
            while not self._take(lock, state, turns):
                if not said:
                    log.warning(
                        "another mflux run is going on this machine (renderloop pid %s); waiting for it to finish",
                        state.read().get("pid", "?"),
                    )
                    said = True
                turns.wait()
                if self.cancel.wait(self.poll):
                    lock.close()
                    raise Interrupted("stopped while waiting for the other mflux run")
        finally:
            turns.done()
        if said:
            log.info("the other mflux run finished; going on")
        self._lock = lock
        state.mark_holder()
        return state

    def _take(self, lock: FileLock, state: LockState, turns: _Turns) -> bool:
        if not lock.try_acquire():
            return False
        if state.read().get("last_pid") == os.getpid() and turns.others_waiting():
            lock.unlock()  # we had the last run: let the one waiting have this one
            self.cancel.wait(self.poll * 3)
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def iter_lines(text: str) -> Iterator[str]:
    """Lines of mflux output, progress-bar redraws (carriage returns) split too."""
    for line in text.replace("\r", "\n").split("\n"):
        if line.strip():
            yield line
