"""The review format: generating, merging with what the person typed, parsing with line numbers."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional

import pytest
from markdown_it import MarkdownIt

from mac_side.init import init
from mac_side.review import STALE_NOTICE, Recorded, parse, render
from studio.batch import Job, LoadedBatch, load_batch_bytes
from studio.config import builtin_config
from studio.inventory import PngCheck
from studio.record import RenderError, RenderRecord
from tests.helpers import BATCH_YAML, cli, git, type_into

NEVER: Recorded = lambda slug, spec_hash, verdict, cues: False  # noqa: E731
EVERY_PNG: PngCheck = lambda job: True  # noqa: E731


def loaded(text: str = BATCH_YAML) -> LoadedBatch:
    return load_batch_bytes(text.encode(), "batches/hero.yaml", builtin_config())


def record_for(job: Job, *, failed: Optional[tuple[str, str]] = None, seconds: float = 17.8) -> RenderRecord:
    png = hashlib.sha256(job.spec_hash.encode()).hexdigest()
    return RenderRecord(
        batch=job.batch, slug=job.slug, status="failed" if failed else "done", spec=job.spec,
        spec_hash=job.spec_hash, backend="comfyui", worker="studio-pc", render_seconds=seconds,
        png_sha256=None if failed else png,
        error={"kind": failed[0], "message": failed[1]} if failed else None,
    )


def all_records(batch: LoadedBatch, **kwargs) -> dict[str, RenderRecord]:
    return {job.slug: record_for(job, **kwargs) for job in batch.jobs}


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# ---------------------------------------------------------------- generating


def test_new_review_has_heading_image_spec_line_marker_and_blank_verdict() -> None:
    batch = loaded()
    text = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    assert text.startswith("# Review: hero\n\n3 rendered · 0 failed · 0 waiting\n")
    section = text[text.index("## harbor-at-dawn"): text.index("## feedback-ledger-taxonomy")]
    assert "![harbor-at-dawn](harbor-at-dawn.png)" in section
    assert "z-image-turbo · seed 1234 · 512×384 · 8 steps · 17.8 s on studio-pc" in section
    assert re.search(r'<!-- renderloop spec \{"spec_hash": "sha256:[0-9a-f]{64}"', section)
    assert section.rstrip().endswith("verdict:\ncues:")
    review = parse(text, "renders/hero/review.md")
    assert [s.slug for s in review.sections] == ["harbor-at-dawn", "feedback-ledger-taxonomy", "night-train"]
    assert review.all_problems() == []
    assert all(s.verdict is None and s.cues == [] for s in review.sections)
    assert review.sections[0].marker.spec_hash == batch.jobs[0].spec_hash
    assert text.endswith("\n") and "\r" not in text and "\n\n\n" not in text


def test_review_renders_with_its_images_and_hides_the_markers() -> None:
    batch = loaded()
    html = MarkdownIt("commonmark").render(render(batch, all_records(batch), None, NEVER, EVERY_PNG))
    assert '<img src="harbor-at-dawn.png" alt="harbor-at-dawn" />' in html
    assert "<h2>night-train</h2>" in html
    # the markers stay HTML comments: hidden on GitHub and in VS Code's preview
    assert html.count("<!-- renderloop spec") == 3 and "<p>&lt;!--" not in html


def test_waiting_and_failed_renders() -> None:
    batch = loaded()
    jobs = {job.slug: job for job in batch.jobs}
    records = {
        "harbor-at-dawn": record_for(jobs["harbor-at-dawn"]),
        "night-train": record_for(jobs["night-train"], failed=("missing-model", "flux1-schnell.safetensors is not on <the> server *now*")),
    }
    text = render(batch, records, None, NEVER, EVERY_PNG)
    assert "1 rendered · 1 failed · 1 waiting (feedback-ledger-taxonomy)" in text
    assert "## feedback-ledger-taxonomy" not in text  # nothing to judge yet
    night = text[text.index("## night-train"):]
    assert "![night-train]" not in night
    assert r"**Render failed** · missing-model: flux1-schnell.safetensors is not on \<the\> server \*now\*" in night
    assert "flux-schnell · seed" in night and " s on studio-pc" not in night  # no time for a failure
    assert parse(text, "r.md").all_problems() == []


def test_error_text_cannot_become_markdown_and_plain_names_stay_plain() -> None:
    batch = loaded()
    job = batch.jobs[0]
    message = "## boom [click](http://x) ![i](y) <img src=x> *bold* _it_ `code` a|b\nsecond line"
    failed = record_for(job, failed=("backend-error", message)).model_copy(update={"worker": "studio_pc"})
    text = render(batch, {job.slug: failed}, None, NEVER, EVERY_PNG)
    assert "on studio_pc" in text  # an underscore inside a word needs no escape
    html = MarkdownIt("commonmark").render(text)
    section = html[html.index("<h2>harbor-at-dawn</h2>"):]
    for made in ("<a ", "<img", "<em>", "<strong>", "<code>", "<h2>boom"):
        assert made not in section.replace("<strong>Render failed</strong>", ""), made
    assert "second line" in section and parse(text, "r.md").all_problems() == []


def test_a_record_for_an_older_spec_counts_as_waiting_but_is_shown() -> None:
    batch = loaded()
    records = all_records(batch)
    edited = loaded(BATCH_YAML.replace("seed: 1234", "seed: 99"))
    text = render(edited, records, None, NEVER, EVERY_PNG)
    assert "2 rendered · 0 failed · 1 waiting (harbor-at-dawn)" in text
    assert "![harbor-at-dawn](harbor-at-dawn.png)" in text


# ---------------------------------------------------------------- parsing


def test_parse_verdicts_cues_and_line_numbers() -> None:
    batch = loaded()
    text = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    text = type_into(text, "harbor-at-dawn", "verdict: Reroll\ncues:\n- warmer palette\n-   no  text\n*  \n\nnotes stay notes")
    text = type_into(text, "night-train", "verdict:keep\n\ncues:\n\n1. one cue")
    review = parse(text, "renders/hero/review.md")
    assert review.all_problems() == []
    harbor, taxonomy, night = review.sections
    assert (harbor.verdict, harbor.cues) == ("reroll", ["warmer palette", "no text"])
    assert harbor.verdict_line + 1 == line_of(text, "verdict: Reroll")
    assert harbor.line == line_of(text, "## harbor-at-dawn")
    assert (taxonomy.verdict, taxonomy.cues, taxonomy.typed) == (None, [], False)
    assert (night.verdict, night.cues) == ("keep", ["one cue"])


@pytest.mark.parametrize(
    ("typed", "needle", "message"),
    [
        ("verdict: kepp\ncues:", "verdict: kepp", "unknown verdict 'kepp' for 'harbor-at-dawn': write keep, reroll or reject"),
        ("verdict: keep but darker\ncues:", "verdict: keep", "unknown verdict 'keep but darker'"),
        ("verdict: keep\ncues: warmer", "cues: warmer", "write each cue on its own line as a `- ` bullet"),
        ("verdict: keep\ncues:\nwarmer", "warmer", "write each cue on its own line as a `- ` bullet"),
        ("verdict: keep\ncues:\n- a\n  - nested", "- a", "a cue is one line of text"),
        ("verdict: keep\nverdict: reject\ncues:", "verdict: reject", "second `verdict:` line for 'harbor-at-dawn'"),
        ("cues:", "## harbor-at-dawn", "section 'harbor-at-dawn' has no `verdict:` line"),
        ("verdict: keep\ncues:\n- " + "x" * 301, "- xxx", "cue is 301 characters long"),
        # issue 9: a cue goes into the ledger and the next batch file, where no control character belongs
        ("verdict: keep\ncues:\n- nice\u202e evil", "- nice", "control character '\\u202e' is not allowed in"),
        ("verdict: keep\ncues:\n- a\u2028b", "- a", "control character '\\u2028' is not allowed in"),
        ("verdict: keep\ncues:\n- c\x00d", "- c", "control character '\\x00' is not allowed in"),
        ("verdict: keep\ncues:\n- e\x1bf", "- e", "control character '\\x1b' is not allowed in"),
    ],
)
def test_malformed_entries_are_problems_with_their_line(typed: str, needle: str, message: str) -> None:
    batch = loaded()
    text = type_into(render(batch, all_records(batch), None, NEVER, EVERY_PNG), "harbor-at-dawn", typed)
    problems = parse(text, "renders/hero/review.md").all_problems()
    assert len(problems) == 1, problems
    assert problems[0].path == "renders/hero/review.md"
    assert problems[0].line == line_of(text, needle)
    assert message in problems[0].message


def test_headings_that_are_not_slugs_or_repeat_are_problems() -> None:
    text = "# Review\n\n## Harbor At Dawn\n\nverdict:\n\n## night-train\n\nverdict:\n\n## night-train\n\nverdict:\n"
    problems = parse(text, "r.md").all_problems()
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (3, "heading 'Harbor At Dawn' is not a slug"),
        (11, "second section for 'night-train' (first at line 7)"),
    ]


def test_crlf_and_a_bom_parse_like_lf() -> None:
    from mac_side.review import decode

    batch = loaded()
    text = type_into(render(batch, all_records(batch), None, NEVER, EVERY_PNG), "night-train", "verdict: reject\ncues:\n- no bridge")
    raw = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
    decoded, problems = decode(raw, "r.md")
    assert problems == []
    night = parse(decoded, "r.md").section("night-train")
    assert (night.verdict, night.cues) == ("reject", ["no bridge"])
    assert decode(b"verdict: \xff\n", "r.md")[1][0].message.startswith("not valid UTF-8")


# ---------------------------------------------------------------- merging with what was typed


def test_regenerating_keeps_verdicts_cues_and_notes_and_is_stable() -> None:
    batch = loaded()
    records = all_records(batch)
    first = render(batch, {k: v for k, v in records.items() if k != "night-train"}, None, NEVER, EVERY_PNG)
    first = first.replace("-->\n\n## harbor", "-->\n\nOverall: too dark.\n\n## harbor")  # a note under the header
    typed = type_into(first, "harbor-at-dawn", "verdict: reroll\ncues:\n- warmer palette\n\nThe boat is *too* small.")
    second = render(batch, records, parse(typed, "r.md"), NEVER, EVERY_PNG)
    review = parse(second, "r.md")
    harbor = review.section("harbor-at-dawn")
    assert (harbor.verdict, harbor.cues) == ("reroll", ["warmer palette"])
    assert "The boat is *too* small." in second and "Overall: too dark." in second
    assert review.section("night-train") is not None  # the new render arrived
    assert "3 rendered" in second
    assert render(batch, records, review, NEVER, EVERY_PNG) == second  # regenerating again changes nothing


def test_a_verdict_typed_above_the_marker_is_kept() -> None:
    batch = loaded()
    text = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    spec = "z-image-turbo · seed 1234 · 512×384 · 8 steps · 17.8 s on studio-pc"
    text = text.replace(spec, spec + "\nverdict: keep", 1).replace("verdict:\ncues:", "cues:", 1)
    again = render(batch, all_records(batch), parse(text, "r.md"), NEVER, EVERY_PNG)
    harbor = parse(again, "r.md").section("harbor-at-dawn")
    assert harbor.verdict == "keep"
    assert again.count("verdict: keep") == 1
    assert harbor.marker_span[0] < harbor.verdict_line  # moved below the marker, into the person's part


def test_rerender_resets_a_blank_section_for_the_new_image() -> None:
    batch = loaded()
    old = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    rerolled = loaded(BATCH_YAML.replace("seed: 1234", "seed: 99"))
    new = render(rerolled, all_records(rerolled), parse(old, "r.md"), NEVER, EVERY_PNG)
    harbor = parse(new, "r.md").section("harbor-at-dawn")
    assert harbor.marker.spec_hash == rerolled.jobs[0].spec_hash
    assert "seed 99" in new and "seed 1234" not in new


def test_rerender_after_the_verdict_was_recorded_resets_the_section_but_keeps_notes() -> None:
    batch = loaded()
    old = type_into(render(batch, all_records(batch), None, NEVER, EVERY_PNG), "harbor-at-dawn",
                    "verdict: reroll\ncues:\n- warmer palette\n\nTry a tugboat.")
    old_hash = batch.jobs[0].spec_hash

    def recorded(slug, spec_hash, verdict, cues):
        return (slug, spec_hash, verdict, cues) == ("harbor-at-dawn", old_hash, "reroll", ["warmer palette"])

    rerolled = loaded(BATCH_YAML.replace("seed: 1234", "seed: 99"))
    new = render(rerolled, all_records(rerolled), parse(old, "r.md"), recorded, EVERY_PNG)
    harbor = parse(new, "r.md").section("harbor-at-dawn")
    assert (harbor.verdict, harbor.cues) == (None, [])
    assert harbor.marker.spec_hash == rerolled.jobs[0].spec_hash
    assert "Try a tugboat." in new and STALE_NOTICE.format(slug="harbor-at-dawn") not in new


def test_rerender_never_drops_a_verdict_not_yet_recorded() -> None:
    batch = loaded()
    old = type_into(render(batch, all_records(batch), None, NEVER, EVERY_PNG), "harbor-at-dawn", "verdict: keep\ncues:\n- crisp")
    rerolled = loaded(BATCH_YAML.replace("seed: 1234", "seed: 99"))
    new = render(rerolled, all_records(rerolled), parse(old, "r.md"), NEVER, EVERY_PNG)
    harbor = parse(new, "r.md").section("harbor-at-dawn")
    assert (harbor.verdict, harbor.cues) == ("keep", ["crisp"])
    assert harbor.marker.spec_hash == batch.jobs[0].spec_hash  # recorded against the image the person saw
    assert new.count(STALE_NOTICE.format(slug="harbor-at-dawn")) == 1
    assert render(rerolled, all_records(rerolled), parse(new, "r.md"), NEVER, EVERY_PNG) == new  # one notice, stable


def test_sections_of_slugs_removed_from_the_batch() -> None:
    batch = loaded()
    old = render(batch, all_records(batch), None, NEVER, EVERY_PNG)
    old = type_into(old, "night-train", "verdict: reject\ncues:")
    smaller = loaded(BATCH_YAML.split("  - slug: feedback-ledger-taxonomy")[0])
    new = render(smaller, all_records(batch), parse(old, "r.md"), NEVER, EVERY_PNG)
    assert "## feedback-ledger-taxonomy" not in new  # nothing typed: dropped
    assert "## night-train" in new and "verdict: reject" in new  # typed, not recorded: kept


# ---------------------------------------------------------------- the command


def fail_record(repo: Path, batch: str, slug: str, kind: str, message: str) -> None:
    """Turn a rendered record into a failed one, as a worker whose backend failed would commit it."""
    path = repo / "renders" / batch / f"{slug}.json"
    record = RenderRecord.model_validate_json(path.read_bytes())
    error = RenderError(kind=kind, message=message)
    failed = record.model_copy(update={"status": "failed", "png_sha256": None, "error": error})
    path.write_text(failed.to_json(), encoding="utf-8", newline="\n")
    git(repo, "rm", "-q", f"renders/{batch}/{slug}.png")
    git(repo, "add", f"renders/{batch}/{slug}.json")
    git(repo, "commit", "-q", "--no-verify", "-m", f"render({batch}): {slug} failed")


def test_review_command_writes_stages_and_makes_a_contact_sheet(tmp_path: Path) -> None:
    studio = tmp_path / "studio"
    init(studio)
    (studio / "batches" / "hero.yaml").write_text(BATCH_YAML, encoding="utf-8")
    git(studio, "add", "batches/hero.yaml")
    git(studio, "commit", "-q", "--no-verify", "-m", "batch hero")
    worker = cli("worker", "--repo", str(studio), "--backend", "placeholder", "--once", "--no-push")
    assert worker.returncode == 0, worker.stderr
    fail_record(studio, "hero", "night-train", "out-of-memory", "<script>alert(1)</script>")
    result = cli("review", "--html", "--repo", str(studio))
    assert result.returncode == 0, result.stderr
    assert "hero: 2 rendered, 1 failed (night-train: out-of-memory: <script>alert(1)</script>), 0 waiting -> renders/hero/review.md" in result.stdout, result.stdout
    assert git(studio, "diff", "--cached", "--name-only").stdout.split() == ["renders/hero/review.md"]
    page = (studio / "renders" / "hero" / "review.html").read_text(encoding="utf-8")
    assert page.count("<figure") == 3 and '<img src="harbor-at-dawn.png"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    review = studio / "renders" / "hero" / "review.md"
    review.write_text(type_into(review.read_text(encoding="utf-8"), "harbor-at-dawn", "verdict: keep\ncues:\n- crisp"), encoding="utf-8")
    assert cli("review", "hero", "--html", "--repo", str(studio)).returncode == 0
    page = (studio / "renders" / "hero" / "review.html").read_text(encoding="utf-8")
    assert '<span class="verdict keep">keep</span>' in page and "<li>crisp</li>" in page
    assert "verdict: keep" in review.read_text(encoding="utf-8")


def test_review_command_refuses_a_bad_batch_name(tmp_path: Path) -> None:
    init(tmp_path / "studio")
    result = cli("review", "../etc", "--repo", str(tmp_path / "studio"))
    assert result.returncode == 1 and "batch name '../etc' is not allowed" in result.stderr
