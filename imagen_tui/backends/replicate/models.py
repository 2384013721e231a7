"""What ImaGen knows about Replicate models: model references, step limits,
timeouts and the per-image price table (with the date it was taken).

A model the table does not know still runs: its steps are passed through
unchecked, it gets `DEFAULT_TIMEOUT_S`, and its cost is unknown (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from imagen_tui.errors import ConfigError

# Prices per output image, USD, from replicate.com/pricing (as transcribed on
# the date below; see docs/backends.md). Check them again before relying on them.
PRICES_TAKEN = "2026-10-07"

DEFAULT_TIMEOUT_S = 120.0

_OWNER_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
_REF_RE = re.compile(rf"^(?P<model>{_OWNER_NAME})(?::(?P<version>[0-9a-f]{{64}}))?$")


@dataclass(frozen=True)
class ModelRef:
    """`owner/name` (an official model, its own endpoint) or `owner/name:version` (pinned)."""

    model: str  # owner/name
    version: str | None = None

    @property
    def create_path(self) -> str:
        """Where a prediction of this model is created, relative to the API root."""
        if self.version is None:
            return f"models/{self.model}/predictions"
        return "predictions"

    def __str__(self) -> str:
        return self.model if self.version is None else f"{self.model}:{self.version}"


def parse_ref(text: str, where: str = "model") -> ModelRef:
    """A model reference from the config; ConfigError naming the key if malformed."""
    match = _REF_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(
            f"{where}: {text!r} is not a Replicate model; write owner/name "
            "(an official model) or owner/name:<64-hex version id>"
        )
    return ModelRef(match["model"], match["version"])


@dataclass(frozen=True)
class ModelInfo:
    """Limits and price of one known model."""

    min_steps: int
    max_steps: int
    default_steps: int
    timeout_s: float  # how long a prediction may take before it is canceled
    price_usd: Decimal | None  # per output image; None: not billed per image
    aspect_ratio: bool = True  # the model takes `aspect_ratio`, not width/height


MODELS: dict[str, ModelInfo] = {
    "black-forest-labs/flux-schnell": ModelInfo(1, 4, 4, 60.0, Decimal("0.003")),
    "black-forest-labs/flux-dev": ModelInfo(1, 50, 28, 120.0, Decimal("0.025")),
    "black-forest-labs/flux-1.1-pro": ModelInfo(1, 50, 28, 120.0, Decimal("0.04")),
    "black-forest-labs/flux-pro": ModelInfo(1, 50, 25, 120.0, Decimal("0.055")),
}


def info(ref: ModelRef) -> ModelInfo | None:
    return MODELS.get(ref.model)


def clamp_steps(ref: ModelRef, steps: int | None) -> int | None:
    """Steps within the model's limits; None leaves the model's default."""
    known = info(ref)
    if steps is None or known is None:
        return steps
    return max(known.min_steps, min(known.max_steps, steps))


def timeout_s(ref: ModelRef, configured: float | None) -> float:
    if configured is not None:
        return configured
    known = info(ref)
    return known.timeout_s if known else DEFAULT_TIMEOUT_S


def price(ref: ModelRef, images: int = 1) -> Decimal | None:
    known = info(ref)
    if known is None or known.price_usd is None:
        return None
    return known.price_usd * images
