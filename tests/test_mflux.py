"""The mflux backend and its safety wrapper, with stand-in mflux executables on PATH."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from studio.config import MfluxModel, builtin_config
from studio.errors import FatalError
from studio.spec import Spec
from tests import mflux_standin
from tests.mflux_standin import standin_log  # noqa: F401 - a fixture
from win_side.backends import make_backend
from win_side.backends.base import BackendOptions, BackendUnavailable, Cancelled, RenderFailed, RenderRequest
from win_side.backends.mflux import MfluxBackend, command_line
from win_side.backends.mflux.guard import (
    GuardSettings,
    Interrupted,
    LockState,
    MfluxGuard,
    NotEnoughMemory,
    TimedOut,
    machine_lock,
)

GB = 1024**3


def make_request(model: str = "flux-schnell", slug: str = "harbor", prompt: str = "a harbor at dawn",
                 negative: str = "", width: int = 64, height: int = 48) -> RenderRequest:
    settings = builtin_config().models[model]
    spec = Spec(model=model, prompt=prompt, negative=negative, seed=1234, width=width, height=height,
                steps=settings.steps, cfg=settings.cfg)
    return RenderRequest("b1", slug, spec, spec.hash, settings)


def make_options(tmp_path: Path, **knobs) -> BackendOptions:
    knobs.setdefault("cooldown_seconds", 0.0)
    knobs.setdefault("min_available_gb", 0.0)
    knobs.setdefault("timeout_seconds", 20.0)
    return BackendOptions(config=builtin_config(), studio_root=tmp_path, state_dir=tmp_path / "state", **knobs)


def lane_of(tmp_path: Path, **knobs):
    return MfluxBackend(make_options(tmp_path, **knobs)).lanes[0]


def guard(tmp_path: Path, **settings) -> MfluxGuard:
    settings.setdefault("cooldown", 0.0)
    settings.setdefault("min_available_gb", 0.0)
    settings.setdefault("timeout", 20.0)
    settings.setdefault("lock_path", tmp_path / "lock" / "mflux.lock")
    return MfluxGuard(GuardSettings(**settings))


def standin_argv(tmp_path: Path, prompt: str = "a cat", out: str = "out.png") -> list[str]:
    exe = str(tmp_path / "bin" / "mflux-generate")
    return [exe, "--model", "schnell", "--prompt", prompt, "--seed", "1", "--width", "32", "--height", "32",
            "--output", str(tmp_path / out)]


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# -- the command line -------------------------------------------------------------------------


def test_command_line_follows_mflux_flags() -> None:
    request = make_request("qwen-image", negative="blurry, text", prompt="-a prompt that starts with a dash")
    mflux = MfluxModel(program="mflux-generate-qwen", quantize=8, low_ram=True, guidance=4.0)
    argv = command_line(request, mflux, "/opt/bin/mflux-generate-qwen", Path("/tmp/x/harbor.png"))
    assert argv == [
        "/opt/bin/mflux-generate-qwen",
        "--prompt=-a prompt that starts with a dash", "--seed", "1234", "--width", "64", "--height", "48",
        "--steps", "20", "--guidance", "4", "--quantize", "8", "--low-ram",
        "--negative-prompt=blurry, text", "--output", "/tmp/x/harbor.png",
    ]


@pytest.mark.parametrize("model", ["flux-schnell", "z-image-turbo"])
def test_models_without_a_negative_branch_get_no_negative_prompt(model: str) -> None:
    request = make_request(model, negative="blurry")
    settings = request.settings.mflux
    assert settings is not None
    argv = command_line(request, settings, "mflux", Path("o.png"))
    assert not any(a.startswith("--negative-prompt") for a in argv)
    if model == "flux-schnell":
        assert argv[1:3] == ["--model", "schnell"]


# -- rendering --------------------------------------------------------------------------------


def test_render_runs_the_models_command_and_returns_its_png(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path)
    result = lane.render(make_request("z-image-turbo", prompt="-dash first, a lighthouse"), threading.Event())

    with Image.open(io.BytesIO(result.png)) as image:
        assert image.size == (64, 48)
        assert "mflux-standin" in image.info  # the PNG as mflux wrote it, metadata kept
    assert result.backend_ids == {"command": "mflux-generate-z-image-turbo"}
    assert result.cost_usd == 0.0
    assert result.render_seconds > 0
    (start,) = [e for e in mflux_standin.events(standin_log) if e["event"] == "start"]
    assert start["command"] == "mflux-generate-z-image-turbo"
    assert "--prompt=-dash first, a lighthouse" in start["argv"]
    assert start["argv"][start["argv"].index("--steps") + 1] == "8"
    output = Path(start["argv"][start["argv"].index("--output") + 1])
    assert output.name == "harbor.png" and (tmp_path / "state" / "mflux") in output.parents
    assert not output.parent.exists()  # the fresh folder is gone again


def test_each_run_gets_a_fresh_output_path(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path)
    for _ in range(2):
        lane.render(make_request(), threading.Event())
    outputs = [e["output"] for e in mflux_standin.events(standin_log) if e["event"] == "end"]
    assert len(outputs) == 2 and outputs[0] != outputs[1]
    assert all(Path(o).name == "harbor.png" for o in outputs)  # never mflux's harbor_1.png


def test_exit_zero_without_an_image_is_a_failure_with_mflux_output(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path)
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(prompt="a harbor standin:nowrite"), threading.Event())
    assert failed.value.kind == "backend-error"
    assert "exited 0 but wrote no image" in failed.value.message
    assert "Battery percentage is below the limit" in failed.value.message
    assert "Battery percentage" in failed.value.detail


def test_out_of_memory_exit_is_recorded_as_such(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path)
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(prompt="standin:oom"), threading.Event())
    assert failed.value.kind == "out-of-memory"
    assert "exited with code 1" in failed.value.message and "Insufficient Memory" in failed.value.message


def test_hung_run_is_killed_with_its_children_at_the_timeout(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path, timeout_seconds=0.5)
    t0 = time.monotonic()
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(prompt="standin:hang"), threading.Event())
    took = time.monotonic() - t0
    assert failed.value.kind == "timeout"
    assert "longer than 0.5 s" in failed.value.message
    events = mflux_standin.events(standin_log)
    (start,) = [e for e in events if e["event"] == "start"]
    (child,) = [e for e in events if e["event"] == "child"]
    assert dead(start["pid"]) and dead(child["child"])
    assert took < 3.0, f"killing took {took:.2f} s"
    print(f"\nMEASURED hung run (obeys SIGTERM): timeout 0.5 s, killed after {took:.2f} s")


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM is POSIX")
def test_a_run_ignoring_sigterm_is_killed_for_good(tmp_path: Path, standin_log: Path) -> None:
    g = guard(tmp_path, timeout=0.4, kill_grace=0.3)
    t0 = time.monotonic()
    with pytest.raises(TimedOut):
        g.run(standin_argv(tmp_path, "standin:stubborn"), cwd=tmp_path, output_path=tmp_path / "o.txt",
              cancel=threading.Event())
    took = time.monotonic() - t0
    events = mflux_standin.events(standin_log)
    (child,) = [e for e in events if e["event"] == "child"]
    (start,) = [e for e in events if e["event"] == "start"]
    assert dead(start["pid"]) and dead(child["child"])
    assert took < 2.5
    print(f"\nMEASURED hung run ignoring SIGTERM: timeout 0.4 s + grace 0.3 s, killed after {took:.2f} s")


def test_cancel_kills_the_running_mflux(tmp_path: Path, standin_log: Path) -> None:
    lane = lane_of(tmp_path)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def render() -> None:
        try:
            lane.render(make_request(prompt="standin:hang"), cancel)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=render)
    thread.start()
    wait_for(lambda: any(e["event"] == "child" for e in mflux_standin.events(standin_log)))
    t0 = time.monotonic()
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], Cancelled)
    events = mflux_standin.events(standin_log)
    assert all(dead(e["pid"]) for e in events if e["event"] == "start")
    assert all(dead(e["child"]) for e in events if e["event"] == "child")
    assert time.monotonic() - t0 < 3.0


def test_ctrl_c_in_the_waiting_thread_kills_the_running_mflux(tmp_path: Path, standin_log: Path) -> None:
    g = guard(tmp_path)

    def interrupt() -> None:
        if any(e["event"] == "child" for e in mflux_standin.events(standin_log)):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        g.run(standin_argv(tmp_path, "standin:hang"), cwd=tmp_path, output_path=tmp_path / "o.txt",
              cancel=threading.Event(), on_tick=interrupt)
    events = mflux_standin.events(standin_log)
    assert all(dead(e["pid"]) for e in events if e["event"] == "start")
    assert all(dead(e["child"]) for e in events if e["event"] == "child")
    assert LockState(g.lock_path).read().get("child_pid") is None


# -- one at a time, cooldown, memory ------------------------------------------------------------


def test_threads_of_one_process_never_run_mflux_at_once(tmp_path: Path, standin_log: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_SECONDS", "0.2")
    g = guard(tmp_path, cooldown=0.0)
    threads = [
        threading.Thread(target=g.run, args=(standin_argv(tmp_path, out=f"o{i}.png"),),
                         kwargs=dict(cwd=tmp_path, output_path=tmp_path / f"o{i}.txt", cancel=threading.Event()))
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    spans = mflux_standin.runs(standin_log)
    assert len(spans) == 3
    assert mflux_standin.max_concurrency(spans) == 1


def test_cooldown_holds_between_runs_across_guards(tmp_path: Path, standin_log: Path) -> None:
    cooldown = 0.3
    first, second = guard(tmp_path, cooldown=cooldown), guard(tmp_path, cooldown=cooldown)
    for i, g in enumerate([first, second, first]):  # two guards share the machine-wide state
        g.run(standin_argv(tmp_path, out=f"o{i}.png"), cwd=tmp_path, output_path=tmp_path / "o.txt",
              cancel=threading.Event())
    gap = min(mflux_standin.gaps(mflux_standin.runs(standin_log)))
    assert gap >= cooldown
    print(f"\nMEASURED shortest gap between runs {gap:.3f} s (cooldown {cooldown} s)")


def test_second_caller_waits_for_the_lock_and_says_so(tmp_path: Path, standin_log: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    g = guard(tmp_path)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with machine_lock(g.lock_path, threading.Event()):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(0.4, release.set).start()
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="renderloop.mflux"):
        g.run(standin_argv(tmp_path), cwd=tmp_path, output_path=tmp_path / "o.txt", cancel=threading.Event())
    holder.join(5)
    assert time.monotonic() - t0 >= 0.35
    assert "another mflux run is going on this machine" in caplog.text
    assert "the other mflux run finished" in caplog.text


def test_cancel_while_waiting_for_the_lock(tmp_path: Path, standin_log: Path) -> None:
    g = guard(tmp_path)
    cancel = threading.Event()
    with machine_lock(g.lock_path, threading.Event()):
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(Interrupted):
            g.run(standin_argv(tmp_path), cwd=tmp_path, output_path=tmp_path / "o.txt", cancel=cancel)
    assert mflux_standin.events(standin_log) == []


def test_memory_gate_waits_until_memory_is_free_and_says_so(tmp_path: Path, standin_log: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    readings = iter([2 * GB, 3 * GB, 3 * GB])
    free_after = time.monotonic() + 0.6

    def memory() -> int:
        return 16 * GB if time.monotonic() >= free_after else next(readings, 3 * GB)

    g = MfluxGuard(GuardSettings(cooldown=0, min_available_gb=8, memory_wait=10, timeout=20,
                                 lock_path=tmp_path / "mflux.lock"), memory=memory)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="renderloop.mflux"):
        g.run(standin_argv(tmp_path), cwd=tmp_path, output_path=tmp_path / "o.txt", cancel=threading.Event())
    (start,) = [e for e in mflux_standin.events(standin_log) if e["event"] == "start"]
    waited = time.monotonic() - t0
    memory_freed_at = time.time() - (time.monotonic() - free_after)
    assert start["t"] >= memory_freed_at - 0.05  # mflux started only once memory was free
    assert "waiting for memory: 2 GB available, need 8 GB" in caplog.text
    print(f"\nMEASURED memory gate held mflux back {waited:.2f} s until memory was free")


def test_memory_gate_gives_up_after_its_limit(tmp_path: Path, standin_log: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    lane = lane_of(tmp_path, min_available_gb=10_000_000.0)  # more than any machine: real psutil readings
    lane.guard.settings = GuardSettings(**{**lane.guard.settings.__dict__, "memory_wait": 0.3})
    with caplog.at_level(logging.INFO, logger="renderloop.mflux"), pytest.raises(BackendUnavailable) as gave_up:
        lane.render(make_request(), threading.Event())
    assert "GB of memory available, mflux needs 10000000 GB" in str(gave_up.value)
    assert "gave up after 0.3 s" in str(gave_up.value)
    assert "waiting for memory" in caplog.text
    assert mflux_standin.events(standin_log) == []  # never started


def test_memory_gate_uses_real_psutil_readings(tmp_path: Path, standin_log: Path) -> None:
    g = guard(tmp_path, min_available_gb=psutil.virtual_memory().available / GB / 4, memory_wait=1)
    g.run(standin_argv(tmp_path), cwd=tmp_path, output_path=tmp_path / "o.txt", cancel=threading.Event())
    with pytest.raises(NotEnoughMemory):
        guard(tmp_path, min_available_gb=psutil.virtual_memory().total / GB * 2, memory_wait=0.1).run(
            standin_argv(tmp_path), cwd=tmp_path, output_path=tmp_path / "o.txt", cancel=threading.Event()
        )


@pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX")
def test_an_orphaned_mflux_is_stopped_before_the_next_run(tmp_path: Path, standin_log: Path) -> None:
    """A renderloop killed with SIGKILL frees the lock but leaves its mflux running: the next run ends it."""
    g = guard(tmp_path)
    orphan = subprocess.Popen(standin_argv(tmp_path, "standin:hang"), start_new_session=True,
                              stdout=subprocess.DEVNULL)
    wait_for(lambda: any(e["event"] == "child" for e in mflux_standin.events(standin_log)))
    state = LockState(g.lock_path)
    g.lock_path.parent.mkdir(parents=True, exist_ok=True)
    state.mark_started(orphan.pid)  # as the killed holder recorded it
    g.run(standin_argv(tmp_path, out="next.png"), cwd=tmp_path, output_path=tmp_path / "o.txt",
          cancel=threading.Event())
    orphan.wait(5)
    (child,) = [e for e in mflux_standin.events(standin_log) if e["event"] == "child"]
    assert dead(child["child"])
    spans = mflux_standin.runs(standin_log)
    assert len(spans) == 1 and spans[0][0] > max(e["t"] for e in mflux_standin.events(standin_log)
                                                 if e["event"] == "child")


# -- not installed, not configured ------------------------------------------------------------


def test_without_mflux_the_backend_says_it_needs_apple_silicon(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FatalError) as missing:
        make_backend("mflux", make_options(tmp_path))
    message = str(missing.value)
    assert "mflux is not installed" in message and "Apple silicon" in message
    assert 'pip install -e ".[mflux]"' in message


def test_preflight_fails_models_without_an_mflux_program(tmp_path: Path, standin_log: Path) -> None:
    backend = MfluxBackend(make_options(tmp_path))
    request = make_request()
    bare = RenderRequest("b1", "other", request.spec, request.spec_hash,
                         request.settings.model_copy(update={"mflux": None}))
    missing_cmd = RenderRequest("b1", "third", request.spec, request.spec_hash,
                                request.settings.model_copy(update={"mflux": MfluxModel(program="mflux-generate-nope")}))
    failures = backend.preflight([request, bare, missing_cmd])
    assert set(failures) == {("b1", "other"), ("b1", "third")}
    assert failures[("b1", "other")].kind == "missing-model"
    assert "no mflux program" in failures[("b1", "other")].message
    assert "mflux-generate-nope is not on PATH" in failures[("b1", "third")].message


def test_the_backend_has_one_lane_rendering_one_image_at_a_time(tmp_path: Path, standin_log: Path) -> None:
    lanes = MfluxBackend(make_options(tmp_path, window=4)).lanes
    assert [(lane.name, lane.window) for lane in lanes] == [("mflux", 1)]
