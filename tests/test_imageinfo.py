"""The one image check every backend's output goes through: type, size, and
decompression bombs refused from the header alone."""

from __future__ import annotations

import struct
import zlib

import pytest

from imagen_tui.backends.imageinfo import image_info, output_image_info
from imagen_tui.errors import GenerationError
from imagen_tui.limits import MAX_IMAGE_PIXELS
from tests.cloudfakes import png


def png_of_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header says width x height (Pillow reads only the header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * 2))
        + chunk(b"IEND", b"")
    )


def test_a_real_image_passes():
    assert image_info(png(640, 480)) == ("image/png", 640, 480)


def test_a_bomb_below_pillows_limit_is_refused_from_its_header():
    bomb = png_of_size(12000, 12000)  # 144 Mpx: Pillow only warns
    assert len(bomb) < 17 * 1024
    with pytest.raises(GenerationError, match="too many pixels"):
        output_image_info("flux", bomb)


def test_a_bomb_above_pillows_limit_is_a_clean_generation_error():
    with pytest.raises(GenerationError, match="flux: the output is not a usable image"):
        output_image_info("flux", png_of_size(20000, 20000))  # 400 Mpx: Pillow raises


def test_just_above_the_cap_is_refused_and_at_the_cap_accepted():
    side = int(MAX_IMAGE_PIXELS**0.5)
    assert image_info(png_of_size(side, side))[1:] == (side, side)
    with pytest.raises(ValueError, match="too many pixels"):
        image_info(png_of_size(side + 1, side + 1))


def test_a_broken_header_is_not_an_image():
    with pytest.raises(GenerationError, match="not a usable image"):
        output_image_info("flux", png(8, 8)[:30])


def test_a_comfyui_output_goes_through_the_same_check():
    import asyncio

    from imagen_tui.backends import registry
    from imagen_tui.backends.base import Request
    from imagen_tui.backends.comfyui import ComfyBackend
    from tests.comfyui_fake import FakeComfy

    fake = FakeComfy().start()
    try:
        fake._png = png_of_size(12000, 12000)  # what /view will serve
        block = registry.validate_block(
            "flux", {"type": "comfyui", "url": fake.url, "run_timeout": 20.0}
        )
        made = registry.create("flux", block)
        assert isinstance(made, ComfyBackend)

        async def go() -> None:
            try:
                await made.generate(Request(prompt="a fox", seed=1))
            finally:
                await made.aclose()

        with pytest.raises(GenerationError, match=r"not a usable image: .*too many pixels"):
            asyncio.run(go())
    finally:
        fake.stop()
