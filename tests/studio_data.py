"""Test data for the Mac-side commands: batch files, render records with real PNGs, ledger lines.

Where a test needs exact render times, costs or backends (stats) or many
states at once (status), records are written with the studio's own models
and PNGs painted by the placeholder backend, exactly as the worker writes
them; the end-to-end tests use the real worker instead.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional, Sequence

import pytest

from mac_side.init import init
from studio.batch import Job, LoadedBatch, load_batch
from studio.config import load_config
from studio.layout import Studio
from studio.ledger import LedgerLine, new_id
from studio.record import RenderError, RenderRecord, sha256_hex
from win_side.backends.base import RenderRequest
from win_side.backends.placeholder import paint
from tests.helpers import Sandbox, cli, git, type_into

T0 = datetime(2026, 11, 27, 8, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def studio_root(tmp_path: Path) -> Path:
    """A fresh studio (``renderloop init``) with no remote: import this fixture into a test module."""
    root = tmp_path / "studio"
    init(root)
    return root


def review_round(sandbox: Sandbox, batch: str, typed: dict[str, str]) -> None:
    """Commit and push ``batch``, render it with the real worker, pull, type verdicts, commit the review."""
    mac = sandbox.mac
    git(mac, "add", f"batches/{batch}.yaml")
    assert git(mac, "commit", "-q", "-m", f"batch {batch}", check=False).returncode == 0
    git(mac, "push", "-q")
    rendered = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert rendered.returncode == 0, rendered.stderr
    assert git(mac, "pull", "-q", check=False).returncode == 0
    review = mac / "renders" / batch / "review.md"
    text = review.read_text(encoding="utf-8")
    for slug, words in typed.items():
        text = type_into(text, slug, words)
    review.write_text(text, encoding="utf-8", newline="\n")
    committed = git(mac, "commit", "-q", "-am", f"review {batch}", check=False)
    assert committed.returncode == 0, committed.stderr


def write_batch(root: Path, name: str, text: str) -> LoadedBatch:
    path = root / "batches" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    studio = Studio.at(root)
    return load_batch(studio, path, load_config(studio))


def put_render(
    root: Path,
    job: Job,
    *,
    status: str = "done",
    backend: str = "placeholder",
    seconds: Optional[float] = 1.0,
    cost: Optional[float] = 0.0,
    png: bool = True,
) -> RenderRecord:
    """A render record for ``job`` (and its PNG when done), as the worker writes them."""
    studio = Studio.at(root)
    config = load_config(studio)
    request = RenderRequest(job.batch, job.slug, job.spec, job.spec_hash, config.models[job.spec.model])
    data = paint(request) if status == "done" else None
    record = RenderRecord(
        batch=job.batch,
        slug=job.slug,
        status=status,  # type: ignore[arg-type]
        spec=job.spec,
        spec_hash=job.spec_hash,
        backend=backend,
        worker="test-box",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds or 0),
        render_seconds=seconds,
        png_sha256=sha256_hex(data) if data else None,
        cost_usd=cost,
        error=None if data else RenderError(kind="out-of-memory", message="CUDA out of memory"),
    )
    folder = root / "renders" / job.batch
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job.slug}.json").write_text(record.to_json(), encoding="utf-8", newline="\n")
    if data and png:
        (folder / f"{job.slug}.png").write_bytes(data)
    return record


def verdict(
    batch: str,
    slug: str,
    word: str,
    *,
    cues: Sequence[str] = (),
    record: Optional[RenderRecord] = None,
    job: Optional[Job] = None,
    minutes: int = 0,
    archetype: Optional[str] = None,
    model: Optional[str] = None,
) -> LedgerLine:
    """A ledger line as the pre-commit hook writes it, for the image of ``record`` (or ``job``)."""
    spec = record.spec if record is not None else job.spec if job is not None else None
    return LedgerLine(
        id=new_id(),
        at=T0 + timedelta(minutes=minutes),
        batch=batch,
        slug=slug,
        verdict=word,  # type: ignore[arg-type]
        cues=list(cues),
        model=model or (spec.model if spec else None),
        seed=spec.seed if spec else None,
        spec_hash=record.spec_hash if record is not None else job.spec_hash if job is not None else None,
        png_sha256=record.png_sha256 if record is not None else None,
        archetype=archetype if archetype is not None else (job.archetype if job is not None else None),
        reviewer="Ana",
    )


def append_ledger(root: Path, *lines: LedgerLine) -> None:
    with (root / "ledger.jsonl").open("a", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line.to_line())
