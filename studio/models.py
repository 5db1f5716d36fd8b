"""The built-in models: one row each, the only place a built-in model is defined.

Read by the validator (graph names and the settings each graph takes, in
``studio.config``), by the ``renderloop.yaml`` a new studio starts with
(``studio.config.DEFAULT_CONFIG_YAML``), by the ComfyUI graph builders
(``win_side.backends.comfyui.graphs``: one builder per name here, a test holds
them equal) and by the fal and mflux backends (which models take a negative
prompt).  The ComfyUI values are those of ComfyUI's own templates
(``shared/comfyui/workflows``); a studio's ``renderloop.yaml`` may change any.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # the model's name in renderloop.yaml, and its ComfyUI graph's name
    # Defaults for a prompt that names none (and for the graph when renderloop.yaml names none).
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    # ComfyUI: the model files its graph loads (setting -> the template's file) ...
    files: dict[str, str]
    # ... its numeric graph settings with their defaults (guidance, shift) ...
    tuning: dict[str, float] = field(default_factory=dict)
    # ... and whether the graph also renders from one fp8 checkpoint instead of the files.
    checkpoint: bool = False
    fal_endpoint: str = ""  # the path after fal's queue host
    fal_usd_per_mp: float = 0.0  # fal's price per megapixel
    mflux_program: str = ""  # the mflux program that renders it on a Mac ...
    mflux_model: str = ""  # ... and its --model, if it takes one
    # False: a distilled model with no negative branch; fal and mflux leave the spec's negative out.
    negative_prompt: bool = True
    max_side: int = 2048
    max_pixels: int = 4_194_304

    @property
    def settings(self) -> tuple[str, ...]:
        """What ``comfyui`` in renderloop.yaml may set for this graph."""
        return (*self.files, "weight_dtype", *(("checkpoint",) if self.checkpoint else ()), *self.tuning)

    @property
    def checkpoint_settings(self) -> tuple[str, ...]:
        """What ``comfyui`` may set when it names a ``checkpoint`` (the separate files then do not apply)."""
        return ("checkpoint", *self.tuning) if self.checkpoint else self.settings


_FLUX_FILES = {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors", "vae": "ae.safetensors"}

BUILTIN_MODELS: tuple[BuiltinModel, ...] = (
    BuiltinModel(
        "flux-schnell", width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", scheduler="simple",
        files={"unet": "flux1-schnell.safetensors", **_FLUX_FILES}, checkpoint=True,
        fal_endpoint="fal-ai/flux/schnell", fal_usd_per_mp=0.003,
        mflux_program="mflux-generate", mflux_model="schnell", negative_prompt=False,
    ),
    BuiltinModel(
        "flux-dev", width=1024, height=1024, steps=20, cfg=1.0, sampler="euler", scheduler="simple",
        files={"unet": "flux1-dev.safetensors", **_FLUX_FILES}, tuning={"guidance": 3.5}, checkpoint=True,
        fal_endpoint="fal-ai/flux/dev", fal_usd_per_mp=0.025,
        mflux_program="mflux-generate", mflux_model="dev", negative_prompt=False,
    ),
    BuiltinModel(
        "z-image-turbo", width=1024, height=1024, steps=8, cfg=1.0, sampler="res_multistep", scheduler="simple",
        files={"unet": "z_image_turbo_bf16.safetensors", "clip": "qwen_3_4b.safetensors", "vae": "ae.safetensors"},
        tuning={"shift": 3.0},
        fal_endpoint="fal-ai/z-image/turbo", fal_usd_per_mp=0.005,
        mflux_program="mflux-generate-z-image-turbo", negative_prompt=False,
    ),
    BuiltinModel(
        "qwen-image", width=1328, height=1328, steps=20, cfg=4.0, sampler="euler", scheduler="simple",
        files={"unet": "qwen_image_fp8_e4m3fn.safetensors", "clip": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
               "vae": "qwen_image_vae.safetensors"},
        tuning={"shift": 3.1},
        fal_endpoint="fal-ai/qwen-image", fal_usd_per_mp=0.02,
        mflux_program="mflux-generate-qwen",
    ),
)

BUILTIN: dict[str, BuiltinModel] = {model.name: model for model in BUILTIN_MODELS}
GRAPH_NAMES: tuple[str, ...] = tuple(BUILTIN)
