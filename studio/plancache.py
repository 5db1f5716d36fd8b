"""``<git-dir>/renderloop/plan-cache.jsonl``: what planning learned about each batch file and record.

Keyed by git blob id, so an unchanged file is never parsed again, in this
process or the next: a batch file's slugs and spec hashes (or its problems)
under the settings they were resolved with, a record's batch, slug, status
and spec hash.

One JSON object a line: a header (version and settings), then one line per
entry, ``{"b": key, "f": facts}`` for a batch file, ``{"r": blob, "f": facts}``
for a record; a later line about the same key wins. A pass appends only
what it learned, so the cost of remembering follows what changed, and a
long-running worker keeps what it read or wrote in memory while the file
stays as it left it (same inode, size and time): a pass reads nothing.
The file is rewritten, atomically, with only the entries the last pass used
when the settings changed or too many entries went unused. Safe to delete
at any time: a missing, damaged or older file is an empty cache, a damaged
line a missing entry.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.fsutil import write_atomic

log = logging.getLogger("renderloop.plancache")

NAME = "plan-cache.jsonl"
VERSION = 2
MAX_ENTRIES = 100_000

BatchFacts = dict[str, Any]  # {"jobs": [[slug, spec_hash], ...]} or {"problems": [[path, line, message], ...]}
RecordFacts = Optional[list[str]]  # [batch, slug, status, spec_hash], None for an unreadable record


@dataclass
class _Known:
    """What this process last read from or wrote to a cache file, and that file's stamp then."""

    stamp: tuple[int, int, int]
    settings: str
    batches: dict[str, BatchFacts]
    records: dict[str, RecordFacts]


_memory: dict[Path, _Known] = {}


def _stamp(path: Path) -> Optional[tuple[int, int, int]]:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class PlanCache:
    def __init__(self, path: Optional[Path], settings: str) -> None:
        self.path = path
        self.settings = settings
        self._batches: dict[str, BatchFacts] = {}
        self._records: dict[str, RecordFacts] = {}
        self._used: set[str] = set()
        self._new: list[bytes] = []  # lines to append
        self._rewrite = True  # the file is missing, damaged, older or under other settings
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        stamp = _stamp(path)
        known = _memory.get(path)
        if stamp is None:
            return
        if known is None or known.stamp != stamp:
            known = _read(path)
            if known is None:
                return
            _memory[path] = known
        self._records = dict(known.records)
        if known.settings == self.settings:
            self._batches = dict(known.batches)
            self._rewrite = False

    def batch(self, key: str) -> Optional[BatchFacts]:
        found = self._batches.get(key)
        if found is not None:
            self._used.add(key)
        return found

    def put_batch(self, key: str, facts: BatchFacts) -> None:
        self._batches[key] = facts
        self._used.add(key)
        self._new.append(_line({"b": key, "f": facts}))

    def record(self, blob: str) -> tuple[bool, RecordFacts]:
        """(known, facts)."""
        if blob in self._records:
            self._used.add(blob)
            return True, self._records[blob]
        return False, None

    def put_record(self, blob: str, facts: RecordFacts) -> None:
        self._records[blob] = facts
        self._used.add(blob)
        self._new.append(_line({"r": blob, "f": facts}))

    def save(self) -> None:
        """Append what this pass learned; rewrite the file with what it used when too much went unused."""
        unused = (len(self._batches) + len(self._records)) - len(self._used)
        if self.path is None or not (self._new or self._rewrite or unused > len(self._used) // 4 + 16):
            return
        try:
            if self._rewrite or unused > len(self._used) // 4 + 16:
                self._batches = {k: v for k, v in self._batches.items() if k in self._used}
                self._records = {k: v for k, v in self._records.items() if k in self._used}
                if len(self._batches) + len(self._records) > MAX_ENTRIES:
                    return  # a studio this large plans without a cache rather than write a huge file every pass
                lines = [_line({"version": VERSION, "settings": self.settings})]
                lines += [_line({"b": k, "f": v}) for k, v in self._batches.items()]
                lines += [_line({"r": k, "f": v}) for k, v in self._records.items()]
                write_atomic(self.path, b"".join(lines), durable=False)
                (self.path.parent / "plan-cache.json").unlink(missing_ok=True)  # version 1's file
            else:
                with self.path.open("ab") as f:  # one write: lines whole, even with two writers
                    f.write(b"".join(self._new))
        except OSError as exc:  # a read-only clone: plan without remembering
            log.debug("cannot write %s: %s", self.path, exc)
            return
        self._new.clear()
        self._rewrite = False
        stamp = _stamp(self.path)
        if stamp is not None:
            _memory[self.path] = _Known(stamp, self.settings, dict(self._batches), dict(self._records))


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def _read(path: Path) -> Optional[_Known]:
    """The cache file's entries (None when it is missing, damaged at its header, or of another version)."""
    try:
        with path.open("rb") as f:
            raw = f.read()
            info = os.fstat(f.fileno())
    except OSError:
        return None
    lines = raw.split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != VERSION or not isinstance(header.get("settings"), str):
        return None
    known = _Known((info.st_ino, info.st_size, info.st_mtime_ns), header["settings"], {}, {})
    body = [line for line in lines[1:] if line.strip()]
    try:  # one parse for them all (several times faster than one a line)
        entries = json.loads(b"[" + b",".join(body) + b"]")
    except ValueError:  # a line cut short (a crash mid-write): the others, one by one
        entries = []
        for line in body:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("b"), str) and isinstance(entry.get("f"), dict):
            known.batches[entry["b"]] = entry["f"]
        elif isinstance(entry.get("r"), str) and (entry.get("f") is None or isinstance(entry.get("f"), list)):
            known.records[entry["r"]] = entry["f"]
    return known
