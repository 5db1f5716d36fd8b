"""What a checkout holds under some folders, by git blob id, without reading the files.

The index names every tracked file with its blob id, and the same ``git
ls-files`` (stat calls only) names the files the working tree changed, added
or deleted: only those are read and hashed here. A file a sparse checkout leaves out
(``skip-worktree``) is still listed, with ``here`` False: it is in the
commit, only not on this disk. Outside a git repository the files on disk
are read and hashed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from studio import git
from studio.errors import InvalidFile
from studio.fsutil import read_bounded
from studio.limits import MAX_PNG_BYTES


class Entry(NamedTuple):  # a tuple: thousands are made on every pass
    blob: str  # the git blob id of the file's content
    here: bool = True  # False: in the commit, left out of a sparse checkout
    regular: bool = True  # False: a link or a submodule in the index (its blob is not a file's content)


def blob_id(data: "bytes | memoryview", length: int = 40) -> str:
    """The id git gives ``data`` as a blob (SHA-1, or SHA-256 in a repository of 64-digit ids)."""
    digest = hashlib.sha1(usedforsecurity=False) if length == 40 else hashlib.sha256()
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


_REGULAR = ("100644", "100755")


def entries(root: Path, *folders: str) -> dict[str, Entry]:
    """Every file under ``folders`` (relative, forward slashes), by path: one ``git ls-files``."""
    if not (root / ".git").exists():
        return _from_disk(root, folders)
    found: dict[str, Entry] = {}
    changed: set[str] = set()
    length = 40
    listing = git.out(root, "ls-files", "-s", "-t", "-c", "-m", "-d", "-o", "--exclude-standard", "-z", "--", *folders)
    rows = listing.split("\0")
    tracked = next((row for row in rows if row and row[:2] != "? "), "")
    if tracked:  # the id length of this repository (SHA-1: 40, SHA-256: 64)
        length = len(tracked[9:].split(" ", 1)[0]) or 40
    # "TAG MODE BLOB STAGE\tPATH" at fixed offsets (thousands of rows on every pass): sliced, not split
    tab = 12 + length
    for row in rows:
        if row[:2] == "? ":  # untracked
            changed.add(row[2:])
            continue
        if len(row) <= tab or row[tab - 1] != "\t" or row[1] != " " or row[8] != " " or row[9 + length] != " ":
            continue
        tag = row[0]
        if row[10 + length] != "0" or tag == "C" or tag == "R":  # a conflict, or changed or deleted in the tree
            changed.add(row[tab:])
        elif tag == "H" or tag == "S":
            found[row[tab:]] = Entry(row[9:9 + length], tag == "H", row[2:8] in _REGULAR)
    for path in changed:
        found.pop(path, None)
        try:  # bounded and never through a link, like every read of the studio
            data = read_bounded(root / path, MAX_PNG_BYTES, root, path)
        except (OSError, InvalidFile):  # deleted from the working tree, or refused: not there
            continue
        found[path] = Entry(blob_id(data, length))
    return found


def _from_disk(root: Path, folders: tuple[str, ...]) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for folder in folders:
        for top, dirs, files in os.walk(root / folder):
            dirs[:] = [d for d in dirs if not (Path(top) / d).is_symlink()]
            for name in files:
                path = Path(top) / name
                try:
                    found[path.relative_to(root).as_posix()] = Entry(blob_id(path.read_bytes()))
                except OSError:
                    continue
    return found
