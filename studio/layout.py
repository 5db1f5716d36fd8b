"""Where everything lives in a studio, and the rules that keep paths inside it."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from studio.errors import FatalError

CONFIG_NAME = "renderloop.yaml"
BATCHES = "batches"
RENDERS = "renders"
LEDGER_NAME = "ledger.jsonl"
HOOKS = "hooks"
REVIEW_NAME = "review.md"
BATCH_ERROR_NAME = "batch-error.json"
BATCH_SUFFIXES = (".yaml", ".yml", ".json")

SLUG_MAX = 80
_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Batch ids name a file and a folder: the same alphabet as slugs, and
# underscores, which people use in file names.
_BATCH_RE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)


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
        return self.config_path.is_file()

    def rel(self, path: Path) -> str:
        """``path`` relative to the studio, with forward slashes (as git names it)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def batch_files(self) -> list[Path]:
        """Every batch file, sorted by name."""
        if not self.batches_dir.is_dir():
            return []
        return sorted(
            p for p in self.batches_dir.iterdir() if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES
        )

    def batch_dir(self, batch: str) -> Path:
        return self.inside(self.renders_dir / _checked_batch(batch))

    def png_path(self, batch: str, slug: str) -> Path:
        return self.batch_dir(batch) / f"{_checked_slug(slug)}.png"

    def record_path(self, batch: str, slug: str) -> Path:
        return self.batch_dir(batch) / f"{_checked_slug(slug)}.json"

    def review_path(self, batch: str) -> Path:
        return self.batch_dir(batch) / REVIEW_NAME

    def batch_error_path(self, batch: str) -> Path:
        return self.batch_dir(batch) / BATCH_ERROR_NAME

    def inside(self, path: Path) -> Path:
        """``path`` if it stays inside the studio once links are followed; refuse it otherwise.

        A ``renders`` folder that is a symbolic link to somewhere else would
        make the worker write outside the studio: that is refused.
        """
        resolved = Path(path).resolve()
        try:
            resolved.relative_to(self.root)
        except ValueError:
            raise FatalError(
                f"{path}: refusing to write outside the studio {self.root} (it resolves to {resolved})"
            ) from None
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


def _checked_slug(slug: str) -> str:
    problem = slug_problem(slug)
    if problem:
        raise FatalError(problem)
    return slug


def _checked_batch(batch: str) -> str:
    problem = batch_id_problem(batch)
    if problem:
        raise FatalError(problem)
    return batch
