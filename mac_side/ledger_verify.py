"""Prove from git history that no ledger line was ever changed or removed (``renderloop ledger verify``).

Every commit reachable from HEAD that touches ``ledger.jsonl`` (merges
included) is compared with each of its parents: every line of the parent's
ledger must appear in the commit's ledger, in the same order (a union merge
interleaves the appends of both sides), and every line the commit adds must
be a valid ledger line. This catches what the pre-commit hook could not:
commits made with ``--no-verify``, from a clone without the hooks, or merges
that dropped one side's lines.

Only what is new: each clone remembers the last commit it verified (and
that commit's ledger) in ``<git-dir>/renderloop/ledger-verified.json``; the
next run checks only the commits since, and ``--full`` checks everything
again. When the remembered commit is no longer in HEAD's history and lines of
its ledger are gone from HEAD's, the history was rewritten (a force-push):
that is reported, naming the last verified commit.

Fast on long histories: one ``git rev-list`` lists the commits with their
(rewritten) parents, one long-lived ``git cat-file`` gives each version's
blob id and size. A version whose bytes are a prefix of the newest ledger is
proven so by hashing that prefix as git hashes a blob and comparing it with
the version's blob id, without reading it; between two such versions "only
appended" is a comparison of sizes, and the added lines are a slice of the
newest ledger. Other versions (side branches, damaged histories) are read,
each once, and compared line by line. The newest ledger is the working
tree's file when its bytes hash to the newest blob id (reading the disk, not
git inflating hundreds of megabytes), and its lines are counted on from the
version verified before.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mac_side import ledger_watch
from mac_side.ledger import short
from mac_side.ledger_acknowledge import acknowledgements
from studio import checkout, git
from studio.errors import FatalError, InvalidFile
from studio.fsutil import read_or_none, write_text_atomic
from studio.layout import LEDGER_NAME
from studio.limits import MAX_LEDGER_BYTES
from studio.ledger import missing_lines
from studio.ledger import parse as parse_ledger

CommitGraph = list[tuple[str, list[str]]]  # commit, parents; parents before children


@dataclass(frozen=True)
class Violation:
    commit: str
    line: int
    message: str


MEMORY_NAME = "ledger-verified.json"


@dataclass(frozen=True)
class Remembered:
    """What this clone has proven: the ledger's history up to ``commit`` (its ledger ``blob`` of ``size`` bytes)."""

    commit: str
    blob: str
    size: int
    lines: int


@dataclass
class Verified:
    """The outcome of :func:`verify`; ``commits`` is None when the repository has no commit yet."""

    commits: Optional[int] = None  # commits checked
    lines: int = 0  # lines in the newest ledger
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # commit -> `abc1234 "subject"`, for each violation
    acknowledged: list[Violation] = field(default_factory=list)  # in commits acknowledged in git (see ledger_acknowledge)
    acknowledged_by: dict[str, str] = field(default_factory=dict)  # acknowledged commit -> the acknowledging one
    since: Optional[str] = None  # only the commits after this one were checked (verified before)
    already: Optional[str] = None  # HEAD, verified before: nothing to check
    rewritten: Optional[str] = None  # why the history verified before is gone (a force-push)


def verify(repo: Path, full: bool = False) -> Verified:
    """Check the ledger's history: only the commits not verified before, unless ``full``.

    A remote branch rewritten with verdicts lost, as the hooks noticed it (or
    this run does, after a plain ``git fetch``), is reported until ``full``
    accepts what is left (:mod:`mac_side.ledger_watch`).
    """
    root = Path(repo)
    if not git.is_repo(root):
        raise FatalError(f"{root}: not a git repository")
    root = git.toplevel(root)
    head = git.head(root)
    if head is None:
        return Verified()
    if not full:
        ledger_watch.notice(root)
    result = _verify(root, head, full)
    if full:
        ledger_watch.accept(root)
    elif result.rewritten is None and ledger_watch.pending(root):
        result.rewritten = "\n".join(ledger_watch.pending(root))
    return result


def _verify(root: Path, head: str, full: bool) -> Verified:
    started = time.monotonic()
    memory = None if full else remembered(root)
    since = None
    if memory is not None:
        if memory.commit == head:
            return Verified(0, memory.lines, already=head)
        if git.is_ancestor(root, memory.commit, head):
            since = memory.commit
        else:
            gone = rewritten(root, memory)
            if gone:
                return Verified(0, rewritten=gone)
    graph = history(root, since)
    with git.ObjectReader(root) as objects:
        violations, lines = check(graph, objects, memory if since else None)
        newest = objects.blob_header(f"{head}:{LEDGER_NAME}")
    known = acknowledgements(root) if violations else {}
    open_ = [v for v in violations if v.commit not in known]
    settled = [v for v in violations if v.commit in known]
    if not open_:  # what is proven (acknowledged violations included) is not checked again
        remember(root, Remembered(head, newest[0] if newest else "", newest[1] if newest else 0, lines))
    names = subjects(root, sorted({v.commit for v in violations})) if violations else {}
    by = {v.commit: known[v.commit].by for v in settled}
    return Verified(len(graph), lines, time.monotonic() - started, open_, names, settled, by, since=since)


def rewritten(root: Path, memory: Remembered) -> Optional[str]:
    """Why the history verified before is not under HEAD any more, when verdicts went with it (else None).

    A rebase of commits that only appended verdicts keeps every line: that is
    no loss. A force-push that dropped or changed lines is, and the message
    names the last verified commit, which is gone from this branch.
    """
    with git.ObjectReader(root) as objects:
        header = objects.blob_header(f"HEAD:{LEDGER_NAME}")
        now = objects.blob(header[0]) if header else b""
        if len(now) >= memory.size and checkout.blob_id(memoryview(now)[: memory.size], len(memory.blob)) == memory.blob:
            return None  # the verified ledger is still the first bytes of HEAD's
        try:
            before = objects.blob(memory.blob) if memory.blob else b""
        except ValueError:
            before = None
    if before is not None:
        dropped = missing_lines(before, now)
        if not dropped:
            return None
        what = f"{len(dropped)} verdict line(s) dropped or changed (the first: line {dropped[0]})"
    else:
        what = "verdicts dropped or changed"
    name = subjects(root, [memory.commit])[memory.commit] if git.ok(root, "cat-file", "-e", memory.commit) else memory.commit[:7]
    return (f"history rewritten: {what} since {name}, the last verified commit, which is no "
            f"longer in this branch's history (a force-push?); `renderloop ledger verify --full` checks what is left")


def remembered(root: Path) -> Optional[Remembered]:
    try:
        data = json.loads((git.state_dir(root) / MEMORY_NAME).read_bytes())
        return Remembered(str(data["commit"]), str(data["blob"]), int(data["size"]), int(data["lines"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(root: Path, verified: Remembered) -> None:
    data = {"commit": verified.commit, "blob": verified.blob, "size": verified.size, "lines": verified.lines}
    write_text_atomic(git.state_dir(root) / MEMORY_NAME, json.dumps(data, indent=2) + "\n")


def history(root: Path, since: Optional[str] = None) -> CommitGraph:
    """Commits touching the ledger (and every merge), parents first, with their rewritten parents.

    ``since``: only the commits that are not in its history.
    """
    text = git.out(
        root, "rev-list", "--full-history", "--parents", "--topo-order", "--reverse", "HEAD",
        *([f"^{since}"] if since else []), "--", LEDGER_NAME,
    )
    return [(shas[0], shas[1:]) for shas in (row.split() for row in text.splitlines()) if shas]


class _Versions:
    """The ledger as of each commit: blob ids and sizes, and the bytes when they must be read."""

    def __init__(self, graph: CommitGraph, objects: git.ObjectReader, counted: Optional[Remembered] = None) -> None:
        self._objects = objects
        self._header: dict[str, Optional[tuple[str, int]]] = {}
        self._uses: Counter[str] = Counter()  # reads still to come, per blob
        self._cache: dict[str, bytes] = {}
        self._prefix: dict[str, bool] = {}
        for commit, parents in graph:
            for sha in (commit, *parents):
                self._uses[self.blob(sha)] += 1
        self.newest_blob = self.blob(graph[-1][0]) if graph else ""
        self.newest = _newest(objects, self.newest_blob, self.size(graph[-1][0])) if self.newest_blob else b""
        self._counted = (0, 0)  # (offset, lines ending before it): counting goes on from the last offset asked
        sized = {self.blob(c): c for c in self._header if self.blob(c)}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # hashlib releases the GIL
            for blob, proven in zip(sized, pool.map(self._hash_matches, sized.values())):
                self._prefix[blob] = proven
        if counted is not None and self._prefix.get(counted.blob) and counted.size <= len(self.newest):
            open_end = counted.size > 0 and self.newest[counted.size - 1 : counted.size] != b"\n"
            self._counted = (counted.size, counted.lines - open_end)  # verified before: its lines ended there

    def blob(self, commit: str) -> str:
        """The ledger's blob id at ``commit`` ("" when it has no ledger)."""
        if commit not in self._header:
            self._header[commit] = self._objects.blob_header(f"{commit}:{LEDGER_NAME}")
        header = self._header[commit]
        return header[0] if header else ""

    def size(self, commit: str) -> int:
        header = self._header.get(commit)
        return header[1] if header else 0

    def is_prefix(self, commit: str) -> bool:
        """True when the ledger at ``commit`` is the first bytes of the newest ledger (hash-checked)."""
        blob = self.blob(commit)
        if blob not in self._prefix:
            self._prefix[blob] = self._hash_matches(commit)
        return self._prefix[blob]

    def _hash_matches(self, commit: str) -> bool:
        """Hash the newest ledger's first bytes as git hashes a blob; compare with ``commit``'s blob id."""
        blob, size = self.blob(commit), self.size(commit)
        if not blob or blob == self.newest_blob:
            return True
        if size > len(self.newest):
            return False
        digest = hashlib.new("sha1" if len(blob) == 40 else "sha256", b"blob %d\0" % size)
        digest.update(memoryview(self.newest)[:size])
        return digest.hexdigest() == blob

    def line_count(self) -> int:
        """Lines in the newest ledger."""
        return self.lines_before(len(self.newest)) + (1 if self.newest and not self.newest.endswith(b"\n") else 0)

    def lines_before(self, offset: int) -> int:
        """Lines of the newest ledger that end before ``offset``."""
        at, lines = self._counted
        if offset < at:
            at, lines = 0, 0
        lines += self.newest.count(b"\n", at, offset)
        self._counted = (offset, lines)
        return lines

    def content(self, commit: str) -> bytes:
        """The ledger's bytes at ``commit``: sliced from the newest one, or read once from git."""
        blob = self.blob(commit)
        if self.is_prefix(commit):
            return self.newest[: self.size(commit)]
        data = self._cache.get(blob)
        if data is None:
            data = self._objects.blob(blob)
        self._uses[blob] -= 1
        if self._uses[blob] > 0:
            self._cache[blob] = data
        else:
            self._cache.pop(blob, None)
        return data


def _newest(objects: git.ObjectReader, blob: str, size: int) -> bytes:
    """The newest ledger's bytes: the working tree's when they hash to its blob id (a read of the disk,
    not git inflating hundreds of megabytes), else git's."""
    try:
        here = read_or_none(objects.repo / LEDGER_NAME, MAX_LEDGER_BYTES, objects.repo, LEDGER_NAME)
    except (OSError, InvalidFile):
        here = None
    if here is not None and len(here) == size and checkout.blob_id(here, len(blob)) == blob:
        return here
    return objects.blob(blob)


def check(graph: CommitGraph, objects: git.ObjectReader, counted: Optional[Remembered] = None) -> tuple[list[Violation], int]:
    """Every violation in ``graph``, and the number of lines in the newest ledger (counted on from
    ``counted``, a version verified before, when it is one of the newest ledger's prefixes)."""
    versions = _Versions(graph, objects, counted)
    violations: list[Violation] = []
    for commit, parents in graph:
        if parents and all(versions.blob(p) == versions.blob(commit) for p in parents):
            continue
        if len(parents) <= 1 and _appended(versions, commit, parents):
            start = versions.size(parents[0]) if parents else 0
            added = versions.newest[start : versions.size(commit)]
            violations += _problems(commit, added, versions.lines_before(start))
            continue
        child = versions.content(commit)
        olds = [versions.content(p) for p in parents]
        for parent, old in zip(parents, olds):
            if versions.blob(parent) != versions.blob(commit) and not child.startswith(old):
                violations += _removed(commit, parent, old, child)
        violations += _invalid_additions(commit, olds, child)
    return violations, versions.line_count()


def _appended(versions: _Versions, commit: str, parents: list[str]) -> bool:
    """True when both versions are prefixes of the newest ledger, the parent's the shorter."""
    if not versions.is_prefix(commit):
        return False
    return not parents or (versions.is_prefix(parents[0]) and versions.size(parents[0]) <= versions.size(commit))


def _removed(commit: str, parent: str, old: bytes, child: bytes) -> list[Violation]:
    rows = old.split(b"\n")
    return [
        Violation(commit, n, f"line {n} of the ledger in {parent[:7]} was changed or removed: {short(rows[n - 1])}")
        for n in missing_lines(old, child)
    ]


def _invalid_additions(commit: str, olds: list[bytes], child: bytes) -> list[Violation]:
    """Lines ``commit`` added that are in no parent's ledger and are not valid ledger lines."""
    if len(olds) == 1 and child.startswith(olds[0]):
        return _problems(commit, child[len(olds[0]) :], olds[0].count(b"\n"))
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
