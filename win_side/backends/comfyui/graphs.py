"""The API-format graphs renderloop submits to ComfyUI.

Built-in graphs have the node ids, node types, input names and titles of
ComfyUI's own templates (as converted in ``shared/comfyui/workflows/*.api.json``);
file names, steps, cfg, sampler, scheduler, guidance and shift come from
renderloop.yaml and the spec, else from the built-in model (``studio.models``,
the templates' own values).  User
workflows come from ``studio.workflow`` with their bindings applied.

Every graph is unique to its image: the SaveImage ``filename_prefix`` holds
the batch, the slug and the spec hash, so ComfyUI's cache never answers a new
image with an old file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from studio.config import ComfyUIModel
from studio.models import BUILTIN
from studio.spec import Spec
from studio.workflow import Workflow

Node = dict[str, Any]

@dataclass(frozen=True)
class Graph:
    """A graph ready to submit, and the SaveImage node whose image is the render."""

    nodes: dict[str, Node]
    save_node: str

    @property
    def prefix(self) -> str:
        return self.nodes[self.save_node]["inputs"]["filename_prefix"]

    def with_prefix(self, prefix: str) -> "Graph":
        nodes = {k: {**v, "inputs": dict(v["inputs"])} for k, v in self.nodes.items()}
        nodes[self.save_node]["inputs"]["filename_prefix"] = prefix
        return Graph(nodes, self.save_node)


def filename_prefix(batch: str, slug: str, spec_hash: str) -> str:
    return f"renderloop/{batch}/{slug}-{spec_hash.removeprefix('sha256:')[:12]}"


def node(class_type: str, title: str, **inputs: Any) -> Node:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


class _Settings:
    """A value from renderloop.yaml, else the built-in model's default (studio.models: the template's)."""

    def __init__(self, graph: str, comfy: ComfyUIModel, spec: Spec) -> None:
        self.builtin = BUILTIN[graph]
        self.comfy = comfy
        self.spec = spec

    def __getitem__(self, name: str) -> Any:
        value = getattr(self.comfy, name, None)
        if value is not None:
            return value
        return self.builtin.files[name] if name in self.builtin.files else self.builtin.tuning[name]

    def sampler(self, model: list, positive: list, negative: list, latent: list) -> Node:
        spec, builtin = self.spec, self.builtin
        return node(
            "KSampler", "KSampler",
            seed=spec.seed,
            steps=spec.steps if spec.steps is not None else builtin.steps,
            cfg=float(spec.cfg if spec.cfg is not None else builtin.cfg),
            sampler_name=spec.sampler or builtin.sampler,
            scheduler=spec.scheduler or builtin.scheduler,
            denoise=1.0, model=model, positive=positive, negative=negative, latent_image=latent,
        )

    def latent(self) -> Node:
        return node("EmptySD3LatentImage", "EmptySD3LatentImage",
                    width=self.spec.width, height=self.spec.height, batch_size=1)

    def unet(self) -> Node:
        return node("UNETLoader", "Load Diffusion Model", unet_name=self["unet"],
                    weight_dtype=self.comfy.weight_dtype or "default")

    def negative(self, source: list, clip: list) -> Node:
        """The templates zero out the positive conditioning; a spec's negative text replaces that."""
        if self.spec.negative.strip():
            return node("CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text=self.spec.negative, clip=clip)
        return node("ConditioningZeroOut", "ConditioningZeroOut", conditioning=source)


def _flux(s: _Settings, prefix: str, dev: bool) -> dict[str, Node]:
    if s.comfy.checkpoint:
        return _flux_checkpoint(s, prefix, dev)
    nodes = {
        "38": s.unet(),
        "40": node("DualCLIPLoader", "DualCLIPLoader", clip_name1=s["clip_l"], clip_name2=s["t5xxl"],
                   type="flux", device="default"),
        "39": node("VAELoader", "Load VAE", vae_name=s["vae"]),
        "41": node("CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=s.spec.prompt, clip=["40", 0]),
        "42": s.negative(["41", 0], ["40", 0]),
        "27": s.latent(),
        "31": s.sampler(["38", 0], ["35", 0] if dev else ["41", 0], ["42", 0], ["27", 0]),
        "8": node("VAEDecode", "VAE Decode", samples=["31", 0], vae=["39", 0]),
        "9": node("SaveImage", "Save Image", images=["8", 0], filename_prefix=prefix),
    }
    if dev:
        nodes["35"] = node("FluxGuidance", "FluxGuidance", conditioning=["41", 0], guidance=float(s["guidance"]))
    return nodes


def _flux_checkpoint(s: _Settings, prefix: str, dev: bool) -> dict[str, Node]:
    nodes = {
        "30": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=s.comfy.checkpoint),
        "6": node("CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=s.spec.prompt, clip=["30", 1]),
        "33": node("CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text=s.spec.negative, clip=["30", 1]),
        "27": s.latent(),
        "31": s.sampler(["30", 0], ["35", 0] if dev else ["6", 0], ["33", 0], ["27", 0]),
        "8": node("VAEDecode", "VAE Decode", samples=["31", 0], vae=["30", 2]),
        "9": node("SaveImage", "Save Image", images=["8", 0], filename_prefix=prefix),
    }
    if dev:
        nodes["35"] = node("FluxGuidance", "FluxGuidance", conditioning=["6", 0], guidance=float(s["guidance"]))
    return nodes


def _z_image(s: _Settings, prefix: str) -> dict[str, Node]:
    return {
        "28": s.unet(),
        "30": node("CLIPLoader", "Load CLIP", clip_name=s["clip"], type="lumina2", device="default"),
        "29": node("VAELoader", "Load VAE", vae_name=s["vae"]),
        "11": node("ModelSamplingAuraFlow", "ModelSamplingAuraFlow", model=["28", 0], shift=float(s["shift"])),
        "27": node("CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=s.spec.prompt, clip=["30", 0]),
        "33": s.negative(["27", 0], ["30", 0]),
        "13": s.latent(),
        "3": s.sampler(["11", 0], ["27", 0], ["33", 0], ["13", 0]),
        "8": node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["29", 0]),
        "9": node("SaveImage", "Save Image", images=["8", 0], filename_prefix=prefix),
    }


def _qwen_image(s: _Settings, prefix: str) -> dict[str, Node]:
    return {
        "37": s.unet(),
        "38": node("CLIPLoader", "Load CLIP", clip_name=s["clip"], type="qwen_image", device="default"),
        "39": node("VAELoader", "Load VAE", vae_name=s["vae"]),
        "66": node("ModelSamplingAuraFlow", "ModelSamplingAuraFlow", model=["37", 0], shift=float(s["shift"])),
        "6": node("CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=s.spec.prompt, clip=["38", 0]),
        "7": node("CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text=s.spec.negative, clip=["38", 0]),
        "58": s.latent(),
        "3": s.sampler(["66", 0], ["6", 0], ["7", 0], ["58", 0]),
        "8": node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["39", 0]),
        "60": node("SaveImage", "Save Image", images=["8", 0], filename_prefix=prefix),
    }


# One builder per built-in model in studio.models (a test holds the two equal).
BUILDERS: dict[str, Callable[[_Settings, str], dict[str, Node]]] = {
    "flux-schnell": lambda s, prefix: _flux(s, prefix, dev=False),
    "flux-dev": lambda s, prefix: _flux(s, prefix, dev=True),
    "z-image-turbo": _z_image,
    "qwen-image": _qwen_image,
}


def builtin_graph(comfy: ComfyUIModel, spec: Spec, prefix: str) -> Graph:
    """The built-in graph ``comfy.graph`` for ``spec``."""
    assert comfy.graph is not None
    nodes = BUILDERS[comfy.graph](_Settings(comfy.graph, comfy, spec), prefix)
    save = next(k for k, v in nodes.items() if v["class_type"] == "SaveImage")
    return Graph(nodes, save)


def workflow_graph(workflow: Workflow, comfy: ComfyUIModel, spec: Spec, prefix: str) -> Graph:
    """A user workflow with the spec written to its bound inputs (raises BindingError)."""
    targets = workflow.resolve(comfy.bind)
    values: dict[str, Optional[Any]] = {
        "prompt": spec.prompt,
        "negative": spec.negative or None,  # an empty negative keeps the workflow's own
        "seed": spec.seed,
        "width": spec.width,
        "height": spec.height,
        "steps": spec.steps,
    }
    nodes = workflow.apply(targets, values)
    graph = Graph(nodes, workflow.save_node)
    return graph.with_prefix(prefix)
