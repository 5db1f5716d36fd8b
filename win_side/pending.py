"""Finished renders that could not be written into the studio or committed yet.

A render is never thrown away because writing it failed (a path too long
for Windows, a file held open past the retries, a full disk, a git error):
its image and record are kept here, in ``<git-dir>/renderloop/pending``
under short names, and committed on a later pass. If even that write fails
they are kept in memory for the rest of the run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from studio.fsutil import write_atomic, write_text_atomic
from studio.record import RenderRecord, sha256_hex

FOLDER = "pending"

Key = tuple[str, str]
Entry = tuple[RenderRecord, Optional[bytes]]


class PendingRenders:
    """Renders waiting to be written into the tree, by (batch, slug): one per image, the latest."""

    def __init__(self, state: Path) -> None:
        self.folder = state / FOLDER
        self._memory: dict[Key, Entry] = {}

    def keep(self, record: RenderRecord, png: Optional[bytes]) -> str:
        """Keep a finished render; returns where (for the log)."""
        key = (record.batch, record.slug)
        stem = self.folder / _name(key)
        try:
            self._remove_files(key)
            if png is not None:
                write_atomic(stem.with_suffix(".png"), png)
            write_text_atomic(stem.with_suffix(".json"), record.to_json())  # the record last: it names a whole pair
        except OSError as exc:
            self._memory[key] = (record, png)
            return f"memory (cannot write {self.folder} either: {exc})"
        self._memory.pop(key, None)
        return str(self.folder)

    def entries(self) -> list[Entry]:
        """Every kept render, oldest first; a pair whose image does not match its record is dropped."""
        found: dict[Key, Entry] = {}
        files = sorted(self.folder.glob("*.json"), key=_mtime) if self.folder.is_dir() else []
        for path in files:
            entry = self._read(path)
            if entry is None:
                path.unlink(missing_ok=True)
                path.with_suffix(".png").unlink(missing_ok=True)
                continue
            found[(entry[0].batch, entry[0].slug)] = entry
        found.update(self._memory)
        return list(found.values())

    def holds(self, key: Key, spec_hash: str) -> bool:
        """True when a render of this spec waits here (it must not be rendered again)."""
        if key in self._memory:
            return self._memory[key][0].spec_hash == spec_hash
        path = (self.folder / _name(key)).with_suffix(".json")
        entry = self._read(path) if path.is_file() else None
        return entry is not None and entry[0].spec_hash == spec_hash

    def drop(self, key: Key) -> None:
        """The render was committed (or replaced): forget it."""
        self._memory.pop(key, None)
        self._remove_files(key)

    def __len__(self) -> int:
        return len(self.entries())

    def waiting(self) -> bool:
        """Cheap: is anything kept (without reading it)?"""
        return bool(self._memory) or (self.folder.is_dir() and any(self.folder.glob("*.json")))

    def _remove_files(self, key: Key) -> None:
        stem = self.folder / _name(key)
        stem.with_suffix(".json").unlink(missing_ok=True)  # the record first: a lone image is ignored
        stem.with_suffix(".png").unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> Optional[Entry]:
        try:
            record = RenderRecord.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None
        if record.status != "done":
            return record, None
        try:
            png = path.with_suffix(".png").read_bytes()
        except OSError:
            return None
        if sha256_hex(png) != record.png_sha256:
            return None
        return record, png


def _name(key: Key) -> str:
    """A short file name for (batch, slug): 16 hex characters, whatever their length."""
    return hashlib.sha256(f"{key[0]}/{key[1]}".encode("utf-8")).hexdigest()[:16]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
