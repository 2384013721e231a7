"""What an image a remote backend sent really is: its type and pixel size,
read from its header (Pillow, imported on first use)."""

from __future__ import annotations

import io

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def image_info(data: bytes) -> tuple[str, int, int]:
    """(MIME type, width, height) from the image's header; ValueError if it is not
    a PNG, JPEG or WebP image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = _FORMATS.get(image.format or "")
            if mime is None:
                raise ValueError(f"unsupported image format {image.format!r}")
            return mime, image.width, image.height
    except UnidentifiedImageError as error:
        raise ValueError("not an image") from error
