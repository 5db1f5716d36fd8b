"""End to end: `renderloop worker --backend comfyui --comfyui URL --once` against the test server, on real git."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from studio.record import RenderRecord
from tests.comfyui_server import ComfyServer
from tests.helpers import BATCH_YAML, Sandbox, cli, git

ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]


def test_worker_renders_through_comfyui_and_records_missing_models(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.push_batch("hero", BATCH_YAML)  # two z-image-turbo prompts, one flux-schnell
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        result = cli("worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", server.url,
                     "--once", "--name", "studio-pc", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        prompts = [p.prompt_id for p in server.timeline]
    folder = sandbox.worker / "renders" / "hero"
    harbor = RenderRecord.model_validate_json((folder / "harbor-at-dawn.json").read_bytes())
    assert harbor.status == "done" and harbor.backend == "comfyui"
    assert harbor.backend_ids == {"server": server.url, "prompt_id": harbor.backend_ids["prompt_id"]}
    assert harbor.backend_ids["prompt_id"] in prompts
    assert harbor.render_seconds is not None and 0.04 <= harbor.render_seconds < 5
    png = (folder / "harbor-at-dawn.png").read_bytes()
    assert harbor.png_sha256 == hashlib.sha256(png).hexdigest()
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (512, 384)
        assert json.loads(image.text["prompt"])["27"]["inputs"]["text"] == harbor.spec.prompt
        assert json.loads(image.text["renderloop"])["spec_hash"] == harbor.spec_hash
    night = RenderRecord.model_validate_json((folder / "night-train.json").read_bytes())
    assert night.status == "failed" and night.error is not None
    assert night.error.kind == "missing-model"
    assert "flux1-schnell.safetensors" in night.error.message and "clip_l.safetensors" in night.error.message
    assert not (folder / "night-train.png").exists()
    assert len(prompts) == 2  # the flux image was never submitted
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout


def test_retry_failed_on_an_unchanged_failure_does_not_crash(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 11: the retried failure's record equals the old one; there is nothing to commit, and that is fine."""
    sandbox.push_batch("hero", BATCH_YAML)
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        args = ("worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", server.url,
                "--once", "--name", "studio-pc")
        assert cli(*args, timeout=120).returncode == 0
        before = git(sandbox.worker, "rev-parse", "HEAD").stdout
        result = cli(*args, "--retry-failed", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == before  # the same failure: no new commit
    night = RenderRecord.model_validate_json((sandbox.worker / "renders/hero/night-train.json").read_bytes())
    assert night.status == "failed" and night.error is not None and night.error.kind == "missing-model"
