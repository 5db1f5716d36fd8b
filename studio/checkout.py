"""What a checkout holds under some folders, by git blob id, without reading the files.

The index names every tracked file with its blob id; ``git status`` (stat
calls only) names the files the working tree changed, added or deleted, and
only those are read and hashed here. A file a sparse checkout leaves out
(``skip-worktree``) is still listed, with ``here`` False: it is in the
commit, only not on this disk. Outside a git repository the files on disk
are read and hashed.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from studio import git


@dataclass(frozen=True)
class Entry:
    blob: str  # the git blob id of the file's content
    here: bool = True  # False: in the commit, left out of a sparse checkout


def blob_id(data: "bytes | memoryview", length: int = 40) -> str:
    """The id git gives ``data`` as a blob (SHA-1, or SHA-256 in a repository of 64-digit ids)."""
    digest = hashlib.sha1(usedforsecurity=False) if length == 40 else hashlib.sha256()
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def entries(root: Path, *folders: str) -> dict[str, Entry]:
    """Every file under ``folders`` (relative, forward slashes), by path."""
    if not (root / ".git").exists():
        return _from_disk(root, folders)
    found: dict[str, Entry] = {}
    length = 40
    for row in git.out(root, "ls-files", "-s", "-t", "-z", "--", *folders).split("\0"):
        meta, _, path = row.partition("\t")
        fields = meta.split(" ")
        if len(fields) != 4 or fields[3] != "0":  # a conflict's stages: taken from the disk below
            continue
        found[path] = Entry(fields[2], fields[0] != "S")
        length = len(fields[2])
    status = git.out(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", *folders)
    for item in status.split("\0"):
        if len(item) < 4 or item[1] == " ":  # the working tree has what the index has
            continue
        path = item[3:]
        try:
            data = (root / path).read_bytes()
        except OSError:  # deleted from the working tree
            found.pop(path, None)
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
