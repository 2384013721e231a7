"""Image sizes: parsing `WxH` and the bounds every backend accepts."""

from __future__ import annotations

import re

from imagen_tui.errors import InputError
from imagen_tui.limits import MAX_SIDE, MIN_SIDE

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")


def parse_size(text: str, field: str = "size") -> tuple[int, int]:
    """Parse `512x768` into (512, 768); raise InputError naming `field` otherwise."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise InputError(field, f"{text!r} is not a size; write WIDTHxHEIGHT, e.g. 1024x768")
    width, height = int(match.group(1)), int(match.group(2))
    check_size(width, height, field)
    return width, height


def check_size(width: int, height: int, field: str = "size") -> None:
    """Raise InputError unless both sides lie within MIN_SIDE..MAX_SIDE."""
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise InputError(
                field,
                f"{width}x{height} is out of range; "
                f"each side must be {MIN_SIDE} to {MAX_SIDE} pixels",
            )


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"
