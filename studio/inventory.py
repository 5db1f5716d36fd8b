"""Desired and actual state of a studio: batch files against render records."""
from __future__ import annotations

import gc
import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple, Optional, Sequence, Union

from studio import checkout, git, plancache
from studio.batch import Job, LoadedBatch, batch_id_of, load_batch, load_batch_bytes
from studio.config import StudioConfig
from studio.errors import InvalidFile, Problem
from studio.layout import BATCH_ERROR_NAME, BATCHES, RENDERS, Studio, batch_id_problem
from studio.plancache import BatchFacts, PlanCache
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


PngCheck = Callable[[Job], bool]  # is the image's PNG in this checkout's commit?


class Rendered(NamedTuple):
    """What planning needs of a render record."""

    status: str
    spec_hash: str


def job_state(job: Job, record: RenderRecord | Rendered | None, has_png: PngCheck) -> JobState:
    """Where one image stands, as the worker, ``renderloop status``, ``follow`` and the review see it.

    *done*: a record of this very spec, done, with its PNG in the checkout's
    commit (on this disk or left out of a sparse checkout); *failed*: a record
    of this spec that failed; *pending* otherwise (no record, a record of an
    older spec, or a missing PNG: what the worker renders next).
    """
    return _state(job.spec_hash, record, lambda: has_png(job))


def _state(spec_hash: str, record: RenderRecord | Rendered | None, has_png: Callable[[], bool]) -> JobState:
    if record is None or record.spec_hash != spec_hash:
        return "pending"
    if record.status == "failed":
        return "failed"
    return "done" if has_png() else "pending"


# Past this many batches one look at all of renders/ is as quick, and a command line stays short (Windows).
_FOLDERS_AT_MOST = 64


def png_in(studio: Studio, batches: Optional[Sequence[str]] = None) -> PngCheck:
    """The PNG check of this checkout: ``renders/<batch>/<slug>.png`` is in its commit (checked out or
    left out of a thin clone; :mod:`studio.checkout`), or a file when the studio is not a git clone.

    ``batches``: the check is asked only about these (only their folders are listed).
    """
    if not (studio.root / ".git").exists():
        return lambda job: studio.png_path(job.batch, job.slug).is_file()
    folders = [f"{RENDERS}/{batch}/" for batch in batches] if batches and len(batches) <= _FOLDERS_AT_MOST else [RENDERS]
    pngs = {rel for rel in checkout.entries(studio.root, *folders) if rel.endswith(".png")}
    return lambda job: f"{RENDERS}/{job.batch}/{job.slug}.png" in pngs


@dataclass
class Survey:
    """The studio as planning sees it: each batch file's slugs and spec hashes, each record's state.

    Built mostly from the plan cache (:mod:`studio.plancache`): only files
    whose blob id is new are read and parsed. :meth:`loaded` parses a batch
    file fully, for the batches that have images to render.
    """

    studio: Studio
    config: StudioConfig
    paths: dict[str, Path] = field(default_factory=dict)  # batch id -> batch file
    jobs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # valid batch -> [(slug, spec_hash)]
    invalid: dict[str, InvalidFile] = field(default_factory=dict)
    records: dict[tuple[str, str], Rendered] = field(default_factory=dict)
    pngs: set[tuple[str, str]] = field(default_factory=set)

    def state(self, batch: str, slug: str, spec_hash: str) -> JobState:
        return _state(spec_hash, self.records.get((batch, slug)), lambda: (batch, slug) in self.pngs)

    def loaded(self, batch_id: str) -> LoadedBatch:
        settings = hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()
        result = _load_cached(self.studio, self.paths[batch_id], self.config, settings)
        if isinstance(result, InvalidFile):
            raise result
        return result


@contextmanager
def _no_collection() -> Iterator[None]:
    """Python's cycle collector paused: a survey makes thousands of small objects (a few per file) and
    no cycle, and each full collection it set off walked every object the process had imported (30 ms
    of a pass at 2,000 renders). Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def survey(studio: Studio, config: StudioConfig) -> Survey:
    """Every batch file and render record of ``studio``, through the plan cache."""
    with _no_collection():
        return _survey(studio, config)


def _survey(studio: Studio, config: StudioConfig) -> Survey:
    settings = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
    cache = PlanCache(_state_dir(studio) / plancache.NAME if (studio.root / ".git").exists() else None, settings)
    found = Survey(studio, config)
    by_id: dict[str, list[Path]] = {}
    for path in studio.batch_files():
        by_id.setdefault(batch_id_of(path), []).append(path)
    here = checkout.entries(studio.root, BATCHES, RENDERS)  # blob ids: files read only when new or changed
    for batch_id, paths in by_id.items():
        found.paths[batch_id] = paths[0]
        if len(paths) > 1:
            names = " and ".join(studio.rel(p) for p in paths)
            message = f"batch {batch_id!r} is defined twice, by {names}: keep one"
            found.invalid[batch_id] = InvalidFile([Problem(studio.rel(p), 1, message) for p in paths])
            continue
        facts = _batch_facts(studio, paths[0], config, settings, cache, here)
        if "problems" in facts:
            found.invalid[batch_id] = InvalidFile([Problem(str(p), int(n), str(m)) for p, n, m in facts["problems"]])
        else:
            found.jobs[batch_id] = [(slug, spec_hash) for slug, spec_hash in facts["jobs"]]
    named: dict[str, bool] = {}  # batch folder -> a valid batch id
    for rel, entry in here.items():
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] != RENDERS:
            continue
        valid = named.get(parts[1])
        if valid is None:
            valid = named[parts[1]] = batch_id_problem(parts[1]) is None
        if not valid:
            continue
        stem, _, suffix = parts[2].rpartition(".")
        if suffix == "png":
            found.pngs.add((parts[1], stem))
        elif suffix == "json" and parts[2] != BATCH_ERROR_NAME:
            known, record = cache.record(entry.blob)
            if not known:
                record = _record_facts(studio, rel, entry)
                cache.put_record(entry.blob, record)
            if record is not None and record[0] == parts[1] and record[1] == stem:
                found.records[(parts[1], stem)] = Rendered(record[2], record[3])
    cache.save()
    return found


def _state_dir(studio: Studio) -> Path:
    """``<git-dir>/renderloop``, without a git call in a plain clone (``.git`` a folder)."""
    gitdir = studio.root / ".git"
    if gitdir.is_dir():
        state = gitdir / "renderloop"
        state.mkdir(exist_ok=True)
        return state
    return git.state_dir(studio.root)


def _batch_facts(studio: Studio, path: Path, config: StudioConfig, settings: str, cache: PlanCache,
                 here: dict[str, checkout.Entry]) -> BatchFacts:
    rel = f"{BATCHES}/{path.name}"  # a file of batches/ (Studio.batch_files)
    entry = here.get(rel)
    if entry is not None and entry.here and entry.regular:  # as committed, or read and hashed as changed
        key = f"{rel}\0{entry.blob}"
    else:
        try:
            raw: Optional[bytes] = read_bounded(path, config.limits.batch_bytes, studio.root, rel)
        except (OSError, InvalidFile):  # refused or unreadable: the loader says why, every time
            raw = None
        key = f"{rel}\0{checkout.blob_id(raw)}" if raw is not None else ""
    facts = cache.batch(key) if key else None
    if facts is not None:
        return facts
    result = _load_cached(studio, path, config, settings)
    if isinstance(result, InvalidFile):
        facts = {"problems": [[p.path, p.line, p.message] for p in result.problems]}
    else:
        facts = {"jobs": [[job.slug, job.spec_hash] for job in result.jobs]}
    if key:
        cache.put_batch(key, facts)
    return facts


def _record_facts(studio: Studio, rel: str, entry: checkout.Entry) -> Optional[list[str]]:
    if entry.here:
        record = try_read_record(studio.root / rel)  # bounded, never through a link
    else:  # left out of a thin clone: the blob itself
        try:
            record = RenderRecord.model_validate_json(git.show(studio.root, entry.blob) or b"")
        except ValueError:
            record = None
    return None if record is None else [record.batch, record.slug, record.status, record.spec_hash]
