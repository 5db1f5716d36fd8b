"""Render backends behind one small interface (see ``base``).

A backend knows nothing of git: it turns a spec into PNG bytes.
"""
from __future__ import annotations

from win_side.backends.base import Backend, BackendOptions


def make_backend(name: str, options: BackendOptions) -> Backend:
    """The backend called ``name``, built from ``options`` (imported only when used)."""
    if name == "placeholder":
        from win_side.backends.placeholder import PlaceholderBackend

        return PlaceholderBackend(options.placeholder_seconds, options.window)
    if name == "comfyui":
        from win_side.backends.comfyui import ComfyUIBackend

        return ComfyUIBackend(options)
    if name == "fal":
        from win_side.backends.fal import FalBackend

        return FalBackend(options)
    if name == "mflux":
        from win_side.backends.mflux import MfluxBackend

        return MfluxBackend(options)
    raise ValueError(f"unknown backend {name!r}")
