"""The one capped backoff: its schedule, its reset, its interruptible wait (no real waiting)."""
from __future__ import annotations

import threading
import time

import pytest

from win_side.throttle import Throttle, doubling, try_again


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_walk_the_schedule_and_stay_at_the_cap() -> None:
    throttle = Throttle((1.0, 2.0, 4.0), clock=Clock())
    assert [throttle.fail() for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert throttle.failures == 5


def test_success_starts_the_schedule_over() -> None:
    clock = Clock()
    throttle = Throttle((1.0, 2.0, 4.0), clock=clock)
    throttle.fail()
    throttle.fail()
    assert throttle.waiting
    throttle.succeed()
    assert not throttle.waiting and throttle.remaining == 0
    assert throttle.fail() == 1.0


def test_the_wait_runs_on_the_clock() -> None:
    clock = Clock()
    throttle = Throttle((8.0,), clock=clock)
    assert not throttle.waiting
    throttle.fail()
    assert throttle.remaining == 8.0
    clock.now += 5
    assert throttle.remaining == 3.0
    clock.now += 3
    assert not throttle.waiting


def test_a_named_wait_is_honoured_within_the_cap() -> None:
    throttle = Throttle((1.0, 2.0, 60.0), clock=Clock())
    assert throttle.fail(at_least=0.01) == 1.0  # never shorter than the schedule
    assert throttle.fail(at_least=30.0) == 30.0  # a Retry-After longer than the schedule
    assert throttle.fail(at_least=3600.0) == 60.0  # never beyond the cap


def test_a_second_failure_never_shortens_the_wait() -> None:
    clock = Clock()
    throttle = Throttle((1.0, 2.0, 60.0), clock=clock)
    assert throttle.fail(at_least=60.0) == 60.0
    assert throttle.fail() == 2.0
    assert throttle.remaining == 60.0


def test_the_wait_is_cut_short_by_its_event() -> None:
    throttle = Throttle((3600.0,))  # the real clock: a wait nobody cuts short would hang the test
    throttle.fail()
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert throttle.wait(stop) is True
    assert time.monotonic() - started < 1.0


def test_no_wait_when_nothing_failed() -> None:
    throttle = Throttle((3600.0,))
    assert throttle.wait(threading.Event()) is False
    throttle.fail()
    throttle.succeed()
    assert throttle.wait(threading.Event()) is False


def test_a_limited_wait_returns_at_its_limit() -> None:
    throttle = Throttle((3600.0,))
    throttle.fail()
    started = time.monotonic()
    assert throttle.wait(threading.Event(), limit=0.01) is False
    assert time.monotonic() - started < 1.0
    assert throttle.waiting


def test_doubling_and_wording() -> None:
    assert doubling(0.25, 30.0) == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    assert doubling(0.01, 0.05) == (0.01, 0.02, 0.04, 0.05)
    assert try_again(8.0) == "will try again in 8 s"
    assert try_again(0.25) == "will try again in 0.25 s"
    with pytest.raises(ValueError):
        Throttle(())
