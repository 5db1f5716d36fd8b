"""One capped backoff for everything that fails and tries again (kopf's ``Throttler``).

A :class:`Throttle` walks a capped sequence of delays, one step per failure,
and starts over on success.  Its wait is cut short by an event (stopping),
so a worker stops at once and tests wait for nothing.  The log says the
decision in one wording: :func:`try_again`.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence


# The worker's own schedule, for a lane that fails and for a push the remote refuses.
WORKER_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


def doubling(base: float, cap: float) -> tuple[float, ...]:
    """base, 2 x base, 4 x base... up to cap (cap included once)."""
    delays: list[float] = []
    delay = base
    while delay < cap:
        delays.append(delay)
        delay *= 2
    return (*delays, cap)


def try_again(delay: float) -> str:
    """The words every retry logs: "will try again in 8 s"."""
    return f"will try again in {delay:g} s"


class Throttle:
    """The backoff of one thing: how many failures in a row, and until when to wait."""

    def __init__(self, delays: Sequence[float], clock: Callable[[], float] = time.monotonic) -> None:
        if not delays:
            raise ValueError("a throttle needs at least one delay")
        self.delays = tuple(delays)
        self.failures = 0  # in a row
        self.until = 0.0  # on ``clock``: no new try before then
        self._clock = clock

    @property
    def cap(self) -> float:
        return max(self.delays)

    def fail(self, at_least: Optional[float] = None) -> float:
        """Count a failure; the delay before the next try.

        The schedule's next delay, raised to ``at_least`` when the failure
        names its own wait (a Retry-After), never beyond the cap.
        """
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        if at_least is not None:
            delay = min(self.cap, max(delay, at_least))
        self.failures += 1
        self.until = max(self.until, self._clock() + delay)
        return delay

    def succeed(self) -> None:
        """It worked: the next failure starts the schedule over."""
        self.failures = 0
        self.until = 0.0

    @property
    def remaining(self) -> float:
        """Seconds left to wait (0 when a try may go now)."""
        return max(0.0, self.until - self._clock())

    @property
    def waiting(self) -> bool:
        return self.remaining > 0

    def wait(self, wakeup: threading.Event, limit: Optional[float] = None) -> bool:
        """Sleep out the delay (at most ``limit``); True when ``wakeup`` cut it short."""
        remaining = self.remaining if limit is None else min(self.remaining, limit)
        return wakeup.wait(remaining) if remaining > 0 else wakeup.is_set()
