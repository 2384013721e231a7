"""The `replicate` backend: models hosted on Replicate (FLUX and any other).

- `adapter.py`: `ReplicateBackend` (create, wait, poll, download, cancel);
- `models.py`: model references, step limits, timeouts, the price table;
- `sizes.py`: width x height -> the closest FLUX `aspect_ratio`.

Config (`backends.<name>`): `model` (owner/name or owner/name:version),
`api_token_env` (default REPLICATE_API_TOKEN;
`token_env` is accepted too), `base_url`, `timeout_s`,
`output_format`. See docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagen_tui.backends.base import Request
from imagen_tui.backends.http import HttpError
from imagen_tui.backends.registry import (
    MAX_DOWNLOAD_OPTION,
    BackendType,
    Check,
    Option,
    RequestOption,
)
from imagen_tui.backends.replicate.adapter import DEFAULT_BASE_URL, ReplicateBackend
from imagen_tui.backends.replicate.models import parse_ref
from imagen_tui.errors import ConfigError, InputError

__all__ = ["DEFAULT_MODEL", "REPLICATE_TYPE", "ReplicateBackend"]

DEFAULT_MODEL = "black-forest-labs/flux-schnell"


async def _check(instance: str, block: Mapping[str, Any]) -> Check:
    backend = ReplicateBackend(instance, block)
    try:
        username = await backend.check()
    except HttpError as error:
        return Check(False, str(error))
    finally:
        await backend.aclose()
    return Check(True, f"token works (account {username})")


def _check_request(block: Mapping[str, Any], _request: Request) -> None:
    try:
        parse_ref(str(block["model"]), "model")
    except ConfigError as error:
        raise InputError("backend", f"its {error}") from None


# What a job may set in its `options` (docs/security.md). Everything that decides
# what is billed or recorded is ImaGen's: prompt, size (aspect_ratio or
# width/height), steps, seed, num_outputs, output_format, and the safety checker
# (disable_safety_checker) is the operator's, never a job's.
JOB_OPTIONS = (
    RequestOption("go_fast", bool, help="faster, not bit-exact (FLUX)"),
    RequestOption("guidance", float, minimum=0, maximum=10, help="prompt adherence (FLUX dev)"),
    RequestOption("megapixels", str, choices=("1", "0.25"), help="output resolution (FLUX)"),
    RequestOption("output_quality", int, minimum=0, maximum=100, help="JPEG/WebP quality"),
)

REPLICATE_TYPE = BackendType(
    name="replicate",
    summary="Models hosted on Replicate (FLUX schnell/dev/pro, or any owner/name:version)",
    options=(
        Option(
            "model",
            str,
            default=DEFAULT_MODEL,
            help="owner/name (an official model) or owner/name:version (pinned)",
        ),
        Option(
            "api_token_env",
            str,
            default="REPLICATE_API_TOKEN",
            env=True,
            aliases=("token_env",),
            help="the environment variable holding the API token",
        ),
        Option(
            "base_url",
            str,
            default=DEFAULT_BASE_URL,
            help="API root (a proxy, a gateway or a local fake)",
        ),
        Option(
            "timeout_s",
            float,
            default=None,
            minimum=5,
            maximum=3600,
            help="cancel a prediction not finished after this long (default: per model, "
            "60 s schnell, 120 s dev)",
        ),
        Option(
            "output_format",
            str,
            default="png",
            choices=("png", "jpg", "webp"),
            help="the image format the model returns",
        ),
        MAX_DOWNLOAD_OPTION,
        Option(
            "size_input",
            str,
            default="aspect_ratio",
            choices=("aspect_ratio", "width_height"),
            help="how a model ImaGen does not know takes the size (FLUX models: aspect_ratio)",
        ),
    ),
    factory=ReplicateBackend,
    default_model=DEFAULT_MODEL,
    check=_check,
    check_request=_check_request,
    request_options=JOB_OPTIONS,
)
