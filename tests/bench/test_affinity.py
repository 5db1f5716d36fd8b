"""Issue 11: model switches. 40 images alternating two models, a 3 s load, a 0.5 s render; one server, two.

Each test server charges ``LOAD_SECONDS`` whenever a prompt's model differs
from the one it has loaded, and marks that execution as a switch in its
timeline.  The worker runs as a person runs it (its own process), once with
model affinity (the default) and once in file order (``RENDERLOOP_AFFINITY=off``,
the first free lane takes the next image), for comparison.

Wall time is the GPU side: the first execution's start to the last one's end,
over all servers.  What it should be: every image's render plus one load per
model, spread over the servers, ``(images x render + models x load) / servers``,
with ``render`` the median measured execution without a load (0.5 s of
sampler plus the test server's own few ms).
"""
from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.bench.figures import RESULTS, SwitchRun
from tests.bench.harness import MODEL, Rig

RENDER_SECONDS = 0.5
LOAD_SECONDS = 3.0
IMAGES = 40
MODELS = (MODEL, "flux-schnell")


@pytest.mark.parametrize("order", ["affine", "file"])
@pytest.mark.parametrize("servers", [1, 2], ids=["one-server", "two-servers"])
def test_alternating_models(benchmark, tmp_path: Path, start_server, start_worker, servers: int, order: str) -> None:
    rig = Rig.create(tmp_path / "studio")
    comfy = [start_server(RENDER_SECONDS, LOAD_SECONDS) for _ in range(servers)]
    start_worker(rig, [server.url for server in comfy], env={"RENDERLOOP_AFFINITY": "on" if order == "affine" else "off"})
    runs: list[SwitchRun] = []

    def render() -> None:
        rig.commit_batch("alt", IMAGES, MODELS)
        pushed = rig.push()
        completed = rig.wait_rendered("alt", IMAGES, timeout=IMAGES * (RENDER_SECONDS + LOAD_SECONDS) * 2 + 60)
        executions = [server.executions() for server in comfy]
        runs.append(SwitchRun.of(order, servers, IMAGES, len(MODELS), LOAD_SECONDS, executions,
                                 pushed, completed.at, [server.timeline() for server in comfy]))

    benchmark.pedantic(render, rounds=1, iterations=1)
    run = runs[0]
    assert rig.statuses("alt") == {"done": IMAGES}
    assert sum(run.images_per_server) == IMAGES, "an image was rendered twice, or not at all"
    RESULTS.switches.append(run)
    benchmark.extra_info.update(
        order=order, servers=servers, images=IMAGES, render_seconds=RENDER_SECONDS, load_seconds=LOAD_SECONDS,
        switches_per_server=run.switches, images_per_server=run.images_per_server,
        gpu_span_s=round(run.span, 3), ideal_s=round(run.ideal, 3), over_ideal_pct=round(run.over * 100, 2),
        end_to_end_s=round(run.end_to_end, 3), median_render_s=round(run.render, 4),
    )
    if order == "affine":
        assert all(count <= len(MODELS) for count in run.switches), run.switches
        assert run.over <= 0.03, f"GPU span {run.span:.2f} s against {run.ideal:.2f} s necessary"
    else:
        assert statistics.mean(run.switches) > len(MODELS)  # what affinity saves
