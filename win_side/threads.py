"""Background threads that never die silently.

The pusher and the watcher run for days. An exception nobody expected (a
bug, a file system error, git refusing a repository) must not end either
thread without a word while the worker renders on and never pushes again:
it is logged, the thread waits on the one backoff, and carries on.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from win_side.throttle import Throttle, doubling, try_again

log = logging.getLogger("renderloop.worker")

DELAYS = doubling(1.0, 60.0)


def keep_running(name: str, step: Callable[[], bool], stop: threading.Event) -> None:
    """Call ``step`` until it returns False or ``stop`` is set; an exception is logged, then tried again."""
    throttle = Throttle(DELAYS)
    while not stop.is_set():
        try:
            if not step():
                return
        except Exception as exc:  # noqa: BLE001 - the point: nothing ends the thread
            delay = throttle.fail()
            log.error("the %s thread failed: %s: %s; %s", name, type(exc).__name__, exc, try_again(delay))
            log.debug("the %s thread's traceback", name, exc_info=True)
            throttle.wait(stop)
        else:
            throttle.succeed()
