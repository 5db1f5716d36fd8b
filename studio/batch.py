"""Batch files under ``batches/``: the dispatch signal, and its resolution into specs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, ValidationError, field_validator

from studio.config import StudioConfig, _Strict  # one meaning of strict for the files people write
from studio.errors import InvalidFile, Problem
from studio.layout import BATCH_SUFFIXES, Slug, Studio, batch_id_problem
from studio.limits import (
    MAX_ARCHETYPE_CHARS, MAX_CUE_CHARS, MAX_CUES, MAX_NEGATIVE_CHARS, MAX_PROMPT_CHARS, MAX_PROMPTS, MAX_SIDE,
    MAX_STEPS, Limits, SamplerName, control_problem,
)
from studio.source import Document, dotted, load_bytes, load_file, problems_from
from studio.spec import SEED_MAX, Spec, apply_cues, derive_seed

Backend = Literal["comfyui", "fal", "mflux", "placeholder"]


def _no_control_characters(value: str, *, multiline: bool = False) -> str:
    """Text sent to a backend: line breaks and tabs only where ``multiline``; other control characters never."""
    problem = control_problem(value, multiline=multiline)
    if problem:
        raise ValueError(problem)
    return value


class _SharedSettings(_Strict):
    """Settings a batch sets for all its prompts and a prompt may override."""

    model: Optional[str] = None
    width: Optional[int] = Field(default=None, gt=0, le=MAX_SIDE)
    height: Optional[int] = Field(default=None, gt=0, le=MAX_SIDE)
    steps: Optional[int] = Field(default=None, gt=0, le=MAX_STEPS)
    negative: Optional[str] = Field(default=None, max_length=MAX_NEGATIVE_CHARS)
    cfg: Optional[float] = Field(default=None, ge=0, le=100)  # an int is fine, a string is not
    sampler: Optional[SamplerName] = None
    scheduler: Optional[SamplerName] = None
    backend: Optional[Backend] = None

    @field_validator("negative")
    @classmethod
    def _negative(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else _no_control_characters(value, multiline=True)


class PromptEntry(_SharedSettings):
    slug: Slug
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    seed: Optional[int] = Field(default=None, ge=0, le=SEED_MAX)
    archetype: Optional[str] = Field(default=None, max_length=MAX_ARCHETYPE_CHARS)
    cues: list[Annotated[str, Field(max_length=MAX_CUE_CHARS)]] = Field(default_factory=list, max_length=MAX_CUES)

    @field_validator("slug", mode="before")
    @classmethod
    def _slug_not_a_number(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'slug {value} is read as a number: put it in quotes, like slug: "{value}"')
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt is empty")
        return _no_control_characters(value, multiline=True)

    @field_validator("cues")
    @classmethod
    def _cues(cls, value: list[str]) -> list[str]:
        for cue in value:
            _no_control_characters(cue)
        return value

    @field_validator("archetype")
    @classmethod
    def _archetype(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else _no_control_characters(value)


class Batch(_SharedSettings):
    version: Literal[1]
    prompts: list[PromptEntry] = Field(max_length=MAX_PROMPTS)

    @field_validator("prompts")
    @classmethod
    def _some_prompts(cls, value: list[PromptEntry]) -> list[PromptEntry]:
        if not value:
            raise ValueError("list at least one prompt")
        return value


@dataclass(frozen=True)
class Job:
    """One image the batch asks for: the unit the worker reconciles."""

    batch: str
    slug: str
    spec: Spec
    spec_hash: str
    archetype: Optional[str]
    cues: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class LoadedBatch:
    batch: str
    path: str
    model: Batch
    jobs: tuple[Job, ...]

    def job(self, slug: str) -> Job | None:
        return next((j for j in self.jobs if j.slug == slug), None)


def batch_id_of(path: Path | str) -> str:
    return Path(path).stem


def is_batch_path(rel: str) -> bool:
    """True for ``batches/<name>.yaml|.yml|.json`` (directly in batches/)."""
    parts = rel.split("/")
    return len(parts) == 2 and parts[0] == "batches" and Path(parts[1]).suffix.lower() in BATCH_SUFFIXES


def load_batch(studio: Studio, path: Path, config: StudioConfig) -> LoadedBatch:
    """Load, validate and resolve a batch file from disk, or raise InvalidFile."""
    display = studio.rel(path)
    _check_name(path, display)
    doc = load_file(path, display, max_bytes=config.limits.batch_bytes, root=studio.root)
    return resolve(doc, batch_id_of(path), config)


def load_batch_bytes(raw: bytes, rel: str, config: StudioConfig) -> LoadedBatch:
    """The same for bytes (a staged file, a file at a commit)."""
    path = Path(rel)
    _check_name(path, rel)
    doc = load_bytes(raw, rel, json_syntax=path.suffix.lower() == ".json", max_bytes=config.limits.batch_bytes)
    return resolve(doc, batch_id_of(path), config)


def _check_name(path: Path, display: str) -> None:
    problem = batch_id_problem(path.stem)
    if problem:
        raise InvalidFile([Problem(display, 1, problem)])


def resolve(doc: Document, batch_id: str, config: StudioConfig) -> LoadedBatch:
    """Validate ``doc`` against the schema and the studio's models; resolve every spec."""
    if not isinstance(doc.data, dict):
        raise InvalidFile([doc.problem((), "a batch file is a mapping with 'version' and 'prompts'")])
    try:
        batch = Batch.model_validate(doc.data)
    except ValidationError as exc:
        raise InvalidFile(problems_from(exc, doc)) from None
    problems: list[Problem] = _limit_problems(doc, batch, config.limits)
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(batch.prompts):
        loc = ("prompts", index)
        line = doc.line_of(loc + ("slug",))
        if entry.slug in seen:
            problems.append(
                Problem(doc.path, line, f"duplicate slug {entry.slug!r} (first at line {seen[entry.slug]})")
            )
            continue
        seen[entry.slug] = line
        spec, spec_problems = _resolve_spec(doc, loc, batch_id, batch, entry, config)
        problems += spec_problems
        if spec is not None:
            jobs.append(
                Job(batch_id, entry.slug, spec, spec.hash, entry.archetype, tuple(entry.cues), line)
            )
    if problems:
        # a bad batch-level default is one problem, however many prompts rely on it
        raise InvalidFile(sorted(dict.fromkeys(problems), key=lambda p: p.line))
    return LoadedBatch(batch_id, doc.path, batch, tuple(jobs))


def _limit_problems(doc: Document, batch: Batch, limits: Limits) -> list[Problem]:
    """What exceeds the lower limits this studio's renderloop.yaml sets (the schema holds renderloop's own)."""
    problems = []
    if len(batch.prompts) > limits.prompts_per_batch:
        problems.append(doc.problem(("prompts", limits.prompts_per_batch), (
            f"prompts: {len(batch.prompts)} prompts; renderloop.yaml limits.prompts_per_batch allows at most "
            f"{limits.prompts_per_batch}")))
    sources: list[tuple[tuple[Any, ...], _SharedSettings]] = [((), batch)]
    sources += [(("prompts", index), entry) for index, entry in enumerate(batch.prompts)]
    for loc, source in sources:
        texts = [(name, getattr(source, name, None)) for name in ("prompt", "negative", "sampler", "scheduler")]
        texts += [("cues", cue) for cue in getattr(source, "cues", [])]
        for name, value in texts:
            key = "cue_chars" if name == "cues" else f"{name}_chars"
            limit = getattr(limits, key)
            if value is not None and len(value) > limit:
                problems.append(doc.problem(loc + (name,), (
                    f"{dotted(loc + (name,))}: {len(value)} characters; renderloop.yaml limits.{key} allows at "
                    f"most {limit}")))
    return problems


def _resolve_spec(
    doc: Document, loc: tuple, batch_id: str, batch: Batch, entry: PromptEntry, config: StudioConfig
) -> tuple[Spec | None, list[Problem]]:
    def pick(name: str, default: Any = None) -> Any:
        for source in (entry, batch):
            value = getattr(source, name)
            if value is not None:
                return value
        return default

    def where(name: str) -> tuple:
        return loc + (name,) if getattr(entry, name) is not None else (name,)

    model_name = pick("model")
    if model_name is None:
        return None, [doc.problem(loc, f"prompt {entry.slug!r} names no model and the batch sets none")]
    model = config.models.get(model_name)
    if model is None:
        known = ", ".join(sorted(config.models))
        return None, [doc.problem(where("model"), f"unknown model {model_name!r}; renderloop.yaml has {known}")]
    problems = []
    width = pick("width", model.width)
    height = pick("height", model.height)
    for name, value in (("width", width), ("height", height)):
        if value % 8:
            problems.append(doc.problem(where(name), f"{name} {value} is not a multiple of 8"))
        elif not model.min_side <= value <= model.max_side:
            problems.append(
                doc.problem(
                    where(name),
                    f"{name} {value} is outside {model_name}'s range {model.min_side}-{model.max_side}",
                )
            )
    if not problems and width * height > model.max_pixels:
        problems.append(
            doc.problem(
                where("width"),
                f"{width}x{height} is {width * height} pixels; {model_name} allows at most {model.max_pixels}",
            )
        )
    if problems:
        return None, problems
    spec = Spec(
        model=model_name,
        prompt=apply_cues(entry.prompt, entry.cues),
        negative=pick("negative", ""),
        seed=entry.seed if entry.seed is not None else derive_seed(batch_id, entry.slug),
        width=width,
        height=height,
        steps=pick("steps", model.steps),
        cfg=pick("cfg", model.cfg),
        sampler=pick("sampler", model.sampler),
        scheduler=pick("scheduler", model.scheduler),
        backend=pick("backend"),
    )
    return spec, []
