"""What ImaGen knows about OpenAI image models: the sizes each offers and the
token prices, with the date they were taken.

The model id is always the user's config: OpenAI retires image models often
(dall-e-2/3 shut down 2026-05-12, gpt-image-1 on 2026-10-23, gpt-image-1-mini,
gpt-image-1.5 and chatgpt-image-latest on 2026-12-01), so nothing here is a
default. Rules are found by the longest matching id prefix; an id nothing
matches is sent as it is, its size left to the server, its cost unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from imagen_tui.limits import MAX_USAGE_TOKENS

# Token prices in USD per million tokens, from developers.openai.com model pages
# as cached on the date below. Check them again before relying on them.
PRICES_TAKEN = "2026-11-23"

MILLION = Decimal(1_000_000)

GPT_IMAGE_1_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))


@dataclass(frozen=True)
class Sizes:
    """The sizes a model offers: a fixed list, or any size within bounds."""

    fixed: tuple[tuple[int, int], ...] = ()
    multiple_of: int = 16
    max_ratio: float = 3.0  # long side : short side
    max_pixels: int = 3840 * 2160
    max_side: int = 3840

    def problem(self, width: int, height: int) -> str | None:
        """Why the model cannot make width x height; None if it can."""
        if self.fixed:
            if (width, height) in self.fixed:
                return None
            offered = ", ".join(f"{w}x{h}" for w, h in self.fixed)
            return f"{width}x{height} is not offered; use one of {offered}"
        if width % self.multiple_of or height % self.multiple_of:
            return f"{width}x{height}: both sides must be multiples of {self.multiple_of}"
        if max(width, height) > self.max_ratio * min(width, height):
            return f"{width}x{height}: the aspect ratio must be within 1:3 to 3:1"
        if width * height > self.max_pixels or max(width, height) > self.max_side:
            return f"{width}x{height} is larger than the model's maximum (3840x2160)"
        return None


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    text_input: Decimal
    image_input: Decimal
    image_output: Decimal


@dataclass(frozen=True)
class ModelRules:
    sizes: Sizes | None  # None: not checked here
    prices: Prices | None  # None: cost unknown
    b64_param: bool = False  # DALL-E: ask for base64 (GPT image models always send it)


_RULES: dict[str, ModelRules] = {
    "gpt-image-2.6": ModelRules(Sizes(), Prices(Decimal("5"), Decimal("8"), Decimal("30"))),
    "gpt-image-2": ModelRules(Sizes(), None),
    "gpt-image-1-mini": ModelRules(
        Sizes(fixed=GPT_IMAGE_1_SIZES), Prices(Decimal("2"), Decimal("2.50"), Decimal("8"))
    ),
    "gpt-image-1": ModelRules(
        Sizes(fixed=GPT_IMAGE_1_SIZES), Prices(Decimal("5"), Decimal("10"), Decimal("40"))
    ),
    "chatgpt-image": ModelRules(Sizes(fixed=GPT_IMAGE_1_SIZES), None),
    "dall-e-3": ModelRules(Sizes(fixed=((1024, 1024), (1792, 1024), (1024, 1792))), None, True),
    "dall-e-2": ModelRules(Sizes(fixed=((256, 256), (512, 512), (1024, 1024))), None, True),
}


def rules(model: str) -> ModelRules:
    for prefix in sorted(_RULES, key=len, reverse=True):
        if model == prefix or model.startswith(prefix):
            return _RULES[prefix]
    return ModelRules(None, None)


def _int(value: Any) -> int | None:
    """A token count as reported: 0 when absent; None when it is not a count or out
    of range (negative, absurd), which makes the cost unknown."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 0 <= value <= MAX_USAGE_TOKENS else None


def sane_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The usage figures worth recording: counts within range, nested ones too."""
    sane: dict[str, Any] = {}
    for key, value in usage.items():
        if isinstance(value, dict):
            sane[str(key)] = sane_usage(value)
        elif value is not None and _int(value) is not None:
            sane[str(key)] = value
    return sane


def cost_of(usage: Any, prices: Prices | None) -> Decimal | None:
    """The cost of one call from its `usage` tokens; None when either is unknown."""
    if prices is None or not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and ("text_tokens" in details or "image_tokens" in details):
        text_in, image_in = _int(details.get("text_tokens")), _int(details.get("image_tokens"))
    else:
        text_in, image_in = _int(usage.get("input_tokens")), 0
    output = _int(usage.get("output_tokens"))
    if text_in is None or image_in is None or output is None:
        return None  # a figure out of range: unpriced, never a negative or absurd cost
    total = (
        text_in * prices.text_input + image_in * prices.image_input + output * prices.image_output
    )
    return total / MILLION
