"""Small previews stored with each image row, so any front end with only a
database connection can show a series grid."""

from __future__ import annotations

import io

from PIL import Image

THUMBNAIL_MAX_SIDE = 256
THUMBNAIL_MIME = "image/jpeg"


def make_thumbnail(image: bytes, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A JPEG at most `max_side` pixels on its longer side (a few KB)."""
    with Image.open(io.BytesIO(image)) as source:
        source.draft("RGB", (max_side, max_side))  # JPEG sources decode at reduced size
        preview = source.convert("RGB")
    preview.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    preview.save(out, "JPEG", quality=82, optimize=False)
    return out.getvalue()
