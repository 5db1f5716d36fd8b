"""What the worker's box has for rendering: its ComfyUI servers, the fal key, mflux (``renderloop doctor``).

Each function returns what it found; the command decides what it means and
how it is shown.  The fal key's value never leaves this module: only whether
it is set and its length.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from studio.config import StudioConfig
from studio.machine import public_url


@dataclass
class ServerCheck:
    """One ComfyUI server: does it answer, and per model what it lacks (an empty list: nothing)."""

    url: str
    problem: Optional[str] = None  # why it does not answer
    lacks: dict[str, list[str]] = field(default_factory=dict)
    unbuildable: dict[str, str] = field(default_factory=dict)  # model -> why its graph cannot be built


def check_comfyui(config: StudioConfig, studio_root: Path, urls: list[str], timeout: float = 10.0) -> list[ServerCheck]:
    """Ask each server's ``/object_info`` what it lacks for each model with ComfyUI settings (the worker's preflight)."""
    from win_side.backends.comfyui.backend import GraphBuilder, lacking_by_model, model_graphs, normalize_url
    from win_side.backends.comfyui.client import BadAnswer, ComfyClient, OutOfTime, ServerDown

    graphs, unbuildable = model_graphs(GraphBuilder(studio_root), config)
    found = []
    for url in dict.fromkeys(normalize_url(u) for u in urls):
        check = ServerCheck(public_url(url), unbuildable=unbuildable)
        client = ComfyClient(url, read_timeout=timeout)
        try:
            check.lacks = lacking_by_model(client, graphs)
        except (ServerDown, BadAnswer, OutOfTime) as exc:
            check.problem = str(exc)
        finally:
            client.close()
        found.append(check)
    return found


def fal_key_length(env: Optional[Mapping[str, str]] = None) -> int:
    """How many characters ``FAL_KEY`` has (0: not set); never its value."""
    from win_side.backends.fal import KEY_ENV

    return len(((os.environ if env is None else env).get(KEY_ENV) or "").strip())


def mflux_commands(config: StudioConfig, mflux_bin: Optional[str] = None) -> dict[str, Optional[str]]:
    """Each mflux program the studio's models name, and where it is (this Mac's ``mac.mflux_bin``, else PATH)."""
    from win_side.backends.mflux import find_program

    programs = sorted({m.mflux.program for m in config.models.values() if m.mflux is not None})
    return {program: find_program(program, mflux_bin) for program in programs}
