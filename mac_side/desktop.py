"""A desktop notification when ``renderloop follow`` is done, where the platform has one.

macOS: ``osascript`` (Notification Center); Linux: ``notify-send`` when it is
installed; elsewhere (Windows) nothing.  A notifier that is missing or fails
is no error: the terminal shows the same line.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Callable, Optional

DesktopNotifier = Callable[[str, str], bool]  # (title, body) -> shown


def _applescript_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def notification_argv(title: str, body: str, platform: str = sys.platform,
                      which: Callable[[str], Optional[str]] = shutil.which) -> Optional[list[str]]:
    """The command that shows the notification here, or None when this platform has none we use."""
    if platform == "darwin":
        program = which("osascript")
        if program:
            script = f"display notification {_applescript_string(body)} with title {_applescript_string(title)}"
            return [program, "-e", script]
    elif platform.startswith("linux") or platform.startswith("freebsd"):
        program = which("notify-send")
        if program:
            return [program, "--app-name=renderloop", title, body]
    return None


def notify_desktop(title: str, body: str) -> bool:
    """Show it; True when it was shown (never raises)."""
    argv = notification_argv(title, body)
    if argv is None:
        return False
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
