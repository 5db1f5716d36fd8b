"""``renderloop.yaml``: models, defaults and backends (never secrets)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Optional, Sequence, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from studio.capability import newest, node_inputs
from studio.errors import InvalidFile, Problem
from studio.layout import Studio
from studio.limits import MAX_BATCH_BYTES, MAX_STEPS, Limits, Pixels, SamplerName, Side
from studio.machine import flag_hint, machine_path
from studio.models import BUILTIN, BUILTIN_MODELS, GRAPH_NAMES, BuiltinModel
from studio.source import Document, Strict, load_file, problems_from
from studio.workflow import BIND_FIELDS, BindingError, parse_workflow_bytes, read_workflow

# fal inputs renderloop fills from each image's spec.
FAL_MANAGED_ARGUMENTS = (
    "prompt", "negative_prompt", "seed", "image_size", "num_inference_steps", "num_images", "output_format",
)
_ENDPOINT_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MFLUX_PROGRAM = re.compile(r"mflux-generate(-[a-z0-9]+)*")
MFLUX_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99})?")

if TYPE_CHECKING:
    GraphName = str
else:  # pydantic checks the names and lists them in its message
    GraphName = Literal[GRAPH_NAMES]


class ComfyUIModel(Strict):
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


class FalModel(Strict):
    """How a model renders on fal's queue API."""

    endpoint: str  # e.g. fal-ai/flux/schnell: the path after the queue host
    usd_per_mp: float = Field(default=0.0, ge=0)  # price per megapixel (1024 x 1024 pixels)
    round_up_mp: bool = True  # fal bills each started megapixel
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


class MfluxModel(Strict):
    """How a model renders with mflux on a Mac (one run of an mflux program per image).

    Only the program's name and its model come from here: which folder the
    program is run from is this Mac's setting (``mac.mflux_bin`` in
    machine.yaml, else PATH), so the repository never names a command.
    """

    program: str  # an mflux program, e.g. mflux-generate or mflux-generate-z-image-turbo
    model: Optional[str] = None  # --model, e.g. schnell, dev or a Hugging Face repository
    quantize: Optional[Literal[3, 4, 5, 6, 8]] = None  # -q/--quantize
    low_ram: bool = False  # --low-ram
    guidance: Optional[float] = Field(default=None, ge=0)  # --guidance

    @field_validator("program")
    @classmethod
    def _an_mflux_program(cls, value: str) -> str:
        if not MFLUX_PROGRAM.fullmatch(value):
            raise ValueError(
                f"program {value!r} is not an mflux program: name one like mflux-generate or "
                "mflux-generate-z-image-turbo (no folder: where it is installed is this Mac's mac.mflux_bin)"
            )
        return value

    @field_validator("model")
    @classmethod
    def _a_model_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not MFLUX_MODEL.fullmatch(value):
            raise ValueError(f"model {value!r} is not an mflux model name like schnell or owner/repository")
        return value

    @property
    def argv(self) -> list[str]:
        """The program and its fixed arguments."""
        return [self.program, *(["--model", self.model] if self.model else [])]


class ModelSettings(Strict):
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


class StudioConfig(Strict):
    version: Literal[1] = 1
    models: dict[str, ModelSettings]
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


# Keys older studios kept in renderloop.yaml that are this machine's to say now (SPEC 8b):
# the key in renderloop.yaml -> the setting in machine.yaml.
MOVED_TO_MACHINE: dict[str, str] = {
    "worker.name": "worker.name",
    "worker.comfyui": "worker.comfyui",
    "worker.window": "worker.window",
    "worker.poll_seconds": "worker.poll",
    "worker.backstop_seconds": "worker.backstop",
    "worker.fal_url": "worker.fal_url",
    "worker.wake": "mac.wake",
    "local.cooldown_seconds": "mac.cooldown",
    "local.min_available_gb": "mac.min_available_gb",
    "local.memory_wait_seconds": "mac.memory_wait",
    "local.timeout_seconds": "mac.timeout",
    "models.*.fal.timeout_seconds": "worker.fal_timeout",
    "models.*.mflux.command": "mac.mflux_bin",
}
_MACHINE_SECTIONS = ("worker", "local", "mac")


def machine_keys(doc: Document) -> list[Problem]:
    """Machine settings found in a repository's renderloop.yaml, each refused where it belongs now."""
    data = doc.data
    found: list[tuple[tuple[str, ...], str]] = []  # (loc in renderloop.yaml, setting in machine.yaml)
    for section in _MACHINE_SECTIONS:
        value = data.get(section)
        if isinstance(value, dict) and value:
            for key in value:
                where = f"{section}.{key}"
                found.append(((section, str(key)), MOVED_TO_MACHINE.get(where, where)))
        elif section in data:
            found.append(((section,), section))
    models = data.get("models")
    for name, model in (models.items() if isinstance(models, dict) else ()):
        for backend, key in (("fal", "timeout_seconds"), ("mflux", "command")):
            part = model.get(backend) if isinstance(model, dict) else None
            if isinstance(part, dict) and key in part:
                found.append((("models", name, backend, key), MOVED_TO_MACHINE[f"models.*.{backend}.{key}"]))
    place = machine_path()
    problems = []
    for loc, target in found:
        key = ".".join(str(part) for part in loc)
        if key.endswith(".mflux.command"):
            model_key = key[: -len(".command")]
            message = (
                f"{key!r} is a machine setting: name only the program in {model_key}.program (and its "
                f"{model_key}.model); the folder it runs from goes in {place} as mac.mflux_bin"
            )
        else:
            renamed = f" as {target}" if target != key else ""
            message = f"{key!r} is a machine setting: put it in {place}{renamed}{flag_hint(target)}"
        problems.append(doc.problem(loc + ("__key__",), message))
    return sorted(problems, key=lambda p: p.line)


def parse_config(doc: Document) -> StudioConfig:
    if not isinstance(doc.data, dict):
        raise InvalidFile([doc.problem((), "renderloop.yaml must be a mapping of settings")])
    moved = machine_keys(doc)
    if moved:
        raise InvalidFile(moved)
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
# mflux: the mflux program (and its model) that renders it on a Mac with Apple silicon.
# Where and with what each machine renders (ComfyUI servers and the command
# that starts ComfyUI, its models folder, fal's host, the webhook, push spacing,
# the mflux folder, Wake-on-LAN) is that machine's own setting, never this
# file's: see `renderloop config --path`.
models:
{models}"""


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
    if model.mflux_program:
        model_arg = f", model: {s(model.mflux_model)}" if model.mflux_model else ""
        lines.append(f"    mflux: {{program: {s(model.mflux_program)}{model_arg}}}")
    return "".join(line + "\n" for line in lines)


# The renderloop.yaml of a new studio (`renderloop init`): every built-in model, with its defaults.
DEFAULT_CONFIG_YAML = _TEMPLATE.replace("{models}", "".join(_template_model(m) for m in BUILTIN_MODELS))
