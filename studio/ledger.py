"""``ledger.jsonl``: the append-only verdict ledger, one JSON object per line.

:class:`Ledger` is the one way to read it (strictly, or leniently leaving bad
lines out) and to ask what it says: the verdict in force for a (batch, slug)
is its latest line.  :func:`append` and :func:`guard` are the one way to
write it: lines are only ever added at the end.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Collection, Iterable, Literal, Optional, TypeGuard, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from studio.errors import FatalError, InvalidFile, Problem
from studio.layout import LEDGER_NAME, Slug

log = logging.getLogger("renderloop.ledger")

Verdict = Literal["keep", "reroll", "reject"]
VERDICTS: tuple[str, ...] = ("keep", "reroll", "reject")


def is_verdict(word: Optional[str]) -> TypeGuard[Verdict]:
    """True when ``word`` is one of the :data:`VERDICTS`."""
    return word in VERDICTS


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford characters.

    Sorts by time, and two verdicts written on two machines at the same
    moment still differ, so ``merge=union`` never collapses them into one.
    """
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class LedgerLine(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str = Field(min_length=26, max_length=26, pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")
    at: datetime
    batch: str
    slug: Slug
    verdict: Verdict
    cues: list[str] = Field(default_factory=list)
    model: Optional[str] = None
    seed: Optional[int] = None
    spec_hash: Optional[str] = None
    png_sha256: Optional[str] = None
    archetype: Optional[str] = None
    reviewer: Optional[str] = None
    # A swept image (issue 12): its prompt entry's slug and its axis values, {"model": "flux-schnell", "seed": 2};
    # absent on other lines (and on every line written before sweeps).
    prompt_slug: Optional[Slug] = None
    axes: Optional[dict[str, Union[StrictInt, StrictFloat, str]]] = Field(default=None, max_length=16)

    def to_line(self) -> str:
        """The line as written: compact JSON, schema field order, LF-terminated (no sweep fields on a plain image)."""
        data = self.model_dump(mode="json", exclude={name for name in ("prompt_slug", "axes") if getattr(self, name) is None})
        return json.dumps(data, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def parse(raw: bytes, display: str = LEDGER_NAME) -> list[LedgerLine]:
    """Every line of a ledger, or InvalidFile naming each bad line."""
    return Ledger.parse(raw, display).lines


def _scan(raw: bytes, display: str) -> tuple[list[LedgerLine], list[Problem]]:
    """The lines that parse, and a problem for each line that is not a clean ledger line."""
    lines: list[LedgerLine] = []
    problems: list[Problem] = []
    if raw and not raw.endswith(b"\n"):
        problems.append(Problem(display, raw.count(b"\n") + 1, "last line is not terminated by a newline (truncated?)"))
    terminated = raw.count(b"\n")
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if not chunk.strip():
            if number <= terminated:  # not the empty rest after the final newline
                problems.append(Problem(display, number, "blank line in the ledger"))
            continue
        if chunk.endswith(b"\r"):
            problems.append(Problem(display, number, "CRLF line end: the ledger is LF only"))
        try:
            lines.append(LedgerLine.model_validate_json(chunk))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(Problem(display, number, f"not a valid ledger line: {where} {first['msg']}".replace("  ", " ")))
    return lines, problems


def problems_of(raw: bytes, display: str = LEDGER_NAME) -> list[Problem]:
    """What is wrong with the lines of ``raw`` (nothing when each is a clean ledger line)."""
    return _scan(raw, display)[1]


Image = tuple[str, str, str]  # batch, slug, spec_hash


@dataclass
class Ledger:
    """The verdicts of a ledger in file order (and, read leniently, the problems of the lines left out)."""

    lines: list[LedgerLine] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    _by_image: dict[Image, LedgerLine] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_image = {(line.batch, line.slug, line.spec_hash or ""): line for line in self.lines}

    @classmethod
    def parse(cls, raw: bytes, display: str = LEDGER_NAME) -> "Ledger":
        """Every line, or InvalidFile naming each bad line."""
        lines, problems = _scan(raw, display)
        if problems:
            raise InvalidFile(problems)
        return cls(lines)

    @classmethod
    def lenient(cls, raw: bytes, display: str = LEDGER_NAME) -> "Ledger":
        """The lines that parse: one bad line never hides every verdict (see ``problems``)."""
        return cls(*_scan(raw, display))

    @classmethod
    def read(cls, path: Path, quiet: bool = False, batches: Optional[Collection[str]] = None) -> "Ledger":
        """The verdicts in force in the ledger file at ``path``, read leniently (empty when there is none).

        Its lines are the latest line about each image (batch, slug,
        spec_hash), in ledger order: whatever a reader folds from them (the
        verdict in force, the latest line about an image) is what it would
        fold from every line, and reading costs only the lines appended since
        the last read (:mod:`studio.verdicts`). Lines left out are logged unless ``quiet``.
        ``batches``: only the lines about these batches (what a review of them needs).
        """
        from studio.verdicts import in_force  # it builds on LedgerLine

        found = in_force(path, path.name, batches)
        ledger = cls(found.lines, found.problems)
        if ledger.problems and not quiet:
            more = f" (and {found.left_out - 1} more)" if found.left_out > 1 else ""
            log.warning("%s%s; such lines are left out", ledger.problems[0], more)
        return ledger

    def in_force(self) -> dict[tuple[str, str], LedgerLine]:
        """The verdict in force for each (batch, slug): its latest line; ordered by the position of that line."""
        found: dict[tuple[str, str], LedgerLine] = {}
        for line in self.lines:
            found.pop((line.batch, line.slug), None)
            found[(line.batch, line.slug)] = line
        return found

    def for_image(self, batch: str, slug: str, spec_hash: str) -> Optional[LedgerLine]:
        """The latest line about one image: its (batch, slug) rendered from ``spec_hash``."""
        return self._by_image.get((batch, slug, spec_hash))

    def holds(self, batch: str, slug: str, spec_hash: str, verdict: Optional[str], cues: list[str]) -> bool:
        """True when the ledger already says ``verdict`` with ``cues`` for this image."""
        line = self.for_image(batch, slug, spec_hash)
        return line is not None and line.verdict == verdict and list(line.cues) == list(cues)


def latest_by_slug(lines: Iterable[LedgerLine]) -> dict[str, LedgerLine]:
    """Per slug, the last of ``lines`` (a slug judged in several batches: the latest verdict wins)."""
    found: dict[str, LedgerLine] = {}
    for line in lines:
        found[line.slug] = line
    return found


def guard(old: bytes, new: bytes, display: str = LEDGER_NAME, what: str = "") -> list[Problem]:
    """Why ``new`` is not ``old`` plus valid appended lines (empty when it is)."""
    problems = append_only_problems(old, new, display)
    if problems:
        suffix = f" {what}" if what else ""
        return [Problem(p.path, p.line, p.message + suffix) for p in problems]
    added = new[len(old) :]
    if not added:
        return []
    offset = old.count(b"\n")
    return [Problem(p.path, p.line + offset, p.message) for p in _scan(added, display)[1]]


def append(path: Path, lines: list[LedgerLine]) -> None:
    """Add ``lines`` at the end of the ledger: append mode, the existing bytes are never rewritten."""
    if not lines:
        return
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FatalError(f"{path.name}: not a regular file (a link, a folder or a device): nothing appended to it")
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                raise FatalError(f"{path.name}: the last line has no newline at its end; the ledger looks truncated")
    data = "".join(line.to_line() for line in lines).encode("utf-8")
    with path.open("ab") as f:
        f.write(data)
        f.flush()


def append_only_problems(old: bytes, new: bytes, display: str = LEDGER_NAME) -> list[Problem]:
    """Why ``new`` is not ``old`` with lines added at the end (empty when it is)."""
    if new.startswith(old):
        return []
    old_lines = old.split(b"\n")
    new_lines = new.split(b"\n")
    for number, (before, after) in enumerate(zip(old_lines, new_lines), start=1):
        if before != after:
            if after == b"" and number == len(new_lines):
                return [Problem(display, number, "existing ledger line was removed")]
            if after.startswith(before) or before.startswith(after):
                return [Problem(display, number, "existing ledger line was truncated or extended")]
            return [Problem(display, number, "existing ledger line was changed, removed or reordered")]
    return [Problem(display, len(new_lines), "existing ledger lines were removed from the end")]


def missing_lines(parent: bytes, child: bytes) -> list[int]:
    """Line numbers (in ``parent``) of lines that ``child`` does not keep, in order.

    ``child`` keeps ``parent`` when every parent line appears in it in the
    same order (a union merge interleaves additions from both sides).
    """
    child_lines = child.split(b"\n")
    position = 0
    missing = []
    for number, line in enumerate(parent.split(b"\n"), start=1):
        if not line:
            continue
        try:
            position = child_lines.index(line, position) + 1
        except ValueError:
            missing.append(number)
    return missing
