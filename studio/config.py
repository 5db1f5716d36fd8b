"""``renderloop.yaml``: models, defaults and backends (never secrets)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from studio.capability import newest, node_inputs
from studio.errors import InvalidFile, Problem
from studio.layout import Studio
from studio.limits import MAX_BATCH_BYTES, MAX_STEPS, Limits, Pixels, SamplerName, Side
from studio.models import BUILTIN, BUILTIN_MODELS, GRAPH_NAMES, BuiltinModel
from studio.source import Document, load_file, problems_from
from studio.workflow import BIND_FIELDS, BindingError, parse_workflow_bytes, read_workflow

# fal inputs renderloop fills from each image's spec.
FAL_MANAGED_ARGUMENTS = (
    "prompt", "negative_prompt", "seed", "image_size", "num_inference_steps", "num_images", "output_format",
)
_ENDPOINT_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

if TYPE_CHECKING:
    GraphName = str
else:  # pydantic checks the names and lists them in its message
    GraphName = Literal[GRAPH_NAMES]


class _Strict(BaseModel):
    # strict: "8" is not 8 and true is not 1.0 (a float field still takes an int).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ComfyUIModel(_Strict):
    """How a model renders on ComfyUI: a built-in graph or a user workflow.

    A built-in graph takes model file names as the ComfyUI server lists them
    (defaults: the files of ComfyUI's own templates).  A workflow is a file in
    the studio exported with "Save (API)"; ``bind`` says which node inputs get
    the spec's prompt, negative, seed, width, height and steps, as
    ``NODE.INPUT`` with NODE a node id or title (see ``studio.workflow``).
    """

    graph: Optional[GraphName] = None  # a built-in graph: one of studio.models
    workflow: Optional[str] = None  # path inside the studio, exported with "Save (API)"
    bind: dict[str, Union[str, list[str]]] = Field(default_factory=dict)
    # Model file names as the ComfyUI server lists them (built-in graphs only).
    unet: Optional[str] = None
    clip: Optional[str] = None
    clip_l: Optional[str] = None
    t5xxl: Optional[str] = None
    vae: Optional[str] = None
    checkpoint: Optional[str] = None  # flux graphs: one fp8 checkpoint instead of unet/clip_l/t5xxl/vae
    weight_dtype: Optional[str] = None
    guidance: Optional[float] = Field(default=None, ge=0, le=100)
    shift: Optional[float] = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_source(self) -> "ComfyUIModel":
        if (self.graph is None) == (self.workflow is None):
            raise ValueError("name exactly one of 'graph' (a built-in graph) or 'workflow' (a file)")
        if self.bind and self.workflow is None:
            raise ValueError("'bind' goes with 'workflow'")
        unknown = sorted(set(self.bind) - set(BIND_FIELDS))
        if unknown:
            raise ValueError(f"cannot bind {unknown[0]!r}: choose from {', '.join(BIND_FIELDS)}")
        misplaced = self._misplaced()
        if misplaced:
            what = f"graph {self.graph}" if self.graph else "a workflow (set them in the workflow file)"
            allowed = ", ".join(self.allowed_settings()) or "none"
            raise ValueError(f"{misplaced[0]!r} does not apply to {what}; it takes {allowed}")
        return self

    def allowed_settings(self) -> tuple[str, ...]:
        if self.graph is None:
            return ()
        builtin = BUILTIN[self.graph]
        return builtin.checkpoint_settings if self.checkpoint is not None else builtin.settings

    def _misplaced(self) -> list[str]:
        names = ("unet", "clip", "clip_l", "t5xxl", "vae", "checkpoint", "weight_dtype", "guidance", "shift")
        allowed = self.allowed_settings()
        return [name for name in names if getattr(self, name) is not None and name not in allowed]


class FalModel(_Strict):
    """How a model renders on fal's queue API."""

    endpoint: str  # e.g. fal-ai/flux/schnell: the path after the queue host
    usd_per_mp: float = Field(default=0.0, ge=0)  # price per megapixel (1024 x 1024 pixels)
    round_up_mp: bool = True  # fal bills each started megapixel
    timeout_seconds: float = Field(default=600.0, gt=0)  # the longest wait for one image
    # Extra inputs sent with every request, e.g. {enable_safety_checker: false}.
    arguments: dict[str, Union[bool, int, float, str]] = Field(default_factory=dict)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_shape(cls, value: str) -> str:
        parts = value.strip("/").split("/")
        if len(parts) < 2 or not all(_ENDPOINT_PART.fullmatch(p) for p in parts):
            raise ValueError(f"endpoint {value!r} is not a fal endpoint like 'fal-ai/flux/schnell'")
        return value.strip("/")

    @field_validator("arguments")
    @classmethod
    def _no_managed_arguments(cls, value: dict[str, object]) -> dict[str, object]:
        managed = sorted(set(value) & set(FAL_MANAGED_ARGUMENTS))
        if managed:
            raise ValueError(f"{managed[0]!r} comes from the batch's spec; remove it from 'arguments'")
        return value


class MfluxModel(_Strict):
    """How a model renders with mflux on a Mac (one command per image)."""

    command: Union[str, list[str]]  # program and fixed arguments, e.g. [mflux-generate, --model, schnell]
    quantize: Optional[Literal[3, 4, 5, 6, 8]] = None  # -q/--quantize
    low_ram: bool = False  # --low-ram
    guidance: Optional[float] = Field(default=None, ge=0)  # --guidance

    @field_validator("command")
    @classmethod
    def _some_command(cls, value: Union[str, list[str]]) -> Union[str, list[str]]:
        argv = [value] if isinstance(value, str) else value
        if not argv or not all(isinstance(a, str) and a.strip() for a in argv):
            raise ValueError("command names the mflux program, e.g. mflux-generate-z-image-turbo")
        return value

    @property
    def argv(self) -> list[str]:
        return [self.command] if isinstance(self.command, str) else list(self.command)


class ModelSettings(_Strict):
    width: int = Field(default=1024, gt=0)
    height: int = Field(default=1024, gt=0)
    steps: Optional[int] = Field(default=None, gt=0, le=MAX_STEPS)
    cfg: Optional[float] = Field(default=None, ge=0)
    sampler: Optional[SamplerName] = None
    scheduler: Optional[SamplerName] = None
    min_side: int = Field(default=64, gt=0)
    max_side: Side = 4096  # at most studio.limits.MAX_SIDE: a studio lowers the ceilings, never raises them
    max_pixels: Pixels = 4_194_304
    comfyui: Optional[ComfyUIModel] = None
    fal: Optional[FalModel] = None
    mflux: Optional[MfluxModel] = None

    @model_validator(mode="after")
    def _default_size_fits(self) -> "ModelSettings":
        """The default size must pass the model's own limits, or every batch relying on it would fail."""
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is larger than max_side {self.max_side}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 8:
                raise ValueError(f"default {name} {value} is not a multiple of 8")
            if not self.min_side <= value <= self.max_side:
                raise ValueError(f"default {name} {value} is outside min_side-max_side {self.min_side}-{self.max_side}")
        if self.width * self.height > self.max_pixels:
            raise ValueError(
                f"default size {self.width}x{self.height} is more than max_pixels {self.max_pixels}"
            )
        return self


class WakeSettings(_Strict):
    """Wake-on-LAN for the worker: `renderloop wake`."""

    mac: str  # the worker's network card, e.g. AA:BB:CC:DD:EE:FF
    broadcast: str = "255.255.255.255"  # the LAN's broadcast address, e.g. 192.168.1.255
    port: int = Field(default=9, gt=0, lt=65536)

    @field_validator("mac", mode="before")
    @classmethod
    def _mac_quoted(cls, value: object) -> object:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                'put the MAC address in quotes, like mac: "AA:BB:CC:DD:EE:FF" (unquoted, YAML reads it as a number)'
            )
        return value

    @field_validator("mac")
    @classmethod
    def _mac_shape(cls, value: str) -> str:
        digits = re.sub(r"[:\-.]", "", value.strip())
        if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
            raise ValueError(
                f"{value!r} is not a MAC address: write six pairs of hex digits, like AA:BB:CC:DD:EE:FF"
            )
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).upper()

    @field_validator("broadcast")
    @classmethod
    def _broadcast_shape(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value.strip()):
            raise ValueError(f"broadcast {value!r} is not an address: write one like 192.168.1.255")
        return value.strip()

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))


class WorkerSettings(_Strict):
    name: Optional[str] = None
    comfyui: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8188"])
    window: int = Field(default=2, ge=1, le=64)
    poll_seconds: Optional[float] = Field(default=None, gt=0)  # None: 12 s (a remote on this disk is watched)
    backstop_seconds: float = Field(default=60.0, gt=0)
    fal_url: Optional[str] = None
    wake: Optional[WakeSettings] = None


class LocalSettings(_Strict):
    """`renderloop local`: the safety wrapper around mflux on this Mac."""

    cooldown_seconds: float = Field(default=15.0, ge=0)  # pause between two mflux runs
    min_available_gb: float = Field(default=8.0, ge=0)  # memory gate before each run
    memory_wait_seconds: float = Field(default=600.0, ge=0)  # give up waiting for memory
    timeout_seconds: float = Field(default=1800.0, gt=0)  # limit per image


class StudioConfig(_Strict):
    version: Literal[1] = 1
    models: dict[str, ModelSettings]
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        if not models:
            raise ValueError("list at least one model")
        return models


def load_config(studio: Studio) -> StudioConfig:
    """Read and validate ``renderloop.yaml`` and the workflows it names; errors name the line."""
    path = studio.config_path
    if not studio.is_studio():
        raise InvalidFile([Problem(path.name, 1, "no renderloop.yaml here: run `renderloop init` first")])
    doc = load_file(path, studio.rel(path), max_bytes=MAX_BATCH_BYTES, root=studio.root)
    config = parse_config(doc)
    check_workflows(config, doc, lambda rel: read_workflow(studio, rel), workflow_nodes(studio.root, config))
    return config


def workflow_nodes(root: Path, config: StudioConfig) -> dict[str, list[str]]:
    """Input names per node type to check user workflows against: the newest published capability
    file's (``workers/``), over ComfyUI's captured definitions.  Nothing is read without a workflow."""
    if not any(model.comfyui is not None and model.comfyui.workflow for model in config.models.values()):
        return {}
    return node_inputs(newest(root))


def check_workflows(config: StudioConfig, doc: Document, read: Callable[[str], Optional[bytes]],
                    nodes: Optional[Mapping[str, Sequence[str]]] = None) -> None:
    """Load every user workflow the models name and check their bindings against it.

    ``read(rel)`` gives a workflow file's bytes (None: no such file): from the
    working tree in :func:`load_config`, from the index in the pre-commit hook.
    Only models with ``comfyui.workflow`` cost anything: a studio without
    workflows reads no other file.
    """
    problems: list[Problem] = []
    for name, model in config.models.items():
        comfy = model.comfyui
        if comfy is None or comfy.workflow is None:
            continue
        loc = ("models", name, "comfyui")
        try:
            raw = read(comfy.workflow)
            if raw is None:
                raise BindingError(f"workflow file {comfy.workflow} does not exist")
            workflow = parse_workflow_bytes(raw, comfy.workflow, nodes)
        except BindingError as exc:
            problems.append(doc.problem(loc + ("workflow",), f"models.{name}.comfyui.workflow: {exc}"))
            continue
        except InvalidFile as exc:
            problems += exc.problems
            continue
        for field, refs in comfy.bind.items():
            try:
                workflow.resolve({field: refs})
            except BindingError as exc:
                problems.append(doc.problem(loc + ("bind", field), f"models.{name}.comfyui.{exc}"))
    if problems:
        raise InvalidFile(problems)


def parse_config(doc: Document) -> StudioConfig:
    if not isinstance(doc.data, dict):
        raise InvalidFile([doc.problem((), "renderloop.yaml must be a mapping of settings")])
    try:
        return StudioConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise InvalidFile(problems_from(exc, doc)) from None


def builtin_config() -> StudioConfig:
    return parse_config(Document("renderloop.yaml", yaml.safe_load(DEFAULT_CONFIG_YAML)))


_TEMPLATE = """\
# renderloop studio settings. No secrets here: keys come from the environment.
version: 1

# Models a batch may name. Sizes are the defaults for a prompt that names none;
# min_side, max_side and max_pixels are the limits the validator enforces.
# comfyui: the built-in graph and the model file names as the worker's ComfyUI
# lists them. fal: the endpoint and the price per megapixel (USD).
# mflux: the command that renders it on a Mac (Apple silicon).
models:
{models}
worker:
  # name: studio-pc           # defaults to this machine's host name
  comfyui: [http://127.0.0.1:8188]
  window: 2                   # prompts queued ahead on each server
  # poll_seconds: 12          # how often to ask a remote over the network (one on this disk is watched)
  # wake: {mac: "AA:BB:CC:DD:EE:FF", broadcast: 192.168.1.255, port: 9}

local:                        # `renderloop local`: mflux on this Mac, one run at a time
  cooldown_seconds: 15        # pause between two mflux runs
  min_available_gb: 8         # wait until this much memory is free before each run...
  memory_wait_seconds: 600    # ...for at most this long
  timeout_seconds: 1800       # kill a run that takes longer than this
"""


def _yaml_scalar(value: Union[str, int, float]) -> str:
    """``value`` as YAML, plain where it reads back the same (also inside ``[...]`` and ``{...}``)."""
    text = str(value)
    if isinstance(value, (int, float)) or (yaml.safe_load(text) == value and not set(text) & set(",[]{}#")):
        return text
    return json.dumps(value)


def _template_model(model: BuiltinModel) -> str:
    """One built-in model's entry in the template, as a person would write it."""
    s = _yaml_scalar
    sampling: dict[str, Union[str, int, float]] = {
        "width": model.width, "height": model.height, "steps": model.steps, "cfg": model.cfg,
        "sampler": model.sampler, "scheduler": model.scheduler,
        "max_side": model.max_side, "max_pixels": model.max_pixels,
    }
    comfyui: dict[str, Union[str, float]] = {"graph": model.name, **model.files, **model.tuning}
    lines = [f"  {model.name}:"]
    lines += [f"    {key}: {s(value)}" for key, value in sampling.items()]
    lines += ["    comfyui:"] + [f"      {key}: {s(value)}" for key, value in comfyui.items()]
    if model.fal_endpoint:
        lines.append(f"    fal: {{endpoint: {s(model.fal_endpoint)}, usd_per_mp: {s(model.fal_usd_per_mp)}}}")
    if model.mflux_command:
        lines.append(f"    mflux: {{command: [{', '.join(s(arg) for arg in model.mflux_command)}]}}")
    return "".join(line + "\n" for line in lines)


# The renderloop.yaml of a new studio (`renderloop init`): every built-in model, with its defaults.
DEFAULT_CONFIG_YAML = _TEMPLATE.replace("{models}", "".join(_template_model(m) for m in BUILTIN_MODELS))
