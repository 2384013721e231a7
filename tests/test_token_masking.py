"""Tokens are checked when read and masked in every form (issue 17 point 5): a
token with an inner CR/LF never reaches the HTTP library (whose error would quote
it into jobs.error), a proxy echoing the bare token of a `Bearer ...` header value
is masked, so are the WebSocket library's errors and Replicate's prediction.error,
and an error raised before a byte was sent is "never sent", not maybe billed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

from imagen_tui.backends.comfyui import client as comfy_client
from imagen_tui.backends.comfyui.client import Session
from imagen_tui.backends.http import HttpClient, HttpError, MaybeStarted, mask
from imagen_tui.errors import GenerationError
from tests.cloudfakes import JsonHandler, serving

ENV = "IMAGEN_TEST_MASK_TOKEN"
BARE = "s3cretT0kenValue42"


class Recorder(JsonHandler):
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        Recorder.paths.append(self.path)
        self.send_json(200, {})


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.paths = []
    with serving(Recorder) as base:
        yield base


def call(client: HttpClient, billable: bool = False) -> httpx.Response:
    async def go() -> httpx.Response:
        try:
            return await client.request("POST", "x", billable=billable, json={})
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "value",
    [f"{BARE}\r\nX-Injected: 1", f"{BARE}\nline2", f"a {BARE}", f"{BARE}é", f"{BARE}\x1b"],
)
def test_a_token_that_is_not_printable_ascii_is_refused_when_read(server, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    client = HttpClient(name="r", base_url=server, token_env=ENV)
    with pytest.raises(HttpError) as refused:
        call(client)
    message = str(refused.value)
    assert message == (
        f"r: ${ENV} is not a valid token: it holds whitespace or characters outside "
        "printable ASCII; set it to the token alone, on one line"
    )
    assert BARE not in message
    assert Recorder.paths == []  # nothing was sent


def test_a_token_with_surrounding_whitespace_is_fine(server, monkeypatch):
    monkeypatch.setenv(ENV, f"  {BARE}\n")
    assert call(HttpClient(name="r", base_url=server, token_env=ENV)).status_code == 200


def test_a_header_value_may_hold_its_scheme(server, monkeypatch):
    monkeypatch.setenv(ENV, f"Bearer {BARE}")
    client = HttpClient(name="c", base_url=server, token_env=ENV, auth_scheme=None)
    assert call(client).status_code == 200
    monkeypatch.setenv(ENV, f"Bearer {BARE} more")
    with pytest.raises(HttpError, match="is not a valid token"):
        call(HttpClient(name="c", base_url=server, token_env=ENV, auth_scheme=None))


def echoing(body: str) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(400, text=body))


@pytest.mark.parametrize(
    "echo",
    [
        f"bad token {BARE}",  # the bare token of a `Bearer ...` header value
        f"bad header 'Bearer {BARE}'",
        f"bad header b'Bearer {BARE}'",
    ],
)
def test_every_form_of_a_header_value_is_masked(monkeypatch, echo):
    monkeypatch.setenv(ENV, f"Bearer {BARE}")
    client = HttpClient(
        name="c", base_url="http://proxy.test", token_env=ENV, auth_scheme=None,
        transport=echoing(echo),
    )  # fmt: skip
    with pytest.raises(HttpError) as refused:
        call(client)
    assert BARE not in str(refused.value)
    assert "***" in str(refused.value)


def test_repr_and_json_forms_are_masked():
    token = 'ab\\cd"ef-0123'
    for quoted in (repr(token), repr(token.encode()), '"ab\\\\cd\\"ef-0123"'):
        assert "ab" not in mask(f"echo {quoted}", token).replace("***", ""), quoted


def test_a_local_protocol_error_is_never_sent_not_maybe_billed(monkeypatch):
    monkeypatch.setenv(ENV, BARE)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {BARE}'")

    client = HttpClient(
        name="r", base_url="http://api.test", token_env=ENV, transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(HttpError) as refused:
        call(client, billable=True)
    assert not isinstance(refused.value, MaybeStarted)
    assert "was never sent" in str(refused.value)
    assert "may have" not in str(refused.value)
    assert BARE not in str(refused.value)
    assert refused.value.transient is False


def test_the_websocket_librarys_header_error_is_masked(monkeypatch):
    monkeypatch.setenv(ENV, f"Bearer {BARE}")

    async def connect(*_args: Any, **kwargs: Any) -> None:
        value = kwargs["additional_headers"]["Authorization"]
        raise ValueError(f"invalid header value: {value!r}; bare {BARE}")

    monkeypatch.setattr(comfy_client.websockets, "connect", connect)
    session = Session(name="c", url="http://127.0.0.1:1", connect_timeout=1, auth_env=ENV)

    async def go() -> None:
        try:
            await session.connect()
        finally:
            await session.http.aclose()

    with pytest.raises(GenerationError) as refused:
        asyncio.run(go())
    assert BARE not in str(refused.value)
    assert "could not open the WebSocket" in str(refused.value)


def test_replicates_prediction_error_excerpt_is_masked(monkeypatch):
    from imagen_tui.backends import registry
    from imagen_tui.backends.base import Request
    from imagen_tui.backends.replicate import ReplicateBackend
    from tests.cloudfakes import Server, reply

    monkeypatch.setenv(ENV, BARE)
    failed = {
        "id": "p1",
        "status": "failed",
        "error": f"auth header was 'Bearer {BARE}', token {BARE}",
    }
    server = Server().on(
        "POST /v1/models/black-forest-labs/flux-schnell/predictions", reply(201, failed)
    )
    block = registry.validate_block(
        "flux", {"type": "replicate", "token_env": ENV, "base_url": "https://api.test/v1"}
    )
    backend = ReplicateBackend("flux", block, transport=server.transport)

    async def go() -> None:
        try:
            await backend.generate(Request("a fox", seed=1))
        finally:
            await backend.aclose()

    with pytest.raises(GenerationError) as failed_error:
        asyncio.run(go())
    assert "the prediction failed" in str(failed_error.value)
    assert BARE not in str(failed_error.value)
