"""Child processes that can be stopped whole, and that die with this one where the OS allows.

Each child starts as the leader of its own process group (a new session on
POSIX, ``CREATE_NEW_PROCESS_GROUP`` on Windows): a Ctrl+C in the console
reaches renderloop only, which then decides what to stop, and
:func:`kill_tree` ends the child with everything it started (``git fetch``
runs ``git-remote-https``, which runs the credential helper...).

On Windows every child is also put in one job object that is closed, and so
kills its members, when this process ends for any reason (``taskkill``, Task
Scheduler's End, a crash). POSIX has no such thing without a ``preexec_fn``
(unsafe with threads): there :func:`kill_all` is called on the way out
instead, and a child of a process killed with SIGKILL ends at its own pace.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Optional, Sequence, Union


Stream = Union[int, IO[bytes], None]

_live: set["subprocess.Popen[bytes]"] = set()
_live_lock = threading.Lock()


def start(
    argv: Sequence[str], cwd: Path, env: Optional[dict[str, str]] = None, *,
    stdin: Stream = subprocess.DEVNULL, stdout: Stream = subprocess.PIPE, stderr: Stream = subprocess.PIPE,
    detached: bool = False,
) -> "subprocess.Popen[bytes]":
    """Start ``argv`` as the leader of a new process group (no console window on Windows).

    ``detached``: meant to outlive this process (a hook's waiter), so neither
    tied to it by the job object nor killed by :func:`kill_all`.
    """
    if sys.platform == "win32":
        console = subprocess.DETACHED_PROCESS if detached else subprocess.CREATE_NO_WINDOW
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP | console,
        )
        if not detached:
            _job.add(proc.pid)
    else:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True,
        )
    if not detached:
        with _live_lock:
            _live.add(proc)
    return proc


def forget(proc: "subprocess.Popen[bytes]") -> None:
    """``proc`` has ended and been waited for."""
    with _live_lock:
        _live.discard(proc)


def kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    """Kill ``proc`` and every process it started, at once (no grace: used on a deadline or on leaving).

    On POSIX that is its session: a process that started a session of its own
    (``setsid``) chose to outlive it. Windows has neither: the whole tree goes.
    """
    import psutil  # here: only a deadline or a stop needs it, and every git hook imports this module

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    if sys.platform != "win32":
        family = [member for member in family if _session(member.pid) == proc.pid]
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while members remain
        except (ProcessLookupError, PermissionError):
            pass
    for member in family:  # on POSIX: any that left the group, not the session
        try:
            member.kill()
        except psutil.Error:
            pass
    try:
        proc.kill()
    except OSError:
        pass


def _session(pid: int) -> int:
    if sys.platform == "win32":
        return -1
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def kill_all() -> None:
    """Kill every child still running (this process is about to leave without cleaning up)."""
    with _live_lock:
        running = list(_live)
    for proc in running:
        if proc.poll() is None:
            kill_tree(proc)


class _Job:
    """A Windows job object whose members die when this process ends (its handle closes)."""

    def __init__(self) -> None:
        self._handle: Optional[int] = None
        self._failed = False
        self._lock = threading.Lock()

    def add(self, pid: int) -> None:
        if sys.platform != "win32":
            return
        with self._lock:
            if self._failed:
                return
            try:
                if self._handle is None:
                    self._handle = _create_kill_on_close_job()
                _assign(self._handle, pid)
            except OSError:  # nested jobs are refused before Windows 8; nothing else depends on it
                self._failed = True


def _create_kill_on_close_job() -> int:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError("job objects are Windows only")
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)

    class BasicLimits(ctypes.Structure):
        _fields_ = [
            ("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
            ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD), ("SchedulingClass", wintypes.DWORD),
        ]

    class IoCounters(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

    class ExtendedLimits(ctypes.Structure):
        _fields_ = [
            ("BasicLimitInformation", BasicLimits), ("IoInfo", IoCounters),
            ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t),
        ]

    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    handle = kernel32.CreateJobObjectW(None, None)
    if not handle:
        raise ctypes.WinError(ctypes.get_last_error())
    limits = ExtendedLimits()
    limits.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    extended_limit_information = 9
    if not kernel32.SetInformationJobObject(
        handle, extended_limit_information, ctypes.byref(limits), ctypes.sizeof(limits)
    ):
        raise ctypes.WinError(ctypes.get_last_error())
    return int(handle)


def _assign(job: int, pid: int) -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError("job objects are Windows only")
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    process = kernel32.OpenProcess(0x0100 | 0x0001, False, pid)  # PROCESS_SET_QUOTA | PROCESS_TERMINATE
    if not process:
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        if not kernel32.AssignProcessToJobObject(wintypes.HANDLE(job), process):
            raise ctypes.WinError(ctypes.get_last_error())
    finally:
        kernel32.CloseHandle(process)


_job = _Job()
