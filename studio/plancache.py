"""``<git-dir>/renderloop/plan-cache.json``: what planning learned about each batch file and record.

Keyed by git blob id, so an unchanged file is never parsed again, in this
process or the next: a batch file's slugs and spec hashes (or its problems)
under the settings they were resolved with, a record's batch, slug, status
and spec hash. Versioned, written atomically, bounded to the entries the
last pass used (plus new ones), and safe to delete at any time: a missing,
damaged or older file is an empty cache.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from studio.fsutil import write_atomic

log = logging.getLogger("renderloop.plancache")

NAME = "plan-cache.json"
VERSION = 1
MAX_ENTRIES = 100_000

BatchFacts = dict[str, Any]  # {"jobs": [[slug, spec_hash], ...]} or {"problems": [[path, line, message], ...]}
RecordFacts = Optional[list[str]]  # [batch, slug, status, spec_hash], None for an unreadable record


class PlanCache:
    def __init__(self, path: Optional[Path], settings: str) -> None:
        self.path = path
        self.settings = settings
        self._batches: dict[str, BatchFacts] = {}
        self._records: dict[str, RecordFacts] = {}
        self._used: set[str] = set()
        self._dirty = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return
        records = data.get("records")
        if isinstance(records, dict):
            self._records = records
        batches = data.get("batches")
        if data.get("settings") == self.settings and isinstance(batches, dict):
            self._batches = batches
        else:
            self._dirty = bool(batches)

    def batch(self, key: str) -> Optional[BatchFacts]:
        found = self._batches.get(key)
        if found is not None:
            self._used.add(key)
        return found

    def put_batch(self, key: str, facts: BatchFacts) -> None:
        self._batches[key] = facts
        self._used.add(key)
        self._dirty = True

    def record(self, blob: str) -> tuple[bool, RecordFacts]:
        """(known, facts)."""
        if blob in self._records:
            self._used.add(blob)
            return True, self._records[blob]
        return False, None

    def put_record(self, blob: str, facts: RecordFacts) -> None:
        self._records[blob] = facts
        self._used.add(blob)
        self._dirty = True

    def save(self) -> None:
        """Write what this pass used (entries no file has any more are dropped), if anything changed."""
        unused = (len(self._batches) + len(self._records)) - len(self._used)
        if self.path is None or not (self._dirty or unused > len(self._used) // 4 + 16):
            return
        batches = {k: v for k, v in self._batches.items() if k in self._used}
        records = {k: v for k, v in self._records.items() if k in self._used}
        if len(batches) + len(records) > MAX_ENTRIES:
            return  # a studio this large plans without a cache rather than write a huge file every pass
        data = {"version": VERSION, "settings": self.settings, "batches": batches, "records": records}
        try:
            write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode(), durable=False)
        except OSError as exc:  # a read-only clone: plan without remembering
            log.debug("cannot write %s: %s", self.path, exc)
        self._dirty = False
