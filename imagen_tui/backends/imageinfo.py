"""What an image a remote backend sent really is: its type and pixel size,
read from its header (Pillow, imported on first use)."""

from __future__ import annotations

import io

from imagen_tui.errors import GenerationError

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


def output_image_info(backend: str, data: bytes) -> tuple[str, int, int]:
    """`image_info` of what `backend` sent as its output; a GenerationError
    naming the backend when it is not a usable image."""
    try:
        return image_info(data)
    except ValueError as error:
        raise GenerationError(f"{backend}: the output is not a usable image: {error}") from None
