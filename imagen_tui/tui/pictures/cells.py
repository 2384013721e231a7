"""Pictures drawn with text cells, for terminals without a graphics protocol.

Two ways, named as `tui.image_protocol` names them:

- `halfcell`: two pixels a cell, the upper half block `▀` in the top pixel's
  colour on the bottom pixel's colour;
- `unicode`: one pixel a cell, a shade character (`█▓▒░ `) for its
  brightness, in the text colour (for terminals without true colour).

`draw(picture, width, height, mode)` returns the lines as Textual strips:
the picture scaled to the largest size of its own shape that fits the box
(`fit`), neighbouring cells of one colour merged into one segment. It is
pure (safe in a thread) and costs a few microseconds a cell, where drawing
through textual-image's renderables and a Rich console cost ten times that
on every repaint: this is what makes a grid of ten pictures paint at once.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image
from rich.color import Color, ColorType
from rich.color_triplet import ColorTriplet
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

Mode = Literal["halfcell", "unicode"]
MODES: tuple[Mode, ...] = ("halfcell", "unicode")
CELL_ASPECT = 2.0  # a terminal cell is about twice as tall as it is wide
UPPER_HALF = "▀"
SHADES = "█▓▒░ "  # bright to dark: drawn in the (light) text colour on a dark background


def fit(
    picture_size: tuple[int, int], width: int, height: int, cell_aspect: float = CELL_ASPECT
) -> tuple[int, int]:
    """The largest box in cells, at most `width` x `height`, that shows a picture
    of `picture_size` pixels with its own shape (at least 1 x 1)."""
    pixels_wide, pixels_high = picture_size
    if pixels_wide <= 0 or pixels_high <= 0 or width <= 0 or height <= 0:
        return max(1, width), max(1, height)
    cells_high = pixels_high / cell_aspect  # cells wide is pixels wide, at scale 1
    scale = min(width / pixels_wide, height / cells_high)
    return (
        min(width, max(1, round(pixels_wide * scale))),
        min(height, max(1, round(cells_high * scale))),
    )


def draw(picture: Image.Image, width: int, height: int, mode: Mode) -> list[Strip]:
    """`picture` in at most `width` x `height` cells, one strip a line."""
    cells_wide, cells_high = fit(picture.size, width, height)
    if mode == "halfcell":
        return _halfcells(_scaled(picture, "RGB", cells_wide, cells_high * 2), cells_wide)
    return _shades(_scaled(picture, "L", cells_wide, cells_high), cells_wide)


def _scaled(picture: Image.Image, color_mode: str, width: int, height: int) -> bytes:
    source = picture if picture.mode == color_mode else picture.convert(color_mode)
    return source.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0).tobytes()


def _color(pixel: bytes) -> Color:
    red, green, blue = pixel
    return Color(
        f"#{red:02x}{green:02x}{blue:02x}",
        ColorType.TRUECOLOR,
        triplet=ColorTriplet(red, green, blue),
    )


def _halfcells(data: bytes, width: int) -> list[Strip]:
    stride = width * 3
    lines = []
    for top in range(0, len(data) - stride + 1, stride * 2):
        bottom = top + stride
        segments: list[Segment] = []
        run, previous = 0, b""
        for x in range(0, stride, 3):
            pair = data[top + x : top + x + 3] + data[bottom + x : bottom + x + 3]
            if pair == previous:
                run += 1
                continue
            if run:
                segments.append(_halfcell_run(previous, run))
            run, previous = 1, pair
        if run:
            segments.append(_halfcell_run(previous, run))
        lines.append(Strip(segments, width))
    return lines


def _halfcell_run(pair: bytes, length: int) -> Segment:
    return Segment(UPPER_HALF * length, Style.from_color(_color(pair[:3]), _color(pair[3:])))


def _shades(data: bytes, width: int) -> list[Strip]:
    levels = len(SHADES)
    lines = []
    for start in range(0, len(data) - width + 1, width):
        row = data[start : start + width]
        text = "".join(SHADES[(255 - value) * levels // 256] for value in row)
        lines.append(Strip([Segment(text)], width))
    return lines
