"""What a rewritten history (a force-push) took from the ledger: shared by the hooks, ``ledger verify`` and the worker.

An append-only ledger keeps every line of an older version, in order, in
each newer one. When a branch is rewritten, the ledger of the commit that is
gone is compared with the new one by ``git diff -U0`` (git's C diff: its
cost follows what changed, not the ledger's length): the lines it removes
are the verdicts dropped or changed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from studio import git
from studio.layout import LEDGER_NAME

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+", re.MULTILINE)


@dataclass(frozen=True)
class Lost:
    """Ledger lines of the old history the new one does not keep (``lines`` None: the old commit is not here)."""

    lines: Optional[int]
    first: Optional[int] = None  # the first such line, numbered in the old ledger

    def describe(self) -> str:
        if self.lines is None:
            return "verdicts may have been dropped or changed (the old commit is no longer in this clone)"
        where = f" (the first: {LEDGER_NAME} line {self.first})" if self.first else ""
        return f"{self.lines} verdict line(s) dropped or changed{where}"


def ledger_lost(root: Path, old: str, new: str) -> Optional[Lost]:
    """What ``new``'s ledger no longer holds of ``old``'s; None when it keeps every line (or neither has one)."""
    if not git.ok(root, "cat-file", "-e", f"{old}^{{commit}}"):
        return Lost(None)
    code, out, _ = git.run_bytes(
        root, "diff", "-U0", "--no-color", "--no-ext-diff", "--no-textconv", "--text",
        "--no-renames", old, new, "--", LEDGER_NAME, check=False,
    )
    if code != 0:
        return Lost(None)
    removed, first = 0, None
    for match in _HUNK.finditer(out):
        count = int(match.group(2)) if match.group(2) is not None else 1
        if count:
            removed += count
            first = first or int(match.group(1))
    return Lost(removed, first) if removed else None


def is_rewrite(root: Path, old: str, new: str) -> bool:
    """True when ``new`` does not contain ``old``: the branch was rewritten, not moved on."""
    return old != new and not git.is_ancestor(root, old, new)
