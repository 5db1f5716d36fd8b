"""Test-only crash points: kill the worker at an exact moment, to prove it recovers.

The reliability tests (``tests/reliability``) must kill the worker inside
windows too narrow to hit from outside: between writing a PNG and its record,
between ``git add`` and ``git commit``, while ``git push`` runs.  The worker
calls :func:`point` at those places; it does nothing unless the environment
variable ``RENDERLOOP_FAULT`` is set when the process starts::

    RENDERLOOP_FAULT=after-png:7        die right after the 7th PNG is written
    RENDERLOOP_FAULT=push:2+0.02        0.02 s after the 2nd push starts (git is running)

Dying kills the git commands running (each in its own process group), then is
SIGKILL of the worker's process group when it leads one, of the worker alone
otherwise; ``os._exit(137)`` on Windows.  No cleanup code runs either way.
"""
from __future__ import annotations

import os
import sys
import threading

ENV = "RENDERLOOP_FAULT"
POINTS = (
    "render", "rendered", "after-png", "after-record", "commit", "after-commit", "push", "after-push", "rebase",
)


def _parse(value: str | None) -> tuple[str, int, float] | None:
    if not value:
        return None
    name, _, rest = value.partition(":")
    count, _, delay = rest.partition("+")
    if name not in POINTS or not count.isdigit():
        raise SystemExit(f"renderloop: {ENV}={value!r}: expected POINT:N[+SECONDS], POINT one of {', '.join(POINTS)}")
    return name, int(count), float(delay or 0)


_FAULT = _parse(os.environ.get(ENV))  # read once, at import
_hits: dict[str, int] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    """The worker reached ``name``: die here if ``RENDERLOOP_FAULT`` says so."""
    if _FAULT is None or _FAULT[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != _FAULT[1]:
            return
    delay = _FAULT[2]
    if delay > 0:
        threading.Timer(delay, _die, args=(f"{name} #{_FAULT[1]} + {delay:g} s",)).start()
    else:
        _die(f"{name} #{_FAULT[1]}")


def _die(where: str) -> None:
    sys.stderr.write(f"renderloop: {ENV}: killed at {where}\n")
    sys.stderr.flush()
    from studio import processes

    processes.kill_all()  # the git commands running, each in its own group, die with us as on a power cut
    if sys.platform == "win32":
        os._exit(137)
    import signal

    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
