"""Folding review verdicts into ``ledger.jsonl``: the ledger lines a committed review adds.

Reading, appending and guarding the ledger itself is ``studio.ledger``'s.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

from mac_side.review import Marker, Review
from studio.batch import LoadedBatch
from studio.clock import utcnow
from studio.errors import Problem
from studio.ledger import Ledger, LedgerLine, is_verdict, new_id
from studio.record import RenderRecord


@dataclass
class Fold:
    """The outcome of folding one review: new lines, problems that stop the commit, notes."""

    lines: list[LedgerLine] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refreshed: dict[str, str] = field(default_factory=dict)  # review path -> its text with its grids redrawn


def fold(
    review: Review,
    batch_id: str,
    batch: Optional[LoadedBatch],
    record_of: Callable[[str], Optional[RenderRecord]],
    ledger: Ledger,
    reviewer: Optional[str],
) -> Fold:
    """Ledger lines for every verdict in ``review`` that the ledger does not hold yet."""
    result = Fold(problems=review.all_problems())
    bad_headings = {p.line for p in review.problems}
    for section in review.sections:
        if section.problems or section.line in bad_headings:
            continue
        job = batch.job(section.slug) if batch is not None else None
        if job is None:
            where = f"batch {batch_id!r}" if batch is not None else f"batch {batch_id!r} (it has no batch file)"
            result.problems.append(Problem(review.path, section.line, f"{section.slug!r} is not a slug in {where}"))
            continue
        verdict, verdict_line = section.verdict, section.verdict_line
        if verdict is None:
            if section.cues:
                result.notes.append(f"{review.path}:{section.line}: {section.slug}: cues but no verdict, nothing recorded")
            continue
        # An unknown verdict is a problem of its section, skipped above; a verdict has its line.
        assert is_verdict(verdict) and verdict_line is not None
        marker = section.marker or _marker_from_record(record_of(section.slug))
        if marker is None:
            result.problems.append(
                Problem(review.path, section.line, f"{section.slug!r} has no render yet: there is nothing to judge")
            )
            continue
        if marker.status == "failed" and verdict == "keep":
            result.problems.append(
                Problem(review.path, verdict_line + 1, f"{section.slug!r} failed to render: it cannot be kept (reroll or reject)")
            )
            continue
        if ledger.holds(batch_id, section.slug, marker.spec_hash, verdict, section.cues):
            continue
        current = record_of(section.slug)
        if current is not None and current.spec_hash != marker.spec_hash:
            result.notes.append(
                f"{section.slug}: verdict recorded for the earlier render; run `renderloop review` to see the new one"
            )
        result.lines.append(
            LedgerLine(
                id=new_id(),
                at=utcnow(),
                batch=batch_id,
                slug=section.slug,
                verdict=verdict,
                cues=list(section.cues),
                model=marker.model,
                seed=marker.seed,
                spec_hash=marker.spec_hash,
                png_sha256=marker.png_sha256,
                archetype=job.archetype,
                reviewer=reviewer,
                prompt_slug=job.prompt_slug if job.axes else None,
                axes=job.axis_values() or None,
            )
        )
    return result


def _marker_from_record(record: Optional[RenderRecord]) -> Optional[Marker]:
    return Marker.of(record) if record is not None else None


def describe(lines: list[LedgerLine]) -> str:
    """``hero-q4: 2 keep, 1 reroll`` for a summary line."""
    counts: dict[str, dict[str, int]] = {}
    for line in lines:
        per = counts.setdefault(line.batch, {})
        per[line.verdict] = per.get(line.verdict, 0) + 1
    return "; ".join(
        f"{batch}: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(per.items())) for batch, per in counts.items()
    )


def short(raw: bytes, limit: int = 90) -> str:
    """A ledger line shortened for a message."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "slug" in data:
            text = f"{data.get('id', '?')} {data.get('batch', '?')}/{data['slug']} {data.get('verdict', '?')}"
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python reads
        pass
    return text if len(text) <= limit else text[: limit - 3] + "..."
