"""Where everything lives in a studio, and the rules that keep paths inside it."""
from __future__ import annotations

import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from studio.errors import FatalError
from studio.fsutil import path_problem

CONFIG_NAME = "renderloop.yaml"
BATCHES = "batches"
RENDERS = "renders"
LEDGER_NAME = "ledger.jsonl"
HOOKS = "hooks"
REVIEW_NAME = "review.md"
REVIEW_HTML_NAME = "review.html"
BATCH_ERROR_NAME = "batch-error.json"
STUDIO_ERROR_NAME = "studio-error.json"  # renders/studio-error.json: no batch id has a dot
BATCH_SUFFIXES = (".yaml", ".yml", ".json")

SLUG_MAX = 80
# The longest path the worker writes inside a studio: renders/<batch>/<slug>.json,
# both names at their limit (temporary files have shorter names than that).
LONGEST_OUTPUT = len(f"{RENDERS}/") + SLUG_MAX + len("/") + SLUG_MAX + len(".json")
_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Batch ids name a file and a folder: the same alphabet as slugs, and
# underscores, which people use in file names.
_BATCH_RE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
# Files renderloop keeps in renders/<batch>/ beside each slug's .png and .json:
# a slug named like one of them would overwrite it (or be taken for it).
_RESERVED_FILES = (BATCH_ERROR_NAME, REVIEW_NAME, REVIEW_HTML_NAME)
RESERVED_SLUGS: dict[str, str] = {}  # slug -> the file it would be taken for
for _name in _RESERVED_FILES:
    RESERVED_SLUGS.setdefault(_name.split(".")[0], _name)


def slug_problem(value: object) -> str | None:
    """Why ``value`` is not a valid slug, or None when it is."""
    if not isinstance(value, str):
        return f"slug must be a string, not {type(value).__name__} {value!r}"
    if not value:
        return "slug is empty"
    if len(value) > SLUG_MAX:
        return f"slug {value[:20]!r}... is {len(value)} characters long; the limit is {SLUG_MAX}"
    if not value.isascii() or not _SLUG_RE.fullmatch(value):
        return (
            f"slug {value!r} is not allowed{_odd_character(value)}: use lowercase letters, digits and single "
            "hyphens (like 'harbor-at-dawn')"
        )
    if value in _WINDOWS_DEVICES:
        return f"slug {value!r} is a Windows device name"
    if value in RESERVED_SLUGS:
        return (
            f"slug {value!r} is reserved: renders/<batch>/{RESERVED_SLUGS[value]} is renderloop's own file; "
            "choose another slug"
        )
    return None


def _odd_character(value: str) -> str:
    """Name a character that only looks right (a Cyrillic 'а' in 'hаrbor'), or nothing."""
    for ch in value:
        if not ch.isascii() or not ch.isprintable():
            name = unicodedata.name(ch, "a control character")
            return f" (it contains {ch!r}, U+{ord(ch):04X} {name})"
    return ""


def _valid_slug(value: str) -> str:
    problem = slug_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A slug field in any schema: validated by the one rule above.
Slug = Annotated[str, AfterValidator(_valid_slug)]


def batch_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid batch id (a batch file's stem), or None."""
    if not value or len(value) > SLUG_MAX or not value.isascii() or not _BATCH_RE.fullmatch(value):
        return (
            f"batch name {value!r} is not allowed: use lowercase letters, digits, single "
            f"hyphens or underscores, at most {SLUG_MAX} characters"
        )
    if value in _WINDOWS_DEVICES:
        return f"batch name {value!r} is a Windows device name"
    return None


@dataclass(frozen=True)
class Studio:
    """A studio checkout: every path renderloop reads or writes is made here."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> "Studio":
        return cls(Path(root).resolve())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def batches_dir(self) -> Path:
        return self.root / BATCHES

    @property
    def renders_dir(self) -> Path:
        return self.root / RENDERS

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_NAME

    @property
    def hooks_dir(self) -> Path:
        return self.root / HOOKS

    def is_studio(self) -> bool:
        """True when renderloop.yaml is here (whatever it is: reading it says what is wrong with it)."""
        return os.path.lexists(self.config_path)

    def rel(self, path: Path) -> str:
        """``path`` relative to the studio, with forward slashes (as git names it).

        The last part is never followed: a link's own name is what git knows.
        """
        path = Path(os.path.abspath(path))
        for candidate in (lambda: path, lambda: path.parent.resolve() / path.name):  # resolved only if needed
            try:
                return candidate().relative_to(self.root).as_posix()
            except ValueError:
                continue
        raise FatalError(f"{path} is outside the studio {self.root}")

    def batch_files(self) -> list[Path]:
        """Every batch file, sorted by name: anything in batches/ with a batch suffix but a folder.

        A link, a device or a FIFO named like a batch file is listed: reading it
        says why it is refused, as that batch's error.
        """
        why = path_problem(self.batches_dir, self.root)
        if why:
            raise FatalError(f"{why}: batch files are read only from a real batches/ folder")
        if not self.batches_dir.is_dir():
            return []
        return sorted(
            p for p in self.batches_dir.iterdir() if p.suffix.lower() in BATCH_SUFFIXES and not _real_folder(p)
        )

    def batch_dir(self, batch: str) -> Path:
        return self.inside(self.renders_dir / checked_batch_id(batch))

    def png_path(self, batch: str, slug: str) -> Path:
        return self.batch_dir(batch) / f"{_checked_slug(slug)}.png"

    def record_path(self, batch: str, slug: str) -> Path:
        return self.batch_dir(batch) / f"{_checked_slug(slug)}.json"

    def review_path(self, batch: str) -> Path:
        return self.batch_dir(batch) / REVIEW_NAME

    @property
    def studio_error_path(self) -> Path:
        return self.inside(self.renders_dir) / STUDIO_ERROR_NAME

    def batch_error_path(self, batch: str) -> Path:
        return self.batch_dir(batch) / BATCH_ERROR_NAME

    def inside(self, path: Path) -> Path:
        """``path`` if every part of it below the studio is a real folder (or not there yet); refuse it otherwise.

        A ``renders`` or ``renders/<batch>`` that is a symbolic link would make
        the worker write where it leads: out of the studio, into ``.git`` or
        ``hooks/``.  One that is a file cannot hold renders.  Both are refused.
        """
        why = path_problem(Path(path), self.root)
        if why:
            raise FatalError(f"refusing to write outside the studio's own folders: {why}")
        return path


def open_studio(repo: Path, *, require_git: bool = False) -> Studio:
    """The studio holding ``repo`` (its top folder when ``repo`` is inside a clone), or a clear error."""
    from studio import git  # layout is plain paths; only this needs git

    root = Path(repo)
    if not root.is_dir():
        raise FatalError(f"{root}: no such folder")
    if git.is_repo(root):
        root = git.toplevel(root)
    elif require_git:
        raise FatalError(f"{root} is not a git repository (clone the studio first)")
    studio = Studio.at(root)
    if not studio.is_studio():
        raise FatalError(f"{studio.root} is not a renderloop studio (no renderloop.yaml): run `renderloop init`")
    return studio


def _real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _checked_slug(slug: str) -> str:
    problem = slug_problem(slug)
    if problem:
        raise FatalError(problem)
    return slug


def checked_batch_id(batch: str) -> str:
    """``batch`` when it is a valid batch id; else :class:`FatalError` saying why."""
    problem = batch_id_problem(batch)
    if problem:
        raise FatalError(problem)
    return batch
