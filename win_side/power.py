"""Sleep and wake: keep the machine awake while images are queued, and not count its sleep.

On Windows ``time.monotonic`` keeps counting while the machine sleeps, so a
render that spans a sleep would pass its deadline the moment the machine
wakes. :class:`AwakeClock` is a monotonic clock without the sleep: a gap
between two readings far longer than the worker's tick can only be the
machine asleep (or the process stopped), and is taken out. Render deadlines
read this clock, so a resume never fails the renders in flight.

:class:`Power` is the one thread that reads the clock every tick (so such a
gap is seen at once) and asks Windows to stay awake while work is queued
(``SetThreadExecutionState``, which belongs to the thread that set it, so it
is set and cleared from this one thread), letting it sleep when idle.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Optional, Protocol

log = logging.getLogger("renderloop.worker")

TICK = 1.0  # seconds between the power thread's readings
GAP = 60.0  # a gap between readings longer than this is a sleep (or a stopped process), not work


class AwakeClock:
    """Seconds the machine has been awake, from an arbitrary start (like ``time.monotonic``)."""

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        gap: float = GAP,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self.gap = gap
        self._lock = threading.Lock()
        self._last = (monotonic(), wall())
        self.asleep = 0.0  # taken out of the monotonic clock so far
        self._listeners: list[Callable[[float], None]] = []

    def on_resume(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(seconds asleep)`` when a resume is noticed."""
        self._listeners.append(listener)

    def forget(self, listener: Callable[[float], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def resync(self) -> None:
        """Start watching from now: a gap since the last reading (nobody was ticking) is not sleep."""
        with self._lock:
            self._last = (self._monotonic(), self._wall())

    def now(self) -> float:
        slept = 0.0
        with self._lock:
            mono, wall = self._monotonic(), self._wall()
            ran, passed = mono - self._last[0], wall - self._last[1]
            self._last = (mono, wall)
            if ran > self.gap:  # Windows: the monotonic clock counted the sleep; take it out
                self.asleep += ran
                slept = ran
            elif passed > self.gap and ran < self.gap / 2:  # elsewhere it stood still while the wall clock ran on
                slept = passed
            value = mono - self.asleep
        if slept:
            for listener in list(self._listeners):
                listener(slept)
        return value


class KeepAwake(Protocol):
    def hold(self) -> None:
        """Keep the machine from sleeping on its idle timer."""

    def release(self) -> None:
        """Let it sleep again."""


class NoKeepAwake:
    """Platforms where the worker does not hold the machine awake (nothing to do)."""

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


class WindowsKeepAwake:
    """``SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)``: no idle sleep while held.

    The state belongs to the calling thread: hold and release from the same one.
    The display may still turn off; a sleep the person asks for still happens.
    """

    ES_CONTINUOUS = 0x80000000
    ES_SYSTEM_REQUIRED = 0x00000001

    def __init__(self, set_state: Optional[Callable[[int], int]] = None) -> None:
        self._set_state = set_state or _set_thread_execution_state()

    def hold(self) -> None:
        if not self._set_state(self.ES_CONTINUOUS | self.ES_SYSTEM_REQUIRED):
            log.debug("Windows refused to keep the machine awake (SetThreadExecutionState failed)")

    def release(self) -> None:
        self._set_state(self.ES_CONTINUOUS)


def _set_thread_execution_state() -> Callable[[int], int]:
    if sys.platform != "win32":
        raise OSError("SetThreadExecutionState exists on Windows only")
    import ctypes

    function = ctypes.windll.kernel32.SetThreadExecutionState
    function.argtypes = [ctypes.c_uint32]
    function.restype = ctypes.c_uint32
    return lambda flags: int(function(flags))


def keep_awake_for(platform: str = sys.platform) -> KeepAwake:
    """How this machine is kept awake: Windows' execution state, nothing elsewhere."""
    return WindowsKeepAwake() if platform == "win32" else NoKeepAwake()


class Power:
    """The thread that ticks the awake clock and holds the machine awake while work is queued."""

    def __init__(
        self, clock: AwakeClock, keep_awake: KeepAwake, tick: float = TICK,
        on_resume: Optional[Callable[[], None]] = None,
    ) -> None:
        self.clock = clock
        self.keep_awake = keep_awake
        self.tick = tick
        self.on_resume = on_resume  # the machine woke up: look at the remote again
        self._busy = False
        self._held = False
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power", daemon=True)

    def busy(self, busy: bool) -> None:
        """Work is queued (True) or all done (False); any thread may say so."""
        self._busy = busy
        self._changed.set()

    @property
    def held(self) -> bool:
        return self._held

    def start(self) -> None:
        self.clock.resync()  # the clock was not ticked before: that gap is not a sleep
        self.clock.on_resume(self._resumed)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.clock.forget(self._resumed)

    def _resumed(self, seconds: float) -> None:
        log.info("the machine was asleep for about %s: renders in flight keep the time they had left",
                 _duration(seconds))
        if self.on_resume is not None:
            self.on_resume()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.clock.now()
                self._apply(self._busy)
                self._changed.wait(self.tick)
                self._changed.clear()
        finally:
            self._apply(False)

    def _apply(self, busy: bool) -> None:
        if busy == self._held:
            return
        try:
            self.keep_awake.hold() if busy else self.keep_awake.release()
        except OSError as exc:  # never let the power thread die over it
            log.debug("cannot change the machine's sleep state: %s", exc)
            return
        self._held = busy
        log.debug("%s", "keeping the machine awake: images are queued" if busy else "the machine may sleep again")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


# The clock render deadlines read; the worker's Power thread ticks it.
CLOCK = AwakeClock()
