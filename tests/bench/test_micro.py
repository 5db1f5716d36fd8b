"""Micro-benchmarks of the steps around each render: planning a batch, committing and pushing one image.

They bound what the worker spends per image besides the render itself: with a
window of 2 all of it overlaps the next render, so it only has to stay well
under one render time (seconds on a real GPU).
"""
from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from studio.batch import Job, load_batch
from studio.clock import utcnow
from studio.config import load_config
from studio.layout import Studio
from studio.record import RenderRecord, sha256_hex
from tests.bench.harness import batch_yaml
from tests.helpers import Sandbox
from win_side.commits import commit_render
from win_side.plan import make_plan
from win_side.pusher import Pusher
from win_side.repo import WorkerRepo


def _noise_png(size: int = 1024) -> bytes:
    """A PNG as large as a real render's (random pixels do not compress): about 3 MB at 1024 x 1024."""
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def test_plan_a_1000_prompt_batch(benchmark, sandbox: Sandbox) -> None:
    """The first plan after a push: the new file is parsed (its bytes differ each round: no cache helps)."""
    studio = Studio.at(sandbox.worker)
    config = load_config(studio)
    text = batch_yaml([f"img-{i:04d}" for i in range(1000)], "big")
    rounds = iter(range(1000))
    setup = _fresh_file(sandbox, "batches/big.yaml", text, rounds)
    plan = benchmark.pedantic(make_plan, args=(studio, config), setup=setup, rounds=5)
    assert plan is not None and len(plan.jobs) == 1000 and plan.totals["big"] == (1000, 0, 0)


def _fresh_file(sandbox: Sandbox, rel: str, text: str, rounds):
    """A pedantic setup writing ``rel`` anew, one comment line different each round."""

    def setup() -> None:
        sandbox.write(rel, f"# round {next(rounds)}\n{text}", where=sandbox.worker)

    return setup


def test_plan_a_new_batch_beside_1000_rendered_images(benchmark, sandbox: Sandbox) -> None:
    """Every reconcile reads every batch file and record: the cost grows with the studio's history."""
    studio = Studio.at(sandbox.worker)
    config = load_config(studio)
    for index in range(20):
        name = f"old{index:02d}"
        path = sandbox.write(f"batches/{name}.yaml", batch_yaml([f"{name}-{i:02d}" for i in range(50)], name),
                             where=sandbox.worker)
        for job in load_batch(studio, path, config).jobs:
            record = _done_record(job, b"stand-in for a PNG")
            studio.record_path(job.batch, job.slug).parent.mkdir(parents=True, exist_ok=True)
            studio.record_path(job.batch, job.slug).write_text(record.to_json(), encoding="utf-8")
            studio.png_path(job.batch, job.slug).write_bytes(b"stand-in for a PNG")
    make_plan(studio, config)  # a running worker has planned the old batches before
    setup = _fresh_file(sandbox, "batches/new.yaml", batch_yaml([f"new-{i:02d}" for i in range(50)], "new"),
                        iter(range(1000)))
    plan = benchmark.pedantic(make_plan, args=(studio, config), setup=setup, rounds=10)
    assert plan is not None and len(plan.jobs) == 50 and len(plan.totals) == 21
    assert plan.totals["old07"] == (50, 50, 0)


def _done_record(job: Job, png: bytes) -> RenderRecord:
    now = utcnow()
    return RenderRecord(
        batch=job.batch, slug=job.slug, status="done", spec=job.spec, spec_hash=job.spec_hash,
        backend="comfyui", worker="bench", queued_at=now, started_at=now, finished_at=now,
        render_seconds=1.0, png_sha256=sha256_hex(png), backend_ids={"prompt_id": "x"},
    )


def test_load_renderloop_yaml(benchmark, sandbox: Sandbox) -> None:
    config = benchmark(load_config, Studio.at(sandbox.worker))
    assert "z-image-turbo" in config.models


@pytest.fixture
def records(sandbox: Sandbox):
    """Render records of a 200-image batch, one per call, each with its own PNG."""
    studio = Studio.at(sandbox.worker)
    path = sandbox.write("batches/one.yaml", batch_yaml([f"img-{i:03d}" for i in range(200)], "one"),
                         where=sandbox.worker)
    jobs = iter(load_batch(studio, path, load_config(studio)).jobs)

    def next_record() -> tuple[RenderRecord, bytes]:
        data = _noise_png()
        return _done_record(next(jobs), data), data

    return next_record


def test_commit_one_image(benchmark, sandbox: Sandbox, records) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))

    def setup():
        return records(), {}

    benchmark.pedantic(lambda record, png: commit_render(repo, record, png), setup=setup, rounds=20)
    assert repo.unpushed() == 20


def test_commit_and_push_one_image(benchmark, sandbox: Sandbox, records) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    pusher = Pusher(repo)

    def commit_and_push(record: RenderRecord, png: bytes) -> None:
        commit_render(repo, record, png)
        assert pusher.push_pending()

    benchmark.pedantic(commit_and_push, setup=lambda: (records(), {}), rounds=20)
    assert repo.unpushed() == 0
