"""Hard ceilings compiled into renderloop, and the characters text may hold.

A studio's ``renderloop.yaml`` may lower any of these (``limits:`` and each
model's ``max_side``/``max_pixels``) but never raise them: pushed content
must not be able to make a worker draw a 2 GB image, send a megabyte
prompt, or read a file without end.  This is the one table of them.
"""
from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# What one image may be.
MAX_SIDE = 8192  # pixels, width or height
MAX_PIXELS = 16_777_216  # width x height (16 megapixels, 4096 x 4096)

# What a batch file may say.
MAX_PROMPT_CHARS = 20_000
MAX_NEGATIVE_CHARS = 20_000
MAX_CUE_CHARS = 300
MAX_CUES = 50  # per prompt, and per image in a review
MAX_SAMPLER_CHARS = 64  # sampler and scheduler names
MAX_ARCHETYPE_CHARS = 80
MAX_PROMPTS = 10_000  # per batch
MAX_STEPS = 1000

# How large a file renderloop reads from the repository may be.
MAX_BATCH_BYTES = 2 * 1024 * 1024  # a batch file, and renderloop.yaml
MAX_WORKFLOW_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # a render record or a batch error record
MAX_REVIEW_BYTES = 4 * 1024 * 1024
MAX_LEDGER_BYTES = 512 * 1024 * 1024  # a million verdicts of about 330 bytes, rerolls' cues included, and room
MAX_PNG_BYTES = 512 * 1024 * 1024  # also an image downloaded from a render server

# How large an answer from a render server (ComfyUI, fal) may be, besides an image.
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a JSON answer, and one websocket message

# The ceilings a studio may lower in renderloop.yaml's ``limits:``, by key.
CEILINGS: dict[str, int] = {
    "prompt_chars": MAX_PROMPT_CHARS,
    "negative_chars": MAX_NEGATIVE_CHARS,
    "cue_chars": MAX_CUE_CHARS,
    "sampler_chars": MAX_SAMPLER_CHARS,
    "scheduler_chars": MAX_SAMPLER_CHARS,
    "prompts_per_batch": MAX_PROMPTS,
    "batch_bytes": MAX_BATCH_BYTES,
}



def _at_most(ceiling: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if value > ceiling:
            raise ValueError(f"{what} {value} is above renderloop's ceiling of {ceiling}; renderloop.yaml can lower it, "
                             "never raise it")
        return value

    return AfterValidator(check)


# A model's max_side and max_pixels in renderloop.yaml: at most the ceilings.
Side = Annotated[int, Field(gt=0), _at_most(MAX_SIDE, "max_side")]
Pixels = Annotated[int, Field(gt=0), _at_most(MAX_PIXELS, "max_pixels")]


def _one_line(value: Optional[str]) -> Optional[str]:
    problem = None if value is None else control_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A sampler or scheduler name: one line, at most MAX_SAMPLER_CHARS.
SamplerName = Annotated[str, Field(max_length=MAX_SAMPLER_CHARS), AfterValidator(_one_line)]


class Limits(BaseModel):
    """``limits:`` in renderloop.yaml: this studio's own, lower, ceilings for its batch files."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    prompt_chars: int = Field(default=MAX_PROMPT_CHARS, gt=0)
    negative_chars: int = Field(default=MAX_NEGATIVE_CHARS, gt=0)
    cue_chars: int = Field(default=MAX_CUE_CHARS, gt=0)
    sampler_chars: int = Field(default=MAX_SAMPLER_CHARS, gt=0)
    scheduler_chars: int = Field(default=MAX_SAMPLER_CHARS, gt=0)
    prompts_per_batch: int = Field(default=MAX_PROMPTS, gt=0)
    batch_bytes: int = Field(default=MAX_BATCH_BYTES, gt=0)

    @field_validator("*")
    @classmethod
    def _at_most_the_ceiling(cls, value: int, info: ValidationInfo) -> int:
        ceiling = CEILINGS[str(info.field_name)]
        if value > ceiling:
            raise ValueError(f"{value} is above renderloop's ceiling of {ceiling}; renderloop.yaml can lower it, "
                             "never raise it")
        return value


WORKER_NAME_MAX = 64
_WORKER_NAME = re.compile(r"[A-Za-z0-9._-]+")

# Characters no text renderloop reads may hold: C0 controls, DEL and C1
# controls (a line break or tab only where the field allows), bidirectional
# overrides and isolates (text that displays in another order than it reads),
# and the Unicode line and paragraph separators (line breaks YAML and many
# editors honour, invisible elsewhere).
_NEVER = "\u202a-\u202e\u2066-\u2069\u2028\u2029"
_CONTROL_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_NEVER}]")  # prompts, negatives: tab and LF kept
_CONTROL_IN_NAME = re.compile(f"[\x00-\x1f\x7f-\x9f{_NEVER}]")  # one-line values: no line breaks, no tabs
# In a file's raw text, outside any value: tab, LF and CR are its own layout.
CONTROL_IN_FILE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_NEVER}]")


def control_problem(value: str, *, multiline: bool = False) -> Optional[str]:
    """Why ``value`` holds a character it may not, or None.

    ``multiline``: text sent to a backend (prompt, negative), where a line
    break and a tab are fine; everything else (cues, sampler, scheduler,
    archetype, names) is one line.
    """
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL_IN_NAME).search(value)
    if found is None:
        return None
    ch = found.group()
    return f"control character {ch!r} is not allowed in {value[:40]!r}"


def worker_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot name a worker (in records and commit trailers), or None."""
    if not name or len(name) > WORKER_NAME_MAX or not name.isascii() or not _WORKER_NAME.fullmatch(name):
        return (
            f"worker name {name[:WORKER_NAME_MAX]!r} is not allowed: use letters, digits, '.', '_' and '-' "
            f"(1-{WORKER_NAME_MAX} characters)"
        )
    return None
