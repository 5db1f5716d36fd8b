"""The console the commands write to, as Windows has it.

* Output redirected to a file or a pipe is encoded in the console's code
  page (cp1252...): text it cannot hold (a Japanese prompt, a Cyrillic
  slug) is written as a replacement, never a UnicodeEncodeError.
* QuickEdit: a click in a Windows 10 console selects text and freezes all
  output, and a worker writing its log then waits forever; it is turned off
  for the worker's console.
* Under Task Scheduler no console is seen: ``--log-file`` keeps the log in
  a file that rotates.
"""
from __future__ import annotations

import io
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Optional, Protocol, TextIO

ENABLE_QUICK_EDIT_MODE = 0x0040
ENABLE_EXTENDED_FLAGS = 0x0080  # needed for a change to QuickEdit to take effect
LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def replace_unencodable(*streams: Optional[TextIO]) -> None:
    """Make ``streams`` (default: stdout and stderr) write what they cannot encode as ``?``."""
    for stream in streams or (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")


class ConsoleMode(Protocol):
    def get(self) -> Optional[int]:
        """The console input mode, or None when there is no console."""

    def set(self, mode: int) -> bool:
        ...


class _WindowsConsoleMode:
    """The mode of this process's console input (QuickEdit belongs to the input)."""

    STD_INPUT_HANDLE = -10

    def get(self) -> Optional[int]:
        if sys.platform != "win32":
            return None
        import ctypes

        kernel32 = ctypes.windll.kernel32
        mode = ctypes.c_uint32()
        if not kernel32.GetConsoleMode(kernel32.GetStdHandle(self.STD_INPUT_HANDLE), ctypes.byref(mode)):
            return None  # no console, or input redirected
        return int(mode.value)

    def set(self, mode: int) -> bool:
        if sys.platform != "win32":
            return False
        import ctypes

        kernel32 = ctypes.windll.kernel32
        return bool(kernel32.SetConsoleMode(kernel32.GetStdHandle(self.STD_INPUT_HANDLE), mode))


def quick_edit_off(console: Optional[ConsoleMode] = None, windows: Optional[bool] = None) -> bool:
    """Turn QuickEdit off in this process's console; True if it was on and now is off.

    ``console`` and ``windows`` (default: this machine is Windows) are for tests.
    """
    windows = sys.platform == "win32" if windows is None else windows
    if not windows:
        return False
    try:
        console = console or _WindowsConsoleMode()
        mode = console.get()
        if mode is None or not mode & ENABLE_QUICK_EDIT_MODE:
            return False
        return console.set((mode & ~ENABLE_QUICK_EDIT_MODE) | ENABLE_EXTENDED_FLAGS)
    except OSError:
        return False


def log_to_file(path: Path, max_bytes: int = LOG_FILE_BYTES, backups: int = LOG_FILE_BACKUPS) -> logging.Handler:
    """Also write the ``renderloop`` log to ``path`` (UTF-8), rotated at ``max_bytes`` keeping ``backups`` old files."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    logging.getLogger("renderloop").addHandler(handler)
    return handler
