"""``renderloop ledger verify``: prove from git history that no ledger line was ever changed or removed.

Every commit reachable from HEAD that touches ``ledger.jsonl`` (merges
included) is compared with each of its parents: every line of the parent's
ledger must appear in the commit's ledger, in the same order (a union merge
interleaves the appends of both sides), and every line the commit adds must
be a valid ledger line. This catches what the pre-commit hook could not:
commits made with ``--no-verify``, on a clone without the hooks, or merges
that dropped one side's lines.

Fast on long histories: one ``git rev-list`` lists the commits with their
(rewritten) parents, one long-lived ``git cat-file --batch`` reads the
ledger versions, and each distinct version is read once.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mac_side.ledger import short
from studio import git
from studio.errors import FatalError, InvalidFile
from studio.layout import LEDGER_NAME
from studio.ledger import missing_lines
from studio.ledger import parse as parse_ledger


@dataclass(frozen=True)
class Violation:
    commit: str
    line: int
    message: str


def verify(repo: Path) -> int:
    root = Path(repo)
    if not git.is_repo(root):
        raise FatalError(f"{root}: not a git repository")
    root = git.toplevel(root)
    if git.head(root) is None:
        print(f"{LEDGER_NAME}: no commits yet, nothing to verify")
        return 0
    started = time.monotonic()
    graph = history(root)
    with git.ObjectReader(root) as objects:
        violations, lines = check(graph, objects)
    seconds = time.monotonic() - started
    if not violations:
        print(f"{LEDGER_NAME}: {len(graph)} commits, {lines} lines, no line ever changed or removed ({seconds:.2f} s)")
        return 0
    names = subjects(root, sorted({v.commit for v in violations}))
    for violation in violations:
        print(f'{names[violation.commit]}: {LEDGER_NAME}:{violation.line}: {violation.message}')
    commits = len({v.commit for v in violations})
    print(f"{LEDGER_NAME}: {len(violations)} problem(s) in {commits} of {len(graph)} commits")
    return 1


def history(root: Path) -> list[tuple[str, list[str]]]:
    """Commits touching the ledger (and every merge), parents first, with their rewritten parents."""
    text = git.out(
        root, "rev-list", "--full-history", "--parents", "--topo-order", "--reverse", "HEAD", "--", LEDGER_NAME
    )
    graph = []
    for row in text.splitlines():
        shas = row.split()
        if shas:
            graph.append((shas[0], shas[1:]))
    return graph


class _Versions:
    """Ledger versions by commit, each distinct blob read once and dropped after its last use."""

    def __init__(self, graph: list[tuple[str, list[str]]], objects: git.ObjectReader) -> None:
        self._objects = objects
        self._blob: dict[str, Optional[str]] = {}
        self._uses: Counter[Optional[str]] = Counter()
        self._cache: dict[str, bytes] = {}
        for commit, parents in graph:
            for sha in (commit, *parents):
                self._uses[self.blob_id(sha)] += 1

    def blob_id(self, commit: str) -> Optional[str]:
        if commit not in self._blob:
            self._blob[commit] = self._objects.blob_id(f"{commit}:{LEDGER_NAME}")
        return self._blob[commit]

    def content(self, commit: str) -> bytes:
        blob = self.blob_id(commit)
        if blob is None:
            return b""
        data = self._cache.get(blob)
        if data is None:
            data = self._objects.blob(blob)
        self._uses[blob] -= 1
        if self._uses[blob] > 0:
            self._cache[blob] = data
        else:
            self._cache.pop(blob, None)
        return data


def check(graph: list[tuple[str, list[str]]], objects: git.ObjectReader) -> tuple[list[Violation], int]:
    """Every violation in ``graph``, and the number of lines in the newest ledger."""
    versions = _Versions(graph, objects)
    violations: list[Violation] = []
    child = b""
    for commit, parents in graph:
        child = versions.content(commit)
        olds = [versions.content(p) for p in parents]
        if parents and all(versions.blob_id(p) == versions.blob_id(commit) for p in parents):
            continue
        for parent, old in zip(parents, olds):
            if versions.blob_id(parent) == versions.blob_id(commit) or child.startswith(old):
                continue
            for number in missing_lines(old, child):
                line = old.split(b"\n")[number - 1]
                violations.append(
                    Violation(commit, number, f"line {number} of the ledger in {parent[:7]} was changed or removed: {short(line)}")
                )
        violations += _invalid_additions(commit, olds, child)
    return violations, sum(1 for line in child.split(b"\n") if line.strip())


def _invalid_additions(commit: str, olds: list[bytes], child: bytes) -> list[Violation]:
    """Lines ``commit`` added that are not valid ledger lines."""
    if len(olds) == 1 and child.startswith(olds[0]):
        offset = olds[0].count(b"\n")
        added = child[len(olds[0]) :]
        return _problems(commit, added, offset)
    known = set()
    for old in olds:
        known.update(old.split(b"\n"))
    found = []
    rows = child.split(b"\n")
    for number, row in enumerate(rows, start=1):
        if row in known or (not row and number == len(rows)):
            continue
        terminated = number < len(rows)
        found += _problems(commit, row + (b"\n" if terminated else b""), number - 1)
    return found


def _problems(commit: str, added: bytes, offset: int) -> list[Violation]:
    if not added:
        return []
    try:
        parse_ledger(added, LEDGER_NAME)
    except InvalidFile as exc:
        return [Violation(commit, p.line + offset, p.message) for p in exc.problems]
    return []


def subjects(root: Path, commits: list[str]) -> dict[str, str]:
    """``abc1234 "subject"`` for each commit, from one git call."""
    text = git.out(root, "log", "--no-walk=unsorted", "--format=%H%x09%h%x09%s", *commits)
    names = {}
    for row in text.splitlines():
        sha, abbrev, subject = (row.split("\t", 2) + ["", ""])[:3]
        names[sha] = f'{abbrev} "{subject}"'
    return {c: names.get(c, c[:7]) for c in commits}
