"""User workflows exported with "Save (API)": bindings by node id or title, checked when config loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.config import load_config
from studio.errors import InvalidFile
from studio.layout import Studio
from studio.spec import Spec
from studio.workflow import BindingError, Target, load_workflow
from win_side.backends.comfyui.graphs import workflow_graph

SDXL = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
          "_meta": {"title": "Load Checkpoint"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
          "_meta": {"title": "Empty Latent Image"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly, blurry", "clip": ["4", 1]},
          "_meta": {"title": "Negative v1.5"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]},
          "_meta": {"title": "KSampler"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "_meta": {"title": "VAE Decode"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"},
          "_meta": {"title": "Save Image"}},
}

CONFIG = """\
version: 1
models:
  flux-schnell:
    comfyui: {{graph: flux-schnell}}
  my-sdxl:
    width: 1024
    height: 1024
    comfyui:
      workflow: {workflow}
      bind:
{bind}
"""


def make_studio(root: Path, bind: str, workflow: str = "workflows/my-sdxl.api.json", graph: object = SDXL) -> Studio:
    root.mkdir(parents=True, exist_ok=True)
    (root / "renderloop.yaml").write_text(CONFIG.format(workflow=workflow, bind=bind), encoding="utf-8")
    if graph is not None:
        path = root / "workflows" / "my-sdxl.api.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(graph if isinstance(graph, str) else json.dumps(graph, indent=2), encoding="utf-8")
    return Studio.at(root)


BIND_ALL = """\
        prompt: Positive.text
        negative: "Negative v1.5.text"
        seed: 3.seed
        width: [5.width]
        height: Empty Latent Image.height
        steps: KSampler.steps"""


def test_bindings_by_id_and_title_write_the_spec(tmp_path: Path) -> None:
    studio = make_studio(tmp_path, BIND_ALL)
    config = load_config(studio)
    comfy = config.models["my-sdxl"].comfyui
    workflow = load_workflow(studio, comfy.workflow)
    assert workflow.resolve(comfy.bind)["negative"] == [Target("7", "text")]  # a title with a dot in it
    spec = Spec(model="my-sdxl", prompt="a harbor", negative="text", seed=42, width=832, height=1216, steps=30)
    graph = workflow_graph(workflow, comfy, spec, "renderloop/b/harbor-0123456789ab")
    nodes = graph.nodes
    assert nodes["6"]["inputs"]["text"] == "a harbor" and nodes["7"]["inputs"]["text"] == "text"
    assert nodes["3"]["inputs"]["seed"] == 42 and nodes["3"]["inputs"]["steps"] == 30
    assert (nodes["5"]["inputs"]["width"], nodes["5"]["inputs"]["height"]) == (832, 1216)
    assert nodes["9"]["inputs"]["filename_prefix"] == "renderloop/b/harbor-0123456789ab"
    assert nodes["3"]["inputs"]["cfg"] == 7.0  # unbound inputs keep the workflow's values
    assert SDXL["6"]["inputs"]["text"] == "a cat"  # the loaded workflow is not changed


def test_any_binding_may_be_absent(tmp_path: Path) -> None:
    studio = make_studio(tmp_path, "        prompt: '6.text'")
    comfy = load_config(studio).models["my-sdxl"].comfyui
    spec = Spec(model="my-sdxl", prompt="only the prompt", seed=1, width=512, height=512)
    nodes = workflow_graph(load_workflow(studio, comfy.workflow), comfy, spec, "p").nodes
    assert nodes["3"]["inputs"]["seed"] == 5 and nodes["5"]["inputs"]["width"] == 1024
    assert nodes["7"]["inputs"]["text"] == "ugly, blurry"


def test_an_empty_negative_keeps_the_workflows_own(tmp_path: Path) -> None:
    studio = make_studio(tmp_path, "        negative: '7.text'")
    comfy = load_config(studio).models["my-sdxl"].comfyui
    spec = Spec(model="my-sdxl", prompt="p", seed=1, width=512, height=512)
    nodes = workflow_graph(load_workflow(studio, comfy.workflow), comfy, spec, "p").nodes
    assert nodes["7"]["inputs"]["text"] == "ugly, blurry"


@pytest.mark.parametrize("bind, line, message", [
    ("        prompt: Positve.text", 11, "no node with id or title 'Positve' in workflows/my-sdxl.api.json"),
    ("        seed: 3.sead", 11, "bind.seed: node 3 ('KSampler') has no input 'sead'"),
    ("        prompt: 6.clip", 11, "input 'clip' of node 6 ('Positive') is linked to node 4"),
    ("        prompt: 3.seed", 11, "input 'seed' of node 3 ('KSampler') holds 5, not text"),
    ("        width: 6.text", 11, "holds 'a cat', not a number"),
    ("        prompt: 6.text\n        seed: nodot", 12, "bind.seed: write NODE.INPUT"),
])
def test_a_wrong_binding_is_reported_at_its_line(tmp_path: Path, bind: str, line: int, message: str) -> None:
    studio = make_studio(tmp_path, bind)
    with pytest.raises(InvalidFile) as caught:
        load_config(studio)
    problem = caught.value.problems[0]
    assert (problem.path, problem.line) == ("renderloop.yaml", line)
    assert message in problem.message
    assert str(problem).startswith(f"renderloop.yaml:{line}: models.my-sdxl.comfyui.bind.")


def test_a_title_shared_by_two_nodes_asks_for_the_id(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(SDXL))
    graph["7"]["_meta"]["title"] = "Positive"
    studio = make_studio(tmp_path, "        prompt: Positive.text", graph=graph)
    with pytest.raises(InvalidFile, match="title 'Positive' names nodes 6, 7"):
        load_config(studio)


@pytest.mark.parametrize("workflow, graph, message", [
    ("workflows/nope.api.json", SDXL, "renderloop.yaml:9: models.my-sdxl.comfyui.workflow: workflow file "
                                      "workflows/nope.api.json does not exist"),
    ("../outside.json", SDXL, "renderloop.yaml:9: models.my-sdxl.comfyui.workflow: workflow '../outside.json' "
                              "must be a path inside the studio"),
    ("workflows/my-sdxl.api.json", '{"4": {"class_type": "X", "inputs": {}},\n "4": {}}',
     "workflows/my-sdxl.api.json:2: duplicate key '4'"),
    ("workflows/my-sdxl.api.json", '{"nodes": [], "links": [], "version": 0.4}', "this is a UI workflow"),
    ("workflows/my-sdxl.api.json", {k: v for k, v in SDXL.items() if k != "9"},
     "one SaveImage node; this workflow has none"),
    ("workflows/my-sdxl.api.json", {**SDXL, "9": {**SDXL["9"], "inputs": {"images": ["99", 0]}}},
     "links to ['99', 0], not to a node of this workflow"),
])
def test_a_bad_workflow_file_is_a_clear_error(tmp_path: Path, workflow: str, graph: object, message: str) -> None:
    studio = make_studio(tmp_path, "        prompt: 6.text", workflow=workflow, graph=graph)
    with pytest.raises(InvalidFile) as caught:
        load_config(studio)
    assert message in str(caught.value)


def test_config_without_workflows_reads_no_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "renderloop.yaml").write_text("version: 1\nmodels:\n  flux-schnell:\n    comfyui: {graph: flux-schnell}\n",
                                              encoding="utf-8")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "broken.api.json").write_text("{not json", encoding="utf-8")
    assert list(load_config(Studio.at(tmp_path)).models) == ["flux-schnell"]


def test_staged_workflows_are_checked_as_the_pre_commit_hook_reads_them(tmp_path: Path) -> None:
    """The hook validates what is being committed: the config and workflow in the index."""
    from studio import git as studio_git
    from studio.config import check_workflows, parse_config
    from studio.source import load_file
    from tests.helpers import git

    studio = make_studio(tmp_path, "        prompt: Positive.text")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    renamed = json.loads(json.dumps(SDXL))
    renamed["6"]["_meta"]["title"] = "Prompt"
    (tmp_path / "workflows" / "my-sdxl.api.json").write_text(json.dumps(renamed), encoding="utf-8")
    doc = load_file(studio.config_path, "renderloop.yaml")
    config = parse_config(doc)
    check_workflows(config, doc, lambda rel: studio_git.show(tmp_path, f":{rel}"))  # staged: fine
    with pytest.raises(InvalidFile, match="renderloop.yaml:11: .*no node with id or title 'Positive'"):
        load_config(studio)  # the working tree has the renamed node
    git(tmp_path, "rm", "-q", "-f", "--cached", "workflows/my-sdxl.api.json")
    with pytest.raises(InvalidFile, match="renderloop.yaml:9: .*workflow file workflows/my-sdxl.api.json does not exist"):
        check_workflows(config, doc, lambda rel: studio_git.show(tmp_path, f":{rel}"))


def test_binding_error_names_the_inputs_there_are() -> None:
    from studio.workflow import Workflow

    with pytest.raises(BindingError, match=r"its inputs: clip, text"):
        Workflow("w.json", SDXL).target("prompt", "6.prompt")
