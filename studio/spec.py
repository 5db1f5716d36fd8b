"""The spec of one image, its canonical JSON and its hash."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

SEED_MAX = 2**32 - 1


class Spec(BaseModel):
    """The fully resolved settings of one image: what the worker renders."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    model: str
    prompt: str
    negative: str = ""
    seed: int
    width: int
    height: int
    steps: Optional[int] = None
    cfg: Optional[float] = None
    sampler: Optional[str] = None
    scheduler: Optional[str] = None
    backend: Optional[str] = None

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000

    def canonical_json(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def hash(self) -> str:
        return spec_hash(self)


def canonical_json(data: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same data always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_hash(spec: Spec) -> str:
    return "sha256:" + hashlib.sha256(spec.canonical_json().encode("utf-8")).hexdigest()


def derive_seed(batch: str, slug: str, salt: str = "") -> int:
    """A seed from (batch, slug): stable across machines and runs, never random."""
    digest = hashlib.sha256(f"renderloop-seed\0{batch}\0{slug}\0{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


NEGATIVE_CUE = "no "


def split_cues(cues: "list[str] | tuple[str, ...]") -> tuple[list[str], list[str]]:
    """The cues for the prompt, and the ones for the negative prompt.

    The one rule for negative cues: a cue that starts with ``no `` (any case)
    asks for less of something, so ``no text`` adds ``text`` to the negative
    prompt; every other cue is added to the prompt.
    """
    positive: list[str] = []
    negative: list[str] = []
    for cue in cues:
        cue = cue.strip()
        rest = cue[len(NEGATIVE_CUE):].strip()
        if cue.lower().startswith(NEGATIVE_CUE) and rest:
            negative.append(rest)
        elif cue:
            positive.append(cue)
    return positive, negative


def apply_cues(prompt: str, cues: list[str]) -> str:
    """The prompt with the reviewer's cues appended, each once.

    A cue already present as one of the prompt's comma-separated phrases is
    not added again; a cue that merely occurs inside a word ("red" in "a
    bored cat") still is.
    """
    text = prompt.strip()
    phrases = {phrase.strip().lower() for phrase in text.replace("\n", ",").split(",")}
    for cue in cues:
        cue = cue.strip()
        if cue and cue.lower() not in phrases:
            text = f"{text}, {cue}" if text else cue
            phrases.add(cue.lower())
    return text
