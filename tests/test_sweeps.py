"""Sweeps in batch files (issue 12): expansion into images, their slugs, and what is refused.

The documented examples of docs/batch-files.md are extracted and expanded
here: each must validate and make exactly the slugs its ``# makes:`` line
lists.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from studio.batch import swept_slug
from studio.config import load_config
from studio.layout import SLUG_MAX, Studio, slug_problem
from studio.spec import derive_seed
from tests.test_batch_schema import CONFIG, REL, load, only_problem, problems
from win_side.plan import by_model, make_plan

DOC = Path(__file__).resolve().parent.parent / "docs" / "batch-files.md"

TWO_BY_THREE = """\
version: 1
prompts:
  - slug: harbor
    prompt: "A harbor at dawn"
    archetype: essay
    sweep:
      model: [z-image-turbo, flux-schnell]
      seeds: 3
"""


def doc_examples() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [block for block in blocks if "# makes:" in block]


def test_the_doc_has_one_example_per_axis_kind() -> None:
    text = "\n".join(doc_examples())
    for axis in ("model:", "seeds:", "seed:", "steps:", "cfg:", "sampler:", "scheduler:", "size:", "prompt:\n", "mode: zip"):
        assert axis in text, axis


@pytest.mark.parametrize("example", doc_examples(), ids=lambda block: block.split("\n")[0][9:60])
def test_documented_examples_expand_as_documented(example: str) -> None:
    makes = example.split("\n")[0].removeprefix("# makes:").split()
    loaded = load(example)
    assert [job.slug for job in loaded.jobs] == makes
    for job in loaded.jobs:
        assert slug_problem(job.slug) is None
        assert job.slug.startswith(job.prompt_slug + "-")


def test_two_models_by_three_seeds() -> None:
    loaded = load(TWO_BY_THREE)
    jobs = loaded.jobs
    assert len(jobs) == 6
    seeds = [derive_seed("hero", "harbor", str(n)) for n in (1, 2, 3)]
    assert len(set(seeds)) == 3
    assert [(j.spec.model, j.spec.seed) for j in jobs] == [
        (m, s) for m in ("z-image-turbo", "flux-schnell") for s in seeds
    ]
    assert jobs[4].axis_values() == {"model": "flux-schnell", "seed": 2}  # the ledger records the seed's number
    assert [a.label for a in jobs[4].axes] == ["flux-schnell", "s2"]
    assert {j.prompt_slug for j in jobs} == {"harbor"} and {j.archetype for j in jobs} == {"essay"}
    assert jobs[0].spec.steps == 8 and jobs[3].spec.steps == 4  # each model's own defaults
    assert [g for g, _ in loaded.groups()] == ["harbor"]
    # the same on every run and machine: the slugs and seeds depend on the file only
    assert [(j.slug, j.spec_hash) for j in load(TWO_BY_THREE).jobs] == [(j.slug, j.spec_hash) for j in jobs]


def test_an_axis_value_wins_over_the_prompt_and_the_batch() -> None:
    text = "version: 1\nmodel: flux-dev\nsteps: 30\nprompts:\n  - slug: a\n    prompt: x\n    seed: 7\n    steps: 12\n" \
           "    sweep: {steps: [2, 3]}\n"
    jobs = load(text).jobs
    assert [(j.spec.steps, j.spec.seed) for j in jobs] == [(2, 7), (3, 7)]


def test_a_prompts_sweep_replaces_the_batchs() -> None:
    text = "version: 1\nmodel: flux-dev\nsweep: {steps: [2, 3]}\nprompts:\n  - slug: a\n    prompt: x\n" \
           "  - slug: b\n    prompt: y\n    sweep: {seeds: 1}\n"
    assert [j.slug for j in load(text).jobs] == ["a-steps2", "a-steps3", "b-s1"]


def test_the_expanded_count_is_held_to_the_ceiling() -> None:
    text = TWO_BY_THREE.replace("seeds: 3", "seeds: 5001")
    assert only_problem(text) == (
        f"{REL}:7: this batch expands to 10002 images with its sweeps; renderloop.yaml limits.prompts_per_batch "
        "allows at most 10000"
    )


def test_a_lowered_prompts_per_batch_counts_images(tmp_path: Path) -> None:
    (tmp_path / "renderloop.yaml").write_text(
        "version: 1\nmodels:\n  flux-schnell: {}\n  z-image-turbo: {}\nlimits:\n  prompts_per_batch: 5\n", encoding="utf-8"
    )
    config = load_config(Studio.at(tmp_path))
    assert only_problem(TWO_BY_THREE, config=config) == (
        f"{REL}:7: this batch expands to 6 images with its sweeps; renderloop.yaml limits.prompts_per_batch "
        "allows at most 5"
    )
    batch_level = "version: 1\nmodel: flux-schnell\nsweep: {seeds: 3}\nprompts:\n  - {slug: a, prompt: x}\n" \
                  "  - {slug: b, prompt: y}\n"
    assert only_problem(batch_level, config=config).startswith(f"{REL}:3: this batch expands to 6 images")


def test_a_huge_product_is_refused_before_it_is_built() -> None:
    values = ", ".join(str(n) for n in range(1, 1001))
    text = f"version: 1\nmodel: flux-dev\nprompts:\n  - slug: a\n    prompt: x\n    sweep:\n      steps: [{values}]\n" \
           f"      seed: [{values}]\n      seeds: 1\n"
    assert "not both" in only_problem(text)
    text = f"version: 1\nmodel: flux-dev\nprompts:\n  - slug: a\n    prompt: x\n    sweep:\n      steps: [{values}]\n" \
           f"      seed: [{values}]\n"
    assert only_problem(text) == (
        f"{REL}:7: this batch expands to 1000000 images with its sweeps; renderloop.yaml limits.prompts_per_batch "
        "allows at most 10000"
    )


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ("{mode: zip, model: [flux-dev, flux-schnell], seeds: 3}",
         "6: a zipped sweep needs axes of one length; these have model 2, seed 3"),
        ("{seeds: 2, seed: [1]}", "6: prompts[0].sweep: give seed (a list) or seeds (a count), not both"),
        ("{mode: zip}", "6: prompts[0].sweep: a sweep names at least one axis"),
        ("{steps: [4, 4]}", "6: prompts[0].sweep.steps: 4 is listed twice"),
        ("{size: [1344-768]}", "6: prompts[0].sweep.size: size '1344-768' is not WIDTHxHEIGHT, like 1344x768"),
        ("{size: [4096x1024]}", "6: width 4096 is outside flux-dev's range 64-2048"),
        ("{model: [flux-dev, dall-e]}", "6: unknown model 'dall-e'; renderloop.yaml has"),
        ("{steps: [0]}", "6: prompts[0].sweep.steps[0]: Input should be greater than 0"),
        ("{colour: [red]}", "6: unknown key 'colour' in prompts[0].sweep"),
        ("{prompt: {Dusk: x}}", "6: prompts[0].sweep.prompt"),
        ("{prompt: {error: x}}", "4: slug 'batch-error' is reserved"),
    ],
)
def test_bad_sweeps_are_refused_with_the_line(sweep: str, expected: str) -> None:
    slug = "batch" if "error" in sweep else "harbor"
    text = f"version: 1\nmodel: flux-dev\nprompts:\n  - slug: {slug}\n    prompt: x\n    sweep: {sweep}\n"
    assert only_problem(text).startswith(f"{REL}:{expected}")


def test_expanded_slugs_may_not_collide() -> None:
    text = "version: 1\nmodel: flux-dev\nprompts:\n  - slug: harbor-s1\n    prompt: x\n" \
           "  - slug: harbor\n    prompt: y\n    sweep: {seeds: 2}\n"
    assert only_problem(text) == (
        f"{REL}:6: duplicate slug 'harbor-s1' (made by the sweep of 'harbor') (first at line 4)"
    )
    text = "version: 1\nmodel: flux-dev\nprompts:\n  - slug: harbor\n    prompt: y\n    sweep: {seeds: 2}\n" \
           "  - slug: harbor-s2\n    prompt: x\n"
    assert only_problem(text) == (
        f"{REL}:7: duplicate slug 'harbor-s2' (first at line 4, made by the sweep of 'harbor')"
    )
    twice = "version: 1\nmodel: flux-dev\nprompts:\n  - {slug: a, prompt: x, sweep: {seeds: 1}}\n" \
            "  - {slug: a, prompt: y, sweep: {steps: [3]}}\n"
    assert problems(twice) == [f"{REL}:5: duplicate slug 'a' (first at line 4)"]


def test_long_slugs_are_cut_with_a_hash() -> None:
    base = "a" * 70
    text = f"version: 1\nprompts:\n  - slug: {base}\n    prompt: x\n    sweep: {{model: [z-image-turbo, flux-schnell]}}\n"
    slugs = [j.slug for j in load(text).jobs]
    assert all(len(s) <= SLUG_MAX and slug_problem(s) is None and re.search(r"-[0-9a-f]{8}$", s) for s in slugs)
    assert len(set(slugs)) == 2 and all(s.startswith(base) for s in slugs)
    assert swept_slug(base, ["z-image-turbo"]) == slugs[0]
    assert swept_slug("a", ["b"]) == "a-b"


def test_the_worker_renders_each_models_images_together(tmp_path: Path) -> None:
    jobs = list(load(TWO_BY_THREE.replace("seeds: 3", "seeds: 2") + "  - {slug: lamp, prompt: z, model: z-image-turbo,"
                     " sweep: {model: [flux-schnell, z-image-turbo]}}\n").jobs)
    assert [j.spec.model for j in jobs] == ["z-image-turbo"] * 2 + ["flux-schnell"] * 2 + ["flux-schnell", "z-image-turbo"]
    ordered = by_model(jobs)
    assert [j.slug for j in ordered] == [
        "harbor-z-image-turbo-s1", "harbor-z-image-turbo-s2", "lamp-z-image-turbo",
        "harbor-flux-schnell-s1", "harbor-flux-schnell-s2", "lamp-flux-schnell",
    ]
    studio = tmp_path / "studio"
    (studio / "batches").mkdir(parents=True)
    (studio / "renderloop.yaml").write_text("version: 1\nmodels:\n  flux-schnell: {}\n  z-image-turbo: {}\n", encoding="utf-8")
    (studio / "batches" / "hero.yaml").write_text(TWO_BY_THREE, encoding="utf-8")
    studio_ = Studio.at(studio)
    plan = make_plan(studio_, load_config(studio_))
    assert [j.spec.model for j in plan.jobs] == ["z-image-turbo"] * 3 + ["flux-schnell"] * 3


def test_a_sweeps_text_is_held_to_the_studios_lower_limits(tmp_path: Path) -> None:
    (tmp_path / "renderloop.yaml").write_text(
        "version: 1\nmodels:\n  flux-dev: {}\nlimits:\n  prompt_chars: 10\n  sampler_chars: 5\n", encoding="utf-8"
    )
    config = load_config(Studio.at(tmp_path))
    text = "version: 1\nmodel: flux-dev\nprompts:\n  - slug: a\n    prompt: x\n    sweep:\n      sampler: [euler, dpmpp_2m]\n" \
           "      prompt: {oil: 'oil painting, visible strokes'}\n"
    assert problems(text, config=config) == [
        f"{REL}:7: prompts[0].sweep.sampler: 8 characters; renderloop.yaml limits.sampler_chars allows at most 5",
        f"{REL}:8: prompts[0].sweep.prompt.oil: 29 characters; renderloop.yaml limits.prompt_chars allows at most 10",
    ]
