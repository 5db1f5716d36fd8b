"""Desired and actual state of a studio: batch files against render records."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Union

from studio.batch import Job, LoadedBatch, batch_id_of, load_batch, load_batch_bytes
from studio.config import StudioConfig
from studio.errors import InvalidFile, Problem
from studio.layout import BATCH_ERROR_NAME, Studio
from studio.record import RenderRecord, try_read_record
from studio.fsutil import RefusedFile, path_problem, read_bounded


@dataclass
class Inventory:
    batches: dict[str, LoadedBatch] = field(default_factory=dict)
    invalid: dict[str, InvalidFile] = field(default_factory=dict)  # batch id -> its problems
    paths: dict[str, Path] = field(default_factory=dict)  # batch id -> batch file


def load_batches(studio: Studio, config: StudioConfig) -> Inventory:
    """Every batch file, loaded; a bad file is set aside with its problems, never fatal.

    A long-running worker plans on every push: a batch file whose bytes and
    settings are unchanged since the last pass is not parsed again.
    """
    settings = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
    inventory = Inventory()
    by_id: dict[str, list[Path]] = {}
    for path in studio.batch_files():
        by_id.setdefault(batch_id_of(path), []).append(path)
    for batch_id, paths in by_id.items():
        inventory.paths[batch_id] = paths[0]
        if len(paths) > 1:  # hero.yaml and hero.json: which one is the batch?
            names = " and ".join(studio.rel(p) for p in paths)
            message = f"batch {batch_id!r} is defined twice, by {names}: keep one"
            inventory.invalid[batch_id] = InvalidFile([Problem(studio.rel(p), 1, message) for p in paths])
            continue
        loaded = _load_cached(studio, paths[0], config, settings)
        if isinstance(loaded, InvalidFile):
            inventory.invalid[batch_id] = loaded
        else:
            inventory.batches[batch_id] = loaded
    return inventory


_CACHE_SIZE = 512
_cache: "OrderedDict[tuple[str, str, str], Union[LoadedBatch, InvalidFile]]" = OrderedDict()


def _load_cached(studio: Studio, path: Path, config: StudioConfig, settings: str) -> Union[LoadedBatch, InvalidFile]:
    try:
        raw = read_bounded(path, config.limits.batch_bytes, studio.root, studio.rel(path))
    except RefusedFile as exc:  # a link, a device, a FIFO, too large: that batch's error
        return exc
    except OSError:  # unreadable: let the loader say why
        try:
            return load_batch(studio, path, config)
        except InvalidFile as exc:
            return exc
    key = (str(path), hashlib.sha256(raw).hexdigest(), settings)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    try:
        result: Union[LoadedBatch, InvalidFile] = load_batch_bytes(raw, studio.rel(path), config)
    except InvalidFile as exc:
        result = exc
    _cache[key] = result
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def records(studio: Studio, batch: str) -> dict[str, RenderRecord]:
    """The readable render records of a batch, by slug (none when its folder is a link or a file)."""
    folder = studio.renders_dir / batch
    found: dict[str, RenderRecord] = {}
    if path_problem(folder, studio.root) or not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        if path.name == BATCH_ERROR_NAME:
            continue
        record = _read_record_cached(path)
        if record is not None and record.slug == path.stem and record.batch == batch:
            found[record.slug] = record
    return found


_records: "OrderedDict[str, tuple[tuple[int, int, int], RenderRecord | None]]" = OrderedDict()
_RECORDS_SIZE = 20_000


def _read_record_cached(path: Path) -> RenderRecord | None:
    """A record, parsed again only when its file changed (size, modification time or inode)."""
    try:
        info = path.lstat()  # a link's own stamp: the record reader refuses links anyway
    except OSError:
        return None
    stamp = (info.st_mtime_ns, info.st_size, info.st_ino)  # replaced files get a new inode
    key = str(path)
    cached = _records.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    record = try_read_record(path)
    _records[key] = (stamp, record)
    if len(_records) > _RECORDS_SIZE:
        _records.popitem(last=False)
    return record


JobState = Literal["done", "failed", "pending"]


PngCheck = Callable[[Job], bool]  # is the image's PNG there?


def job_state(job: Job, record: RenderRecord | None, has_png: PngCheck) -> JobState:
    """Where one image stands, as the worker, ``renderloop status``, ``follow`` and the review see it.

    *done*: a record of this very spec, done, with its PNG present; *failed*:
    a record of this spec that failed; *pending* otherwise (no record, a
    record of an older spec, or a missing PNG: what the worker renders next).
    """
    if record is None or record.spec_hash != job.spec_hash:
        return "pending"
    if record.status == "failed":
        return "failed"
    return "done" if has_png(job) else "pending"


def png_in(studio: Studio) -> PngCheck:
    """The PNG check of this checkout: ``renders/<batch>/<slug>.png`` is a file."""
    return lambda job: studio.png_path(job.batch, job.slug).is_file()
