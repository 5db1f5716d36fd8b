"""Folding review verdicts into ``ledger.jsonl``: build the lines, append them, guard the file.

The ledger is only ever appended to: :func:`append` opens it in append
mode, and :func:`guard` refuses a new version that changes, removes,
reorders or truncates an existing line, or adds a line that is not a valid
ledger line.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from pydantic import ValidationError

from mac_side.review import Marker, Review
from studio.batch import LoadedBatch
from studio.clock import utcnow
from studio.errors import FatalError, InvalidFile, Problem
from studio.ledger import LedgerLine, append_only_problems, is_verdict, new_id
from studio.ledger import parse as parse_ledger
from studio.layout import Studio
from studio.record import RenderRecord

log = logging.getLogger("renderloop.ledger")

Key = tuple[str, str, str]  # batch, slug, spec_hash


@dataclass
class Fold:
    """The outcome of folding one review: new lines, problems that stop the commit, notes."""

    lines: list[LedgerLine] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def valid_lines(raw: bytes) -> list[LedgerLine]:
    """The valid lines of a ledger, skipping bad ones (those are reported elsewhere)."""
    lines = []
    for chunk in raw.split(b"\n"):
        if chunk.strip():
            try:
                lines.append(LedgerLine.model_validate_json(chunk))
            except ValidationError:
                continue
    return lines


def read_ledger(studio: Studio) -> list[LedgerLine]:
    """Every verdict in ``ledger.jsonl``; bad lines are left out, with a warning logged."""
    try:
        raw = studio.ledger_path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return parse_ledger(raw)
    except InvalidFile as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        log.warning("%s%s; such lines are left out", first, more)
        return valid_lines(raw)


class Judgments:
    """The verdict in force for each image (batch, slug, spec_hash) in a ledger."""

    def __init__(self, lines: list[LedgerLine]) -> None:
        self._latest: dict[Key, LedgerLine] = {}
        for line in lines:
            self._latest[(line.batch, line.slug, line.spec_hash or "")] = line

    @classmethod
    def of(cls, raw: bytes) -> "Judgments":
        return cls(valid_lines(raw))

    def holds(self, batch: str, slug: str, spec_hash: str, verdict: Optional[str], cues: list[str]) -> bool:
        """True when the ledger already says ``verdict`` with ``cues`` for this image."""
        line = self._latest.get((batch, slug, spec_hash))
        return line is not None and line.verdict == verdict and list(line.cues) == list(cues)

    def for_batch(self, batch: str) -> Callable[[str, str, Optional[str], list[str]], bool]:
        return lambda slug, spec_hash, verdict, cues: self.holds(batch, slug, spec_hash, verdict, cues)


def fold(
    review: Review,
    batch_id: str,
    batch: Optional[LoadedBatch],
    record_of: Callable[[str], Optional[RenderRecord]],
    judgments: Judgments,
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
        if judgments.holds(batch_id, section.slug, marker.spec_hash, verdict, section.cues):
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
            )
        )
    return result


def _marker_from_record(record: Optional[RenderRecord]) -> Optional[Marker]:
    return Marker.of(record) if record is not None else None


def guard(old: bytes, new: bytes, display: str = "ledger.jsonl", what: str = "") -> list[Problem]:
    """Why ``new`` is not ``old`` plus valid appended lines (empty when it is)."""
    problems = append_only_problems(old, new, display)
    if problems:
        suffix = f" {what}" if what else ""
        return [Problem(p.path, p.line, p.message + suffix) for p in problems]
    added = new[len(old) :]
    if not added:
        return []
    offset = old.count(b"\n")
    try:
        parse_ledger(added, display)
    except InvalidFile as exc:
        return [Problem(p.path, p.line + offset, p.message) for p in exc.problems]
    return []


def append(path: Path, lines: list[LedgerLine]) -> None:
    """Add ``lines`` at the end of the ledger: append mode, the existing bytes are never rewritten."""
    if not lines:
        return
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                raise FatalError(f"{path.name}: the last line has no newline at its end; the ledger looks truncated")
    data = "".join(line.to_line() for line in lines).encode("utf-8")
    with path.open("ab") as f:
        f.write(data)
        f.flush()


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
    except ValueError:
        pass
    return text if len(text) <= limit else text[: limit - 3] + "..."
