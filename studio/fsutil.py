"""Atomic file writes: a temporary file in the same folder, then os.replace."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

# Windows refuses os.replace while another process (an editor, the indexer,
# an antivirus scanner) holds the target open; that passes within moments.
_REPLACE_ATTEMPTS = 20
_REPLACE_DELAY = 0.05

# mkstemp creates files readable by the owner only; files renderloop writes
# get the mode a plain open() would give (the umask read once, at import).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if sys.platform != "win32":
                mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write text as UTF-8 with LF line ends, atomically."""
    write_atomic(path, text.replace("\r\n", "\n").encode("utf-8"))


def _replace(src: Path, dst: Path) -> None:
    for attempt in range(_REPLACE_ATTEMPTS):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == _REPLACE_ATTEMPTS - 1:
                raise
            time.sleep(_REPLACE_DELAY)


def is_temp_name(name: str) -> bool:
    """True for the temporary files write_atomic leaves behind if killed."""
    return name.startswith(".") and name.endswith(".tmp")


def read_or_none(path: Path) -> bytes | None:
    """The file's bytes, or None when it (or a folder on its way) does not exist."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
