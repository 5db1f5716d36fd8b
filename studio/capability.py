"""What a worker can render, as it publishes it: ``workers/<worker>.json``, one file per worker.

The worker asks its ComfyUI servers (``/object_info``) and commits, at start
and whenever an answer changes, per model of renderloop.yaml:

* ``renderable``: every server has the model's files and node types, and if
  not, ``missing``: per server, what it lacks;
* ``inputs``: per spec field the graph writes somewhere (seed, width,
  height, steps, cfg, sampler, scheduler), the node inputs it lands in and
  what each accepts: ``min``/``max`` for INT and FLOAT, ``choices`` for a
  COMBO;

and ``nodes``: the input names of every node type those graphs use, so a
user workflow naming an input its node does not have is caught before it
is pushed.

The folder is ``workers/`` at the top of the studio: batches live in
``batches/`` and their renders in ``renders/<batch>/``, so no batch id,
slug or reserved name (``review.md``, ``batch-error.json``) can ever name
this file, and nothing that reads batches or renders ever reads it.  A
worker name becomes a file name by the slug alphabet (:func:`file_name`).

The person's pre-commit hook and ``renderloop status`` read the newest file
(by ``updated_at``): a bound value outside a published range is an error
(``file:line``), a model no worker can render a warning naming what is
missing and where.  With no file published yet, user workflows are checked
against the node definitions captured from ComfyUI 0.3.64
(``studio/data/comfyui_inputs.json``).
"""
from __future__ import annotations

import difflib
import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.errors import FatalError, Problem
from studio.fsutil import read_bounded
from studio.limits import MAX_RECORD_BYTES
from studio.record import dump_json

if TYPE_CHECKING:  # studio.batch imports studio.config, which reads this module
    from studio.batch import LoadedBatch

FOLDER = "workers"
BOUND_FIELDS = ("seed", "width", "height", "steps", "cfg", "sampler", "scheduler")
_CAPTURED = Path(__file__).with_name("data") / "comfyui_inputs.json"

Number = Union[int, float]


class _Closed(BaseModel):
    """Unknown fields refused (a file the worker writes; what people write is studio.source.Strict)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class BoundInput(_Closed):
    """One node input a spec field is written to, and what the servers accept there."""

    node: str
    class_type: str
    input: str
    type: str  # INT, FLOAT, COMBO, STRING...
    min: Optional[Number] = None  # the tightest over the servers
    max: Optional[Number] = None
    choices: Optional[list[str]] = None  # a COMBO: what every server offers

    @property
    def where(self) -> str:
        return f"{self.class_type}.{self.input} (node {self.node})"

    def refuses(self, value: Any) -> Optional[str]:
        """Why ``value`` is not accepted here, or None."""
        if self.choices is not None:
            if isinstance(value, str) and value not in self.choices:
                near = difflib.get_close_matches(value, self.choices, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                return f"{value!r} is not one of the {len(self.choices)} choices of {self.where}{hint}"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.min is not None and value < self.min:
            return f"{value} is below {self.min}, the least {self.where} accepts"
        if self.max is not None and value > self.max:
            return f"{value} is above {self.max}, the most {self.where} accepts"
        return None


class ModelCapability(_Closed):
    renderable: bool  # every server has its files and node types
    missing: dict[str, list[str]] = Field(default_factory=dict)  # server -> what it lacks
    inputs: dict[str, list[BoundInput]] = Field(default_factory=dict)  # spec field -> where it goes


class Capability(_Closed):
    version: Literal[1] = 1
    worker: str
    updated_at: datetime
    servers: list[str]
    models: dict[str, ModelCapability] = Field(default_factory=dict)
    nodes: dict[str, list[str]] = Field(default_factory=dict)  # node type -> its input names

    def to_json(self) -> str:
        return dump_json(self)

    def same_as(self, other: Optional["Capability"]) -> bool:
        """Equal but for the time it was written."""
        return other is not None and self.model_dump(exclude={"updated_at"}) == other.model_dump(exclude={"updated_at"})

    def cannot_render(self, model: str) -> Optional[str]:
        """What keeps this worker from rendering ``model``: None when it can (or says nothing of it)."""
        found = self.models.get(model)
        if found is None or found.renderable:
            return None
        lacks = "; ".join(f"{server} lacks {', '.join(items)}" for server, items in found.missing.items())
        return f"worker {self.worker} cannot render {model}: {lacks or 'no server answers'}"


def file_name(worker: str) -> str:
    """``workers/<this>.json`` for a worker name: lowercase letters, digits and hyphens."""
    name = re.sub(r"[^a-z0-9]+", "-", worker.lower()).strip("-")[:80].strip("-")
    return f"{name or 'worker'}.json"


def rel_path(worker: str) -> str:
    return f"{FOLDER}/{file_name(worker)}"


def parse(raw: bytes) -> Optional[Capability]:
    try:
        return Capability.model_validate_json(raw)
    except (ValidationError, ValueError):
        return None


def newest(root: Path) -> Optional[Capability]:
    """The most recently written capability file in ``root/workers`` (None when there is none)."""
    found = []
    folder = root / FOLDER
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:  # a file pulled from the remote: read with the limits of a record, never through a link
            capability = parse(read_bounded(path, MAX_RECORD_BYTES, root))
        except (OSError, FatalError):
            continue
        if capability is not None:
            found.append(capability)
    return max(found, key=lambda c: c.updated_at) if found else None


# ------------------------------------------------------------ the checks
def range_problems(loaded: "LoadedBatch", capability: Capability) -> list[Problem]:
    """Every bound value of the batch outside what the publishing worker's servers accept."""
    problems = []
    for job in loaded.jobs:
        model = capability.models.get(job.spec.model)
        if model is None:
            continue
        for name, targets in model.inputs.items():
            value = getattr(job.spec, name, None)
            for target in targets:
                why = target.refuses(value)
                if why:
                    problems.append(Problem(loaded.path, job.line, f"{job.slug}: {name} {why} on worker "
                                            f"{capability.worker} ({rel_path(capability.worker)})"))
                    break
    return problems


def model_warnings(loaded: "LoadedBatch", capability: Capability) -> list[Problem]:
    """One warning per model the batch uses that the worker cannot render, at its first prompt."""
    warned: dict[str, Problem] = {}
    for job in loaded.jobs:
        model = job.spec.model
        if model in warned:
            continue
        why = capability.cannot_render(model)
        if why:
            warned[model] = Problem(loaded.path, job.line, f"warning: {why}")
    return list(warned.values())


def node_inputs(capability: Optional[Capability]) -> dict[str, list[str]]:
    """Input names per node type: the published ones over the captured ComfyUI 0.3.64 definitions."""
    return {**captured_node_inputs(), **(capability.nodes if capability is not None else {})}


@lru_cache(maxsize=1)
def captured_node_inputs() -> dict[str, list[str]]:
    data = json.loads(_CAPTURED.read_text(encoding="utf-8"))
    return {str(k): [str(n) for n in v] for k, v in data.items()}


def unknown_input(class_type: str, name: str, known: Mapping[str, Sequence[str]]) -> Optional[str]:
    """Why ``name`` is not an input of ``class_type`` (with the near match), or None (it is, or the type
    is unknown: a custom node nobody published)."""
    names = known.get(class_type)
    if names is None or name in names:
        return None
    near = difflib.get_close_matches(name, list(names), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f" (its inputs: {', '.join(names)})"
    return f"{class_type} has no input {name!r}{hint}"
