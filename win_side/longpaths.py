"""Windows' 260-character path limit, checked when the worker starts.

Without ``LongPathsEnabled`` (a machine-wide registry setting) Windows
refuses any path longer than 259 characters, and the worker writes paths
as long as the studio folder plus :data:`studio.layout.LONGEST_OUTPUT`.
Git is told ``core.longpaths`` (it then manages on its own); Python's
writes need the setting, or a studio folder short enough.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from studio.layout import LONGEST_OUTPUT
from studio.winpath import MAX_PATH
_KEY = r"SYSTEM\CurrentControlSet\Control\FileSystem"
ENABLE_COMMAND = (
    r"reg add HKLM\SYSTEM\CurrentControlSet\Control\FileSystem /v LongPathsEnabled /t REG_DWORD /d 1 /f"
)


def long_paths_enabled() -> bool:
    """True when Windows accepts long paths (always, elsewhere)."""
    if sys.platform != "win32":
        return True
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, _KEY) as key:
            value, _ = winreg.QueryValueEx(key, "LongPathsEnabled")
    except OSError:
        return False
    return bool(value)


def path_budget_problem(
    root: Path, *, windows: Optional[bool] = None, enabled: Callable[[], bool] = long_paths_enabled,
) -> Optional[str]:
    """Why renders in the studio at ``root`` may not fit Windows' path limit, or None when they do.

    ``windows`` (default: this machine is Windows) and ``enabled`` are for tests.
    """
    windows = sys.platform == "win32" if windows is None else windows
    longest = len(str(root)) + 1 + LONGEST_OUTPUT
    if not windows or longest <= MAX_PATH or enabled():
        return None
    room = MAX_PATH - 1 - LONGEST_OUTPUT
    return (
        f"paths in {root} can reach {longest} characters (the folder's {len(str(root))} plus up to "
        f"{LONGEST_OUTPUT} for renders/<batch>/<slug>.json), over Windows' limit of {MAX_PATH}, and long paths "
        f"are not enabled: renders of long batch and slug names could not be written (they are kept and "
        f"committed once they can be). Enable long paths (as administrator: {ENABLE_COMMAND}) or move the "
        f"studio to a folder of at most {room} characters, such as C:\\studio"
    )
