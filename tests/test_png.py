"""The one PNG check: whole PNG files pass with their size; anything else says why not."""
from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from studio.png import DamagedPng, NotPng, check_png


def image_bytes(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 90, 30)).save(out, format=fmt)
    return out.getvalue()


def test_a_whole_png_passes_with_its_size() -> None:
    assert check_png(image_bytes("PNG", (24, 16))) == (24, 16)


@pytest.mark.parametrize("data", [image_bytes("JPEG"), b"", b"<html>not an image</html>", b"\x89PNX\r\n\x1a\n"])
def test_other_bytes_are_not_a_png(data: bytes) -> None:
    with pytest.raises(NotPng, match="not a PNG file") as caught:
        check_png(data)
    assert not isinstance(caught.value, DamagedPng)


def test_a_truncated_or_corrupted_png_is_damaged() -> None:
    png = image_bytes("PNG")
    with pytest.raises(DamagedPng, match="a damaged PNG file"):
        check_png(png[: len(png) // 2])
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4 : idat], "big")
    data = bytearray(png[idat + 4 : idat + 4 + length])
    data[-1] ^= 0xFF  # one flipped byte: the chunk's CRC no longer matches
    assert zlib.crc32(b"IDAT" + bytes(data)) != int.from_bytes(png[idat + 4 + length : idat + 8 + length], "big")
    corrupted = png[: idat + 4] + bytes(data) + png[idat + 4 + length :]
    with pytest.raises(DamagedPng):
        check_png(corrupted)
