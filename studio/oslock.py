"""An exclusive lock the operating system holds, and frees when its holder dies.

One file, locked with ``flock`` (POSIX) or ``msvcrt.locking`` (Windows).  No
pid file to judge stale: a holder killed by SIGKILL or a power cut holds
nothing, and two processes can never both believe they hold it.  The lock
file itself is never deleted (deleting it would let a newcomer lock a fresh
file while the old one is still held).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Optional


class FileLock:
    """``try_acquire()`` without waiting; ``unlock()`` to let another take it; ``close()`` when done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Optional[IO[bytes]] = None

    def try_acquire(self) -> bool:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")  # not inherited by child processes (PEP 446)
        try:
            if sys.platform == "win32":  # pragma: no cover - Windows only
                import msvcrt

                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def unlock(self) -> None:
        if self._file is None:
            return
        try:
            if sys.platform == "win32":  # pragma: no cover - Windows only
                import msvcrt

                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass

    def close(self) -> None:
        if self._file is not None:
            self.unlock()
            self._file.close()
            self._file = None
