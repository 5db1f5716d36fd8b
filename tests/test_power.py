"""Sleep and wake, with an injected clock: a resume is not a timeout, and the machine stays awake while work waits."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.comfyui_server import ComfyServer
from tests.comfyui_server.fixtures import wait_for
from tests.helpers import Sandbox
from tests.test_comfyui_backend import finished, in_thread, lane_of, make, request
from tests.test_windows_worker import worker_in_process
from tests.test_worker import commit_batch
from win_side.backends.base import RenderFailed
from win_side.power import AwakeClock, Power, WindowsKeepAwake


class FakeTime:
    """A monotonic and a wall clock that a test moves; they start at the real ones."""

    def __init__(self) -> None:
        self.offset = 0.0  # added to the monotonic clock (Windows counts the sleep there)
        self.wall_offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.wall_offset

    def sleep_windows(self, seconds: float) -> None:
        self.offset += seconds
        self.wall_offset += seconds


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def hold(self) -> None:
        self.calls.append(("hold", threading.current_thread().name))

    def release(self) -> None:
        self.calls.append(("release", threading.current_thread().name))


def test_a_gap_far_longer_than_a_tick_is_sleep_and_does_not_count() -> None:
    fake = FakeTime()
    clock = AwakeClock(fake.monotonic, fake.wall, gap=60)
    resumed: list[float] = []
    clock.on_resume(resumed.append)
    start = clock.now()
    fake.sleep_windows(3600)  # Windows: monotonic and wall clock both ran on through the sleep
    assert clock.now() - start < 1.0
    assert resumed and 3600 <= resumed[0] < 3601
    fake.wall_offset += 7200  # Linux and macOS: only the wall clock runs on; nothing to take out
    before = clock.now()
    assert clock.now() - before < 1.0 and len(resumed) == 2
    fake.offset += 30  # a slow moment, not a sleep: counted
    assert 30 <= clock.now() - before < 31 and len(resumed) == 2
    fake.sleep_windows(600)  # nobody ticked (no worker running), then a worker starts
    clock.resync()
    assert 630 <= clock.now() - before < 632 and len(resumed) == 2  # counted, and not said to be a sleep


def test_a_render_spanning_a_sleep_is_not_a_timeout(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=1.5) as server:
        for awake, fails in ((True, False), (False, True)):
            backend = make(tmp_path / "studio", server.url, timeout=20)
            lane = lane_of(backend)
            fake = FakeTime()
            lane.clock = AwakeClock(fake.monotonic, fake.wall).now if awake else fake.monotonic
            box = in_thread(lane, request(f"sleepy-{awake}"))
            wait_for(lambda: server.engine.running is not None, what="the render to start")
            fake.sleep_windows(3600)  # the machine sleeps an hour mid-render, then wakes
            if fails:  # the plain monotonic clock: the render fails the moment the box wakes
                with pytest.raises(RenderFailed) as caught:
                    finished(box)
                assert caught.value.kind == "timeout"
            else:
                assert finished(box).png.startswith(b"\x89PNG")
            wait_for(lambda: server.engine.running is None, what="the server to be idle")
            backend.close()


def test_the_power_thread_holds_the_machine_awake_only_while_busy() -> None:
    recorder = Recorder()
    power = Power(AwakeClock(), recorder, tick=0.05)
    power.start()
    try:
        power.busy(True)
        wait_for(lambda: power.held, what="the hold")
        power.busy(False)
        wait_for(lambda: not power.held, what="the release")
        power.busy(True)
        wait_for(lambda: power.held, what="the hold again")
    finally:
        power.stop()
    assert [c[0] for c in recorder.calls] == ["hold", "release", "hold", "release"]  # stopping releases
    assert {c[1] for c in recorder.calls} == {"power"}  # one thread: Windows ties the state to it


def test_windows_keep_awake_sets_and_clears_the_execution_state() -> None:
    flags: list[int] = []
    keep = WindowsKeepAwake(set_state=lambda f: flags.append(f) or 1)
    keep.hold()
    keep.release()
    assert flags == [0x80000001, 0x80000000]  # ES_CONTINUOUS|ES_SYSTEM_REQUIRED, then ES_CONTINUOUS alone


def test_the_worker_keeps_the_machine_awake_while_images_are_queued(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from win_side import reconcile

    recorder = Recorder()
    monkeypatch.setattr(reconcile, "keep_awake_for", lambda: recorder)
    commit_batch(sandbox)
    assert worker_in_process(sandbox, "--placeholder-seconds", "0.3") == 0
    assert [c[0] for c in recorder.calls] == ["hold", "release"]
