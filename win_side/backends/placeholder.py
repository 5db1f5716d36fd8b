"""The placeholder backend: a deterministic Pillow image that says PLACEHOLDER.

For demos, tests and dry runs.  The same spec always gives the same bytes;
the image has exactly the spec's size and carries the spec in a PNG text
chunk, as real backends carry their generation metadata.
"""
from __future__ import annotations

import colorsys
import hashlib
import io
import threading
import time
from typing import Optional, Sequence, Union

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from win_side.backends.base import Cancelled, RenderFailed, RenderRequest, RenderResult, ReportProgress


class PlaceholderLane:
    def __init__(self, seconds: float = 0.0, window: int = 2) -> None:
        self.name = "placeholder"
        self.window = window
        self.seconds = seconds

    def render(
        self, request: RenderRequest, cancel: threading.Event, progress: Optional[ReportProgress] = None
    ) -> RenderResult:
        t0 = time.monotonic()
        if self.seconds > 0 and cancel.wait(self.seconds):
            raise Cancelled(request.slug)
        if cancel.is_set():
            raise Cancelled(request.slug)
        png = paint(request)
        if progress:
            progress(1.0)
        return RenderResult.ended_now(png, round(time.monotonic() - t0, 3),
                                      {"placeholder": request.spec_hash.removeprefix("sha256:")[:12]})


class PlaceholderBackend:
    name = "placeholder"

    def __init__(self, seconds: float = 0.0, window: int = 2) -> None:
        self._lanes = [PlaceholderLane(seconds, window)]

    @property
    def lanes(self) -> Sequence[PlaceholderLane]:
        return self._lanes

    def preflight(self, requests: Sequence[RenderRequest]) -> dict[tuple[str, str], RenderFailed]:
        return {}

    def close(self) -> None:
        pass


def paint(request: RenderRequest) -> bytes:
    """The placeholder PNG for ``request``: same spec, same bytes."""
    spec = request.spec
    digest = hashlib.sha256(request.spec_hash.encode()).digest()
    hue = digest[0] / 255
    background = _rgb(hue, 0.35, 0.30)
    accent = _rgb(hue, 0.55, 0.75)
    image = Image.new("RGB", (spec.width, spec.height), background)
    draw = ImageDraw.Draw(image)
    short = min(spec.width, spec.height)
    border = max(2, short // 64)
    draw.rectangle([0, 0, spec.width - 1, spec.height - 1], outline=accent, width=border)
    draw.line([(0, 0), (spec.width, spec.height)], fill=accent, width=max(1, border // 2))
    draw.line([(0, spec.height), (spec.width, 0)], fill=accent, width=max(1, border // 2))
    lines = [
        ("PLACEHOLDER", 0.11),
        (request.slug, 0.055),
        (f"{spec.model} · seed {spec.seed} · {spec.width}x{spec.height}", 0.035),
    ]
    y = spec.height * 0.5 - sum(short * size * 1.3 for _, size in lines) / 2
    for text, size in lines:
        font = _font(max(8, int(short * size)))
        box = draw.textbbox((0, 0), text, font=font)
        width = box[2] - box[0]
        if width > spec.width * 0.92:  # long slugs: shrink to fit
            font = _font(max(6, int(short * size * spec.width * 0.92 / width)))
            box = draw.textbbox((0, 0), text, font=font)
            width = box[2] - box[0]
        x = (spec.width - width) / 2
        draw.rectangle([x - border, y - border / 2, x + width + border, y + (box[3] - box[1]) + border * 1.5], fill=background)
        draw.text((x, y - box[1]), text, font=font, fill=(255, 255, 255))
        y += short * size * 1.3
    info = PngImagePlugin.PngInfo()
    info.add_text("renderloop", spec.canonical_json())
    info.add_text("renderloop-slug", f"{request.batch}/{request.slug}")
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=1)
    return out.getvalue()


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


Font = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]  # the bitmap font when Pillow lacks FreeType
_fonts: dict[int, Font] = {}
_fonts_lock = threading.Lock()


def _font(size: int) -> Font:
    with _fonts_lock:
        if size not in _fonts:
            try:
                _fonts[size] = ImageFont.load_default(size=size)
            except (TypeError, OSError, ImportError):  # Pillow without FreeType
                _fonts[size] = ImageFont.load_default()
        return _fonts[size]
