"""``ledger.jsonl``: the append-only verdict ledger, one JSON object per line."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Literal, Optional, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.errors import InvalidFile, Problem
from studio.layout import Slug

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
    model_config = ConfigDict(extra="forbid")

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

    def to_line(self) -> str:
        """The line as written: compact JSON, schema field order, LF-terminated."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(", ", ": ")) + "\n"


def parse(raw: bytes, display: str = "ledger.jsonl") -> list[LedgerLine]:
    """Every line of a ledger, or InvalidFile naming each bad line."""
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
            continue
        try:
            lines.append(LedgerLine.model_validate_json(chunk))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(Problem(display, number, f"not a valid ledger line: {where} {first['msg']}".replace("  ", " ")))
    if problems:
        raise InvalidFile(problems)
    return lines


def latest(lines: list[LedgerLine]) -> dict[tuple[str, str], LedgerLine]:
    """The verdict in force for each (batch, slug): a later line supersedes an earlier one."""
    result: dict[tuple[str, str], LedgerLine] = {}
    for line in lines:
        result[(line.batch, line.slug)] = line
    return result


def append_only_problems(old: bytes, new: bytes, display: str = "ledger.jsonl") -> list[Problem]:
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
