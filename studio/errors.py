"""Errors renderloop shows to people: one clear line each."""
from __future__ import annotations

from dataclasses import dataclass


class FatalError(RuntimeError):
    """An expected failure, shown to the user as one line (no traceback)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, at one line: printed as ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class NotConfigured(FatalError):
    """A setting the command needs is missing or out of range: in renderloop.yaml or on the command line."""


class InvalidFile(FatalError):
    """A file that does not follow its schema; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
