"""The render backend restarts or goes away mid-batch: the batch completes, nothing twice.

A continuous worker (a real process) renders through the ComfyUI test server
(``tests/comfyui_server``, faithful to ComfyUI's API) while the server:
restarts (queue, running prompt and history lost: in-flight prompts must be
submitted again), is down when the worker starts (it waits on a capped
backoff and says so: "will try again in 4 s"), or vanishes mid-batch for a
while and comes back.
"""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.comfyui_server import ComfyServer
from tests.helpers import Sandbox, git
from tests.reliability.harness import (
    FULL,
    POSIX,
    WorkerRun,
    batch_yaml,
    commit_and_push,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    renders_in,
    slugs_of,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.skipif(not POSIX, reason="the worker is stopped with SIGINT")

IMAGES = 8


def start(sandbox: Sandbox, server: ComfyServer) -> WorkerRun:
    commit_and_push(plain_clone(sandbox, "laptop"), {"batches/hero.yaml": batch_yaml(IMAGES)}, "batch hero")
    return start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", "--backend", "comfyui",
                        "--comfyui", server.url)


def complete(sandbox: Sandbox, run: WorkerRun, timeout: float = 120) -> str:
    """Wait until the batch is rendered and pushed, stop the worker, prove the history; its output."""
    wait_for(lambda: renders_in(sandbox.remote, "main") == IMAGES
             and git(sandbox.remote, "rev-parse", "main").stdout == git(sandbox.worker, "rev-parse", "HEAD").stdout,
             timeout, "the batch rendered and pushed")
    run.signal(signal.SIGINT)
    assert run.wait(timeout=30) == 0, run.output
    prove_once_each(prove_history(sandbox.remote, "main"), "hero", slugs_of(IMAGES))
    prove_clean_and_pushed(sandbox)
    assert "Traceback" not in run.output, run.output
    return run.output


def test_comfyui_restarts_mid_batch(sandbox: Sandbox, tmp_path: Path, figures: dict[str, Any]) -> None:
    with ComfyServer(tmp_path / "comfyui", render_seconds=0.25) as server:
        run = start(sandbox, server)
        try:
            wait_for(lambda: renders_in(sandbox.remote, "main") >= 2, 60, "two images pushed")
            in_flight = len(server.engine.queue_lists()[0]) + len(server.engine.queue_lists()[1])
            server.restart(down_seconds=1.0)  # queue, running prompt and history lost
            restarted = time.monotonic()
            output = complete(sandbox, run)
            recovered = time.monotonic() - restarted
        finally:
            run.stop()
        posted = server.posted_prompts()
    again = len(re.findall(r"submitting hero/\S+ again", output))
    assert in_flight >= 1 and again >= 1, output
    assert posted >= IMAGES + 1
    figures.update({"prompts on the server when it restarted": in_flight, "prompts submitted again": again,
                    "POST /prompt for 8 images": posted, "seconds from restart to batch complete": round(recovered, 1),
                    "lost": "nothing", "rendered twice": 0})


def test_comfyui_down_at_start_then_up(sandbox: Sandbox, tmp_path: Path, figures: dict[str, Any]) -> None:
    down_for = 16.0 if FULL else 4.0
    server = ComfyServer(tmp_path / "comfyui", render_seconds=0.1).start()
    try:
        server.go_down()  # the box rebooted; ComfyUI is not up yet
        run = start(sandbox, server)
        try:
            time.sleep(down_for)
            assert renders_in(sandbox.remote, "main") == 0
            server.come_back()
            back = time.monotonic()
            wait_for(lambda: renders_in(sandbox.remote, "main") >= 1, 90, "the first image after the server came back")
            first = time.monotonic() - back
            output = complete(sandbox, run)
        finally:
            run.stop()
    finally:
        server.close()
    delays = [float(d) for d in re.findall(r"is unavailable \(.*\); will try again in ([\d.]+) s", output)]
    assert len(delays) >= 2, output
    assert delays == sorted(delays) and max(delays) <= 60, delays  # capped backoff, never a busy loop
    # each announced wait was waited (window 2: two threads failing at once are one round, not two)
    assert sum(delays[:-1]) <= down_for + 1.5, delays
    stamps = re.findall(r"^(\d\d:\d\d:\d\d) .* is unavailable", output, re.MULTILINE)
    assert len(stamps) == len(set(stamps)), f"two waits announced at once: {stamps}"
    assert first <= delays[-1] + 5.0  # back within the last announced wait (and a render)
    assert "not answering" in output  # preflight said it would check the model files later
    figures.update({"seconds down": down_for, "retry delays logged (s)": delays,
                    "seconds from its return to the first image": round(first, 1), "lost": "nothing"})


def test_comfyui_vanishes_mid_batch_and_comes_back(sandbox: Sandbox, tmp_path: Path, figures: dict[str, Any]) -> None:
    with ComfyServer(tmp_path / "comfyui", render_seconds=0.25) as server:
        run = start(sandbox, server)
        try:
            wait_for(lambda: renders_in(sandbox.remote, "main") >= 2, 60, "two images pushed")
            server.go_down()  # no answer, sockets dropped; what it was rendering finishes meanwhile
            time.sleep(2.0)
            server.come_back()
            complete(sandbox, run)
        finally:
            run.stop()
        posted = server.posted_prompts()
    figures.update({"seconds gone": 2.0, "POST /prompt for 8 images": posted, "lost": "nothing",
                    "rendered twice": 0})
