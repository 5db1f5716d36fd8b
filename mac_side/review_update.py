"""Write or update the reviews: for ``renderloop review``, the hooks and ``renderloop follow``.

:func:`update_reviews` merges the current render records into
``renders/<batch>/review.md`` without losing anything typed there, stages the
file so ``git commit -am`` picks it up, and returns one :class:`Outcome` per
batch for the summary lines.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Optional

from mac_side.review import RETRY_HINT, Outline, Review, decode, outline, parse, render
from studio import git, thin
from studio.batch import LoadedBatch, load_batch
from studio.config import StudioConfig, load_config
from studio.errors import FatalError, InvalidFile
from studio.fsutil import read_or_none, write_text_atomic
from studio.inventory import PngCheck, png_in, records
from studio.layout import REVIEW_NAME, Studio, batch_id_problem, checked_batch_id
from studio.ledger import Ledger
from studio.limits import MAX_RECORD_BYTES, MAX_REVIEW_BYTES
from studio.record import BatchErrorRecord, RenderRecord

log = logging.getLogger("renderloop.review")


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
    images_elsewhere: bool = False  # a thin clone left this batch's images out

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
        if facts.failed:
            text += f"; {RETRY_HINT}"
        if self.images_elsewhere:
            text += f"; its images are not in this clone: `renderloop open {self.batch}` brings them"
        return text


def review(studio: Studio, batches: list[str]) -> list[Outcome]:
    """Write or update the reviews of ``batches`` (default: every batch with renders), staged in a git checkout."""
    for name in batches:
        checked_batch_id(name)
    wanted = batches or batches_with_renders(studio)
    return update_reviews(studio, wanted, stage=git.is_repo(studio.root)) if wanted else []


def batches_with_renders(studio: Studio) -> list[str]:
    """Batches that have a render record or a review, sorted."""
    if not studio.renders_dir.is_dir():
        return []
    found = []
    for folder in sorted(studio.renders_dir.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or batch_id_problem(folder.name) is not None:
            continue
        if any(folder.glob("*.json")) or (folder / REVIEW_NAME).is_file():
            found.append(folder.name)
    return found


def update_reviews(studio: Studio, batches: list[str], stage: bool) -> list[Outcome]:
    """Write or update the review of each batch; stage the ones written when ``stage``."""
    config = load_config(studio)
    ledger = Ledger.read(studio.ledger_path, quiet=True, batches=set(batches))  # their lines only
    has_png = png_in(studio, batches)  # one look at the checkout for every batch
    outcomes = [update_review(studio, config, batch, ledger, has_png) for batch in batches]
    elsewhere = thin.left_out(studio.root)
    for outcome in outcomes:
        outcome.images_elsewhere = outcome.batch in elsewhere and bool(outcome.records)
    written = [o.path for o in outcomes if o.path]
    if stage and written:
        git.add(studio.root, *written)
    return outcomes


def update_review(
    studio: Studio, config: StudioConfig, batch: str, ledger: Ledger, has_png: Optional[PngCheck] = None
) -> Outcome:
    outcome = Outcome(batch)
    try:
        review_path = studio.review_path(batch)  # renders/<batch> must be a real folder
    except FatalError as exc:
        outcome.problem = f"{exc}: no review written"
        return outcome
    has_png = has_png or png_in(studio)
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
    outcome.facts = outline(loaded, outcome.records, has_png)
    old_text = None
    try:
        raw = read_or_none(review_path, MAX_REVIEW_BYTES, studio.root, studio.rel(review_path))
    except InvalidFile as exc:  # a link, a device, a FIFO, too large
        outcome.problem = f"{exc.problems[0]}: the review was left as it is"
        return outcome
    if raw is not None:
        old_text, problems = decode(raw, studio.rel(review_path))
        if problems:
            outcome.problem = f"{problems[0]}: the review was left as it is"
            return outcome
        outcome.review = parse(old_text, studio.rel(review_path))
    elif not outcome.records:
        return outcome  # nothing rendered yet: no review to write
    text = render(loaded, outcome.records, outcome.review, functools.partial(ledger.holds, batch), has_png)
    outcome.path = studio.rel(review_path)
    if text != old_text:
        write_text_atomic(review_path, text)
        outcome.changed = True
        log.info("wrote %s", outcome.path)
    outcome.review = parse(text, outcome.path)
    return outcome


def batch_error(studio: Studio, batch: str) -> Optional[str]:
    """The first problem the worker reported for an unreadable batch file, if any."""
    try:
        raw = read_or_none(studio.batch_error_path(batch), MAX_RECORD_BYTES, studio.root)
        if raw is None:
            return None
        record = BatchErrorRecord.model_validate_json(raw)
    except (ValueError, FatalError):
        return None
    first = record.problems[0] if record.problems else None
    return f"{record.path}:{first.line}: {first.message}" if first else f"{record.path}: invalid"
