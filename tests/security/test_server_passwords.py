"""A ComfyUI server's URL may carry a user and password (a reverse proxy with basic auth). They reach that
server, over HTTP and the websocket, and nothing else: not a record, not workers/<name>.json, not a commit,
not the log."""
from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from studio.machine import public_url
from tests.comfyui_server import ComfyServer
from tests.helpers import BATCH_YAML, Sandbox, cli

ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]
PASSWORD = "s3cret-Pa55"


def test_public_url_hides_user_and_password_only() -> None:
    assert public_url("http://ann:pw@gpu-box:8188/x?y=1") == "http://***@gpu-box:8188/x?y=1"
    assert public_url("http://ann@gpu-box:8188") == "http://***@gpu-box:8188"
    assert public_url("http://p%40ss:w@rd@[::1]:8188") == "http://***@[::1]:8188"
    assert public_url("http://gpu-box:8188") == "http://gpu-box:8188"


def test_a_password_in_the_comfyui_url_is_sent_to_it_and_written_nowhere(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.push_batch("hero", BATCH_YAML)
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        url = server.url.replace("://", f"://ann:{PASSWORD}@")
        result = cli("worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", url,
                     "--once", "--name", "studio-pc", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        seen = list(server.authorizations)
    basic = "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    assert {path for path, _ in seen} >= {"/prompt", "/history", "/view", "/ws"}  # the websocket too
    assert all(auth == basic for _, auth in seen)
    assert PASSWORD not in result.stdout + result.stderr
    assert f"ComfyUI at {server.url.replace('://', '://***@')}" in result.stdout + result.stderr
    record = (sandbox.worker / "renders/hero/harbor-at-dawn.json").read_text()
    assert f'"server": "{server.url.replace("://", "://***@")}"' in record
    # every object of every commit the worker made (and pushed), and every file it left
    everything = subprocess.run(["git", "-C", str(sandbox.remote), "log", "-p", "--all", "--binary"],
                                capture_output=True, check=True).stdout
    assert b"ann:" not in everything and PASSWORD.encode() not in everything
    for path in sandbox.worker.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(sandbox.worker).parts[:1]:
            assert PASSWORD.encode() not in path.read_bytes(), path
    state = sandbox.worker / ".git" / "renderloop"
    for path in (state.rglob("*") if state.exists() else []):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
