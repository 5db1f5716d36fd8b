"""The plan cache (.git/renderloop/plan-cache.jsonl): what planning learned survives between runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import studio.inventory as inventory
from studio import plancache
from studio.config import load_config
from studio.layout import Studio
from studio.plancache import NAME
from tests.bench.synthetic import build, clone
from tests.helpers import git
from win_side.plan import make_plan


@pytest.fixture
def rendered(tmp_path: Path) -> Studio:
    """A clone of a studio with two batches, every image rendered and committed."""
    made = build(tmp_path / "gen", renders=4, ledger_lines=0, per_batch=2)
    return Studio.at(clone(made.remote, tmp_path / "clone"))


def _new_process(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Forget this process's caches (a fresh `worker --once`) and note every file parsed from now on."""
    inventory._cache.clear()
    plancache._memory.clear()
    parsed: list[str] = []
    real_batch, real_record = inventory.load_batch_bytes, inventory._record_facts

    def batch(raw: bytes, rel: str, config):  # type: ignore[no-untyped-def]
        parsed.append(rel)
        return real_batch(raw, rel, config)

    def record(studio, rel, entry):  # type: ignore[no-untyped-def]
        parsed.append(rel)
        return real_record(studio, rel, entry)

    monkeypatch.setattr(inventory, "load_batch_bytes", batch)
    monkeypatch.setattr(inventory, "_record_facts", record)
    return parsed


def _cache_path(studio: Studio) -> Path:
    return Path(git(studio.root, "rev-parse", "--absolute-git-dir").stdout.strip()) / "renderloop" / NAME


def test_a_second_run_parses_nothing_that_did_not_change(rendered: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(rendered)
    parsed = _new_process(monkeypatch)
    first = make_plan(rendered, config)
    assert first.jobs == [] and first.totals == {"b0000": (2, 2, 0), "b0001": (2, 2, 0)}
    assert sorted(parsed) == sorted(
        ["batches/b0000.yaml", "batches/b0001.yaml"] + [f"renders/b000{b}/b000{b}-00{i}.json" for b in (0, 1) for i in (0, 1)]
    )
    lines = [json.loads(line) for line in _cache_path(rendered).read_text().splitlines()]
    assert lines[0]["version"] == plancache.VERSION
    assert sum("r" in line for line in lines) == 4 and sum("b" in line for line in lines) == 2

    parsed = _new_process(monkeypatch)
    second = make_plan(rendered, config)
    assert parsed == [] and second.totals == first.totals and second.desired == first.desired

    # an edited prompt: that file only is parsed again, and its image is planned
    path = rendered.batches_dir / "b0001.yaml"
    path.write_text(path.read_text().replace("b0001 image 1,", "b0001 image 1 at dusk,"), newline="\n")
    parsed = _new_process(monkeypatch)
    third = make_plan(rendered, config)
    assert parsed == ["batches/b0001.yaml"]
    assert [(j.batch, j.slug) for j in third.jobs] == [("b0001", "b0001-001")]
    assert third.jobs[0].spec.prompt.startswith("b0001 image 1 at dusk")


def test_the_cache_is_safe_to_damage_or_delete(rendered: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(rendered)
    expected = make_plan(rendered, config)
    cache = Path(git(rendered.root, "rev-parse", "--absolute-git-dir").stdout.strip()) / "renderloop" / NAME
    for damage in ("{not json", json.dumps({"version": 999, "records": {}}), json.dumps([1, 2]),
                   cache.read_text()[:-9]):  # the last line cut short
        cache.write_text(damage)
        _new_process(monkeypatch)
        again = make_plan(rendered, config)
        assert again.totals == expected.totals and again.jobs == []
    cache.unlink()
    assert make_plan(rendered, config).totals == expected.totals
    assert json.loads(cache.read_text().splitlines()[0])["version"] == plancache.VERSION


def test_new_settings_resolve_the_batch_files_again(rendered: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    make_plan(rendered, load_config(rendered))
    text = rendered.config_path.read_text().replace("    steps: 8\n", "    steps: 9\n", 1)  # z-image-turbo's
    rendered.config_path.write_text(text, newline="\n")
    parsed = _new_process(monkeypatch)
    plan = make_plan(rendered, load_config(rendered))
    assert sorted(parsed) == ["batches/b0000.yaml", "batches/b0001.yaml"]  # records are unchanged
    assert len(plan.jobs) == 4 and {job.spec.steps for job in plan.jobs} == {9}


def test_a_deleted_image_or_a_changed_record_is_seen(rendered: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(rendered)
    make_plan(rendered, config)
    rendered.png_path("b0000", "b0000-000").unlink()
    record = rendered.record_path("b0001", "b0001-000")
    record.write_text(record.read_text().replace('"status": "done"', '"status": "failed"'), newline="\n")
    parsed = _new_process(monkeypatch)
    plan = make_plan(rendered, config)
    assert parsed == ["renders/b0001/b0001-000.json", "batches/b0000.yaml"]
    assert [(j.batch, j.slug) for j in plan.jobs] == [("b0000", "b0000-000")]
    assert plan.totals["b0001"] == (2, 1, 1)


def test_a_pass_appends_what_it_learned_and_a_running_worker_reads_nothing(
    rendered: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(rendered)
    _new_process(monkeypatch)
    make_plan(rendered, config)
    path = _cache_path(rendered)
    before, inode = path.read_bytes(), path.stat().st_ino
    reads: list[Path] = []
    real_read = plancache._read
    monkeypatch.setattr(plancache, "_read", lambda p: reads.append(p) or real_read(p))
    batch = rendered.batches_dir / "b0001.yaml"
    batch.write_text(batch.read_text().replace("b0001 image 1,", "b0001 image 1 at dusk,"), newline="\n")
    make_plan(rendered, config)  # the same process: what it wrote is what it knows
    assert reads == []
    after = path.read_bytes()
    assert after.startswith(before) and path.stat().st_ino == inode  # appended to, not replaced
    assert [json.loads(line)["b"].split("\0")[0] for line in after[len(before):].splitlines()] == ["batches/b0001.yaml"]
    path.write_bytes(after + b"\n")  # another process touched it: read again
    make_plan(rendered, config)
    assert reads == [path]
