"""What counts as a PNG file: one check for every backend and the worker's last gate before a commit."""
from __future__ import annotations

import io

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotPng(ValueError):
    """Bytes that are not a whole PNG file; the message says why."""


class DamagedPng(NotPng):
    """Bytes that start as a PNG file but do not decode to the end."""


def check_png(data: bytes) -> tuple[int, int]:
    """The width and height of the PNG file ``data``; raises :class:`NotPng` unless it is one, whole."""
    if not data.startswith(SIGNATURE):
        raise NotPng("not a PNG file")
    from PIL import Image  # loaded on the first check: commands that never check a PNG start faster

    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.verify()  # every chunk's CRC, up to IEND
    except Exception as exc:  # Pillow raises many types for damaged data
        raise DamagedPng(f"a damaged PNG file: {exc}") from None
    return size
