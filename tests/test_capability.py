"""Issue 11: the worker publishes what it can do (workers/<name>.json); the person's hook and status use it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.capability import BoundInput, Capability, file_name, newest, rel_path
from studio.config import load_config
from studio.errors import InvalidFile
from studio.layout import Studio
from tests.comfyui_server import ComfyServer
from tests.comfyui_server.server import load_object_info
from tests.helpers import BATCH_YAML, Sandbox, cli, git
from tests.test_comfyui_workflow import SDXL, make_studio

ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]
SEED_MAX = 16777215  # a sampler whose seed is a 24-bit number
TWO_MODELS = """\
version: 1
model: z-image-turbo
prompts:
  - slug: harbor-at-dawn
    prompt: "A harbor at dawn"
    seed: {seed}
  - slug: night-train
    prompt: "A night train crossing a bridge"
    seed: 99
    model: flux-schnell
"""


def test_a_bound_input_refuses_what_the_node_refuses() -> None:
    seed = BoundInput(node="3", class_type="KSampler", input="seed", type="INT", min=0, max=SEED_MAX)
    assert seed.refuses(SEED_MAX) is None and seed.refuses(0) is None
    assert seed.refuses(SEED_MAX + 1) == "16777216 is above 16777215, the most KSampler.seed (node 3) accepts"
    sampler = BoundInput(node="3", class_type="KSampler", input="sampler_name", type="COMBO",
                         choices=["euler", "euler_ancestral", "dpmpp_2m"])
    assert sampler.refuses(None) is None and sampler.refuses("euler") is None
    assert sampler.refuses("eulr") == ("'eulr' is not one of the 3 choices of KSampler.sampler_name (node 3); "
                                       "did you mean 'euler'?")


@pytest.mark.parametrize("worker, name", [("studio-pc", "studio-pc.json"), ("Studio PC", "studio-pc.json"),
                                          ("../../etc", "etc.json"), ("", "worker.json"), ("CON", "con.json")])
def test_a_worker_name_becomes_a_file_in_workers_that_no_batch_can_name(worker: str, name: str) -> None:
    assert file_name(worker) == name and rel_path(worker) == f"workers/{name}"
    assert not rel_path(worker).startswith(("batches/", "renders/"))  # a batch is batches/<id>.*, renders/<id>/


def published(root: Path, worker: str, when: str, **models: dict) -> None:
    capability = Capability.model_validate({"worker": worker, "updated_at": when, "servers": ["http://gpu:8188"],
                                            "models": models})
    path = root / rel_path(worker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(capability.to_json(), encoding="utf-8")


def test_the_newest_capability_file_counts(tmp_path: Path) -> None:
    published(tmp_path, "old-box", "2026-01-01T00:00:00Z")
    published(tmp_path, "new-box", "2026-02-01T00:00:00Z")
    (tmp_path / "workers" / "junk.json").write_text("{not json", encoding="utf-8")
    found = newest(tmp_path)
    assert found is not None and found.worker == "new-box"
    assert newest(tmp_path / "nowhere") is None


def seed_limited_object_info(tmp_path: Path) -> Path:
    info = json.loads(json.dumps(load_object_info()))
    info["KSampler"]["input"]["required"]["seed"][1]["max"] = SEED_MAX
    path = tmp_path / "object_info.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def commit(sandbox: Sandbox, name: str, text: str) -> tuple[int, str]:
    sandbox.write(f"batches/{name}.yaml", text)
    git(sandbox.mac, "add", f"batches/{name}.yaml")
    done = git(sandbox.mac, "commit", "-q", "-m", f"batch {name}", check=False)
    return done.returncode, done.stdout + done.stderr


def test_the_worker_publishes_and_the_hook_refuses_an_out_of_range_seed(sandbox: Sandbox, tmp_path: Path) -> None:
    assert commit(sandbox, "hero", BATCH_YAML)[0] == 0  # nothing published yet: the hook cannot know
    git(sandbox.mac, "push", "-q")
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.02,
                     object_info=seed_limited_object_info(tmp_path)) as server:
        result = cli("worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", server.url,
                     "--once", "--name", "studio-pc", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        again = cli("worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", server.url,
                    "--once", "--name", "studio-pc", timeout=120)
        assert again.returncode == 0
    log = git(sandbox.worker, "log", "--format=%s", "--", "workers/studio-pc.json").stdout.splitlines()
    assert log == ["workers(studio-pc): what it can render"]  # once: the second run found nothing changed
    capability = Capability.model_validate_json((sandbox.worker / "workers/studio-pc.json").read_bytes())
    zit, flux = capability.models["z-image-turbo"], capability.models["flux-schnell"]
    assert zit.renderable and zit.missing == {}
    assert [(b.class_type, b.input, b.min, b.max) for b in zit.inputs["seed"]] == [("KSampler", "seed", 0, SEED_MAX)]
    assert [(b.class_type, b.input) for b in zit.inputs["width"]] == [("EmptySD3LatentImage", "width")]
    assert "euler" in (zit.inputs["sampler"][0].choices or [])
    assert not flux.renderable and "flux1-schnell.safetensors (UNETLoader unet_name)" in flux.missing[server.url]
    assert "seed" in capability.nodes["KSampler"]

    git(sandbox.mac, "pull", "-q")
    code, out = commit(sandbox, "big", TWO_MODELS.format(seed=SEED_MAX + 1))
    assert code != 0, out
    assert ("batches/big.yaml:4: harbor-at-dawn: seed 16777216 is above 16777215, the most KSampler.seed (node 3) "
            "accepts on worker studio-pc (workers/studio-pc.json)") in out
    code, out = commit(sandbox, "big", TWO_MODELS.format(seed=SEED_MAX))
    assert code == 0, out  # flux-schnell is only a warning: another worker may render it
    assert (f"batches/big.yaml:7: warning: worker studio-pc cannot render flux-schnell: {server.url} lacks "
            "clip_l.safetensors (DualCLIPLoader clip_name1), flux1-schnell.safetensors (UNETLoader unet_name), "
            "t5xxl_fp16.safetensors (DualCLIPLoader clip_name2)") in out
    shown = cli("status", "--repo", str(sandbox.mac))
    assert f"warning: worker studio-pc cannot render flux-schnell: {server.url} lacks" in shown.stdout


def test_a_workflow_input_its_node_does_not_have_is_an_error_with_the_near_match(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(SDXL))
    graph["3"]["inputs"]["sed"] = graph["3"]["inputs"].pop("seed")  # the person's typo
    studio = make_studio(tmp_path, "        prompt: Positive.text", graph=graph)
    with pytest.raises(InvalidFile) as caught:
        load_config(studio)  # no worker published yet: ComfyUI's captured node definitions
    text = (tmp_path / "workflows/my-sdxl.api.json").read_text(encoding="utf-8").splitlines()
    line = next(number for number, content in enumerate(text, 1) if '"sed"' in content)
    assert f"workflows/my-sdxl.api.json:{line}: node 3: KSampler has no input 'sed'; did you mean 'seed'?" in str(caught.value)
    published(tmp_path, "studio-pc", "2026-01-01T00:00:00Z")
    capability = Capability.model_validate_json((tmp_path / "workers/studio-pc.json").read_bytes())
    capability.nodes["KSampler"] = ["sed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "model",
                                    "positive", "negative", "latent_image"]
    (tmp_path / "workers/studio-pc.json").write_text(capability.to_json(), encoding="utf-8")
    assert "my-sdxl" in load_config(Studio.at(tmp_path)).models  # the worker's own ComfyUI has that input


def test_the_packaged_node_inputs_are_comfyuis_captured_definitions() -> None:
    from studio.capability import captured_node_inputs

    info = load_object_info()
    assert captured_node_inputs() == {
        name: [n for section in ("required", "optional") for n in (node["input"].get(section) or {})]
        for name, node in info.items()}
