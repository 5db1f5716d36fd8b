"""``renderloop review [BATCH...] [--html]``: write or update the reviews, by hand or from the hooks.

The hooks and the command share :func:`update_reviews`: it merges the
current render records into ``renders/<batch>/review.md`` without losing
anything typed there, stages the file so ``git commit -am`` picks it up, and
returns one :class:`Outcome` per batch for the summary lines.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mac_side.ledger import Judgments
from mac_side.review import Outline, Review, decode, outline, parse, render, spec_line
from studio import git
from studio.batch import LoadedBatch, load_batch
from studio.config import StudioConfig, load_config
from studio.errors import FatalError, InvalidFile
from studio.fsutil import read_or_none, write_text_atomic
from studio.inventory import records
from studio.layout import REVIEW_NAME, Studio, batch_id_problem, open_studio
from studio.record import BatchErrorRecord, RenderRecord

log = logging.getLogger("renderloop.review")
HTML_NAME = "review.html"


@dataclass
class Outcome:
    """What happened to one batch's review, for a one-line summary."""

    batch: str
    facts: Optional[Outline] = None
    path: Optional[str] = None  # the review, relative to the studio, when written
    changed: bool = False
    problem: Optional[str] = None  # why no review was written
    review: Optional[Review] = None
    records: dict[str, RenderRecord] = field(default_factory=dict)
    loaded: Optional[LoadedBatch] = None
    worker_problem: Optional[str] = None  # the worker could not read the batch file

    def line(self) -> str:
        if self.problem:
            return f"{self.batch}: {self.problem}"
        assert self.facts is not None
        facts = self.facts
        text = f"{self.batch}: {len(facts.rendered)} rendered, {len(facts.failed)} failed"
        if facts.failed:
            text += " (" + "; ".join(f"{slug}: {kind}: {message}" for slug, kind, message in facts.failed) + ")"
        text += f", {len(facts.waiting)} waiting"
        if self.worker_problem:
            text += f", the worker could not read the batch file ({self.worker_problem})"
        if self.path:
            text += f" -> {self.path}" + ("" if self.changed else " (unchanged)")
        return text


def review(repo: Path, batches: list[str], html: bool) -> int:
    studio = open_studio(repo)
    wanted = batches or batches_with_renders(studio)
    if not wanted:
        print("No renders yet: nothing to review.")
        return 0
    for name in wanted:
        problem = batch_id_problem(name)
        if problem:
            raise FatalError(problem)
    outcomes = update_reviews(studio, wanted, stage=git.is_repo(studio.root))
    for outcome in outcomes:
        print(outcome.line())
        if html and outcome.loaded is not None:
            path = write_contact_sheet(studio, outcome)
            print(f"{outcome.batch}: contact sheet -> {studio.rel(path)}")
    return 1 if any(o.problem for o in outcomes if o.batch in batches) else 0


def batches_with_renders(studio: Studio) -> list[str]:
    """Batches that have a render record or a review, sorted."""
    if not studio.renders_dir.is_dir():
        return []
    found = []
    for folder in sorted(studio.renders_dir.iterdir()):
        if not folder.is_dir() or batch_id_problem(folder.name) is not None:
            continue
        if any(folder.glob("*.json")) or (folder / REVIEW_NAME).is_file():
            found.append(folder.name)
    return found


def update_reviews(studio: Studio, batches: list[str], stage: bool) -> list[Outcome]:
    """Write or update the review of each batch; stage the ones written when ``stage``."""
    config = load_config(studio)
    judgments = Judgments.of(read_or_none(studio.ledger_path) or b"")
    outcomes = [update_review(studio, config, batch, judgments) for batch in batches]
    written = [o.path for o in outcomes if o.path]
    if stage and written:
        git.add(studio.root, *written)
    return outcomes


def update_review(studio: Studio, config: StudioConfig, batch: str, judgments: Judgments) -> Outcome:
    outcome = Outcome(batch)
    path = next((p for p in studio.batch_files() if p.stem == batch), None)
    if path is None:
        outcome.problem = f"no batch file batches/{batch}.yaml: no review written"
        return outcome
    try:
        loaded = load_batch(studio, path, config)
    except InvalidFile as exc:
        outcome.problem = f"{exc.problems[0]} ({len(exc.problems)} problem(s) in the batch file): no review written"
        return outcome
    outcome.loaded = loaded
    outcome.worker_problem = batch_error(studio, batch)
    outcome.records = records(studio, batch)
    outcome.facts = outline(loaded, outcome.records)
    review_path = studio.review_path(batch)
    old_text = None
    if review_path.is_file():
        old_text, problems = decode(review_path.read_bytes(), studio.rel(review_path))
        if problems:
            outcome.problem = f"{problems[0]}: the review was left as it is"
            return outcome
        outcome.review = parse(old_text, studio.rel(review_path))
    elif not outcome.records:
        return outcome  # nothing rendered yet: no review to write
    text = render(loaded, outcome.records, outcome.review, judgments.for_batch(batch))
    outcome.path = studio.rel(review_path)
    if text != old_text:
        write_text_atomic(review_path, text)
        outcome.changed = True
        log.info("wrote %s", outcome.path)
    outcome.review = parse(text, outcome.path)
    return outcome


def batch_error(studio: Studio, batch: str) -> Optional[str]:
    """The first problem the worker reported for an unreadable batch file, if any."""
    raw = read_or_none(studio.batch_error_path(batch))
    if raw is None:
        return None
    try:
        record = BatchErrorRecord.model_validate_json(raw)
    except ValueError:
        return None
    first = record.problems[0] if record.problems else None
    return f"{record.path}:{first.line}: {first.message}" if first else f"{record.path}: invalid"



# ---------------------------------------------------------------- contact sheet


def write_contact_sheet(studio: Studio, outcome: Outcome) -> Path:
    """``renders/<batch>/review.html``: a static grid of every image with its spec and verdict."""
    assert outcome.loaded is not None
    path = studio.batch_dir(outcome.batch) / HTML_NAME
    write_text_atomic(path, contact_sheet(outcome))
    return path


def contact_sheet(outcome: Outcome) -> str:
    assert outcome.loaded is not None and outcome.facts is not None
    cards = []
    for job in outcome.loaded.jobs:
        record = outcome.records.get(job.slug)
        section = outcome.review.section(job.slug) if outcome.review is not None else None
        cards.append(_card(job.slug, record, section.verdict if section else None, section.cues if section else []))
    title = html.escape(f"Review: {outcome.batch}")
    return _PAGE.format(title=title, summary=html.escape(outcome.facts.summary()), cards="\n".join(cards))


def _card(slug: str, record: Optional[RenderRecord], verdict: Optional[str], cues: list[str]) -> str:
    esc = html.escape
    if record is None:
        picture = '<div class="missing">waiting for the worker</div>'
        spec = ""
    elif record.status == "failed":
        kind, message = (record.error.kind, record.error.message) if record.error else ("backend-error", "")
        picture = f'<div class="missing failed">render failed<br>{esc(kind)}: {esc(message)}</div>'
        spec = spec_line(record).replace("\\", "")
    else:
        picture = f'<a href="{esc(slug)}.png"><img src="{esc(slug)}.png" alt="{esc(slug)}" loading="lazy"></a>'
        spec = spec_line(record).replace("\\", "")
    badge = f'<span class="verdict {esc(verdict)}">{esc(verdict)}</span>' if verdict else '<span class="verdict none">to judge</span>'
    cue_list = "".join(f"<li>{esc(cue)}</li>" for cue in cues)
    return (
        f'<figure id="{esc(slug)}">{picture}<figcaption><b>{esc(slug)}</b> {badge}'
        f'<div class="spec">{esc(spec)}</div>{f"<ul>{cue_list}</ul>" if cue_list else ""}</figcaption></figure>'
    )


_PAGE = """\
<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; background: #f4f4f2; color: #222; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .2rem; }}
.summary {{ color: #555; margin-bottom: 1rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; overflow: hidden; box-shadow: 0 1px 3px #0002; }}
img {{ width: 100%; display: block; }}
.missing {{ aspect-ratio: 4 / 3; display: grid; place-items: center; text-align: center; padding: 1rem; color: #777; background: #e8e8e4; }}
.failed {{ color: #a00; background: #fbeaea; }}
figcaption {{ padding: .5rem .7rem .7rem; }}
.spec {{ color: #666; font-size: 12px; }}
.verdict {{ float: right; font-size: 12px; padding: 0 .4rem; border-radius: 3px; background: #ddd; }}
.keep {{ background: #cdebd0; }} .reroll {{ background: #fbe7b5; }} .reject {{ background: #f4c7c7; }}
ul {{ margin: .3rem 0 0; padding-left: 1.1rem; }}
</style>
<h1>{title}</h1>
<div class="summary">{summary} · written by <code>renderloop review --html</code>; verdicts are typed in review.md</div>
<div class="grid">
{cards}
</div>
</html>
"""
