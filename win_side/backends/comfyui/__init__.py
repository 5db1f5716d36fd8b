"""The ComfyUI backend (SPEC section 6): HTTP + one shared websocket per server."""
from win_side.backends.comfyui.backend import ComfyLane, ComfyUIBackend

__all__ = ["ComfyLane", "ComfyUIBackend"]
