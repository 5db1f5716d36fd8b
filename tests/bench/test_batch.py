"""Figures 2, 3 and 4: a batch of 50 images through a continuous worker, on one server then on two.

Each round the person pushes a new 50-image batch to a worker already
running (``--window 2``); the round ends when the remote holds the batch's
50 render commits.  Each test server renders every image in exactly
``RENDER_SECONDS`` (8 sampler steps with progress and preview frames, then a
real PNG) and keeps a timeline of (start, end) per image, from which come
the GPU idle gaps and the GPU-side span; the remote's post-receive hook
gives the end-to-end time.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.figures import RESULTS, BatchRun
from tests.bench.harness import GpuSide, Rig, median, repeat

RENDER_SECONDS = 0.5
IMAGES = 50


@pytest.mark.parametrize("servers", [1, 2], ids=["one-server", "two-servers"])
def test_batch_of_50(benchmark, tmp_path: Path, start_server, start_worker, servers: int) -> None:
    rig = Rig.create(tmp_path / "studio")
    comfy = [start_server(RENDER_SECONDS) for _ in range(servers)]
    start_worker(rig, [server.url for server in comfy])
    runs: list[BatchRun] = []
    names = iter(f"b{i:02d}" for i in range(1000))

    def setup():
        name = next(names)
        rig.commit_batch(name, IMAGES)
        return (name,), {}

    def push_and_render(name: str) -> None:
        seen = [len(server.submissions()) for server in comfy]
        pushed = rig.push()
        completed = rig.wait_rendered(name, IMAGES, timeout=IMAGES * RENDER_SECONDS * 3 + 60)
        gpu, first = [], []
        for server, before in zip(comfy, seen):
            submitted = server.submissions()[before:]
            first += [at for _, at in submitted[:1]]
            gpu.append(GpuSide.of(server.timeline(), {prompt_id for prompt_id, _ in submitted}))
        runs.append(BatchRun(servers, IMAGES, pushed, min(first), completed.at, gpu))

    push_and_render(*setup()[0])  # warm-up round: imports, connections, the first preflight
    runs.clear()
    benchmark.pedantic(push_and_render, setup=setup, rounds=repeat("ROUNDS", 3), iterations=1)

    for run in runs:  # what the figures stand on: every image rendered once, each server used
        assert sum(len(g.durations) for g in run.gpu) == IMAGES, "an image was rendered twice, or not at all"
        assert all(g.durations for g in run.gpu), "a server got no image"
        assert min(min(g.durations) for g in run.gpu) >= RENDER_SECONDS
    for name in {f"b{i:02d}" for i in range(len(runs) + 1)}:
        assert rig.statuses(name) == {"done": IMAGES}, name
    RESULTS.batches[servers] = runs
    gaps = [gap for run in runs for gap in run.gaps]
    benchmark.extra_info.update(
        servers=servers, images=IMAGES, render_seconds=RENDER_SECONDS,
        median_gap_ms=round(median(gaps) * 1000, 3), max_gap_ms=round(max(gaps) * 1000, 3),
        gpu_span_s=[round(r.gpu_span, 3) for r in runs],
        render_total_s=[round(r.render_total, 3) for r in runs],
        gpu_overhead_pct=[round(r.gpu_overhead * 100, 3) for r in runs],
        end_to_end_s=[round(r.end_to_end, 3) for r in runs],
        end_to_end_overhead_pct=[round(r.end_to_end_overhead * 100, 3) for r in runs],
        push_to_first_prompt_ms=[round((r.first_prompt - r.pushed) * 1000, 1) for r in runs],
        push_to_first_start_ms=[round(r.lead * 1000, 1) for r in runs],
        last_end_to_remote_ms=[round(r.tail * 1000, 1) for r in runs],
        mean_render_ms=[round(r.mean_render * 1000, 2) for r in runs],
        images_per_server=[[len(g.durations) for g in r.gpu] for r in runs],
    )
