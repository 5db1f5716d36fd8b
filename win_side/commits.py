"""Writing render outputs into the clone and committing each as its own commit."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from studio import git, thin
from studio.clock import utcnow
from studio.attributes import transforms
from studio.errors import FatalError, InvalidFile, Problem
from studio.capability import Capability, parse, rel_path
from studio.fsutil import read_bounded, write_atomic, write_text_atomic
from studio.layout import STUDIO_ERROR_NAME, Studio
from studio.limits import MAX_BATCH_BYTES, MAX_RECORD_BYTES
from studio.record import (
    BatchErrorRecord, BatchProblem, RenderRecord, StudioErrorRecord, StudioProblem, sha256_hex,
)
from win_side import faults
from win_side.repo import WorkerRepo, existing_or_tracked

log = logging.getLogger("renderloop.worker")


def render_message(record: RenderRecord) -> str:
    """``render(batch): slug [model, 17.8 s]`` and the trailers of SPEC section 4."""
    if record.status == "done":
        took = "cached" if record.cached else f"{record.render_seconds or 0:.1f} s"
        summary = f"[{record.spec.model}, {took}]"
    else:
        summary = f"failed [{record.error.kind if record.error else 'error'}]"
    return (
        f"render({record.batch}): {record.slug} {summary}\n\n"
        f"Renderloop-Batch: {record.batch}\n"
        f"Renderloop-Slug: {record.slug}\n"
        f"Renderloop-Status: {record.status}\n"
        f"Renderloop-Worker: {record.worker}"
    )


def commit_render(repo: WorkerRepo, record: RenderRecord, png: bytes | None) -> str | None:
    """Write the PNG (if done) then its record, atomically, and commit both. Returns the commit
    (None when the files are exactly as committed already: a retried failure that failed the same way).

    The PNG is written first and the record last: a record on disk always
    has its image, and a kill in between leaves a PNG that recovery removes.
    """
    studio = repo.studio
    png_path = studio.png_path(record.batch, record.slug)
    record_path = studio.record_path(record.batch, record.slug)
    with repo.lock:
        studio.inside(record_path.parent)
        if png is not None:
            write_atomic(png_path, png)
            faults.point("after-png")
        else:
            png_path.unlink(missing_ok=True)  # a stale image of an earlier spec
        write_text_atomic(record_path, record.to_json())
        faults.point("after-record")
        return commit_paths(repo, render_message(record), [studio.rel(png_path), studio.rel(record_path)])


class Transformed(FatalError):
    """The repository's attributes would commit other bytes than the worker wrote: stop, commit nothing."""


def check_attributes(repo: WorkerRepo, paths: list[str]) -> None:
    """Refuse ``paths`` whose bytes ``.gitattributes`` would transform on their way into a commit."""
    found = transforms(repo.root, paths)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise Transformed(f"{found[0]}{more}; the worker commits nothing until it is gone")


def _check_staged(repo: WorkerRepo, paths: list[str]) -> None:
    """The staged blob of each written file is the file's own bytes, or nothing is committed."""
    written = [p for p in paths if (repo.root / p).is_file()]
    if not written:
        return
    staged = {}
    for line in git.out(repo.root, "ls-files", "-s", "-z", "--", *written).split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            staged[path] = meta.split()[1]
    raw = git.out(repo.root, "hash-object", "--no-filters", "--", *written).split()
    for path, blob in zip(written, raw):
        if staged.get(path) != blob:
            git.run(repo.root, "reset", "-q", "--", *paths, check=False)
            raise Transformed(
                f"{path}: git staged other bytes than the worker wrote (blob {staged.get(path)}, file {blob}): "
                "a filter or attribute transforms it; the worker commits nothing until it is gone"
            )


def _put_back(repo: WorkerRepo, paths: list[str]) -> None:
    """``paths`` as last committed (or gone, if never committed): a refused commit leaves the clone clean,
    so the next pull (which may bring the fix) is not stopped by the worker's own half-done change."""
    tracked = set(git.out(repo.root, "ls-tree", "-r", "--name-only", "-z", "HEAD", "--", *paths).split("\0")) - {""}
    for rel in paths:
        if rel not in tracked:
            (repo.root / rel).unlink(missing_ok=True)
    if tracked:
        git.run(repo.root, "checkout", "-q", "HEAD", "--", *sorted(tracked), check=False)


def commit_paths(repo: WorkerRepo, message: str, paths: list[str]) -> str | None:
    """Stage exactly ``paths`` (additions, changes, deletions) and commit only them, byte for byte.

    None when they are exactly as committed already (nothing to commit).
    """
    with repo.lock:
        paths = existing_or_tracked(repo.root, paths)
        try:
            check_attributes(repo, [p for p in paths if os.path.lexists(repo.root / p)])  # a removal has no bytes
            git.run(repo.root, "add", "--all", *thin.add_options(repo.root), "--", *paths)
            _check_staged(repo, paths)
        except Transformed:
            _put_back(repo, paths)
            raise
        if paths and git.ok(repo.root, "diff", "--cached", "--quiet", "HEAD", "--", *paths):
            return None
        faults.point("commit")
        sha = git.commit(repo.root, message, *paths)
        faults.point("after-commit")
        return sha


def record_studio_error(repo: WorkerRepo, problems: list[Problem], worker: str) -> str | None:
    """Commit ``renders/studio-error.json`` naming ``problems``; once per set of problems. Returns the commit."""
    studio = repo.studio
    target = studio.studio_error_path
    wanted = [StudioProblem(path=p.path, line=p.line, message=p.message) for p in problems]
    try:
        existing: StudioErrorRecord | None = StudioErrorRecord.model_validate_json(target.read_bytes())
    except (OSError, ValueError):
        existing = None
    if existing is not None and existing.problems == wanted:
        return None
    record = StudioErrorRecord(problems=wanted, worker=worker, at=utcnow())
    with repo.lock:
        write_text_atomic(target, record.to_json())
        message = (
            f"render: nothing can be rendered as it stands ({problems[0]})\n\n"
            f"Renderloop-Status: invalid\nRenderloop-Worker: {worker}"
        )
        return commit_paths(repo, message, [studio.rel(target)])


def clear_studio_error(repo: WorkerRepo, worker: str) -> str | None:
    """Remove ``renders/studio-error.json`` once what it named is fixed."""
    studio = repo.studio
    if not os.path.lexists(studio.renders_dir / STUDIO_ERROR_NAME):
        return None
    target = studio.studio_error_path
    with repo.lock:
        target.unlink()
        message = f"render: the studio is valid again, error cleared\n\nRenderloop-Status: cleared\nRenderloop-Worker: {worker}"
        return commit_paths(repo, message, [studio.rel(target)])


def record_batch_error(repo: WorkerRepo, batch: str, path: Path, error: InvalidFile, worker: str) -> str | None:
    """Commit ``renders/<batch>/batch-error.json`` for a bad batch file, once per version of it."""
    studio = repo.studio
    target = studio.batch_error_path(batch)
    file_sha = _fingerprint(studio, path)
    existing = _read_batch_error(studio, target)
    if existing is not None and existing.file_sha == file_sha:
        return None
    record = BatchErrorRecord(
        batch=batch,
        path=studio.rel(path),
        problems=[BatchProblem(line=p.line, message=p.message) for p in error.problems],
        worker=worker,
        at=utcnow(),
        file_sha=file_sha,
    )
    first = error.problems[0] if error.problems else None
    with repo.lock:
        studio.inside(target.parent)
        write_text_atomic(target, record.to_json())
        message = (
            f"render({batch}): batch file is invalid ({first})\n\n"
            f"Renderloop-Batch: {batch}\nRenderloop-Status: invalid\nRenderloop-Worker: {worker}"
        )
        return commit_paths(repo, message, [studio.rel(target)])


def clear_batch_error(repo: WorkerRepo, batch: str, worker: str) -> str | None:
    """Remove a batch's error record once its file is fixed (or gone)."""
    studio = repo.studio
    target = studio.batch_error_path(batch)
    if not target.exists():
        return None
    with repo.lock:
        target.unlink()
        message = (
            f"render({batch}): batch file is valid again, error cleared\n\n"
            f"Renderloop-Batch: {batch}\nRenderloop-Status: cleared\nRenderloop-Worker: {worker}"
        )
        return commit_paths(repo, message, [studio.rel(target)])


def _fingerprint(studio: Studio, path: Path) -> str:
    """What identifies this version of a bad batch file: its bytes' sha256, or, for a file
    renderloop does not read (a link, a device, too large), what it is and where it leads."""
    try:
        return sha256_hex(read_bounded(path, MAX_BATCH_BYTES, studio.root))
    except FileNotFoundError:
        return ""
    except (OSError, InvalidFile):
        try:
            info = os.lstat(path)
        except OSError:
            return ""
        target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
        return sha256_hex(f"{info.st_mode}:{info.st_size}:{info.st_mtime_ns}:{target}".encode("utf-8"))


def _read_batch_error(studio: Studio, path: Path) -> BatchErrorRecord | None:
    try:
        return BatchErrorRecord.model_validate_json(read_bounded(path, MAX_RECORD_BYTES, studio.root))
    except (OSError, ValueError, InvalidFile):
        return None


def publish_capability(repo: WorkerRepo, capability: Capability) -> str | None:
    """Commit ``workers/<worker>.json`` when what the worker can render changed (None: it did not)."""
    studio = repo.studio
    rel = rel_path(capability.worker)
    target = studio.root / rel
    with repo.lock:
        try:
            existing = parse(read_bounded(target, MAX_RECORD_BYTES, studio.root))
        except (OSError, InvalidFile):
            existing = None  # absent, or not a file renderloop reads: written anew
        if capability.same_as(existing):
            return None
        studio.inside(target.parent if target.parent.exists() else studio.root)
        write_text_atomic(target, capability.to_json())
        message = (
            f"workers({capability.worker}): what it can render\n\n"
            f"Renderloop-Status: capability\nRenderloop-Worker: {capability.worker}"
        )
        return commit_paths(repo, message, [rel])
