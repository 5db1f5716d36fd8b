"""Attributes that would make git commit other bytes than the worker wrote.

A record names the sha256 of its PNG: the blob committed must be exactly the
bytes rendered.  ``.gitattributes`` can make ``git add`` transform a file on
its way into the repository: ``text``/``eol`` convert line endings (a PNG
holds CR LF bytes), ``filter`` runs a clean program, ``ident`` collapses
``$Id$``, ``working-tree-encoding`` re-encodes.  The worker asks git which of
these apply to each path it commits and refuses, naming the
``.gitattributes`` line; the pre-commit hook refuses such a line before it
is committed.  Records and the ledger are LF-only UTF-8 text, so ``text`` and
``eol`` leave them as they are: for them only the other three matter.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

from studio import git

ATTRIBUTES = ("text", "eol", "filter", "ident", "working-tree-encoding")
_LINE_ENDINGS = ("text", "eol")  # harmless for LF-only text (records, the ledger)
_MAX_ATTRIBUTES_BYTES = 1024 * 1024  # an attributes file larger than this is not read to name its line
_CHUNK = 200  # paths per `git check-attr` (a Windows command line holds about 32 000 characters)


@dataclass(frozen=True)
class Transform:
    """One attribute that would change the bytes of ``path`` when it is committed."""

    path: str
    attribute: str
    value: str
    file: str  # the attributes file that sets it (``.gitattributes``, ``renders/.gitattributes``...)
    line: int  # its line (0: unknown)
    text: str  # that line

    @property
    def message(self) -> str:
        setting = self.attribute if self.value == "set" else f"{self.attribute}={self.value}"
        where = f"{self.text!r} sets {setting}" if self.text else f"{setting} is set"
        return (f"{where}, which would change {self.path} when it is committed "
                "(the blob would no longer be the bytes written); remove it")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


def is_binary(path: str) -> bool:
    """Images: every byte counts, line endings included."""
    return path.lower().endswith(".png")


def harmful(path: str, attribute: str, value: str) -> bool:
    """Whether ``attribute: value`` (as ``git check-attr`` says it) transforms ``path``'s bytes."""
    if value in ("unspecified", "unset"):
        return False
    if attribute in _LINE_ENDINGS and not is_binary(path):
        return False
    if attribute == "text" and value == "auto":
        return False  # git leaves content with NUL bytes (every PNG) alone
    return True


def transforms(repo: Path, paths: Iterable[str], *, cached: bool = False) -> list[Transform]:
    """Every attribute that would transform one of ``paths`` (relative, forward slashes) in ``repo``.

    ``cached``: read the attributes files as staged (the pre-commit hook),
    not as in the working tree.
    """
    found: list[Transform] = []
    todo = list(dict.fromkeys(paths))
    read: Callable[[str], Optional[bytes]] = (
        (lambda rel: _read_staged(repo, rel)) if cached else (lambda rel: _read_file(repo / rel))
    )
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        flags = ("--cached",) if cached else ()
        _, out, _ = git.run_bytes(repo, "check-attr", *flags, "-z", *ATTRIBUTES, "--", *chunk)
        fields = out.split(b"\0")
        for i in range(0, len(fields) - 2, 3):
            path, attribute, value = (f.decode("utf-8", "surrogateescape") for f in fields[i : i + 3])
            if harmful(path, attribute, value):
                found.append(Transform(path, attribute, value, *where_set(repo, path, attribute, read)))
    return found


def where_set(repo: Path, path: str, attribute: str, read: Callable[[str], Optional[bytes]]) -> tuple[str, int, str]:
    """(file, line, text) of the last attributes line that sets ``attribute`` for ``path``."""
    candidates = [".gitattributes"] + [
        f"{'/'.join(PurePosixPath(path).parts[:depth])}/.gitattributes" for depth in range(1, len(PurePosixPath(path).parts))
    ]
    last: Optional[tuple[str, int, str]] = None
    for rel in candidates:
        last = _last_line(rel, read(rel), path, attribute) or last
    info = git.out(repo, "rev-parse", "--git-path", "info/attributes").strip()
    info_path = Path(info) if Path(info).is_absolute() else repo / info
    last = _last_line(".git/info/attributes", _read_file(info_path), path, attribute, base="") or last
    return last or ("an attributes file outside the studio (core.attributesFile)", 0, "")


def _read_staged(repo: Path, rel: str) -> Optional[bytes]:
    try:
        return git.show(repo, f":{rel}", _MAX_ATTRIBUTES_BYTES)
    except git.TooLarge:
        return None


def _read_file(path: Path) -> Optional[bytes]:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_ATTRIBUTES_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _last_line(
    rel: str, raw: Optional[bytes], path: str, attribute: str, base: Optional[str] = None
) -> Optional[tuple[str, int, str]]:
    if raw is None:
        return None
    folder = str(PurePosixPath(rel).parent) if base is None else base
    folder = "" if folder in (".", "") else folder
    inside = path[len(folder) + 1 :] if folder else path
    found: Optional[tuple[str, int, str]] = None
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        pattern, settings = parts[0], parts[1:]
        if _sets(settings, attribute) and _matches(pattern, inside):
            found = (rel, number, line.strip())
    return found


def _sets(settings: list[str], attribute: str) -> bool:
    for token in settings:
        name = re.sub(r"^[-!]", "", token).split("=", 1)[0]
        if name == attribute or (attribute == "text" and name == "eol"):
            return True
    return False


def _matches(pattern: str, path: str) -> bool:
    """gitattributes matching (as .gitignore's, without negation): a name alone matches any folder's file."""
    if pattern.startswith("/"):
        pattern = pattern[1:]
    elif "/" not in pattern:
        return fnmatch.fnmatchcase(PurePosixPath(path).name, pattern)
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"/\*\*", "(?:/.*)?")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.fullmatch(regex, path) is not None
