"""The review file ``renders/<batch>/review.md``: generate it, merge it with what the person typed, parse it.

A review is Markdown that reads well in any editor and renders with its
images on GitHub and in VS Code. Per slug::

    ## harbor-at-dawn

    ![harbor-at-dawn](harbor-at-dawn.png)

    z-image-turbo · seed 1234 · 1344×768 · 8 steps · 17.8 s on studio-pc

    <!-- renderloop spec {"spec_hash": "sha256:...", ...} -->

    verdict: reroll
    cues:
    - warmer palette

Everything from the heading to the hidden ``renderloop spec`` comment is
renderloop's and is rewritten when the review is regenerated; everything
below the comment up to the next ``##`` heading is the person's (verdict,
cues, free notes) and is kept. The comment records the spec hash the
verdict applies to, so a verdict typed for an image that was re-rendered in
the meantime is recorded against the image the person saw.

A swept prompt (issue 12) is one ``## prompt-slug`` section with a grid of
its images (a Markdown table, rows and columns named by the axes) and a
hidden ``renderloop grid`` comment, followed by one ``### image-slug`` cell
per image, each exactly like a plain section (spec line, hidden spec
comment, then the person's verdict, cues and notes).

Parsing uses markdown-it-py tokens and their line maps for line numbers.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel, ConfigDict, ValidationError

from mac_side.grid import Grid, layout
from studio.batch import Job, LoadedBatch
from studio.errors import Problem
from studio.inventory import PngCheck, job_state
from studio.layout import slug_problem
from studio.limits import MAX_CUE_CHARS, MAX_CUES, MAX_REVIEW_BYTES, control_problem
from studio.ledger import VERDICTS
from studio.record import RenderRecord


HEADER_COMMENT = (
    "<!-- renderloop review: under each image, complete `verdict:` with keep, reroll or reject, "
    "and list cues for the next render as `- ` bullets under `cues:`; write any notes below them. "
    "Committing this file records the verdicts in ledger.jsonl. renderloop rewrites each section "
    "above its `renderloop spec` comment and keeps what you write below it. -->"
)
STALE_NOTICE = (
    "> **Re-rendered since you wrote this verdict:** `{slug}.png` is now the new image, "
    "your verdict applies to the earlier one (this section's spec). Commit it, then run "
    "`renderloop review` to see the new image."
)
VERDICT_TEMPLATE = ["verdict:", "cues:"]

_HEADER_RE = re.compile(r"\A<!--\s*renderloop review\b")
_GRID_RE = re.compile(r"\A<!--\s*renderloop grid\b")
GRID_COMMENT = (
    "<!-- renderloop grid: one image per cell; type each image's verdict and cues under its own `###` heading "
    "below, as for a single image -->"
)
THUMB_WIDTH = 240
_MARKER_RE = re.compile(r"\A<!--\s*renderloop spec\s+(.*?)\s*-->\s*\Z", re.S)
_VERDICT_RE = re.compile(r"\Averdict\s*:(.*)\Z", re.I)
_CUES_RE = re.compile(r"\Acues\s*:(.*)\Z", re.I)
# Markdown that would act on text in a spec line or an error message; an intraword `_` does not.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|^#|!(?=\[))")

_md = MarkdownIt("commonmark")


class Marker(BaseModel):
    """The hidden per-section comment: which image the section's verdict is about."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    spec_hash: str
    status: Literal["done", "failed"] = "done"
    model: Optional[str] = None
    seed: Optional[int] = None
    png_sha256: Optional[str] = None

    @classmethod
    def of(cls, record: RenderRecord) -> "Marker":
        return cls(
            spec_hash=record.spec_hash,
            status=record.status,
            model=record.spec.model,
            seed=record.spec.seed,
            png_sha256=record.png_sha256,
        )

    def comment(self) -> str:
        data = json.dumps(self.model_dump(exclude_none=True), ensure_ascii=False, separators=(", ", ": "))
        data = data.replace(">", "\\u003e")  # a `-->` inside a value would end the comment
        return f"<!-- renderloop spec {data} -->"


# ---------------------------------------------------------------- parsing


@dataclass
class Section:
    """One ``## slug`` section as found in a review file (line indexes are 0-based)."""

    slug: str
    start: int  # the heading line
    end: int  # one past the section's last line
    marker: Optional[Marker] = None
    marker_span: Optional[tuple[int, int]] = None
    verdict: Optional[str] = None  # as typed, lowercased; None when left blank
    verdict_line: Optional[int] = None
    cues: list[str] = field(default_factory=list)
    own_lines: set[int] = field(default_factory=set)  # verdict:, cues: and the cue list
    moved_lines: list[int] = field(default_factory=list)  # verdict or cue lines typed above the marker
    problems: list[Problem] = field(default_factory=list)
    level: int = 2  # 3: a cell of a comparison grid

    @property
    def line(self) -> int:
        """The heading's line number, as people count (1-based)."""
        return self.start + 1

    @property
    def typed(self) -> bool:
        """True when the person wrote a verdict or cues here."""
        return self.verdict is not None or bool(self.cues)

    @property
    def body_start(self) -> Optional[int]:
        """The first line of the person's part, or None when it cannot be told apart."""
        if self.marker_span is not None:
            return self.marker_span[1]
        if self.verdict_line is not None or self.own_lines:
            return min([*self.own_lines, *([self.verdict_line] if self.verdict_line is not None else [])])
        return None


@dataclass
class Review:
    path: str
    lines: list[str]
    sections: list[Section]
    header_body: Optional[tuple[int, int]]  # the person's notes under the header comment
    problems: list[Problem]  # problems of the file as a whole (headings, encoding)

    def section(self, slug: str) -> Optional[Section]:
        return next((s for s in self.sections if s.slug == slug), None)

    def all_problems(self) -> list[Problem]:
        found = list(self.problems)
        for section in self.sections:
            found += section.problems
        return sorted(found, key=lambda p: p.line)

    def person_lines(self, section: Section) -> list[str]:
        """What the person wrote in ``section``: verdict, cues and notes, verbatim."""
        start = section.body_start
        if start is None:
            return []
        moved = [self.lines[i] for i in section.moved_lines]
        return _trim_blank(moved + self.lines[start : section.end])

    def notes(self, section: Section) -> list[str]:
        """The person's lines in ``section`` other than verdict and cues."""
        start = section.body_start
        if start is None:
            return []
        kept = [self.lines[i] for i in range(start, section.end) if i not in section.own_lines]
        return _trim_blank(_squeeze_blank(kept))


def decode(raw: bytes, display: str) -> tuple[str, list[Problem]]:
    """The text of a review file, or problems saying why it cannot be read."""
    if len(raw) > MAX_REVIEW_BYTES:
        return "", [Problem(display, 1, f"review is {len(raw) / 1e6:.1f} MB; the limit is {MAX_REVIEW_BYTES / 1e6:.0f} MB")]
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return "", [Problem(display, line, "not valid UTF-8: save the review as UTF-8")]
    return text.replace("\r\n", "\n").replace("\r", "\n"), []


def _span(token: Token) -> tuple[int, int]:
    """The lines ``[first, end)`` of a block token (markdown-it maps every block token)."""
    if token.map is None:
        raise ValueError(f"markdown-it gave a {token.type} token no lines")
    first, end = token.map
    return first, end


def parse(text: str, display: str) -> Review:
    """Sections, verdicts, cues and problems of a review, with line numbers from markdown-it tokens."""
    lines = text.split("\n")
    tokens = _md.parse(text)
    top = [i for i, t in enumerate(tokens) if t.level == 0 and t.map is not None and t.nesting >= 0]
    heads = [i for i in top if tokens[i].type == "heading_open" and tokens[i].tag == "h2"]
    review = Review(display, lines, [], None, [])
    first_section = _span(tokens[heads[0]])[0] if heads else len(lines)
    review.header_body = _header_body(tokens, top, first_section)
    seen: dict[str, int] = {}
    for n, head in enumerate(heads):
        start = _span(tokens[head])[0]
        end = _span(tokens[heads[n + 1]])[0] if n + 1 < len(heads) else len(lines)
        blocks = [i for i in top if start < _span(tokens[i])[0] < end]
        grid = next((i for i in blocks if tokens[i].type == "html_block" and _GRID_RE.match(tokens[i].content.strip())), None)
        if grid is None:
            spans = [(head, start, end, 2)]
        else:  # a comparison: its cells are the `### slug` headings below the grid
            cells = [i for i in blocks if i > grid and tokens[i].type == "heading_open" and tokens[i].tag == "h3"
                     and slug_problem(tokens[i + 1].content.strip()) is None]
            bounds = [_span(tokens[i])[0] for i in cells] + [end]
            spans = [(cell, bounds[k], bounds[k + 1], 3) for k, cell in enumerate(cells)]
        for heading, first, last, level in spans:
            slug = tokens[heading + 1].content.strip()
            section = Section(slug, first, last, level=level)
            problem = slug_problem(slug)
            if problem:
                review.problems.append(Problem(display, first + 1, f"heading {slug!r} is not a slug: {problem}"))
            elif slug in seen:
                review.problems.append(Problem(display, first + 1, f"second section for {slug!r} (first at line {seen[slug]})"))
            else:
                seen[slug] = first + 1
            _read_section(section, tokens, [i for i in top if first < _span(tokens[i])[0] < last], display, lines)
            review.sections.append(section)
    return review


def _header_body(tokens: list[Token], top: list[int], first_section: int) -> Optional[tuple[int, int]]:
    for i in top:
        token = tokens[i]
        if _span(token)[0] >= first_section:
            break
        if token.type == "html_block" and _HEADER_RE.match(token.content.strip()):
            return (_span(token)[1], first_section)
    return None


def _read_section(section: Section, tokens: list[Token], blocks: list[int], display: str, lines: list[str]) -> None:
    def problem(line: int, message: str) -> None:
        section.problems.append(Problem(display, line + 1, message))

    for i in blocks:
        token = tokens[i]
        if token.type == "html_block" and section.marker_span is None:
            found = _MARKER_RE.match(token.content.strip())
            if found:
                section.marker_span = _span(token)
                try:
                    section.marker = Marker.model_validate_json(found.group(1))
                except ValidationError:
                    problem(_span(token)[0], "damaged renderloop spec comment: run `renderloop review` to rebuild it")
    cue_list_next = False
    for i in blocks:
        token = tokens[i]
        if cue_list_next:
            cue_list_next = False
            if token.type in ("bullet_list_open", "ordered_list_open"):
                _read_cues(section, tokens, i, problem, lines)
                continue
        if token.type == "paragraph_open":
            cue_list_next = _read_paragraph(section, tokens[i + 1], problem)
    if section.verdict_line is None:
        problem(section.start, f"section {section.slug!r} has no `verdict:` line (leave it blank to judge later)")
    if section.marker_span is not None:
        marker_line = section.marker_span[0]
        section.moved_lines = sorted(i for i in section.own_lines if i < marker_line)


def _read_paragraph(section: Section, inline: Token, problem: Callable[[int, str], None]) -> bool:
    """Read verdict and cues lines of one paragraph; True when a cue list should follow it."""
    first = _span(inline)[0]
    rows = inline.content.split("\n")
    wants_list = False
    for offset, row in enumerate(rows):
        line = first + offset
        verdict = _VERDICT_RE.match(row.strip())
        cues = _CUES_RE.match(row.strip())
        if wants_list:
            problem(line, "write each cue on its own line as a `- ` bullet below `cues:`")
            wants_list = False
        if verdict:
            _read_verdict(section, verdict.group(1).strip(), line, problem)
        elif cues:
            section.own_lines.add(line)
            if cues.group(1).strip():
                problem(line, "write each cue on its own line as a `- ` bullet below `cues:`")
            wants_list = True
    return wants_list


def _read_verdict(section: Section, word: str, line: int, problem: Callable[[int, str], None]) -> None:
    if section.verdict_line is not None:
        problem(line, f"second `verdict:` line for {section.slug!r} (first at line {section.verdict_line + 1})")
        return
    section.verdict_line = line
    section.own_lines.add(line)
    word = word.strip().lower()
    if not word:
        return
    if word not in VERDICTS:
        shown = word if len(word) <= 40 else word[:37] + "..."
        problem(line, f"unknown verdict {shown!r} for {section.slug!r}: write keep, reroll or reject (or leave it blank)")
    section.verdict = word


def _read_cues(section: Section, tokens: list[Token], start: int, problem: Callable[[int, str], None],
               lines: list[str]) -> None:
    close = _closing(tokens, start)
    first, last = _span(tokens[start])
    section.own_lines.update(range(first, last))
    for i in range(start + 1, close):
        token = tokens[i]
        if token.type != "list_item_open" or token.level != 1:
            continue
        item_close = _closing(tokens, i)
        blocks = [j for j in range(i + 1, item_close) if tokens[j].level == 2 and tokens[j].nesting >= 0]
        line = _span(token)[0]
        if not blocks:
            continue  # an empty bullet: a cue not written yet
        if len(blocks) > 1 or tokens[blocks[0]].type != "paragraph_open":
            problem(line, "a cue is one line of text: no nested lists, code or second paragraphs under `cues:`")
            continue
        inline = tokens[blocks[0] + 1]
        if "\n" in inline.content:  # Markdown joined the next line(s) to the bullet
            problem(
                _span(inline)[0] + 1,
                "this line would be glued to the cue above it: a cue is exactly its `- ` bullet line; "
                "make it a `- ` bullet of its own, or leave a blank line before notes",
            )
            continue
        cue = " ".join(inline.content.split())
        # as typed: Markdown reads a NUL as U+FFFD, and split() takes U+2028 for a space
        control = control_problem(lines[line].strip()) if line < len(lines) else None
        if control:
            problem(line, control)
        elif len(cue) > MAX_CUE_CHARS:
            problem(line, f"cue is {len(cue)} characters long; the limit is {MAX_CUE_CHARS}")
        elif len(section.cues) >= MAX_CUES:
            problem(line, f"more than {MAX_CUES} cues for {section.slug!r}")
        elif cue:
            section.cues.append(cue)


def _closing(tokens: list[Token], start: int) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        depth += tokens[i].nesting
        if depth == 0:
            return i
    return len(tokens)


# ---------------------------------------------------------------- generating


@dataclass
class Outline:
    """What a batch holds, for the summary line: rendered, failed, waiting."""

    batch: str
    rendered: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # slug, error kind, message
    waiting: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.rendered)} rendered", f"{len(self.failed)} failed", f"{len(self.waiting)} waiting"]
        text = " · ".join(parts)
        if self.waiting:
            shown = ", ".join(self.waiting[:8]) + (f" and {len(self.waiting) - 8} more" if len(self.waiting) > 8 else "")
            text += f" ({shown})"
        return text


def outline(batch: LoadedBatch, records: dict[str, RenderRecord], has_png: PngCheck) -> Outline:
    """Each image of ``batch`` as rendered, failed or waiting (a done record without its PNG: waiting)."""
    result = Outline(batch.batch)
    for job in batch.jobs:
        record = records.get(job.slug)
        state = job_state(job, record, has_png)
        if state == "pending":
            result.waiting.append(job.slug)
        elif state == "done":
            result.rendered.append(job.slug)
        else:
            assert record is not None
            kind, message = (record.error.kind, record.error.message) if record.error else ("backend-error", "no error given")
            result.failed.append((job.slug, kind, message))
    return result


def spec_line(record: RenderRecord) -> str:
    """The spec in one line: model · seed · WxH · N steps · render seconds on worker."""
    spec = record.spec
    parts = [_escape(spec.model), f"seed {spec.seed}", f"{spec.width}×{spec.height}"]
    if spec.steps is not None:
        parts.append(f"{spec.steps} steps")
    where = f"on {_escape(record.worker)}"
    if record.cached and record.status == "done":
        where = f"from cache {where}"
    elif record.render_seconds is not None and record.status == "done":
        where = f"{record.render_seconds:.1f} s {where}"
    parts.append(where)
    if record.cost_usd:
        parts.append(f"${record.cost_usd:.4f}".rstrip("0").rstrip("."))
    return " · ".join(parts)


# What renders a failed image again (a failure is final until asked: see win_side.plan)
RETRY_HINT = ("to render again: fix the cause, then run `renderloop worker --retry-failed` on the worker "
              "(or change the seed)")


def generated_lines(slug: str, record: RenderRecord, level: int = 2) -> list[str]:
    """renderloop's part of a section: heading, image (or failure), spec line, marker (a grid cell: no image)."""
    lines = ["#" * level + f" {slug}", ""]
    if record.status == "done":
        if level == 2:
            lines += [f"![{slug}]({slug}.png)", ""]
    else:
        kind, message = (record.error.kind, record.error.message) if record.error else ("backend-error", "")
        text = " ".join(message.split())[:500]
        lines += [f"**Render failed** · {kind}: {_escape(text)}", "", _escape(RETRY_HINT), ""]
    lines += [spec_line(record), ""] + asked_lines(record) + [Marker.of(record).comment(), ""]
    return lines


def asked_lines(record: RenderRecord) -> list[str]:
    """The prompt as rendered (cues applied) and the negative, as a quote above the marker."""
    lines = [f"> prompt: {_escape(record.spec.prompt)}"]
    if record.spec.negative.strip():
        lines += [">", f"> negative: {_escape(record.spec.negative)}"]
    return lines + [""]


def _escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


Recorded = Callable[[str, str, Optional[str], list[str]], bool]  # (slug, spec_hash, verdict, cues) -> in the ledger


def render(
    batch: LoadedBatch,
    records: dict[str, RenderRecord],
    old: Optional[Review],
    recorded: Recorded,
    has_png: PngCheck,
) -> str:
    """The review of ``batch`` as it should be now, keeping what the person typed in ``old``."""
    facts = outline(batch, records, has_png)
    out = [f"# Review: {batch.batch}", "", facts.summary(), "", HEADER_COMMENT, ""]
    if old is not None and old.header_body is not None:
        notes = _trim_blank(old.lines[old.header_body[0] : old.header_body[1]])
        out += notes + ([""] if notes else [])
    slugs = [job.slug for job in batch.jobs]
    for prompt_slug, jobs in batch.groups():
        if jobs[0].axes:
            out += _grid_section(prompt_slug, jobs, records, old, recorded)
            continue
        slug = jobs[0].slug
        section = old.section(slug) if old is not None else None
        out += _section(slug, records.get(slug), old, section, recorded)
    if old is not None:  # sections of slugs no longer in the batch: kept only while they hold a typed verdict
        for section in old.sections:
            if section.slug not in slugs and section.typed and not _is_recorded(section, recorded):
                kept = _trim_blank(old.lines[section.start : section.end])
                out += ([f"## {section.slug}"] + kept[1:] if section.level != 2 else kept) + [""]
    return "\n".join(_squeeze_blank(out)).rstrip("\n") + "\n"


def _grid_section(
    prompt_slug: str, jobs: list[Job], records: dict[str, RenderRecord], old: Optional[Review], recorded: Recorded
) -> list[str]:
    """A swept prompt: heading, the grid, the grid comment, then one ``###`` cell per image."""
    sections = {job.slug: old.section(job.slug) if old is not None else None for job in jobs}
    cells: list[str] = []
    for job in jobs:
        cells += _section(job.slug, records.get(job.slug), old, sections[job.slug], recorded, level=3)
    if not cells:
        return []

    def verdict(job: Job) -> Optional[str]:
        section = sections[job.slug]
        return section.verdict if section is not None else None

    table = grid_table(layout(prompt_slug, jobs), records, verdict)
    return [f"## {prompt_slug}", "", *table, "", GRID_COMMENT, "", *cells]


def grid_table(
    grid: Grid, records: dict[str, RenderRecord], verdict: Callable[[Job], Optional[str]]
) -> list[str]:
    """The grid as a Markdown table: a thumbnail (a link to the image), the slug and the verdict per cell."""
    corner = f"{grid.row_axis} ↓ {grid.column_axis} →" if grid.row_axis else grid.column_axis
    head = [_cell_text(corner), *(_cell_text(label) for label in grid.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, jobs in grid.rows:
        cells = [f"**{_cell_text(label)}**"] + [_grid_cell(job, records, verdict) for job in jobs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def refresh_grids(text: str, batch: LoadedBatch, records: dict[str, RenderRecord]) -> str:
    """``text`` with each comparison grid redrawn from the verdicts typed in its cells (the rest as it is)."""
    review = parse(text, "")
    lines = text.split("\n")
    for prompt_slug, jobs in batch.groups():
        if not jobs[0].axes or f"## {prompt_slug}" not in lines:
            continue
        head = lines.index(f"## {prompt_slug}")
        first = next((i for i in range(head + 1, len(lines)) if lines[i].startswith(("|", "#", "<!--"))), None)
        if first is None or not lines[first].startswith("|"):
            continue
        end = first
        while end < len(lines) and lines[end].startswith("|"):
            end += 1

        def verdict(job: Job) -> Optional[str]:
            section = review.section(job.slug)
            return section.verdict if section is not None else None

        lines[first:end] = grid_table(layout(prompt_slug, jobs), records, verdict)
    return "\n".join(lines)


def _grid_cell(job: Optional[Job], records: dict[str, RenderRecord], verdict: Callable[[Job], Optional[str]]) -> str:
    if job is None:
        return " "
    record = records.get(job.slug)
    if record is None:
        picture = "*waiting*"
    elif record.status == "failed":
        picture = "**render failed**"
    else:
        picture = f'<a href="{job.slug}.png"><img src="{job.slug}.png" alt="{job.slug}" width="{THUMB_WIDTH}"></a>'
    said = verdict(job)
    return f"{picture}<br>`{job.slug}`<br>" + (f"verdict: **{said}**" if said else "verdict: *to judge*")


def _cell_text(text: str) -> str:
    return _escape(text) or " "


def _section(
    slug: str, record: Optional[RenderRecord], old: Optional[Review], section: Optional[Section], recorded: Recorded,
    level: int = 2,
) -> list[str]:
    if record is None:  # nothing to show yet; a section typed for a render since deleted is kept
        if old is not None and section is not None and section.typed and not _is_recorded(section, recorded):
            return _trim_blank(old.lines[section.start : section.end]) + [""]
        return []
    generated = generated_lines(slug, record, level)
    if old is None or section is None:
        return generated + VERDICT_TEMPLATE + [""]
    same_image = section.marker is None or section.marker.spec_hash == record.spec_hash
    if same_image:
        mine = old.person_lines(section)
        if section.verdict_line is None:
            mine = VERDICT_TEMPLATE + ([""] if mine else []) + mine
        return generated + mine + [""]
    if not section.typed or _is_recorded(section, recorded):
        notes = old.notes(section)
        return generated + VERDICT_TEMPLATE + ([""] + notes if notes else []) + [""]
    return _stale(slug, old, section)


def _stale(slug: str, old: Review, section: Section) -> list[str]:
    """A verdict typed for an earlier image, not yet recorded: kept as it is, with a notice."""
    lines = _trim_blank(old.lines[section.start : section.end])
    notice = STALE_NOTICE.format(slug=slug)
    if notice not in lines:
        lines = lines[:1] + ["", notice] + lines[1:]
    return lines + [""]


def _is_recorded(section: Section, recorded: Recorded) -> bool:
    if section.marker is None:
        return False
    return recorded(section.slug, section.marker.spec_hash, section.verdict, section.cues)


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _squeeze_blank(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line if line.strip() else "")
    return out
