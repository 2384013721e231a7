"""The `openai` backend: OpenAI's image models (gpt-image-2 and later).

- `adapter.py`: `OpenAIBackend` (one create call, base64 out, cost from usage);
- `models.py`: sizes per model and the token price table, with its date.

Config (`backends.<name>`): `model` (required: OpenAI retires image models
often, so there is no default), `api_key_env` (default OPENAI_API_KEY;
`token_env` is accepted too),
`base_url`, `quality`, `output_format`, `timeout_s`. See docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagen_tui.backends.base import Request
from imagen_tui.backends.openai.adapter import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    OpenAIBackend,
    check_instance,
    check_size,
)
from imagen_tui.backends.registry import BackendType, Check, Option, RequestOption
from imagen_tui.errors import InputError

__all__ = ["OPENAI_TYPE", "OpenAIBackend"]


async def _check(instance: str, block: Mapping[str, Any]) -> Check:
    ok, summary = await check_instance(instance, block)
    return Check(ok, summary)


# What a job may set in its `options` (docs/security.md). The model, prompt, n,
# size, output format, response format, streaming and moderation are ImaGen's or
# the operator's; quality only downwards (see _check_request).
JOB_OPTIONS = (
    RequestOption("quality", str, choices=("low", "medium"), help="at most the configured one"),
    RequestOption("background", str, choices=("auto", "opaque", "transparent")),
    RequestOption("output_compression", int, minimum=0, maximum=100, help="JPEG/WebP only"),
)
_QUALITY_RANK = {"low": 0, "medium": 1, "high": 2, "auto": 2}  # auto may pick high


def _check_request(block: Mapping[str, Any], request: Request) -> None:
    check_size(str(block["model"]), request.width, request.height)
    wanted = request.options.get("quality")
    configured = block.get("quality")
    rank = _QUALITY_RANK.get
    if isinstance(wanted, str) and configured and rank(wanted, 2) > rank(str(configured), 2):
        raise InputError(
            "options",
            f"quality: {wanted!r} is above this backend's configured quality "
            f"{configured!r}; a job may only lower it",
        )


OPENAI_TYPE = BackendType(
    name="openai",
    summary="OpenAI image models (gpt-image-2, gpt-image-2.6-*); no seed",
    options=(
        Option(
            "model",
            str,
            required=True,
            help="the model id, e.g. gpt-image-2 (no default: OpenAI retires image models)",
        ),
        Option(
            "api_key_env",
            str,
            default="OPENAI_API_KEY",
            env=True,
            aliases=("token_env",),
            help="the environment variable holding the API key",
        ),
        Option(
            "base_url",
            str,
            default=DEFAULT_BASE_URL,
            help="API root (a proxy, a gateway or a local fake)",
        ),
        Option(
            "quality",
            str,
            default=None,
            help="low, medium, high or auto (the model may offer more)",
        ),
        Option(
            "output_format",
            str,
            default="png",
            choices=("png", "jpg", "webp"),
            help="the image format returned",
        ),
        Option(
            "timeout_s",
            float,
            default=DEFAULT_TIMEOUT_S,
            minimum=5,
            maximum=3600,
            help="how long one generation may take",
        ),
    ),
    factory=OpenAIBackend,
    default_model="(set model)",
    check=_check,
    check_request=_check_request,
    request_options=JOB_OPTIONS,
)
