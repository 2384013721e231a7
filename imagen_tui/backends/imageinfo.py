"""What an image a remote backend sent really is: its type and pixel size,
read from its header (Pillow, imported on first use).

This is the one check every backend's output goes through before anything
decodes it (thumbnails, the viewer): an image above `MAX_IMAGE_PIXELS` is
refused from its header alone, so a small file that would inflate to
gigabytes (a decompression bomb) is never decoded."""

from __future__ import annotations

import io
import warnings

from imagen_tui.errors import GenerationError
from imagen_tui.limits import MAX_IMAGE_PIXELS

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def image_info(data: bytes) -> tuple[str, int, int]:
    """(MIME type, width, height) from the image's header; ValueError if it is not
    a PNG, JPEG or WebP image, or has more than MAX_IMAGE_PIXELS pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it: make that an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                mime = _FORMATS.get(image.format or "")
                if mime is None:
                    raise ValueError(f"unsupported image format {image.format!r}")
                width, height = image.width, image.height
    except UnidentifiedImageError as error:
        raise ValueError("not an image") from error
    except (OSError, SyntaxError, EOFError) as error:  # a broken header
        raise ValueError(f"unreadable image ({type(error).__name__})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"too many pixels (more than Pillow's limit; at most {MAX_IMAGE_PIXELS:,} allowed)"
        ) from None
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{width}x{height} is too many pixels (at most {MAX_IMAGE_PIXELS:,} allowed)"
        )
    return mime, width, height


def output_image_info(backend: str, data: bytes) -> tuple[str, int, int]:
    """`image_info` of what `backend` sent as its output; a GenerationError
    naming the backend when it is not a usable image."""
    try:
        return image_info(data)
    except ValueError as error:
        raise GenerationError(f"{backend}: the output is not a usable image: {error}") from None
