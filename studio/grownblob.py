"""A grown file's new git blob, written at the cost of what was appended.

``git add`` of a file that grew stores all of it again as a new loose object:
it hashes every byte (SHA-1 with collision detection, about 350 MB/s here)
and zlib-compresses every byte (about 120 MB/s at git's fastest level). For
``ledger.jsonl``, which only ever grows, the compressing is what grows with
the years: 0.33 s of the 0.53 s that ``git add`` takes on a 40 MB ledger.

:func:`prepare_add` writes that loose object before ``git add`` runs, in a
form whose compressed part the next version reuses::

    zlib header | stored block "blob <size>\\0" | BODY | empty final stored block | adler32

BODY is raw deflate blocks of the content, ending on a byte (a sync flush),
each appended part compressed on its own, so nothing in it refers to the
header or to another part. When the previous version is a loose object in
this form and the file still starts with exactly its bytes (its first bytes,
hashed as a blob, give its id), the new object is that BODY, copied, and the
appended bytes compressed. What still follows the file's length is reading
it once and hashing it (hashlib: several times git's speed), then git's own
hash in ``git add``, which finds the object stored and writes nothing.

Git stays the judge of the blob: should ``git add`` make a different one (a
conversion set in ``.gitattributes``), the object written here is an
unreferenced loose object, which ``git gc`` prunes. Any surprise (no
previous version, a packed one, a file that does not start with it) means a
whole object written in this form, or nothing and git's own write.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Optional

from studio import git

log = logging.getLogger("renderloop.git")

ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no dictionary (0x7801 is a multiple of 31)
FINAL = b"\x01\x00\x00\xff\xff"  # an empty stored block marked final
TRAILER = len(FINAL) + 4  # and the adler32 of everything inflated
CHUNK = 1 << 20
SECOND = 1_000_000_000  # ns


def _header(size: int) -> bytes:
    return b"blob %d\0" % size


def _head(size: int) -> bytes:
    """The zlib header and the stored block that holds the object's header."""
    header = _header(size)
    return ZLIB_HEADER + b"\x00" + struct.pack("<HH", len(header), 0xFFFF ^ len(header)) + header


def _digest(blob: str) -> "hashlib._Hash":
    return hashlib.sha1(usedforsecurity=False) if len(blob) == 40 else hashlib.sha256()


def prepare_add(repo: Path, rel: str, previous: Optional[tuple[str, int]]) -> Optional[str]:
    """Make ``git add rel`` of a file that grew from ``previous`` (its blob id and size) cost what was
    appended: the new blob written as a loose object (its id returned; None when git is left to write it),
    and the file's modification time set back.

    The time: git holds an entry whose file changed in the same second as the index was written as
    "racily clean", and hashes the whole file again on every ``git status`` or commit until the index
    is written in a later second. A file dated two seconds back never is; any later write dates it
    anew, so git still sees every change. Best effort: an error is logged and left to git.
    """
    try:
        _date_back(repo / rel)
        return _store(repo, rel, previous) if previous else None
    except (OSError, ValueError, zlib.error, git.GitError) as exc:
        log.debug("%s: left to git add (%s)", rel, exc)
        return None


def _date_back(path: Path) -> None:
    info = path.lstat()
    back = time.time_ns() - 2 * SECOND
    if stat.S_ISREG(info.st_mode) and info.st_mtime_ns > back:
        os.utime(path, ns=(info.st_atime_ns, back))


def _store(repo: Path, rel: str, previous: tuple[str, int]) -> Optional[str]:
    old_id, old_size = previous
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(repo / rel, flags), "rb") as f:
        info = os.fstat(f.fileno())
        size = info.st_size
        if not stat.S_ISREG(info.st_mode) or size <= old_size:
            return None
        objects = repo / git.out(repo, "rev-parse", "--git-path", "objects")
        body = _body(objects, old_id, old_size)
        start = old_size if body is not None else 0  # compressed from here on
        new, old, adler = _digest(old_id), _digest(old_id), zlib.adler32(_header(size))
        new.update(_header(size))
        old.update(_header(old_size))
        packer = zlib.compressobj(1, zlib.DEFLATED, -15)
        parts = [body or b""]
        at = 0
        while at < size:
            chunk = f.read(min(CHUNK, size - at))
            if not chunk:
                return None  # shrank meanwhile
            new.update(chunk)
            adler = zlib.adler32(chunk, adler)
            if at < old_size:
                old.update(chunk[: old_size - at])
            if at + len(chunk) > start:
                parts.append(packer.compress(chunk[max(0, start - at):]))
            at += len(chunk)
    if body is not None and old.hexdigest() != old_id:
        return None  # the file does not start with the previous version: git hashes and compresses it all
    blob = new.hexdigest()
    target = objects / blob[:2] / blob[2:]
    if target.exists():
        return blob
    parts.append(packer.flush(zlib.Z_SYNC_FLUSH))
    _write_object(target, [_head(size), *parts, FINAL, struct.pack(">I", adler)])
    return blob


def _body(objects: Path, blob: str, size: int) -> Optional[bytes]:
    """The deflate blocks of the loose object ``blob`` when this module wrote it (None otherwise)."""
    try:
        data = (objects / blob[:2] / blob[2:]).read_bytes()
    except OSError:  # packed, or not here
        return None
    head = _head(size)
    if not data.startswith(head) or len(data) < len(head) + TRAILER or data[-TRAILER:-4] != FINAL:
        return None
    return data[len(head) : -TRAILER]


def _write_object(target: Path, parts: list[bytes]) -> None:
    """Write a loose object as git does: a temporary file in its folder, read-only, then linked into place."""
    target.parent.mkdir(exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix="tmp_obj_")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
        os.chmod(tmp_name, 0o444)
        try:
            os.link(tmp_name, target)
        except FileExistsError:
            pass
        except OSError:  # no hard links here
            os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):  # linked (or failed): the read-only name goes, as Windows allows only
            os.chmod(tmp_name, 0o644)  # once it is writable again
            os.unlink(tmp_name)
