"""A faithful ComfyUI test server (HTTP + websocket on 127.0.0.1); see ``server``."""
from tests.comfyui_server.server import DEFAULT_MODELS, ComfyServer, shared_file

__all__ = ["ComfyServer", "DEFAULT_MODELS", "shared_file"]
