"""The verdicts in force, read at the cost of what was appended since the last read.

Every reader of ``ledger.jsonl`` (status, stats, review, export, new
--rerolls, the hooks) needs only the latest line about each image (batch,
slug, spec_hash): :func:`in_force` returns those lines, in ledger order,
and a reader that folds "a later line supersedes an earlier one" over them
gets what it would over every line.

The index lives in ``<git-dir>/renderloop/ledger-index.json``: for each
image its latest line (the text itself) and that line's position, and the
byte length and last bytes of the ledger it was built from. The ledger is
only ever appended to (the pre-commit hook refuses anything else, and
``ledger verify`` proves it), so a ledger that is longer and ends the
indexed part with the same bytes is read from that point on, with
``json.loads`` (pydantic validates only the lines it returns); anything
else is read again from the start. Safe to delete at any time.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Collection, Optional

from pydantic import ValidationError

from studio import git
from studio.errors import Problem
from studio.fsutil import RefusedFile, link_problem, size_problem, write_atomic
from studio.ledger import LedgerLine, problems_of
from studio.limits import MAX_LEDGER_BYTES

log = logging.getLogger("renderloop.ledger")

NAME = "ledger-index.json"
VERSION = 1
TAIL = 256  # bytes compared to tell an appended ledger from a replaced one


@dataclass
class Index:
    size: int = 0  # bytes of the ledger indexed
    tail: str = ""  # hex of its last TAIL bytes
    lines: int = 0  # lines indexed
    latest: dict[str, tuple[int, str]] = field(default_factory=dict)  # "batch\0slug\0spec_hash" -> (line number, text)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, message) of lines left out, the first few
    bad: int = 0  # lines left out

    def to_json(self) -> str:
        return json.dumps({
            "version": VERSION, "size": self.size, "tail": self.tail, "lines": self.lines, "bad": self.bad,
            "problems": self.problems, "latest": self.latest,
        }, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes) -> Optional["Index"]:
        try:
            data = json.loads(raw)
            if data.get("version") != VERSION:
                return None
            latest = {str(k): (int(v[0]), str(v[1])) for k, v in data["latest"].items()}
            problems = [(int(n), str(m)) for n, m in data["problems"]]
            return cls(int(data["size"]), str(data["tail"]), int(data["lines"]), latest, problems, int(data["bad"]))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return None

    def add(self, chunk: bytes, display: str) -> None:
        """Index the complete lines of ``chunk``, the ledger's bytes from ``self.size`` on."""
        end = chunk.rfind(b"\n") + 1  # a last line without its newline waits until it has one
        for raw in chunk[:end].split(b"\n")[:-1]:
            self.lines += 1
            key = _key(raw)
            if key is None:
                self.bad += 1
                if len(self.problems) < 5:  # said as a strict read says it
                    said = problems_of(raw + b"\n", display)
                    self.problems.append((self.lines, said[0].message if said else "not a valid ledger line"))
                continue
            self.latest[key] = (self.lines, raw.decode("utf-8"))
        self.size += end


def _key(raw: bytes) -> Optional[str]:
    """``batch\\0slug\\0spec_hash`` of a ledger line, None when it is not one (or has CR, or is blank)."""
    if not raw.strip() or raw.endswith(b"\r"):
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python reads
        return None
    if not isinstance(data, dict):
        return None
    batch, slug, spec_hash = data.get("batch"), data.get("slug"), data.get("spec_hash") or ""
    if not isinstance(batch, str) or not isinstance(slug, str) or not isinstance(spec_hash, str):
        return None
    return f"{batch}\0{slug}\0{spec_hash}"


@dataclass
class InForce:
    """The latest line about each image, in ledger order, and the lines a lenient read left out."""

    lines: list[LedgerLine]
    problems: list[Problem]
    left_out: int = 0


def in_force(path: Path, display: str = "ledger.jsonl", batches: Optional[Collection[str]] = None) -> InForce:
    """The verdicts in force in the ledger file at ``path`` (none when there is no file).

    ``batches``: only the lines about these batches are validated and returned (a review of one batch
    validates its own lines, not one line for every image of the studio).
    """
    opened = _open_regular(path, display)
    if opened is None:
        return InForce([], [])
    store = _store(path)
    index = _load(store) if store else None
    with opened as f:
        size = os.fstat(f.fileno()).st_size
        if index is None or index.size > size or not _same_tail(f, index):
            index = Index()
        f.seek(index.size)
        changed = bool(index.size < size)
        index.add(f.read(), display)
        f.seek(max(0, index.size - TAIL))
        index.tail = f.read(index.size - max(0, index.size - TAIL)).hex()
    if store and changed:
        try:
            write_atomic(store, index.to_json().encode("utf-8"), durable=False)
        except OSError as exc:  # a read-only clone: read the whole ledger next time
            log.debug("cannot write %s: %s", store, exc)
    return _lines(index, display, batches)


def _lines(index: Index, display: str, batches: Optional[Collection[str]] = None) -> InForce:
    problems = [Problem(display, n, m) for n, m in index.problems]
    lines = []
    latest = index.latest if batches is None else {
        key: value for key, value in index.latest.items() if key.split("\0", 1)[0] in batches}
    for number, text in sorted(latest.values()):
        try:
            lines.append(LedgerLine.model_validate_json(text))
        except ValidationError:  # said as a strict read says it
            problems += [Problem(display, number, p.message) for p in problems_of(text.encode("utf-8") + b"\n")[:1]]
    return InForce(lines, sorted(problems, key=lambda p: p.line), index.bad + len(problems) - len(index.problems))


def _open_regular(path: Path, display: str) -> Optional[IO[bytes]]:
    """The ledger opened for reading (None when there is none); a link, a device or a file over
    MAX_LEDGER_BYTES is refused as :func:`studio.fsutil.read_bounded` refuses it, without reading it all."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(info.st_mode):
        try:
            target = f"to {os.readlink(path)[:80]!r}"
        except OSError:
            target = "its target is unreadable"
        raise RefusedFile(display, link_problem(target))
    if not stat.S_ISREG(info.st_mode):
        raise RefusedFile(display, "not a regular file; renderloop reads only regular files")
    too_large = size_problem(info.st_size, MAX_LEDGER_BYTES)
    if too_large:
        raise RefusedFile(display, too_large)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags), "rb")


def _same_tail(f, index: Index) -> bool:  # type: ignore[no-untyped-def]
    start = max(0, index.size - TAIL)
    f.seek(start)
    return f.read(index.size - start).hex() == index.tail


def _store(path: Path) -> Optional[Path]:
    root = path.parent
    if not (root / ".git").exists():
        return None
    try:
        return git.state_dir(root) / NAME
    except Exception:  # noqa: BLE001 - no git here: no memory, a full read each time
        return None


def _load(store: Path) -> Optional[Index]:
    try:
        return Index.from_json(store.read_bytes())
    except OSError:
        return None
