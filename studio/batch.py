"""Batch files under ``batches/``: the dispatch signal, and its resolution into specs."""
from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from studio.config import StudioConfig
from studio.errors import InvalidFile, Problem
from studio.layout import BATCH_SUFFIXES, SLUG_MAX, Slug, Studio, batch_id_problem, slug_problem
from studio.limits import (
    MAX_ARCHETYPE_CHARS, MAX_CUE_CHARS, MAX_CUES, MAX_NEGATIVE_CHARS, MAX_PROMPT_CHARS, MAX_PROMPTS, MAX_SIDE,
    MAX_STEPS, Limits, SamplerName, control_problem,
)
from studio.source import Document, Strict, did_you_mean, dotted, load_bytes, load_file, problems_from
from studio.spec import SEED_MAX, Spec, apply_cues, derive_seed, split_cues

Backend = Literal["comfyui", "fal", "mflux", "placeholder"]


def _no_control_characters(value: str, *, multiline: bool = False) -> str:
    """Text sent to a backend: line breaks and tabs only where ``multiline``; other control characters never."""
    problem = control_problem(value, multiline=multiline)
    if problem:
        raise ValueError(problem)
    return value


class _SharedSettings(Strict):
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


_SIZE_RE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


def _size(value: str) -> str:
    if not _SIZE_RE.fullmatch(value):
        raise ValueError(f"size {value[:40]!r} is not WIDTHxHEIGHT, like 1344x768")
    return value


def _variant(value: str) -> str:
    return _no_control_characters(value, multiline=True)


def _distinct(values: Any) -> Any:
    items = list(values)
    for n, value in enumerate(items):
        if value in items[:n]:
            raise ValueError(f"{value!r} is listed twice")
    return values


class Sweep(Strict):
    """``sweep:`` on a batch or a prompt: axes over spec fields, each image one combination."""

    mode: Literal["product", "zip"] = "product"
    model: Optional[Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    seed: Optional[Annotated[list[Annotated[int, Field(ge=0, le=SEED_MAX)]], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    seeds: Optional[int] = Field(default=None, gt=0, le=MAX_PROMPTS)
    steps: Optional[Annotated[list[Annotated[int, Field(gt=0, le=MAX_STEPS)]], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    cfg: Optional[Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    sampler: Optional[Annotated[list[SamplerName], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    scheduler: Optional[Annotated[list[SamplerName], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    size: Optional[Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]] = None
    prompt: Optional[Annotated[dict[Slug, Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]], Field(min_length=1, max_length=MAX_PROMPTS)]] = None

    @field_validator("model", "seed", "steps", "cfg", "sampler", "scheduler", "size")
    @classmethod
    def _no_repeats(cls, value: Optional[list[Any]]) -> Optional[list[Any]]:
        return value if value is None else _distinct(value)

    @field_validator("size")
    @classmethod
    def _sizes(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        return value if value is None else [_size(v) for v in value]

    @field_validator("prompt")
    @classmethod
    def _variants(cls, value: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        return value if value is None else {k: _variant(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _some_axis(self) -> "Sweep":
        if self.seed is not None and self.seeds is not None:
            raise ValueError("give seed (a list) or seeds (a count), not both")
        if not any(getattr(self, name) is not None for name in SWEEP_KEYS):
            raise ValueError("a sweep names at least one axis: " + ", ".join(SWEEP_KEYS))
        return self


# The keys of ``sweep:`` that are axes, and the axis each one is.
SWEEP_KEYS: dict[str, str] = {
    "model": "model", "seed": "seed", "seeds": "seed", "steps": "steps", "cfg": "cfg",
    "sampler": "sampler", "scheduler": "scheduler", "size": "size", "prompt": "prompt",
}


class PromptEntry(_SharedSettings):
    slug: Slug
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    seed: Optional[int] = Field(default=None, ge=0, le=SEED_MAX)
    archetype: Optional[str] = Field(default=None, max_length=MAX_ARCHETYPE_CHARS)
    cues: list[Annotated[str, Field(max_length=MAX_CUE_CHARS)]] = Field(default_factory=list, max_length=MAX_CUES)
    sweep: Optional[Sweep] = None
    # where a gathered reroll came from: `<batch>/<slug>` (written by `renderloop new --rerolls`)
    source: Optional[str] = Field(default=None, alias="from", max_length=200, pattern=r"^[^/\s]+/[^/\s]+$")

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
    sweep: Optional[Sweep] = None

    @field_validator("prompts")
    @classmethod
    def _some_prompts(cls, value: list[PromptEntry]) -> list[PromptEntry]:
        if not value:
            raise ValueError("list at least one prompt")
        return value


AxisValue = Union[str, int, float]


@dataclass(frozen=True)
class Axis:
    """One axis value of a swept image: ``model`` ``z-image-turbo``, shown as ``label``, named in the slug by ``part``."""

    name: str  # model, seed, steps, cfg, sampler, scheduler, size, prompt
    value: AxisValue  # as the ledger records it: a seed counted by ``seeds: N`` is its number, 1 to N
    label: str
    part: str
    sets: Optional[AxisValue] = None  # the spec's value when it is not ``value``: the derived seed

    @property
    def setting(self) -> AxisValue:
        return self.value if self.sets is None else self.sets


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
    prompt_slug: str = ""  # the prompt entry's slug: the same as ``slug`` unless swept
    axes: tuple[Axis, ...] = ()  # this image's place in its prompt's sweep; empty when not swept
    written_prompt: str = ""  # the prompt as written, with its variant's text, before cues

    def axis_values(self) -> dict[str, AxisValue]:
        """The axes as the ledger records them: ``{"model": "flux-schnell", "seed": 2}``."""
        return {axis.name: axis.value for axis in self.axes}


@dataclass(frozen=True)
class LoadedBatch:
    batch: str
    path: str
    model: Batch
    jobs: tuple[Job, ...]

    def job(self, slug: str) -> Job | None:
        return next((j for j in self.jobs if j.slug == slug), None)

    def groups(self) -> list[tuple[str, list[Job]]]:
        """The jobs by prompt entry, in the batch's order: one job for a plain prompt, every combination of a sweep."""
        found: dict[str, list[Job]] = {}
        for job in self.jobs:
            found.setdefault(job.prompt_slug or job.slug, []).append(job)
        return list(found.items())


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
    problems: list[Problem] = []
    data = doc.data
    places = list(range(len(data["prompts"]))) if isinstance(data.get("prompts"), list) else []  # each prompt's index in the file
    for _ in range(3):  # every problem of the file in one pass: check what validates, past what does not
        try:
            batch = Batch.model_validate(data)
            break
        except ValidationError as exc:
            problems += problems_from(exc, doc, known=_known_keys)
            pruned = _without_errors(data, places, exc)
            if pruned is None:
                raise InvalidFile(sorted(dict.fromkeys(problems), key=lambda p: p.line)) from None
            data, places = pruned
    else:
        raise InvalidFile(sorted(dict.fromkeys(problems), key=lambda p: p.line))
    problems += _limit_problems(doc, batch, config.limits, places)
    plans = [(index, entry, _plan(doc, batch_id, batch, index, entry)) for index, entry in zip(places, batch.prompts)]
    problems += [plan for _, _, plan in plans if isinstance(plan, Problem)]
    total = sum(_count(plan) for _, _, plan in plans if not isinstance(plan, Problem))
    if total > config.limits.prompts_per_batch and any(entry.sweep or batch.sweep for entry in batch.prompts):
        where = next(("prompts", i, "sweep") for i, e, _ in plans if e.sweep) if batch.sweep is None else ("sweep",)
        raise InvalidFile([doc.problem(where, (
            f"this batch expands to {total} images with its sweeps; "
            f"renderloop.yaml limits.prompts_per_batch allows at most {config.limits.prompts_per_batch}"))])
    jobs: list[Job] = []
    entries: dict[str, int] = {}
    seen: dict[str, tuple[int, str]] = {}  # slug -> (line, the prompt entry that made it)
    for index, entry, plan in plans:
        loc = ("prompts", index)
        line = doc.line_of(loc + ("slug",))
        if isinstance(plan, Problem):
            continue
        if entry.slug in entries:
            problems.append(
                Problem(doc.path, line, f"duplicate slug {entry.slug!r} (first at line {entries[entry.slug]})")
            )
            continue
        entries[entry.slug] = line
        for slug, axes, overrides in _combinations(entry, plan):
            problem = _swept_slug_problem(slug, entry.slug, seen) if axes or slug in seen else None
            if problem:
                problems.append(Problem(doc.path, line, problem))
                continue
            seen[slug] = (line, entry.slug)
            sweep_loc = plan[1] if plan is not None else ()
            spec, spec_problems = _resolve_spec(doc, loc, batch_id, batch, entry, config, overrides, sweep_loc)
            problems += spec_problems
            if spec is not None:
                jobs.append(Job(batch_id, slug, spec, spec.hash, entry.archetype, tuple(entry.cues), line,
                                entry.slug, axes, _with_variant(entry.prompt, overrides.get("prompt", ""))))
    if problems:
        # a bad batch-level default is one problem, however many prompts rely on it
        raise InvalidFile(sorted(dict.fromkeys(problems), key=lambda p: p.line))
    return LoadedBatch(batch_id, doc.path, batch, tuple(jobs))


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a batch file allows at ``loc`` (a prompt entry's, or the batch's), for near-match hints."""
    if len(loc) == 2 and loc[0] == "prompts":
        model: type[_SharedSettings] = PromptEntry
    elif not loc:
        model = Batch
    else:
        return []  # deeper mappings (a sweep's axes) name no near match
    return [field.alias or name for name, field in model.model_fields.items()]


def _without_errors(data: dict, places: list[int], exc: ValidationError) -> Optional[tuple[dict, list[int]]]:
    """``data`` without what ``exc`` found wrong (a bad setting, or a prompt whose slug or prompt is bad),
    with the original index of each prompt left; None when nothing useful is left to check."""
    drop_top: set[str] = set()
    drop_key: dict[int, set[str]] = {}
    drop_entry: set[int] = set()
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if len(loc) >= 3 and loc[0] == "prompts" and isinstance(loc[1], int):
            key = str(loc[2])
            if key in ("slug", "prompt") or error["type"] == "missing":
                drop_entry.add(loc[1])
            else:
                drop_key.setdefault(loc[1], set()).add(key)
        elif len(loc) == 2 and loc[0] == "prompts" and isinstance(loc[1], int):
            drop_entry.add(loc[1])  # not a mapping
        elif len(loc) >= 1 and loc[0] not in ("prompts", "version"):
            drop_top.add(str(loc[0]))
        else:
            return None  # the version or the prompt list itself: nothing further to check
    prompts = data.get("prompts")
    if not isinstance(prompts, list):
        return None
    kept = [
        (places[i], {k: v for k, v in entry.items() if k not in drop_key.get(i, set())})
        for i, entry in enumerate(prompts) if i not in drop_entry and isinstance(entry, dict)
    ]
    if not kept:
        return None
    pruned = {k: v for k, v in data.items() if k not in drop_top}
    pruned["prompts"] = [entry for _, entry in kept]
    return pruned, [place for place, _ in kept]


def _limit_problems(doc: Document, batch: Batch, limits: Limits, places: list[int]) -> list[Problem]:
    """What exceeds the lower limits this studio's renderloop.yaml sets (the schema holds renderloop's own)."""
    problems = []
    if len(batch.prompts) > limits.prompts_per_batch:
        problems.append(doc.problem(("prompts", limits.prompts_per_batch), (
            f"prompts: {len(batch.prompts)} prompts; renderloop.yaml limits.prompts_per_batch allows at most "
            f"{limits.prompts_per_batch}")))
    sources: list[tuple[tuple[Any, ...], _SharedSettings]] = [((), batch)]
    sources += [(("prompts", index), entry) for index, entry in zip(places, batch.prompts)]
    for loc, source in sources:
        texts: list[tuple[tuple[Any, ...], str, Optional[str]]] = [
            (loc + (name,), name, getattr(source, name, None)) for name in ("prompt", "negative", "sampler", "scheduler")
        ]
        texts += [(loc + ("cues",), "cues", cue) for cue in getattr(source, "cues", [])]
        sweep: Optional[Sweep] = source.sweep if isinstance(source, (Batch, PromptEntry)) else None
        if sweep is not None:  # a sweep's values as if written on the prompt
            for name in ("sampler", "scheduler"):
                texts += [(loc + ("sweep", name), name, value) for value in getattr(sweep, name) or []]
            texts += [(loc + ("sweep", "prompt", variant), "prompt", text) for variant, text in (sweep.prompt or {}).items()]
        for where, name, value in texts:
            key = "cue_chars" if name == "cues" else f"{name}_chars"
            limit = getattr(limits, key)
            if value is not None and len(value) > limit:
                problems.append(doc.problem(where, (
                    f"{dotted(where)}: {len(value)} characters; renderloop.yaml limits.{key} allows at "
                    f"most {limit}")))
    return problems


def _resolve_spec(
    doc: Document, loc: tuple, batch_id: str, batch: Batch, entry: PromptEntry, config: StudioConfig,
    overrides: Optional[dict[str, Any]] = None, sweep_loc: tuple = (),
) -> tuple[Spec | None, list[Problem]]:
    overrides = overrides or {}

    def pick(name: str, default: Any = None) -> Any:
        if name in overrides:
            return overrides[name]
        for source in (entry, batch):
            value = getattr(source, name, None)
            if value is not None:
                return value
        return default

    def where(name: str) -> tuple:
        if name in overrides:
            return sweep_loc + ("size" if name in ("width", "height") else name,)
        return loc + (name,) if getattr(entry, name) is not None else (name,)

    model_name = pick("model")
    if model_name is None:
        return None, [doc.problem(loc, f"prompt {entry.slug!r} names no model and the batch sets none")]
    model = config.models.get(model_name)
    if model is None:
        known = ", ".join(sorted(config.models))
        hint = did_you_mean(model_name, config.models)
        return None, [doc.problem(where("model"), f"unknown model {model_name!r}{hint or f'; renderloop.yaml has {known}'}")]
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
    more, less = split_cues(entry.cues)  # `no text`: `text` goes to the negative prompt
    spec = Spec(
        model=model_name,
        prompt=apply_cues(_with_variant(entry.prompt, overrides.get("prompt", "")), more),
        negative=apply_cues(pick("negative", ""), less),
        seed=pick("seed", derive_seed(batch_id, entry.slug)),
        width=width,
        height=height,
        steps=pick("steps", model.steps),
        cfg=pick("cfg", model.cfg),
        sampler=pick("sampler", model.sampler),
        scheduler=pick("scheduler", model.scheduler),
        backend=pick("backend"),
    )
    return spec, []


# ---------------------------------------------------------------- sweeps
#
# The one place a prompt entry becomes its images: a plain prompt is one job,
# a swept prompt one job per combination of its axes.  The worker's plan,
# status, the review and the ledger all see the expanded jobs through
# LoadedBatch.jobs.

_Plan = list[tuple[str, list[Axis]]]  # per axis, in the order written: its name and its values
Plan = tuple[str, tuple, _Plan, dict[str, str]]  # mode, the sweep's location in the file, axes, prompt variants


def _plan(doc: Document, batch_id: str, batch: Batch, index: int, entry: PromptEntry) -> "Plan | Problem | None":
    """The axes of ``entry``'s sweep (its own, else the batch's), or a Problem, or None when not swept."""
    sweep, loc = (entry.sweep, ("prompts", index, "sweep")) if entry.sweep is not None else (batch.sweep, ("sweep",))
    if sweep is None:
        return None
    raw: Any = doc.data
    for key in loc:  # the keys as written: the axes' order
        raw = raw[key]
    order = [key for key in (raw if isinstance(raw, dict) else SWEEP_KEYS) if key in SWEEP_KEYS]
    axes: _Plan = []
    for key in order:
        value = getattr(sweep, key)
        if value is None:
            continue
        name = SWEEP_KEYS[key]
        if key == "seeds":
            derived = [derive_seed(batch_id, entry.slug, str(n)) for n in range(1, value + 1)]
            axes.append((name, [Axis(name, n, f"s{n}", f"s{n}", seed) for n, seed in enumerate(derived, 1)]))
        else:
            axes.append((name, [_axis(name, v, key) for v in (value.items() if key == "prompt" else value)]))
    if sweep.mode == "zip":
        lengths = {name: len(values) for name, values in axes}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
            return doc.problem(loc, f"a zipped sweep needs axes of one length; these have {shown}")
    return sweep.mode, loc, axes, dict(sweep.prompt or {})


def _axis(name: str, value: Any, key: str) -> Axis:
    if name == "prompt":
        variant, _text = value
        return Axis(name, variant, variant, variant)
    if name == "seed":
        return Axis(name, value, f"seed {value}", f"s{value}")
    if name == "steps":
        return Axis(name, value, f"{value} steps", f"steps{value}")
    if name == "cfg":
        text = f"{float(value):g}"
        return Axis(name, value, f"cfg {text}", "cfg" + _slug_part(text))
    if name == "size":
        return Axis(name, value, value.replace("x", "×"), value)
    return Axis(name, value, str(value), _slug_part(str(value)))


def _slug_part(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())) or "x"


def _count(plan: "Plan | None") -> int:
    if plan is None:
        return 1
    mode, _, axes, _ = plan
    if mode == "zip":
        return len(axes[0][1])
    return math.prod(len(values) for _, values in axes)


def _combinations(entry: PromptEntry, plan: "Plan | None") -> list[tuple[str, tuple[Axis, ...], dict[str, Any]]]:
    """Each image of ``entry``: its slug, its axes, and the spec fields its axes set."""
    if plan is None:
        return [(entry.slug, (), {})]
    mode, _, axes, variants = plan
    values = [vals for _, vals in axes]
    combos: Any = zip(*values) if mode == "zip" else itertools.product(*values)
    found = []
    for combo in combos:
        overrides: dict[str, Any] = {}
        for axis in combo:
            if axis.name == "size":
                width, height = _SIZE_RE.fullmatch(str(axis.value)).groups()  # type: ignore[union-attr]
                overrides["width"], overrides["height"] = int(width), int(height)
            elif axis.name == "prompt":
                overrides["prompt"] = variants.get(str(axis.value), "")
            else:
                overrides[axis.name] = axis.setting
        found.append((swept_slug(entry.slug, [a.part for a in combo]), tuple(combo), overrides))
    return found


def swept_slug(base: str, parts: list[str]) -> str:
    """``harbor`` + ``z-image-turbo``, ``s2`` -> ``harbor-z-image-turbo-s2``; past 80 characters, cut with a hash."""
    full = "-".join([base, *parts])
    if len(full) <= SLUG_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return full[: SLUG_MAX - len(digest) - 1].rstrip("-") + "-" + digest


def _swept_slug_problem(slug: str, prompt_slug: str, seen: dict[str, tuple[int, str]]) -> Optional[str]:
    """Why ``slug`` (made by ``prompt_slug``'s sweep, or a plain slug) cannot be used, or None."""
    made = f" (made by the sweep of {prompt_slug!r})" if slug != prompt_slug else ""
    if slug in seen:
        line, other = seen[slug]
        by = f", made by the sweep of {other!r}" if other != slug else ""
        return f"duplicate slug {slug!r}{made} (first at line {line}{by})"
    problem = slug_problem(slug)
    return f"{problem}{made}" if problem else None


def _with_variant(prompt: str, variant: str) -> str:
    """The prompt with a named variant's text appended (an empty variant is the prompt as written)."""
    variant = variant.strip()
    return f"{prompt.strip()}, {variant}" if variant else prompt
