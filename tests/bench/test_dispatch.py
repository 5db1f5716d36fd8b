"""Figure 1: from the person's `git push` ending to the first POST /prompt reaching ComfyUI.

A continuous worker (``renderloop worker`` in its own process) watches the
bare remote on this disk; the person pushes a one-image batch; the test
server notes when the POST /prompt arrives.  The same again with a remote the
worker cannot watch (served by ``git daemon`` on 127.0.0.1, so it polls with
``git ls-remote`` every 2 s), to show what watching buys.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from tests.bench.figures import RESULTS
from tests.bench.harness import GitDaemon, Rig, median, repeat

RENDER_SECONDS = 0.1


def _measure(benchmark, rig: Rig, server, worker, mode: str, count: int, jitter: float = 0.0) -> list[float]:
    """``jitter``: a random pause before each push, so pushes fall anywhere in the polling cycle."""
    latencies: list[float] = []
    names = iter(f"d{i:02d}" for i in range(1000))
    chance = random.Random(3)

    def setup():
        name = next(names)
        rig.commit_batch(name, 1)
        time.sleep(chance.uniform(0, jitter))
        return (name,), {}

    def push_and_wait(name: str) -> None:
        seen = len(server.submissions())
        pushed = rig.push()
        rig.wait_rendered(name, 1, timeout=30)  # rendered, committed, pushed: the next round starts clean
        arrived = server.submissions()[seen][1]
        latencies.append(arrived - pushed)

    push_and_wait(*setup()[0])  # warm-up: the worker's first batch imports and connects lazily
    latencies.clear()
    benchmark.pedantic(push_and_wait, setup=setup, rounds=count, iterations=1)
    assert len(latencies) == count
    assert ("polling " if mode == "poll" else "watching ") in worker.text()
    RESULTS.dispatch[mode] = latencies
    benchmark.extra_info.update(
        median_ms=round(median(latencies) * 1000, 1), max_ms=round(max(latencies) * 1000, 1),
        latencies_ms=[round(v * 1000, 1) for v in latencies],
    )
    return latencies


def test_push_to_first_prompt_watched_bare_remote(benchmark, tmp_path: Path, start_server, start_worker) -> None:
    rig = Rig.create(tmp_path / "studio")
    server = start_server(RENDER_SECONDS)
    worker = start_worker(rig, [server.url])
    latencies = _measure(benchmark, rig, server, worker, "watch", repeat("PUSHES", 12))
    assert all(v < 5 for v in latencies), latencies  # sanity: the watcher saw every push


def test_push_to_first_prompt_polling(benchmark, tmp_path: Path, start_server, start_worker) -> None:
    daemon = GitDaemon(tmp_path)
    try:
        rig = Rig.create(tmp_path / "studio", worker_url=daemon.url(tmp_path / "studio" / "remote.git"))
        server = start_server(RENDER_SECONDS)
        worker = start_worker(rig, [server.url], "--poll", "2")
        latencies = _measure(benchmark, rig, server, worker, "poll", repeat("PUSHES", 12), jitter=2.0)
        assert all(v < 2 + 5 for v in latencies), latencies
    finally:
        daemon.close()
