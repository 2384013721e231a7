"""Pictures for the image widgets, decoded and scaled with Pillow.

Every function here is blocking (decoding a JPEG or a full-size PNG): call
them from thread workers, never on the event loop, and hand the result to
the widget afterwards. The result is loaded (`Image.load()`), so drawing it
does no more file or decoder work.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

FULL_VIEW_MAX_SIDE = 1024  # pixels: plenty for any terminal protocol


def prepare_decoders() -> None:
    """Load Pillow's common decoders now (JPEG, PNG, ...): the first
    `Image.open` would, which takes 20 ms, and more while the app is busy."""
    Image.preinit()


def decode_thumbnail(data: bytes | None) -> Image.Image | None:
    """A stored thumbnail as a loaded RGB image; None when absent or unreadable."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as source:
            picture = source.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    picture.load()
    return picture


def load_file(path: Path, max_side: int = FULL_VIEW_MAX_SIDE) -> Image.Image | None:
    """A local image file scaled to at most `max_side` pixels; None when it cannot be read."""
    try:
        with Image.open(path) as source:
            source.draft("RGB", (max_side, max_side))
            picture = source.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return picture
