"""``renderloop new BATCH [--rerolls]``: the example batch, and the rerolls gathered from the ledger."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mac_side.new import scaffold_text
from renderloop.commands.new import new as new_batch
from studio.batch import load_batch, load_batch_bytes
from studio.config import builtin_config, load_config
from studio.errors import FatalError
from studio.layout import Studio
from studio.ledger import parse as parse_ledger
from studio.spec import derive_seed
from tests.helpers import BATCH_YAML, Sandbox, cli, git
from tests.studio_data import append_ledger, put_render, review_round, studio_root, verdict, write_batch  # noqa: F401


def load(root: Path, name: str):
    studio = Studio.at(root)
    return load_batch(studio, root / "batches" / f"{name}.yaml", load_config(studio))


def entries(root: Path, name: str) -> list[dict]:
    return yaml.safe_load((root / "batches" / f"{name}.yaml").read_text(encoding="utf-8"))["prompts"]


# --- the example --------------------------------------------------------------------------------


def test_new_writes_a_commented_valid_example_that_commits(sandbox: Sandbox) -> None:
    result = cli("new", "hero-q4", "--repo", str(sandbox.mac))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Wrote batches/hero-q4.yaml: an example with 2 prompts for flux-schnell."
    text = (sandbox.mac / "batches" / "hero-q4.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Batch 'hero-q4': commit and push this file to render it")
    assert "\r" not in text and text.count("#") >= 8
    loaded = load(sandbox.mac, "hero-q4")
    assert [j.slug for j in loaded.jobs] == ["first-image", "second-image"]
    assert {(j.spec.model, j.spec.width, j.spec.height) for j in loaded.jobs} == {("flux-schnell", 1024, 1024)}
    # the pre-commit hook validates it like any batch file
    git(sandbox.mac, "add", "batches/hero-q4.yaml")
    committed = git(sandbox.mac, "commit", "-m", "new batch", check=False)
    assert committed.returncode == 0, committed.stderr


@pytest.mark.parametrize("model", list(builtin_config().models))
def test_the_example_is_valid_for_every_builtin_model(model: str) -> None:
    config = builtin_config()
    loaded = load_batch_bytes(scaffold_text("hero", model, config).encode(), "batches/hero.yaml", config)
    settings = config.models[model]
    assert {(j.spec.model, j.spec.width, j.spec.height) for j in loaded.jobs} == {
        (model, settings.width, settings.height)
    }


def test_new_with_a_model(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_batch(studio_root, "portraits", rerolls=False, model="qwen-image", force=False) == 0
    assert "for qwen-image" in capsys.readouterr().out
    assert {(j.spec.model, j.spec.width) for j in load(studio_root, "portraits").jobs} == {("qwen-image", 1328)}


def test_an_unknown_model_is_refused(studio_root: Path) -> None:
    result = cli("new", "hero", "--model", "sdxl", "--repo", str(studio_root))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "renderloop: error: unknown model 'sdxl'; renderloop.yaml has flux-dev, flux-schnell, qwen-image, z-image-turbo"
    )
    assert not (studio_root / "batches" / "hero.yaml").exists()


def test_an_existing_batch_is_kept_unless_forced(studio_root: Path) -> None:
    path = studio_root / "batches" / "hero.yaml"
    path.write_text(BATCH_YAML, encoding="utf-8")
    result = cli("new", "hero", "--repo", str(studio_root))
    assert result.returncode == 1
    assert result.stderr.strip() == "renderloop: error: batches/hero.yaml already exists: use --force to overwrite it"
    assert path.read_text(encoding="utf-8") == BATCH_YAML
    assert cli("new", "hero", "--force", "--repo", str(studio_root)).returncode == 0
    assert "first-image" in path.read_text(encoding="utf-8")


def test_a_batch_of_the_same_name_in_json_is_not_shadowed(studio_root: Path) -> None:
    (studio_root / "batches" / "hero.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FatalError, match=r"^batches/hero.json already defines batch 'hero': choose another name$"):
        new_batch(studio_root, "hero", rerolls=False, model=None, force=True)
    assert not (studio_root / "batches" / "hero.yaml").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("Hero", "batch name 'Hero' is not allowed"),
        ("../escape", "batch name '../escape' is not allowed"),
        ("a/b", "batch name 'a/b' is not allowed"),
        ("hero.yaml", "batch name 'hero.yaml' is not allowed"),
        ("hero q4", "batch name 'hero q4' is not allowed"),
        ("con", "batch name 'con' is a Windows device name"),
        ("", "batch name '' is not allowed"),
    ],
)
def test_bad_batch_names_are_refused_and_nothing_is_written(studio_root: Path, name: str, message: str) -> None:
    before = sorted(p.relative_to(studio_root.parent) for p in studio_root.parent.rglob("*"))
    with pytest.raises(FatalError) as caught:
        new_batch(studio_root, name, rerolls=False, model=None, force=True)
    assert str(caught.value).startswith(message)
    assert sorted(p.relative_to(studio_root.parent) for p in studio_root.parent.rglob("*")) == before


def test_a_bad_batch_name_is_one_line_from_the_cli(studio_root: Path) -> None:
    result = cli("new", "../escape", "--repo", str(studio_root))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "renderloop: error: batch name '../escape' is not allowed: use lowercase letters, digits, single "
        "hyphens or underscores, at most 80 characters\n"
    )


def test_new_works_from_a_subfolder_and_refuses_outside_a_studio(studio_root: Path, tmp_path: Path) -> None:
    assert cli("new", "hero", "--repo", str(studio_root / "renders")).returncode == 0
    assert (studio_root / "batches" / "hero.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("new", "hero", "--repo", str(elsewhere))
    assert result.returncode == 1 and "is not a renderloop studio (no renderloop.yaml)" in result.stderr


# --- rerolls, end to end ------------------------------------------------------------------------


def test_rerolls_round_trip_through_worker_and_reviews(sandbox: Sandbox) -> None:
    mac = sandbox.mac
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    review_round(sandbox, "hero", {
        "harbor-at-dawn": "verdict: reroll\ncues:\n- warmer palette\n- no text",
        "feedback-ledger-taxonomy": "verdict: keep\ncues:",
        "night-train": "verdict: reroll\ncues:",
    })
    first = load(mac, "hero")

    result = cli("new", "hero-2", "--rerolls", "--repo", str(mac))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Wrote batches/hero-2.yaml: 2 slugs to reroll with new seeds and their cues."
    second = load(mac, "hero-2")
    assert [j.slug for j in second.jobs] == ["harbor-at-dawn", "night-train"]
    harbor, train = second.jobs
    old_harbor, old_train = first.job("harbor-at-dawn"), first.job("night-train")
    assert harbor.spec.prompt == "A harbor at dawn, editorial illustration, warmer palette"
    assert harbor.spec.negative == "text"  # `no text`: a negative cue
    assert harbor.spec.seed not in (old_harbor.spec.seed, derive_seed("hero", "harbor-at-dawn"))
    unasked = {"seed": 0, "prompt": "", "negative": ""}
    assert harbor.spec.model_copy(update=unasked) == old_harbor.spec.model_copy(update=unasked)
    assert (harbor.archetype, harbor.cues) == ("essay", ("warmer palette", "no text"))
    assert train.spec.model_copy(update={"seed": 0}) == old_train.spec.model_copy(update={"seed": 0})
    assert train.spec.seed != old_train.spec.seed and train.cues == ()

    review_round(sandbox, "hero-2", {
        "harbor-at-dawn": "verdict: reroll\ncues:\n- no people\n- Warmer palette",
        "night-train": "verdict: keep\ncues:",
    })
    result = cli("new", "hero-3", "--rerolls", "--repo", str(mac))
    assert result.returncode == 0, result.stderr
    third = load(mac, "hero-3")
    assert [j.slug for j in third.jobs] == ["harbor-at-dawn"]  # night-train was kept, hero's reroll superseded
    (harbor3,) = third.jobs
    assert entries(mac, "hero-3")[0]["prompt"] == "A harbor at dawn, editorial illustration"  # cues not baked in
    assert harbor3.cues == ("warmer palette", "no text", "no people")
    assert harbor3.spec.prompt == "A harbor at dawn, editorial illustration, warmer palette"
    assert harbor3.spec.negative == "text, people"
    assert harbor3.spec.seed not in {old_harbor.spec.seed, harbor.spec.seed}
    # what the reviews recorded is what was gathered
    lines = parse_ledger((mac / "ledger.jsonl").read_bytes())
    assert [(l.batch, l.slug, l.verdict) for l in lines][-2:] == [("hero-2", "harbor-at-dawn", "reroll"), ("hero-2", "night-train", "keep")]


# --- rerolls, case by case (ledger lines and records as the hooks and worker write them) -----------


TWO = """\
version: 1
model: z-image-turbo
width: 512
height: 384
negative: "blurry"
steps: 6
prompts:
  - slug: harbor-at-dawn
    prompt: "A harbor at dawn"
    archetype: essay
    cues: ["warmer palette"]
  - slug: night-train
    prompt: "A night train, gouache"
    model: flux-schnell
    width: 768
    cfg: 2
"""


def test_settings_cues_and_archetype_are_carried(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    harbor, train = (put_render(studio_root, job) for job in hero.jobs)
    append_ledger(
        studio_root,
        verdict("hero", "harbor-at-dawn", "reroll", cues=["Warmer palette", "no text"], record=harbor, job=hero.jobs[0]),
        verdict("hero", "night-train", "reroll", record=train, job=hero.jobs[1]),
    )
    assert new_batch(studio_root, "hero-2", rerolls=True, model=None, force=False) == 0
    out = capsys.readouterr().out
    assert "harbor-at-dawn (from hero) seed" in out and "cues: warmer palette; no text" in out
    loaded = load(studio_root, "hero-2")
    for old, new in zip(hero.jobs, loaded.jobs):
        assert new.spec.model_copy(update={"seed": 0}) == old.spec.model_copy(update={"seed": 0}) or new.slug == "harbor-at-dawn"
        assert new.spec.seed != old.spec.seed
    new_harbor = loaded.job("harbor-at-dawn")
    assert new_harbor.spec.prompt == "A harbor at dawn, warmer palette"
    assert (new_harbor.spec.negative, new_harbor.spec.steps, new_harbor.archetype) == ("blurry, text", 6, "essay")
    new_train = loaded.job("night-train")
    assert (new_train.spec.model, new_train.spec.width, new_train.spec.height, new_train.spec.cfg) == ("flux-schnell", 768, 384, 2.0)
    assert (new_train.spec.negative, new_train.spec.steps) == ("blurry", 6)
    written = entries(studio_root, "hero-2")
    assert written[0]["cues"] == ["warmer palette", "no text"] and "cues" not in written[1]


def test_a_slug_rerolled_in_two_batches_appears_once_from_the_latest(studio_root: Path) -> None:
    one = write_batch(studio_root, "one", "version: 1\nmodel: flux-schnell\nprompts:\n  - {slug: lamp, prompt: old lamp}\n")
    two = write_batch(studio_root, "two", "version: 1\nmodel: flux-dev\nprompts:\n  - {slug: lamp, prompt: new lamp}\n")
    append_ledger(
        studio_root,
        verdict("one", "lamp", "reroll", job=one.jobs[0], cues=["brass"], minutes=1),
        verdict("two", "lamp", "reroll", job=two.jobs[0], cues=["glass"], minutes=2),
    )
    new_batch(studio_root, "three", rerolls=True, model=None, force=False)
    (job,) = load(studio_root, "three").jobs
    assert (job.slug, job.spec.model, job.spec.prompt) == ("lamp", "flux-dev", "new lamp, glass")


@pytest.mark.parametrize(
    "sequence, gathered",
    [
        ([("one", "reroll"), ("one", "keep")], False),  # changed mind: keep supersedes
        ([("one", "keep"), ("one", "reroll")], True),
        ([("one", "reroll"), ("two", "keep")], False),  # rerolled, then kept in a later batch
        ([("one", "reroll"), ("two", "reject")], False),
        ([("two", "keep"), ("one", "reroll")], True),
    ],
)
def test_only_slugs_whose_latest_verdict_is_reroll(studio_root: Path, sequence: list, gathered: bool) -> None:
    batches = {
        name: write_batch(studio_root, name, f"version: 1\nmodel: flux-schnell\nprompts:\n  - {{slug: lamp, prompt: {name} lamp}}\n")
        for name in ("one", "two")
    }
    append_ledger(studio_root, *(verdict(b, "lamp", w, job=batches[b].jobs[0], minutes=i) for i, (b, w) in enumerate(sequence)))
    if gathered:
        assert new_batch(studio_root, "three", rerolls=True, model=None, force=False) == 0
        assert [j.slug for j in load(studio_root, "three").jobs] == ["lamp"]
    else:
        with pytest.raises(FatalError, match="^no reroll left to gather, none or each already gathered into a batch: nothing to write$"):
            new_batch(studio_root, "three", rerolls=True, model=None, force=False)
        assert not (studio_root / "batches" / "three.yaml").exists()


def test_no_rerolls_at_all_is_said_and_nothing_written(studio_root: Path) -> None:
    result = cli("new", "hero-2", "--rerolls", "--repo", str(studio_root))
    assert result.returncode == 1
    assert result.stderr.strip() == "renderloop: error: no reroll left to gather, none or each already gathered into a batch: nothing to write"
    assert not (studio_root / "batches" / "hero-2.yaml").exists()


def test_a_deleted_batch_file_falls_back_to_the_render_record(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    harbor = put_render(studio_root, hero.jobs[0])
    append_ledger(
        studio_root,
        verdict("hero", "harbor-at-dawn", "reroll", cues=["no text"], record=harbor, job=hero.jobs[0]),
        verdict("hero", "night-train", "reroll", job=hero.jobs[1]),  # never rendered
    )
    (studio_root / "batches" / "hero.yaml").unlink()
    assert new_batch(studio_root, "hero-2", rerolls=True, model=None, force=False) == 0
    out = capsys.readouterr().out
    assert "skipped night-train (hero): neither its batch file nor its render record is left" in out
    (job,) = load(studio_root, "hero-2").jobs
    # the record's prompt already holds the earlier cue: it is not appended twice
    assert job.spec.prompt == "A harbor at dawn, warmer palette"
    assert job.spec.negative == "blurry, text"
    assert (job.spec.steps, job.spec.width, job.spec.height) == (6, 512, 384)
    assert job.spec.seed != harbor.spec.seed and job.archetype == "essay"


def test_a_slug_edited_in_place_since_the_verdict_is_left_to_its_batch(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, *(verdict("hero", j.slug, "reroll", job=j) for j in hero.jobs))
    write_batch(studio_root, "hero", TWO.replace('"A harbor at dawn"', '"A harbor at dusk"'))  # rerolled by editing
    new_batch(studio_root, "hero-2", rerolls=True, model=None, force=False)
    assert "skipped harbor-at-dawn (hero): its batch file was changed since the verdict" in capsys.readouterr().out
    assert [j.slug for j in load(studio_root, "hero-2").jobs] == ["night-train"]


def test_rerolls_into_the_same_batch_get_new_seeds(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, *(verdict("hero", j.slug, "reroll", job=j) for j in hero.jobs))
    assert new_batch(studio_root, "hero", rerolls=True, model=None, force=True) == 0
    again = load(studio_root, "hero")
    for old in hero.jobs:
        assert old.spec.seed == derive_seed("hero", old.slug)
        assert again.job(old.slug).spec.seed != old.spec.seed
        assert again.job(old.slug).spec_hash != old.spec_hash


def test_seeds_are_deterministic(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, *(verdict("hero", j.slug, "reroll", job=j) for j in hero.jobs))
    new_batch(studio_root, "hero-2", rerolls=True, model=None, force=False)
    first = [j.spec.seed for j in load(studio_root, "hero-2").jobs]
    new_batch(studio_root, "hero-2", rerolls=True, model=None, force=True)
    assert [j.spec.seed for j in load(studio_root, "hero-2").jobs] == first == [
        derive_seed("hero-2", "harbor-at-dawn"), derive_seed("hero-2", "night-train")
    ]


def test_rerolls_with_another_model(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, *(verdict("hero", j.slug, "reroll", job=j) for j in hero.jobs))
    assert new_batch(studio_root, "hero-2", rerolls=True, model="qwen-image", force=False) == 0
    loaded = load(studio_root, "hero-2")
    assert {j.spec.model for j in loaded.jobs} == {"qwen-image"}
    assert yaml.safe_load((studio_root / "batches" / "hero-2.yaml").read_text(encoding="utf-8"))["model"] == "qwen-image"
    assert all("model" not in e for e in entries(studio_root, "hero-2"))


def test_a_carried_size_the_new_model_refuses_writes_nothing(studio_root: Path) -> None:
    config = studio_root / "renderloop.yaml"
    text = config.read_text(encoding="utf-8").replace("models:\n", "models:\n  tiny:\n    width: 256\n    height: 256\n    max_side: 512\n", 1)
    config.write_text(text, encoding="utf-8")
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, verdict("hero", "night-train", "reroll", job=hero.jobs[1]))
    with pytest.raises(FatalError) as caught:
        new_batch(studio_root, "hero-2", rerolls=True, model="tiny", force=False)
    assert str(caught.value) == (
        "the batch would not be valid, nothing written:\n"
        "batches/hero-2.yaml:7: width 768 is outside tiny's range 64-512"
    )
    assert not (studio_root / "batches" / "hero-2.yaml").exists()


def test_a_bad_ledger_line_is_reported_and_the_rest_used(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", TWO)
    append_ledger(studio_root, verdict("hero", "night-train", "reroll", job=hero.jobs[1]))
    with (studio_root / "ledger.jsonl").open("a", encoding="utf-8") as f:
        f.write("{not json}\n")
    result = cli("new", "hero-2", "--rerolls", "--repo", str(studio_root))
    assert result.returncode == 0
    assert result.stderr.startswith("renderloop: warning: ledger.jsonl:2: not a valid ledger line")
    assert [j.slug for j in load(studio_root, "hero-2").jobs] == ["night-train"]


def test_prompts_with_quotes_colons_and_unicode_survive(studio_root: Path) -> None:
    prompt = 'Le "port": à l\'aube, # pas un commentaire, 港'
    hero = write_batch(studio_root, "hero", f"version: 1\nmodel: flux-schnell\nprompts:\n  - slug: port\n    prompt: {yaml.safe_dump(prompt).strip()}\n")
    assert hero.jobs[0].spec.prompt == prompt
    append_ledger(studio_root, verdict("hero", "port", "reroll", job=hero.jobs[0], cues=["cue: with colon"]))
    new_batch(studio_root, "hero-2", rerolls=True, model=None, force=False)
    (job,) = load(studio_root, "hero-2").jobs
    assert job.spec.prompt == prompt + ", cue: with colon"
