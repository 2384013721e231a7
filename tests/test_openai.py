"""The OpenAI Images adapter against a scripted fake of its HTTP API (no network)."""

from __future__ import annotations

import asyncio
import base64
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request
from imagen_tui.backends.http import HttpError
from imagen_tui.backends.openai import OpenAIBackend
from imagen_tui.backends.openai.models import Prices, cost_of, rules
from imagen_tui.errors import ConfigError, GenerationError, InputError
from tests.cloudfakes import Clock, Server, png, reply

TOKEN = "sk-proj-T0pS3cr3tKeyValue"
TOKEN_ENV = "IMAGEN_TEST_OPENAI_KEY"
BASE = "https://api.openai.test/v1"
CREATE = "POST /v1/images/generations"
IMAGE = png(1536, 1024)
USAGE = {
    "input_tokens": 50,
    "output_tokens": 6240,
    "total_tokens": 6290,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def created(image: bytes = IMAGE, usage: Any = USAGE) -> httpx.Response:
    body: dict[str, Any] = {
        "created": 1_764_000_000,
        "data": [{"b64_json": base64.b64encode(image).decode()}],
    }
    if usage is not None:
        body["usage"] = usage
    return reply(200, body)


def backend(server: Server, clock: Clock | None = None, **options: Any) -> OpenAIBackend:
    options.setdefault("model", "gpt-image-2.6-sunburst")
    block = registry.validate_block(
        "gpt", {"type": "openai", "token_env": TOKEN_ENV, "base_url": BASE, **options}
    )
    return OpenAIBackend("gpt", block, transport=server.transport, sleep=(clock or Clock()).sleep)


def generate(b: OpenAIBackend, request: Request | None = None) -> Any:
    async def go() -> Any:
        try:
            return await b.generate(
                request or Request("a lighthouse", width=1536, height=1024, seed=5)
            )
        finally:
            await b.aclose()

    return asyncio.run(go())


def test_happy_path_decodes_base64_and_costs_from_usage():
    server = Server().on(CREATE, created())
    result = generate(backend(server, quality="high"))
    [call] = server.calls(CREATE)
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.json == {
        "model": "gpt-image-2.6-sunburst",
        "prompt": "a lighthouse",
        "n": 1,
        "size": "1536x1024",
        "output_format": "png",
        "quality": "high",
    }
    assert "seed" not in call.json
    assert result.image == IMAGE
    assert (result.mime_type, result.width, result.height) == ("image/png", 1536, 1024)
    assert result.seed is None  # OpenAI takes no seed
    assert result.steps is None
    # 40 text in at $5, 10 image in at $8, 6240 out at $30, per million tokens
    assert result.cost_usd == Decimal("0.18748")  # 0.0002 + 0.00008 + 0.1872
    assert result.extra["usage"]["output_tokens"] == 6240


def test_cost_from_usage_to_the_token():
    prices = Prices(Decimal("5"), Decimal("10"), Decimal("40"))
    assert cost_of(USAGE, prices) == Decimal("0.2499")  # 0.0002 + 0.0001 + 0.2496
    assert cost_of({"input_tokens": 100, "output_tokens": 0}, prices) == Decimal("0.0005")
    assert cost_of(USAGE, None) is None
    assert cost_of(None, prices) is None


def test_unknown_price_is_an_unknown_cost():
    server = Server().on(CREATE, created())
    assert generate(backend(server, model="gpt-image-2")).cost_usd is None


def test_content_policy_400_is_permanent_and_says_so():
    refusal = reply(
        400,
        {
            "error": {
                "message": "Your request was rejected by the safety system.",
                "type": "image_generation_user_error",
                "param": None,
                "code": "moderation_blocked",
            }
        },
    )
    server = Server().on(CREATE, refusal)
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    message = str(caught.value)
    assert "content policy (400)" in message
    assert "rejected by the safety system" in message
    assert caught.value.transient is False
    assert len(server.calls(CREATE)) == 1


def test_quota_429_is_not_retried():
    clock = Clock()
    quota = reply(
        429,
        {
            "error": {
                "message": "You exceeded your current quota.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
        Retry_After="1",
    )
    server = Server().on(CREATE, quota)
    with pytest.raises(HttpError) as caught:
        generate(backend(server, clock))
    assert "quota (429)" in str(caught.value)
    assert caught.value.transient is False
    assert len(server.calls(CREATE)) == 1
    assert clock.waits == []


def test_rate_limit_429_is_retried():
    clock = Clock()
    limited = reply(
        429,
        {"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
        retry_after_ms="1500",
    )
    server = Server().on(CREATE, limited, created())
    generate(backend(server, clock))
    assert clock.waits == [1.5]
    assert len(server.calls(CREATE)) == 2


def test_401_names_the_variable_never_the_key(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    server = Server().on(CREATE, reply(401, {"error": {"message": f"Incorrect API key {TOKEN}"}}))
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    assert f"${TOKEN_ENV}" in str(caught.value)
    assert TOKEN not in str(caught.value) + caplog.text


def test_unverified_organization_403_says_so():
    said = "Your organization must be verified to use the model `gpt-image-2`."
    server = Server().on(CREATE, reply(403, {"error": {"message": said}}))
    with pytest.raises(HttpError, match="organization not verified"):
        generate(backend(server))


def test_shut_down_model_is_named():
    gone = {
        "error": {"message": "The model `gpt-image-1` does not exist", "code": "model_not_found"}
    }
    server = Server().on(CREATE, reply(404, gone))
    with pytest.raises(HttpError, match="model not found"):
        generate(backend(server, model="gpt-image-1"), Request("x", width=1024, height=1024))


def test_5xx_on_create_is_not_resent_but_transient():
    server = Server().on(CREATE, reply(500, {"error": {"message": "oops"}}))
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    assert len(server.calls(CREATE)) == 1
    assert caught.value.transient is True


def test_lost_answer_on_create_may_be_billed_so_it_fails_for_good():
    server = Server().on(CREATE, httpx.ReadTimeout("timed out"))
    with pytest.raises(GenerationError) as caught:
        generate(backend(server))
    assert len(server.calls(CREATE)) == 1
    assert caught.value.transient is False
    assert "may have been billed" in str(caught.value)


def test_broken_base64_is_reported():
    server = Server().on(CREATE, reply(200, {"data": [{"b64_json": "not base64!!"}]}))
    with pytest.raises(GenerationError, match="no base64 image"):
        generate(backend(server))


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("model", "size", "ok"),
    [
        ("gpt-image-1-mini", (1024, 1024), True),
        ("gpt-image-1-mini", (1536, 1024), True),
        ("gpt-image-1-mini", (1024, 768), False),
        ("gpt-image-2", (1024, 768), True),
        ("gpt-image-2", (1000, 768), False),  # not a multiple of 16
        ("gpt-image-2", (2048, 512), False),  # 4:1
        ("gpt-image-2.6-flare", (1536, 512), True),  # 3:1
        ("dall-e-3", (1792, 1024), True),
        ("dall-e-3", (1536, 1024), False),
        ("someone-elses-model", (123, 77), True),  # unknown: left to the server
    ],
)
def test_sizes_are_checked_per_model(model: str, size: tuple[int, int], ok: bool):
    block = registry.validate_block("gpt", {"type": "openai", "model": model})
    request = Request("x", width=size[0], height=size[1])
    if ok:
        registry.check_request(block, request)
    else:
        with pytest.raises(InputError) as caught:
            registry.check_request(block, request)
        assert caught.value.field == "size"


def test_a_bad_size_never_reaches_the_server():
    server = Server().on(CREATE, created())
    with pytest.raises(GenerationError, match="size"):
        generate(backend(server, model="gpt-image-1-mini"), Request("x", width=640, height=480))
    assert server.seen == []


def test_model_is_required():
    with pytest.raises(ConfigError, match=r"backends\.gpt\.model: required"):
        registry.validate_block("gpt", {"type": "openai"})


def test_rules_by_longest_prefix():
    assert rules("gpt-image-2.6-sunburst").prices is not None
    assert rules("gpt-image-2").prices is None
    assert rules("gpt-image-1-mini").prices == Prices(Decimal(2), Decimal("2.5"), Decimal(8))


def test_check_fetches_the_model():
    server = Server().on("GET /v1/models/gpt-image-2", reply(200, {"id": "gpt-image-2"}))
    b = backend(server, model="gpt-image-2")
    assert asyncio.run(b.check()) == "model gpt-image-2 is available"
    assert (
        server.calls("GET /v1/models/gpt-image-2")[0].headers["authorization"] == f"Bearer {TOKEN}"
    )
