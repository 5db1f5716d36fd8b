"""The benchmark studio generator (tests/bench/synthetic.py) writes exactly what the worker and the hook write."""
from __future__ import annotations

from pathlib import Path

from studio.config import load_config
from studio.layout import Studio
from studio.ledger import LedgerLine
from studio.png import check_png
from studio.record import RenderRecord
from tests.bench.synthetic import build, clone
from tests.helpers import cli, git
from win_side.commits import render_message
from win_side.plan import make_plan


def test_a_small_synthetic_studio_is_what_the_worker_and_the_hook_would_have_written(tmp_path: Path) -> None:
    made = build(tmp_path / "gen", renders=5, ledger_lines=23, per_batch=2)
    assert made.batches == ["b0000", "b0001", "b0002"] and len(made.jobs) == 5
    here = clone(made.remote, tmp_path / "clone")
    studio = Studio.at(here)

    ledger = studio.ledger_path.read_bytes().splitlines(keepends=True)
    assert len(ledger) == 23
    for raw in ledger:  # byte for byte what the pre-commit hook appends
        assert LedgerLine.model_validate_json(raw).to_line().encode("utf-8") == raw
    judged = {(line.batch, line.slug) for line in map(LedgerLine.model_validate_json, ledger)}
    assert judged == {(job.batch, job.slug) for job in made.jobs}

    for job in made.jobs:
        raw = studio.record_path(job.batch, job.slug).read_bytes()
        record = RenderRecord.model_validate_json(raw)
        assert record.to_json().encode("utf-8") == raw and record.spec_hash == job.spec_hash
        png = studio.png_path(job.batch, job.slug).read_bytes()
        assert check_png(png) == (1344, 768) and 1_200_000 < len(png) < 1_400_000
        message = git(here, "log", "-1", "--format=%B", "--", f"renders/{job.batch}/{job.slug}.json").stdout
        assert message.strip() == render_message(record)

    plan = make_plan(studio, load_config(studio))
    assert plan.jobs == [] and plan.totals == {"b0000": (2, 2, 0), "b0001": (2, 2, 0), "b0002": (1, 1, 0)}
    verified = cli("ledger", "verify", cwd=here)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "23 lines" in verified.stdout


def test_images_differ_in_their_noise(tmp_path: Path) -> None:
    made = build(tmp_path / "gen", renders=2, ledger_lines=0, per_batch=2)
    here = clone(made.remote, tmp_path / "clone")
    first, second = (Studio.at(here).png_path(j.batch, j.slug).read_bytes() for j in made.jobs)
    same = sum(a == b for a, b in zip(first[1000:400_000], second[1000:400_000]))
    assert same < 5000  # random bytes agree by chance about once in 256
    assert not (here / "ledger.jsonl").read_bytes()
