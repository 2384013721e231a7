"""The OpenAI Images adapter: one `POST images/generations`, base64 out.

The model id comes from the config (never a default: see `models`). Sizes
are checked per model before anything is sent (`check_size`, also run at
plan time). OpenAI takes no seed: the result records none, and the tries of
a series are simply separate calls. The cost is computed from the response's
`usage` tokens and the model's token prices.

Failures: the shared HTTP policy (`backends.http`) plus OpenAI's own
refusals, which are permanent and say what happened: a content-policy block
(400 `moderation_blocked`), an exhausted quota (429 `insufficient_quota`), an
unverified organization (403), a model that is unknown or shut down.
A create call that may have reached OpenAI and got no answer (a read
timeout, a dropped connection) may have been billed, and OpenAI offers no
way to look it up: it fails for good, saying so, rather than buying twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from imagen_tui.backends.base import Progress, Request, Result
from imagen_tui.backends.http import (
    Classification,
    HttpClient,
    HttpError,
    MaybeStarted,
    excerpt,
    json_object,
    server_message,
)
from imagen_tui.backends.imageinfo import output_image_info
from imagen_tui.backends.openai import models
from imagen_tui.errors import GenerationError, InputError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT_S = 180.0
# Body keys only ImaGen sets (a request's options never carry them): see JOB_OPTIONS
# in __init__.py for what a job may set.
_OWN_KEYS = frozenset(
    {"model", "prompt", "n", "size", "output_format", "response_format", "stream",
     "partial_images", "moderation", "user"}
)  # fmt: skip

Sleep = Callable[[float], Awaitable[None]]

_CONTENT_POLICY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    error = json_object(response).get("error")
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("type") or "")


def classify(response: httpx.Response) -> Classification | None:
    """OpenAI's permanent refusals (the quota 429 is known to the defaults)."""
    code, kind = _error_fields(response)
    said = server_message(response)
    status = response.status_code
    if status == 400 and (code in _CONTENT_POLICY_CODES or kind == "image_generation_user_error"):
        return Classification("content policy", f"the request was refused: {said}")
    if code == "model_not_found" or (status == 404 and "model" in said.lower()):
        return Classification(
            "model not found", f"{said} (the model id may be retired; set another `model`)"
        )
    if status == 403 and "verif" in said.lower():
        return Classification("organization not verified", said)
    return None


def check_size(model: str, width: int, height: int) -> None:
    """InputError naming the size when `model` cannot make width x height."""
    sizes = models.rules(model).sizes
    problem = sizes.problem(width, height) if sizes is not None else None
    if problem is not None:
        raise InputError("size", f"{model}: {problem}")


class OpenAIBackend:
    """A configured OpenAI image model."""

    type_name = "openai"

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.model = str(options["model"])
        self.rules = models.rules(self.model)
        self.quality: str | None = options.get("quality")
        self.output_format: str = options.get("output_format") or "png"
        timeout_s = float(options.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self.timeout_s = timeout_s  # the worker's job deadline builds on it
        self.http = HttpClient(
            name=name,
            base_url=options.get("base_url") or DEFAULT_BASE_URL,
            token_env=options.get("api_key_env") or options.get("token_env") or "OPENAI_API_KEY",
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            classify=classify,
            sleep=sleep,
            transport=transport,
        )

    def build_body(self, request: Request) -> dict[str, Any]:
        # The request's own options (quality, background, ...: the allowlist in
        # __init__.py, checked when planned) come first, so every key set below is
        # ImaGen's whatever they hold.
        body: dict[str, Any] = {k: v for k, v in request.options.items() if k not in _OWN_KEYS}
        body |= {
            "model": self.model,
            "prompt": request.prompt,
            "n": 1,
            "size": f"{request.width}x{request.height}",
        }
        if self.rules.b64_param:
            body["response_format"] = "b64_json"
        else:
            body["output_format"] = {"jpg": "jpeg"}.get(self.output_format, self.output_format)
        if self.quality and "quality" not in body:
            body["quality"] = self.quality
        return body

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        try:
            check_size(self.model, request.width, request.height)
        except InputError as error:
            raise GenerationError(f"{self.name}: {error.field}: {error.message}") from None
        started = time.perf_counter()
        try:
            response = await self.http.request(
                "POST", "images/generations", billable=True, json=self.build_body(request)
            )
        except MaybeStarted as error:
            if error.status is not None:  # OpenAI answered with a 5xx: nothing was made
                raise
            raise GenerationError(
                f"{error}. OpenAI has no way to look a request up, and it may have been "
                "billed: not retried automatically; retry the job yourself if no image came",
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
            data = body["data"][0]
            image = base64.b64decode(data["b64_json"], validate=True)
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise GenerationError(f"{self.name}: the response holds no base64 image") from None
        mime, width, height = output_image_info(self.name, image)
        usage = body.get("usage")
        extra: dict[str, Any] = {"prices_taken": models.PRICES_TAKEN}
        if isinstance(usage, dict):
            extra["usage"] = models.sane_usage(usage)
        if isinstance(data.get("revised_prompt"), str):
            extra["revised_prompt"] = data["revised_prompt"]
        if progress is not None:
            progress(1.0)
        return Result(
            image=image,
            mime_type=mime,
            model=self.model,
            seed=None,  # OpenAI takes no seed
            steps=None,
            latency_ms=latency_ms,
            cost_usd=models.cost_of(usage, self.rules.prices),
            extra=extra,
            width=width,
            height=height,
        )

    async def check(self) -> str:
        """One cheap authenticated call: the model's own entry. Raises HttpError."""
        response = await self.http.request("GET", f"models/{self.model}", billable=False)
        shutdown = json_object(response).get("shutdown_date")
        if shutdown:
            return (
                f"model {excerpt(self.model)} is available (shutdown date {excerpt(str(shutdown))})"
            )
        return f"model {excerpt(self.model)} is available"

    async def aclose(self) -> None:
        await self.http.aclose()


async def check_instance(instance: str, block: Mapping[str, Any]) -> tuple[bool, str]:
    backend = OpenAIBackend(instance, block)
    try:
        return True, f"token works; {await backend.check()}"
    except HttpError as error:
        return False, str(error)
    finally:
        await backend.aclose()
