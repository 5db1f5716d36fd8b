"""Comparisons (issue 12): the review grid, the HTML grid, verdicts with axes in the ledger,
``renderloop stats --compare`` and ``renderloop new --compare``."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from mac_side.contact_sheet import contact_sheet
from mac_side.grid import layout
from mac_side.review import parse, render
from mac_side.review_update import Outcome
from mac_side.stats import compare
from studio.ledger import Ledger, LedgerLine, new_id
from studio.ledger import parse as parse_ledger
from tests.helpers import Sandbox, cli, git, type_into
from tests.studio_data import review_round
from tests.test_review import EVERY_PNG, NEVER, all_records, loaded, record_for

TWO_BY_THREE = """\
version: 1
width: 512
height: 384
prompts:
  - slug: harbor
    prompt: "A harbor at dawn"
    archetype: decision-log
    sweep:
      model: [z-image-turbo, flux-schnell]
      seeds: 3
  - slug: lamp
    prompt: "A desk lamp"
    model: flux-schnell
"""
CELLS = [f"harbor-{m}-s{n}" for m in ("z-image-turbo", "flux-schnell") for n in (1, 2, 3)]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_a_swept_prompt_is_one_section_with_a_grid_and_a_cell_per_image() -> None:
    batch = loaded(TWO_BY_THREE)
    text = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    assert text.count("\n## harbor\n") == 1 and "\n## lamp\n" in text
    rows = table_rows(text)
    assert rows[0] == ["model ↓ seed →", "s1", "s2", "s3"]
    assert [row[0] for row in rows[2:]] == ["**z-image-turbo**", "**flux-schnell**"]
    cell = rows[3][2]  # flux-schnell, s2
    assert cell == ('<a href="harbor-flux-schnell-s2.png"><img src="harbor-flux-schnell-s2.png" '
                    'alt="harbor-flux-schnell-s2" width="240"></a><br>`harbor-flux-schnell-s2`<br>verdict: *to judge*')
    # one block per cell under the table, headed by its slug, each with its own verdict lines
    for slug in CELLS:
        block = text[text.index(f"\n### {slug}\n"):]
        assert block.index("<!-- renderloop spec") < block.index("verdict:\ncues:")
    review = parse(text, "renders/hero/review.md")
    assert [(s.slug, s.level) for s in review.sections] == [(slug, 3) for slug in CELLS] + [("lamp", 2)]
    assert review.all_problems() == []
    html = MarkdownIt("commonmark").enable("table").render(text)  # GitHub and VS Code: a table with images
    assert html.count("<table>") == 1 and html.count('<img src="harbor-') == 6


def test_verdicts_typed_per_cell_parse_like_single_images_and_show_in_the_grid() -> None:
    batch = loaded(TWO_BY_THREE)
    records = all_records(batch)
    text = render(batch, records, None, NEVER, EVERY_PNG)
    typed = type_into(text, "harbor-flux-schnell-s2", "verdict: Keep\ncues:\n- brighter sky")
    typed = type_into(typed, "harbor-z-image-turbo-s1", "verdict: maybe\ncues:")
    review = parse(typed, "r.md")
    cell = review.section("harbor-flux-schnell-s2")
    assert cell is not None and cell.verdict == "keep" and cell.cues == ["brighter sky"]
    assert [str(p) for p in review.all_problems()] == [
        f"r.md:{typed[: typed.index('verdict: maybe')].count(chr(10)) + 1}: unknown verdict 'maybe' for "
        "'harbor-z-image-turbo-s1': write keep, reroll or reject (or leave it blank)"
    ]
    fixed = typed.replace("verdict: maybe", "verdict: reject")
    again = render(batch, records, parse(fixed, "r.md"), NEVER, EVERY_PNG)
    assert "`harbor-flux-schnell-s2`<br>verdict: **keep**" in again
    assert "`harbor-z-image-turbo-s1`<br>verdict: **reject**" in again
    assert "- brighter sky" in again
    assert render(batch, records, parse(again, "r.md"), NEVER, EVERY_PNG) == again  # stable


def test_waiting_and_failed_cells() -> None:
    batch = loaded(TWO_BY_THREE)
    records = all_records(batch)
    del records["harbor-z-image-turbo-s3"]
    records["harbor-flux-schnell-s1"] = record_for(batch.job("harbor-flux-schnell-s1"), failed=("out-of-memory", "out of memory"))
    text = render(batch, records, None, NEVER, EVERY_PNG)
    rows = table_rows(text)
    assert rows[2][3].startswith("*waiting*<br>`harbor-z-image-turbo-s3`")
    assert rows[3][1].startswith("**render failed**<br>`harbor-flux-schnell-s1`")
    assert "\n### harbor-z-image-turbo-s3\n" not in text
    nothing = {slug: r for slug, r in records.items() if not slug.startswith("harbor")}
    assert "## harbor" not in render(batch, nothing, None, NEVER, EVERY_PNG)


@pytest.mark.parametrize(
    "sweep, header, rows",
    [
        ("{model: [z-image-turbo, flux-schnell]}", ["model", "z-image-turbo", "flux-schnell"], ["**harbor**"]),
        ("{mode: zip, model: [z-image-turbo, flux-schnell], steps: [8, 4]}",
         ["model · steps", "z-image-turbo · 8 steps", "flux-schnell · 4 steps"], ["**harbor**"]),
        ("{model: [z-image-turbo, flux-schnell], steps: [4, 8], size: [512x384, 384x512]}",
         ["model ↓ steps · size →", "4 steps · 512×384", "4 steps · 384×512", "8 steps · 512×384", "8 steps · 384×512"],
         ["**z-image-turbo**", "**flux-schnell**"]),
    ],
    ids=["one-axis", "zip", "three-axes"],
)
def test_grid_shapes(sweep: str, header: list[str], rows: list[str]) -> None:
    batch = loaded(f"version: 1\nprompts:\n  - slug: harbor\n    prompt: x\n    sweep: {sweep}\n")
    text = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    found = table_rows(text)
    assert found[0] == header
    assert [row[0] for row in found[2:]] == rows
    assert all(len(row) == len(header) for row in found)
    grid = layout("harbor", list(batch.jobs))
    assert sum(1 for _, cells in grid.rows for job in cells if job) == len(batch.jobs)


def test_the_html_sheet_draws_the_same_grid() -> None:
    batch = loaded(TWO_BY_THREE)
    records = all_records(batch)
    text = type_into(render(batch, records, None, NEVER, EVERY_PNG), "harbor-flux-schnell-s2", "verdict: keep\ncues:")
    outcome = Outcome("hero", facts=None, review=parse(text, "r.md"), records=records, loaded=batch)
    from mac_side.review import outline
    outcome.facts = outline(batch, records, EVERY_PNG)
    page = contact_sheet(outcome)
    section = page[page.index('<section class="compare" id="harbor">'): page.index("</section>")]
    assert "<th>model ↓ seed →</th><th>s1</th><th>s2</th><th>s3</th>" in section
    assert "<th>z-image-turbo</th>" in section and "<th>flux-schnell</th>" in section
    for slug in CELLS:
        assert f'<a href="{slug}.png"><img src="{slug}.png"' in section
    assert section.count('<span class="verdict keep">keep</span>') == 1
    assert '<figure id="lamp">' in page[page.index("</section>"):]


def _line(batch: str, slug: str, verdict: str, axes: dict | None = None, archetype: str = "essay",
          prompt_slug: str = "harbor") -> LedgerLine:
    return LedgerLine(id=new_id(), at=datetime.now(timezone.utc), batch=batch, slug=slug, verdict=verdict,  # type: ignore[arg-type]
                      archetype=archetype, axes=axes, prompt_slug=prompt_slug if axes else None)


def test_ledger_lines_with_and_without_axes() -> None:
    plain = _line("hero", "lamp", "keep")
    assert "axes" not in plain.to_line() and "prompt_slug" not in plain.to_line()
    swept = _line("hero", "harbor-flux-schnell-s2", "keep", {"model": "flux-schnell", "seed": 2, "cfg": 3.5})
    data = json.loads(swept.to_line())
    assert data["axes"] == {"model": "flux-schnell", "seed": 2, "cfg": 3.5} and data["prompt_slug"] == "harbor"
    read = parse_ledger((plain.to_line() + swept.to_line()).encode())
    assert read[1].axes == {"model": "flux-schnell", "seed": 2, "cfg": 3.5} and read[0].axes is None
    old = ('{"id": "01KB0000000000000000000000", "at": "2026-11-01T10:00:00Z", "batch": "hero", "slug": "lamp", '
           '"verdict": "keep", "cues": [], "model": null, "seed": null, "spec_hash": null, "png_sha256": null, '
           '"archetype": null, "reviewer": null}\n')
    assert parse_ledger(old.encode())[0].axes is None  # lines written before sweeps stay valid


def test_compare_counts_each_variant_kept_when_the_other_was_not() -> None:
    lines = []
    # decision-log: three prompts, z-image-turbo vs flux-schnell on seeds 1 and 2
    for n, (z, f) in enumerate([("keep", "reject"), ("keep", "keep"), ("reroll", "keep"), ("keep", "reject"),
                                ("reject", "reject"), ("keep", "reroll")]):
        prompt, seed = f"p{n // 2}", n % 2 + 1
        lines.append(_line("hero", f"{prompt}-z-s{seed}", z, {"model": "z-image-turbo", "seed": seed}, "decision-log", prompt))
        lines.append(_line("hero", f"{prompt}-f-s{seed}", f, {"model": "flux-schnell", "seed": seed}, "decision-log", prompt))
    lines.append(_line("hero", "lamp", "keep"))  # a plain image: not a comparison
    lines.append(_line("hero", "p0-f-s1", "keep", {"model": "flux-schnell", "seed": 1}, "decision-log", "p0"))  # supersedes
    duels = compare(Ledger(lines))
    by_model = [d for d in duels if d.axis == "model"]
    assert len(by_model) == 1
    duel = by_model[0]
    assert (duel.archetype, duel.first, duel.second) == ("decision-log", "z-image-turbo", "flux-schnell")
    assert (duel.first_only, duel.second_only, duel.both, duel.neither, len(duel.prompts)) == (2, 1, 2, 1, 3)
    seeds = [d for d in duels if d.axis == "seed"]
    assert {(d.first, d.second) for d in seeds} <= {("1", "2"), ("2", "1")} and len(seeds) == 1
    assert seeds[0].decided + seeds[0].both + seeds[0].neither == 6  # 3 prompts x 2 models


TWO_MODELS = """\
version: 1
width: 512
height: 384
sweep:
  model: [z-image-turbo, flux-schnell]
  seeds: 3
prompts:
  - slug: harbor
    prompt: "A harbor at dawn"
    archetype: decision-log
"""


def test_end_to_end_in_a_real_studio(sandbox: Sandbox) -> None:
    """A 2-model x 3-seed sweep rendered by the placeholder worker, reviewed per cell, counted by stats --compare."""
    sandbox.write("batches/compare.yaml", TWO_MODELS)
    typed = {f"harbor-z-image-turbo-s{n}": "verdict: keep\ncues:" for n in (1, 2)}
    typed |= {"harbor-z-image-turbo-s3": "verdict: reject\ncues:", "harbor-flux-schnell-s1": "verdict: reject\ncues:",
              "harbor-flux-schnell-s2": "verdict: reroll\ncues:\n- warmer", "harbor-flux-schnell-s3": "verdict: keep\ncues:"}
    review_round(sandbox, "compare", typed)
    mac = sandbox.mac
    committed = git(mac, "show", "HEAD:renders/compare/review.md").stdout  # the grid shows the verdicts just typed
    assert "`harbor-flux-schnell-s2`<br>verdict: **reroll**" in committed
    assert "`harbor-z-image-turbo-s1`<br>verdict: **keep**" in committed
    assert git(mac, "status", "--porcelain").stdout == ""
    ledger = parse_ledger((mac / "ledger.jsonl").read_bytes())
    assert {(l.slug, l.verdict) for l in ledger} == {(s, t.split()[1]) for s, t in typed.items()}
    cell = next(l for l in ledger if l.slug == "harbor-flux-schnell-s2")
    assert cell.axes == {"model": "flux-schnell", "seed": 2} and cell.prompt_slug == "harbor" and cell.cues == ["warmer"]
    shown = cli("stats", "--compare", "--repo", str(mac))
    assert shown.returncode == 0, shown.stderr
    assert "  model: z-image-turbo is kept 2 of 3 times against flux-schnell (both kept 0, neither 0; 1 prompt)" \
        in shown.stdout.splitlines()
    data = json.loads(cli("stats", "--compare", "--json", "--repo", str(mac)).stdout)
    model = next(c for c in data["comparisons"] if c["axis"] == "model")
    assert (model["variant"], model["kept_alone"], model["against_kept_alone"], model["comparisons"]) == (
        "z-image-turbo", 2, 1, 3)
    assert cli("stats", "--json", "--repo", str(mac)).returncode == 2


def test_new_compare_scaffolds_the_prompts_of_a_batch(sandbox: Sandbox) -> None:
    mac = sandbox.mac
    sandbox.write("batches/hero.yaml", "version: 1\nmodel: z-image-turbo\nwidth: 512\nheight: 384\nprompts:\n"
                  "  - {slug: harbor, prompt: A harbor, archetype: essay, cues: [warm]}\n"
                  "  - {slug: lamp, prompt: A lamp, seed: 77, negative: blurry}\n")
    made = cli("new", "vs", "--compare", "z-image-turbo,flux-schnell", "--from", "hero", "--repo", str(mac))
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == "Wrote batches/vs.yaml: 2 prompts of hero x 2 models = 4 images."
    from studio.batch import load_batch_bytes
    from studio.config import builtin_config
    vs = load_batch_bytes((mac / "batches" / "vs.yaml").read_bytes(), "batches/vs.yaml", builtin_config())
    hero = load_batch_bytes((mac / "batches" / "hero.yaml").read_bytes(), "batches/hero.yaml", builtin_config())
    assert [j.slug for j in vs.jobs] == ["harbor-z-image-turbo", "harbor-flux-schnell", "lamp-z-image-turbo",
                                         "lamp-flux-schnell"]
    # the same prompt, cues, seed and size as the source; each model's own steps
    assert vs.jobs[0].spec == hero.jobs[0].spec
    assert vs.jobs[1].spec.seed == hero.jobs[0].spec.seed and vs.jobs[1].spec.steps == 4
    assert vs.jobs[3].spec.negative == "blurry" and vs.jobs[3].spec.seed == 77 and vs.jobs[2].archetype is None
    assert vs.jobs[0].archetype == "essay" and vs.jobs[0].cues == ("warm",)
    for args, message in [
        (["--compare", "flux-schnell", "--from", "hero"], "--compare names two or more models"),
        (["--compare", "flux-schnell,dall-e", "--from", "hero"], "unknown model 'dall-e'"),
        (["--compare", "flux-schnell,z-image-turbo", "--from", "nope"], "no batch file batches/nope.yaml"),
        (["--compare", "flux-schnell,z-image-turbo"], "--compare needs --from BATCH"),
    ]:
        refused = cli("new", "vs2", *args, "--repo", str(mac))
        assert refused.returncode != 0 and message in refused.stderr, (args, refused.stderr)
    assert not (mac / "batches" / "vs2.yaml").exists()


def test_a_swept_image_can_be_rerolled(sandbox: Sandbox) -> None:
    sandbox.write("batches/steps.yaml", "version: 1\nmodel: flux-dev\nwidth: 512\nheight: 384\nprompts:\n"
                  "  - slug: harbor\n    prompt: A harbor\n    sweep:\n      steps: [4, 8]\n      prompt: {plain: '', oil: oil painting}\n")
    review_round(sandbox, "steps", {"harbor-steps8-oil": "verdict: reroll\ncues:\n- warmer"})
    made = cli("new", "again", "--rerolls", "--repo", str(sandbox.mac))
    assert made.returncode == 0, made.stderr
    text = (sandbox.mac / "batches" / "again.yaml").read_text(encoding="utf-8")
    assert "slug: harbor-steps8-oil" in text and "prompt: A harbor, oil painting" in text and "steps: 8" in text
    assert "sweep" not in text.split("prompts:")[1]
