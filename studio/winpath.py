"""The one rule for a path the Windows worker can check out.

Git for Windows refuses to check out a path it cannot create on NTFS
(``error: invalid path 'batches/a:b.yaml'``), and one such file stops every
later sync of the worker's clone. The pre-commit hook refuses them on the Mac
with this rule, before they are ever committed.
"""
from __future__ import annotations

import re
from typing import Optional

MAX_PATH = 259  # characters of a Windows path without long-path support (260 with the closing NUL)
STUDIO_ALLOWANCE = 60  # kept for the worker's studio folder, such as C:\Users\<name>\Documents\studio\
PATH_BUDGET = MAX_PATH - STUDIO_ALLOWANCE  # for a path inside the studio

_FORBIDDEN = re.compile(r'[<>:"|?*\\\x00-\x1f]')
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]}
)


def windows_path_problem(rel: str) -> Optional[str]:
    """Why Windows cannot hold ``rel`` (a path relative to the studio, ``/``-separated), or None."""
    if len(rel) > PATH_BUDGET:
        return (f"the path is {len(rel)} characters long; the worker's Windows clone has room for "
                f"{PATH_BUDGET} (of {MAX_PATH}, leaving {STUDIO_ALLOWANCE} for the studio folder)")
    for name in rel.split("/"):
        bad = _FORBIDDEN.search(name)
        if bad:
            char = bad.group()
            shown = repr(char) if char == "\\" or ord(char) < 32 else f"'{char}'"
            return f"{name!r} contains {shown}, which Windows does not allow in a file name"
        if name.endswith((".", " ")) and name not in (".", ".."):
            return f"{name!r} ends with a {'dot' if name.endswith('.') else 'space'}, which Windows drops"
        stem = name.split(".", 1)[0].rstrip(" ").upper()
        if stem in _RESERVED:
            return f"{name!r} is a reserved device name on Windows ({stem}, with any extension)"
    return None
