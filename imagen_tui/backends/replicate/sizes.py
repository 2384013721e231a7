"""From a requested width x height to a FLUX `aspect_ratio`, and back to the
pixel size the model really makes (`ASPECT_RATIOS` of replicate/cog-flux at
megapixels "1")."""

from __future__ import annotations

import math

# aspect_ratio -> (width, height) it produces
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}


def _ratio(name: str) -> float:
    width, height = name.split(":")
    return int(width) / int(height)


def closest_aspect_ratio(width: int, height: int) -> str:
    """The offered ratio nearest to width:height (compared on a log scale, so
    2:1 is as far from 1:1 as 1:2 is)."""
    wanted = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(_ratio(name)) - wanted))


def pixel_size(aspect_ratio: str) -> tuple[int, int]:
    return ASPECT_RATIOS[aspect_ratio]
