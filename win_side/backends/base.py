"""The interface every render backend implements.

A :class:`Backend` offers one or more :class:`Lane` objects: places that
render images (one ComfyUI server, the fal queue, the local mflux, the
placeholder painter).  The worker keeps ``lane.window`` images in flight on
each lane so the GPU never waits, calling :meth:`Lane.render` from that many
threads at once.  ``render`` blocks until the PNG bytes are in hand.

Failures are values the worker can act on:

* :class:`RenderFailed` is permanent for this spec: the worker commits a
  failed record (missing model, invalid graph, out of memory...).
* :class:`BackendUnavailable` is temporary (server down, restarted, 429):
  the image goes back to the queue and the lane waits with capped backoff.
* :class:`Cancelled` means the worker is stopping.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

from studio.clock import utcnow
from studio.config import ModelSettings, StudioConfig
from studio.machine import MachineSettings
from studio.record import ErrorKind
from studio.spec import Spec

ReportProgress = Callable[[float], None]  # a render says how far it is (0 to 1)


@dataclass(frozen=True)
class RenderRequest:
    """One image to render: everything a backend needs, nothing about git."""

    batch: str
    slug: str
    spec: Spec
    spec_hash: str
    settings: ModelSettings  # the model's entry in renderloop.yaml

    @property
    def key(self) -> tuple[str, str]:
        return (self.batch, self.slug)


@dataclass
class RenderResult:
    png: bytes
    started_at: datetime
    finished_at: datetime
    render_seconds: float
    backend_ids: dict[str, Any] = field(default_factory=dict)
    cost_usd: Optional[float] = None
    cached: bool = False  # answered from the backend's cache: nothing executed, render_seconds means nothing

    @classmethod
    def ended_now(
        cls, png: bytes, seconds: float, backend_ids: dict[str, Any], *, cost_usd: Optional[float] = 0.0,
        cached: bool = False,
    ) -> RenderResult:
        """A render that ended now after ``seconds``: it started that long ago (to the second, as records keep it)."""
        finished = utcnow()
        started = (finished - timedelta(seconds=seconds)).replace(microsecond=0)
        return cls(png, started, finished, seconds, backend_ids, cost_usd, cached)


class RenderFailed(Exception):
    """This image cannot be rendered as specified; record the failure."""

    def __init__(
        self, kind: ErrorKind, message: str, detail: Any = None, backend_ids: Optional[dict[str, Any]] = None
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.detail = detail
        self.backend_ids = backend_ids or {}


def not_configured(model: str, backend: str, key: str) -> RenderFailed:
    """The failure for a model whose renderloop.yaml entry lacks this backend's settings."""
    return RenderFailed(
        "missing-model", f"model {model!r} has no {backend} {key} in renderloop.yaml (add models.{model}.{backend}.{key})"
    )


class BackendUnavailable(Exception):
    """The backend cannot take work right now; try the image again later."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(Exception):
    """The worker is stopping; the image was not finished."""


class Lane(Protocol):
    """One place that renders. It may also define ``accepts(request) -> bool``
    (False when preflight found it cannot render that model); the worker then
    leaves such images to the other lanes.  It may define ``label``, its name
    in a sentence ("ComfyUI at http://..."); else ``name`` is used."""

    name: str
    window: int

    def render(
        self, request: RenderRequest, cancel: threading.Event, progress: Optional[ReportProgress] = None
    ) -> RenderResult:
        ...


class Backend(Protocol):
    """A backend may also define ``adopt(wanted: dict[key, spec_hash])``: called with every plan before
    anything is queued, so it can re-attach to work a killed run left on it (ComfyUI's queue) and
    withdraw what is no longer wanted."""

    name: str

    @property
    def lanes(self) -> Sequence[Lane]:
        ...

    def preflight(self, requests: Sequence[RenderRequest]) -> dict[tuple[str, str], RenderFailed]:
        """Failures known before rendering anything (a model this box lacks)."""
        ...

    def close(self) -> None:
        ...


@dataclass
class BackendOptions:
    """What renderloop.yaml (what to render) and this machine (where, with what) say about backends.

    Every backend is built as ``SomeBackend(options)``.  Hosts, programs and
    timeouts come only from ``machine`` (flags, environment, machine.yaml).
    """

    config: StudioConfig
    studio_root: Path  # user workflow files are read from here (data only, never run)
    state_dir: Path  # private to this clone (inside .git): progress files, never tracked
    machine: MachineSettings = field(default_factory=MachineSettings)
    window: int = 2
    placeholder_seconds: float = 0.0
    comfyui_urls: list[str] = field(default_factory=list)  # empty: machine.worker.comfyui
    fal_url: Optional[str] = None  # None: machine.worker.fal_url, else fal's own host
    # `renderloop local` knobs for mflux; None means the machine's `mac` section
    cooldown_seconds: Optional[float] = None
    min_available_gb: Optional[float] = None
    timeout_seconds: Optional[float] = None
    # Set when the worker stops (SIGINT/SIGTERM): every wait of the backend, HTTP included, ends at once.
    stop: threading.Event = field(default_factory=threading.Event)
