"""Atomic file writes, and the one bounded, link-safe read of repository content.

Writes: a temporary file in the same folder, then os.replace.  Reads: every
file renderloop reads from a studio (batch files, renderloop.yaml, workflows,
records, reviews, the ledger) may have been pushed by someone else, so
:func:`read_bounded` refuses symbolic links, devices, FIFOs and folders, and
files over their size limit, before reading a byte, and never blocks.
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from studio.errors import InvalidFile, Problem

# Windows refuses os.replace while another process holds the target open: an
# image viewer, OneDrive syncing the folder, an antivirus scan. That passes,
# but can take seconds: retried with backoff for about 10 s in all.
REPLACE_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 2.0, 2.5, 3.0)
# The temporary file's name: short (``.rl-`` + 8 random characters + ``.tmp``),
# so it never makes a path longer than the file it becomes (Windows' 260 limit).
TEMP_PREFIX = ".rl-"
TEMP_SUFFIX = ".tmp"

# mkstemp creates files readable by the owner only; files renderloop writes
# get the mode a plain open() would give (the umask read once, at import).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    ``durable=False`` skips the fsync: for a cache, which a crash may leave empty but never half written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if sys.platform != "win32":
                mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        replace_retrying(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write text as UTF-8 with LF line ends, atomically."""
    write_atomic(path, text.replace("\r\n", "\n").encode("utf-8"))


def replace_retrying(
    src: Path, dst: Path, *,
    replace: Callable[[Path, Path], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    windows: bool | None = None,
) -> None:
    """``os.replace``, retried on Windows while another process holds ``dst`` (about 10 s).

    Still failing after that, the PermissionError is raised: the caller keeps
    what it was writing (the worker keeps a finished image in its state folder).
    ``replace``, ``sleep`` and ``windows`` are for tests.
    """
    replace = replace or os.replace
    windows = sys.platform == "win32" if windows is None else windows
    for delay in (*REPLACE_DELAYS, None):
        try:
            replace(src, dst)
            return
        except PermissionError:
            if not windows or delay is None:
                raise
            sleep(delay)


def is_temp_name(name: str) -> bool:
    """True for the temporary files write_atomic leaves behind if killed (and older ones, ``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


# Opening never follows a link (where the platform can refuse one) and never
# waits: a FIFO opened for reading blocks until a writer comes, unless O_NONBLOCK.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)
_CHUNK = 1024 * 1024


class RefusedFile(InvalidFile):
    """A file renderloop will not read: a link, a device, a FIFO, a folder, or too large."""

    def __init__(self, display: str, reason: str) -> None:
        self.reason = reason
        super().__init__([Problem(display, 1, reason)])


def read_bounded(path: Path, limit: int, root: Optional[Path] = None, display: Optional[str] = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, read without following a link.

    Raises FileNotFoundError (or NotADirectoryError) when there is no such
    file, and :class:`RefusedFile` naming ``display`` (default: the path as
    given) when it is a symbolic link, a device, a FIFO or a folder, when a
    folder on its way below ``root`` is a link, or when it holds more than
    ``limit`` bytes.  The type is checked with lstat before opening, the file
    is opened with O_NOFOLLOW|O_NONBLOCK where the platform has them and
    checked again with fstat, and no more than ``limit + 1`` bytes are read.
    """
    shown = display or str(path)
    if root is not None:
        why = path_problem(path.parent, root)
        if why:
            raise RefusedFile(shown, why)
    before = os.lstat(path)
    why = _kind_problem(path, before.st_mode) or size_problem(before.st_size, limit)
    if why:
        raise RefusedFile(shown, why)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if os.path.islink(path):  # replaced by a link since the lstat
            raise RefusedFile(shown, _kind_problem(path, stat.S_IFLNK) or "the file is a symbolic link") from None
        raise
    try:
        after = os.fstat(fd)
        why = _kind_problem(path, after.st_mode) or size_problem(after.st_size, limit)
        if not why and before.st_ino and after.st_ino and (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
            why = "the file was replaced while it was being opened"
        if why:
            raise RefusedFile(shown, why)
        data = _read_at_most(fd, limit + 1, after.st_size)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after the checks
        raise RefusedFile(shown, size_problem(len(data), limit) or "the file is too large")
    return data


def read_or_none(path: Path, limit: int, root: Optional[Path] = None, display: Optional[str] = None) -> bytes | None:
    """:func:`read_bounded`, or None when the file (or a folder on its way) does not exist."""
    try:
        return read_bounded(path, limit, root, display)
    except (FileNotFoundError, NotADirectoryError):
        return None


def path_problem(path: Path, root: Path) -> Optional[str]:
    """Why ``path`` is no safe folder under ``root``, or None.

    Every part of ``path`` below ``root`` that exists must be a real folder:
    not a symbolic link (which could lead anywhere, inside the studio or out
    of it), not a file.  Parts that do not exist yet are fine (they will be
    created as folders).
    """
    try:
        rel = Path(os.path.abspath(path)).relative_to(root)
    except ValueError:
        return f"{path} is outside the studio {root}"
    current = root
    for part in rel.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            return f"{_shown(current, root)} is a symbolic link ({_target(current)}); renderloop never reads or writes through a link"
        if not stat.S_ISDIR(mode):
            return f"{_shown(current, root)} is {_kind_name(mode)} where a folder belongs"
    return None


def _kind_problem(path: Path, mode: int) -> Optional[str]:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return link_problem(_target(path))
    return f"the file is {_kind_name(mode)}, not a regular file; renderloop reads only regular files"


def link_problem(target: str) -> str:
    """Why a link is not read (``target``: where it leads, as shown)."""
    return f"the file is a symbolic link ({target}); renderloop reads only regular files, never through a link"


def _kind_name(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def size_problem(size: int, limit: int) -> Optional[str]:
    """Why a file of ``size`` bytes is not read, or None when it is within ``limit``."""
    if size <= limit:
        return None
    return f"file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB"


def _target(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        return "its target is unreadable"
    return f"to {target[:80]!r}"


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_at_most(fd: int, count: int, size: int = 0) -> bytes:
    """At most ``count`` bytes; a file of ``size`` bytes (as fstat said) in one read, not copied again."""
    chunks: list[bytes] = [os.read(fd, min(count, size + 1))] if size else []
    left = count - len(chunks[0]) if chunks else count
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
