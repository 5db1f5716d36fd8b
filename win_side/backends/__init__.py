"""Render backends behind one small interface (see ``base``).

A backend knows nothing of git: it turns a spec into PNG bytes.
:data:`BACKENDS` names each one and builds it (its module imported only when used).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from studio.errors import FatalError

if TYPE_CHECKING:
    from win_side.backends.base import Backend, BackendOptions


def _comfyui(options: BackendOptions) -> Backend:
    from win_side.backends.comfyui import ComfyUIBackend

    return ComfyUIBackend(options)


def _fal(options: BackendOptions) -> Backend:
    from win_side.backends.fal import FalBackend

    return FalBackend(options)


def _mflux(options: BackendOptions) -> Backend:
    from win_side.backends.mflux import MfluxBackend

    return MfluxBackend(options)


def _placeholder(options: BackendOptions) -> Backend:
    from win_side.backends.placeholder import PlaceholderBackend

    return PlaceholderBackend(options.placeholder_seconds, options.window)


BACKENDS: dict[str, Callable[[BackendOptions], Backend]] = {
    "comfyui": _comfyui,
    "fal": _fal,
    "mflux": _mflux,
    "placeholder": _placeholder,
}


def make_backend(name: str, options: BackendOptions) -> Backend:
    """The backend called ``name``, built from ``options``."""
    if name not in BACKENDS:
        raise FatalError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](options)
