"""pytest fixtures and helpers around the ComfyUI test server (import them into a test module)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import websocket

from tests.comfyui_server.server import ComfyServer, shared_file


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[ComfyServer]:
    """A running test server with the built-in graphs' model files, renders taking 0.05 s."""
    with ComfyServer(tmp_path / "comfyui", render_seconds=0.05) as server:
        yield server


def capture(name: str) -> dict:
    return json.loads(shared_file("captures", name).read_text(encoding="utf-8"))


def workflow_capture(name: str) -> Any:
    return json.loads(shared_file("workflows", name).read_text(encoding="utf-8"))


def open_socket(server: ComfyServer, client_id: str) -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}", timeout=5)
    return ws


def messages_until_done(ws: websocket.WebSocket, prompt_id: str, timeout: float = 10.0) -> list[Any]:
    """Every frame (decoded JSON, or bytes) up to and including ``executing`` null for ``prompt_id``."""
    frames: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.recv()
        if isinstance(frame, bytes):
            frames.append(frame)
            continue
        message = json.loads(frame)
        frames.append(message)
        data = message["data"]
        if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return frames
    raise AssertionError(f"no done signal for {prompt_id} within {timeout} s")


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
