"""``renderloop stats`` and ``renderloop export DIR``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from renderloop.commands.export import export
from renderloop.commands.stats import stats
from studio.ledger import parse as parse_ledger
from studio.record import sha256_hex
from tests.helpers import BATCH_YAML, Sandbox, cli
from tests.studio_data import append_ledger, put_render, review_round, studio_root, verdict, write_batch  # noqa: F401


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (outside .git) with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


# --- stats --------------------------------------------------------------------------------------


def test_stats_on_an_empty_studio(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats(studio_root) == 0
    assert capsys.readouterr().out == (
        "Nothing yet: no verdicts in ledger.jsonl and no render records. Render a batch and review it first.\n"
    )


def test_stats_from_verdicts_and_records(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)  # harbor, taxonomy: z-image-turbo; night-train: flux-schnell
    harbor = put_render(studio_root, hero.jobs[0], backend="comfyui", seconds=10.0, cost=0.0)
    taxonomy = put_render(studio_root, hero.jobs[1], backend="comfyui", seconds=20.0, cost=0.0)
    train = put_render(studio_root, hero.jobs[2], backend="fal", seconds=3.0, cost=0.003)
    more = write_batch(studio_root, "more", BATCH_YAML)
    put_render(studio_root, more.jobs[0], backend="comfyui", seconds=60.0)
    put_render(studio_root, more.jobs[1], backend="fal", status="failed", seconds=None, cost=0.005)
    put_render(studio_root, more.jobs[2], backend="fal", seconds=5.0, cost=0.003)
    append_ledger(
        studio_root,
        verdict("hero", "harbor-at-dawn", "reroll", record=harbor, job=hero.jobs[0]),
        verdict("hero", "harbor-at-dawn", "keep", record=harbor, job=hero.jobs[0]),  # supersedes the reroll
        verdict("hero", "feedback-ledger-taxonomy", "reject", record=taxonomy, job=hero.jobs[1]),
        verdict("hero", "night-train", "keep", record=train, job=hero.jobs[2]),
        verdict("more", "night-train", "reroll", job=more.jobs[2], archetype="essay"),
    )
    assert stats(studio_root) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Keep rate by model",
        "model          reviewed  keep  reroll  reject  keep rate",
        "flux-schnell          2     1       1       0        50%",
        "z-image-turbo         2     1       0       1        50%",
        "",
        "Keep rate by archetype",
        "archetype  reviewed  keep  reroll  reject  keep rate",
        "(none)            1     1       0       0       100%",
        "diagram           1     0       0       1         0%",
        "essay             2     1       1       0        50%",
        "",
        "Render time by model and backend",
        "model          backend  images  median s  mean s",
        "flux-schnell   fal           2       4.0     4.0",
        "z-image-turbo  comfyui       3      20.0    30.0",
        "",
        "Cost by backend",
        "backend  images  cost USD",
        "comfyui       3    0.0000",
        "fal           3    0.0110",
    ]


def test_a_verdict_without_a_model_takes_the_record_s(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    record = put_render(studio_root, hero.jobs[2])
    line = verdict("hero", "night-train", "keep", record=record).model_copy(update={"model": None})
    orphan = verdict("gone", "lamp", "reject")
    append_ledger(studio_root, line, orphan)
    stats(studio_root)
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == [
        "model         reviewed  keep  reroll  reject  keep rate",
        "(unknown)            1     0       0       1         0%",
        "flux-schnell         1     1       0       0       100%",
    ]


def test_records_without_verdicts_still_give_times_and_costs(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    put_render(studio_root, hero.jobs[0], seconds=2.5)
    stats(studio_root)
    out = capsys.readouterr().out
    assert out.startswith("Render time by model and backend\n")
    assert "z-image-turbo  placeholder       1       2.5     2.5" in out
    assert out.endswith("No verdicts yet: complete `verdict:` lines in a review and commit it to see keep rates.\n")


# --- export -------------------------------------------------------------------------------------


def test_export_with_nothing_kept(studio_root: Path, tmp_path: Path) -> None:
    result = cli("export", str(tmp_path / "site"), "--repo", str(studio_root))
    assert result.returncode == 0
    assert result.stdout == "No kept images yet: mark images `verdict: keep` in a review and commit it, then export.\n"
    assert not (tmp_path / "site").exists()


def test_export_after_a_real_review_then_stats(sandbox: Sandbox, tmp_path: Path) -> None:
    mac = sandbox.mac
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    review_round(sandbox, "hero", {
        "harbor-at-dawn": "verdict: keep\ncues:",
        "feedback-ledger-taxonomy": "verdict: reroll\ncues:",
        "night-train": "verdict: keep\ncues:",
    })
    site = tmp_path / "site" / "assets"
    studio_before = tree(mac)
    result = cli("export", str(site), "--repo", str(mac))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Exported 2 kept images to {site}.\n"
    assert sorted(os.listdir(site)) == ["harbor-at-dawn.png", "night-train.png"]
    for slug in ("harbor-at-dawn", "night-train"):
        assert (site / f"{slug}.png").read_bytes() == (mac / "renders" / "hero" / f"{slug}.png").read_bytes()
    assert tree(mac) == studio_before
    again = cli("export", str(site), "--repo", str(mac))
    assert again.stdout == f"Exported 2 kept images to {site} (2 already up to date).\n"

    shown = cli("stats", "--repo", str(mac))
    assert shown.returncode == 0, shown.stderr
    assert "z-image-turbo         2     1       1       0        50%" in shown.stdout
    assert "placeholder       3    0.0000" in shown.stdout


def test_export_finds_the_kept_image_in_history_after_a_rerender(sandbox: Sandbox, tmp_path: Path) -> None:
    mac = sandbox.mac
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    review_round(sandbox, "hero", {"harbor-at-dawn": "verdict: keep\ncues:"})
    kept = (mac / "renders" / "hero" / "harbor-at-dawn.png").read_bytes()
    # the person edits the seed anyway: the worker renders a new image over the kept one
    sandbox.write("batches/hero.yaml", BATCH_YAML.replace("seed: 1234", "seed: 4321"))
    review_round(sandbox, "hero", {})
    current = (mac / "renders" / "hero" / "harbor-at-dawn.png").read_bytes()
    assert current != kept
    (line,) = parse_ledger((mac / "ledger.jsonl").read_bytes())
    assert line.png_sha256 == sha256_hex(kept)
    site = tmp_path / "site"
    exported = cli("export", str(site), "--repo", str(mac))
    assert exported.stdout == f"Exported 1 kept image to {site}.\n", exported.stderr
    assert (site / "harbor-at-dawn.png").read_bytes() == kept


def test_the_current_render_when_the_kept_one_is_gone(studio_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    record = put_render(studio_root, hero.jobs[0])
    line = verdict("hero", "harbor-at-dawn", "keep", record=record).model_copy(update={"png_sha256": "0" * 64})
    append_ledger(studio_root, line)
    assert export(studio_root, tmp_path / "out") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Exported 1 kept image to {tmp_path / 'out'}.",
        "The kept version is no longer in history; exported the current render for: harbor-at-dawn (hero)",
    ]
    assert (tmp_path / "out" / "harbor-at-dawn.png").read_bytes() == (studio_root / "renders/hero/harbor-at-dawn.png").read_bytes()


def test_missing_images_are_skipped_and_listed(studio_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    harbor = put_render(studio_root, hero.jobs[0])
    train = put_render(studio_root, hero.jobs[2], png=False)
    append_ledger(
        studio_root,
        verdict("hero", "harbor-at-dawn", "keep", record=harbor),
        verdict("hero", "night-train", "keep", record=train),
        verdict("../outside", "escape", "keep"),  # a ledger edited by hand
    )
    assert export(studio_root, tmp_path / "out") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Exported 1 kept image to {tmp_path / 'out'}."
    assert out[1] == "Skipped 2:"
    assert out[2].startswith("  escape (../outside): batch name '../outside' is not allowed")
    assert out[3] == "  night-train (hero): kept, but the image is missing"
    assert os.listdir(tmp_path / "out") == ["harbor-at-dawn.png"]


def test_the_latest_keep_of_a_slug_wins(studio_root: Path, tmp_path: Path) -> None:
    lamp = "version: 1\nmodel: flux-schnell\nwidth: 256\nheight: 256\nprompts:\n  - {slug: lamp, prompt: a lamp}\n"
    one, two, three = (write_batch(studio_root, name, lamp) for name in ("one", "two", "three"))
    images = {name: put_render(studio_root, b.jobs[0]) for name, b in (("one", one), ("two", two), ("three", three))}
    png = {name: (studio_root / "renders" / name / "lamp.png").read_bytes() for name in images}
    assert len(set(png.values())) == 3
    append_ledger(
        studio_root,
        verdict("two", "lamp", "keep", record=images["two"], minutes=1),
        verdict("one", "lamp", "keep", record=images["one"], minutes=2),  # the latest keep
        verdict("three", "lamp", "reroll", record=images["three"], minutes=3),  # not a keep: one's image stays
    )
    export(studio_root, tmp_path / "out")
    assert (tmp_path / "out" / "lamp.png").read_bytes() == png["one"]
    append_ledger(studio_root, verdict("one", "lamp", "reject", record=images["one"], minutes=4))  # changed mind
    export(studio_root, tmp_path / "out")
    assert (tmp_path / "out" / "lamp.png").read_bytes() == png["two"]
    append_ledger(studio_root, verdict("one", "lamp", "keep", record=images["one"], minutes=5))  # and back
    export(studio_root, tmp_path / "out")
    assert (tmp_path / "out" / "lamp.png").read_bytes() == png["one"]
    append_ledger(studio_root, verdict("two", "lamp", "keep", record=images["two"], minutes=6))  # kept again, last
    export(studio_root, tmp_path / "out")
    assert (tmp_path / "out" / "lamp.png").read_bytes() == png["two"]


def test_export_writes_only_into_dir_and_replaces_links_not_their_targets(studio_root: Path, tmp_path: Path) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    append_ledger(studio_root, *(verdict("hero", j.slug, "keep", record=put_render(studio_root, j)) for j in hero.jobs))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"do not touch")
    try:
        (out / "harbor-at-dawn.png").symlink_to(victim)
    except OSError:  # Windows without the symlink privilege
        pytest.skip("cannot create symbolic links here")
    (out / "unrelated.txt").write_text("mine", encoding="utf-8")
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")}
    assert export(studio_root, out) == 0
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")} == before
    assert victim.read_bytes() == b"do not touch"
    assert not (out / "harbor-at-dawn.png").is_symlink()
    assert sorted(os.listdir(out)) == ["feedback-ledger-taxonomy.png", "harbor-at-dawn.png", "night-train.png", "unrelated.txt"]
    assert (out / "harbor-at-dawn.png").read_bytes() == (studio_root / "renders/hero/harbor-at-dawn.png").read_bytes()


def test_export_to_a_file_is_refused(studio_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    result = cli("export", str(target), "--repo", str(studio_root))
    assert result.returncode == 1
    assert result.stderr.strip() == f"renderloop: error: {target}: not a folder"
