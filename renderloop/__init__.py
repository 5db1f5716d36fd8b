"""renderloop: batch image rendering on your own GPUs, driven entirely by git."""
from __future__ import annotations

from studio import __version__

__all__ = ["__version__"]
