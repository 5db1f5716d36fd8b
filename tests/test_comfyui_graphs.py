"""Built-in graphs equal ComfyUI's templates (shared/comfyui/workflows) and validate against object_info."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from studio.config import ComfyUIModel, builtin_config
from studio.models import GRAPH_NAMES
from studio.spec import Spec
from tests.comfyui_server.fixtures import workflow_capture
from tests.comfyui_server.server import DEFAULT_MODELS, install_models, load_object_info
from tests.comfyui_server.validate import validate_prompt
from win_side.backends.comfyui.graphs import builtin_graph, filename_prefix

MODELS = list(GRAPH_NAMES)  # each has its template captured in shared/comfyui/workflows
TEMPLATE_PROMPT = "A laptop and a tower PC linked by a glowing cable, editorial illustration"


def template_spec(model: str, graph: dict) -> Spec:
    """The spec the captured graph was made for: its own sampler settings and size."""
    sampler = next(n["inputs"] for n in graph.values() if n["class_type"] == "KSampler")
    latent = next(n["inputs"] for n in graph.values() if n["class_type"] == "EmptySD3LatentImage")
    return Spec(model=model, prompt=TEMPLATE_PROMPT, seed=sampler["seed"], width=latent["width"],
                height=latent["height"], steps=sampler["steps"], cfg=sampler["cfg"],
                sampler=sampler["sampler_name"], scheduler=sampler["scheduler"])


def structure(graph: dict) -> dict:
    """Class types, input names and links of every node (values of widgets left out)."""
    return {node: (spec["class_type"], sorted(spec["inputs"]),
                   {k: v for k, v in spec["inputs"].items() if isinstance(v, list)})
            for node, spec in graph.items()}


@pytest.mark.parametrize("model", MODELS)
def test_default_graph_is_the_template_graph(model: str) -> None:
    captured = workflow_capture(f"{model}.api.json")
    graph = builtin_graph(ComfyUIModel(graph=model), template_spec(model, captured), f"renderloop/{model}")
    assert graph.nodes == captured  # node ids, types, inputs, titles, default files: all of it
    assert graph.save_node in captured and captured[graph.save_node]["class_type"] == "SaveImage"


@pytest.mark.parametrize("model", MODELS)
def test_graph_from_the_default_config_has_the_template_structure_and_files(model: str) -> None:
    captured = workflow_capture(f"{model}.api.json")
    settings = builtin_config().models[model]
    spec = Spec(model=model, prompt="a harbor at dawn", seed=7, width=1344, height=768,
                steps=settings.steps, cfg=settings.cfg, sampler=settings.sampler, scheduler=settings.scheduler)
    graph = builtin_graph(settings.comfyui, spec, filename_prefix("b1", "harbor", spec.hash))
    assert structure(graph.nodes) == structure(captured)
    files = lambda g: sorted(v for n in g.values() for k, v in n["inputs"].items() if str(v).endswith(".safetensors"))  # noqa: E731
    assert files(graph.nodes) == files(captured)


@pytest.mark.parametrize("model", MODELS)
def test_every_graph_validates_against_object_info(model: str) -> None:
    info = install_models(load_object_info(), DEFAULT_MODELS)
    spec = Spec(model=model, prompt="p", negative="blurry", seed=2**32 - 1, width=512, height=1024, steps=3,
                cfg=2.5, sampler="dpmpp_2m", scheduler="karras")
    graph = builtin_graph(ComfyUIModel(graph=model), spec, "renderloop/b/s-0123456789ab")
    ok, error, outputs, node_errors = validate_prompt(info, graph.nodes)
    assert (ok, error, node_errors) == (True, None, {})
    assert outputs == [graph.save_node]


@pytest.mark.parametrize("model, variant", [("flux-schnell", "flux-schnell-fp8-checkpoint"),
                                            ("flux-dev", "flux-dev-fp8-checkpoint")])
def test_checkpoint_variant_is_the_fp8_checkpoint_template(model: str, variant: str) -> None:
    captured = workflow_capture(f"{variant}.api.json")
    ckpt = next(n["inputs"]["ckpt_name"] for n in captured.values() if n["class_type"] == "CheckpointLoaderSimple")
    graph = builtin_graph(ComfyUIModel(graph=model, checkpoint=ckpt), template_spec(model, captured),
                          f"renderloop/{model}-fp8")
    assert graph.nodes == captured


def test_renderloop_yaml_overrides_files_and_settings() -> None:
    comfy = ComfyUIModel(graph="z-image-turbo", unet="zit-fp8.safetensors", clip="qwen-q8.gguf",
                         vae="other-vae.safetensors", weight_dtype="fp8_e4m3fn", shift=2.5)
    spec = Spec(model="zit", prompt="p", seed=3, width=640, height=480, steps=6, cfg=1.5, sampler="euler",
                scheduler="beta")
    nodes = builtin_graph(comfy, spec, "x").nodes
    assert nodes["28"]["inputs"] == {"unet_name": "zit-fp8.safetensors", "weight_dtype": "fp8_e4m3fn"}
    assert nodes["30"]["inputs"]["clip_name"] == "qwen-q8.gguf"
    assert nodes["29"]["inputs"]["vae_name"] == "other-vae.safetensors"
    assert nodes["11"]["inputs"]["shift"] == 2.5
    sampler = nodes["3"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"], sampler["seed"]) == \
        (6, 1.5, "euler", "beta", 3)
    assert (nodes["13"]["inputs"]["width"], nodes["13"]["inputs"]["height"]) == (640, 480)


def test_a_negative_prompt_replaces_the_zeroed_conditioning() -> None:
    spec = Spec(model="flux-dev", prompt="p", negative="text, watermark", seed=1, width=512, height=512)
    nodes = builtin_graph(ComfyUIModel(graph="flux-dev"), spec, "x").nodes
    assert nodes["42"] == {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["40", 0]},
                           "_meta": {"title": "CLIP Text Encode (Negative Prompt)"}}
    qwen = builtin_graph(ComfyUIModel(graph="qwen-image"), spec, "x").nodes
    assert qwen["7"]["inputs"]["text"] == "text, watermark"


def test_every_image_gets_its_own_prefix() -> None:
    a = Spec(model="flux-schnell", prompt="p", seed=1, width=512, height=512)
    b = Spec(model="flux-schnell", prompt="p", seed=2, width=512, height=512)
    assert filename_prefix("hero-q4", "harbor", a.hash) == f"renderloop/hero-q4/harbor-{a.hash[7:19]}"
    assert filename_prefix("hero-q4", "harbor", a.hash) != filename_prefix("hero-q4", "harbor", b.hash)
    assert filename_prefix("hero-q4", "harbor", a.hash) != filename_prefix("hero-q4", "dock", a.hash)


@pytest.mark.parametrize("settings, message", [
    ({"graph": "z-image-turbo", "clip_l": "clip_l.safetensors"}, "'clip_l' does not apply to graph z-image-turbo"),
    ({"graph": "flux-schnell", "guidance": 3.5}, "'guidance' does not apply to graph flux-schnell"),
    ({"graph": "flux-dev", "checkpoint": "f.safetensors", "unet": "u.safetensors"}, "'unet' does not apply"),
    ({"graph": "qwen-image", "checkpoint": "q.safetensors"}, "'checkpoint' does not apply"),
    ({"workflow": "w.json", "unet": "u.safetensors"}, "does not apply to a workflow"),
    ({"graph": "flux-dev", "bind": {"seed": "3.seed"}}, "'bind' goes with 'workflow'"),
    ({"workflow": "w.json", "bind": {"cfg": "3.cfg"}}, "cannot bind 'cfg'"),
])
def test_comfyui_settings_are_strict(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComfyUIModel.model_validate(settings)
