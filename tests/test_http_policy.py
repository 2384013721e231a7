"""The shared HTTP policy (`imagen_tui.backends.http`): who is retried, how long
it waits, what reaches the server, and that the token never leaks.

Most tests script a fake server behind `httpx.MockTransport`; a few use a real
one on 127.0.0.1 (ephemeral port) for connection refused, dropped and timed
out. Every test asserts how many requests the server actually received.
Sleeping goes through a recorder, so no test waits for a backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from imagen_tui.backends import http
from imagen_tui.backends.http import (
    Classification,
    HttpClient,
    HttpError,
    MaybeStarted,
    default_classify,
    parse_retry_after,
)
from imagen_tui.errors import GenerationError

TOKEN = "r8_s3cr3t-T0KEN-value"
TOKEN_ENV = "IMAGEN_TEST_API_TOKEN"
BASE = "https://api.example.test/v1"
NOW = 1_700_000_000.0  # the injected wall clock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


# --------------------------------------------------------------------------- fakes


REFUSE = "refuse"  # the connection is refused: the request never reaches the server
TIMEOUT = "timeout"  # the server gets the request, then the response never comes
DROP = "drop"  # the server gets the request, then the connection drops


@dataclass
class Received:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: dict[str, float | None]


@dataclass
class Script:
    """A fake server for `httpx.MockTransport`: each request gets the next step
    (the last one repeats); `received` lists what actually reached it."""

    steps: list[httpx.Response | str]
    received: list[Received] = field(default_factory=list)
    attempts: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        step = self.steps[min(self.attempts, len(self.steps) - 1)]
        self.attempts += 1
        if step == REFUSE:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        self.received.append(
            Received(
                request.method,
                str(request.url),
                dict(request.headers),
                request.content,
                request.extensions["timeout"],
            )
        )
        if step == TIMEOUT:
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        if step == DROP:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        assert isinstance(step, httpx.Response)
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    """A response with a JSON body (none when `body` is None); `Retry_After="7"`
    sets the `Retry-After` header."""
    return httpx.Response(
        status,
        json=body,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )


OK = reply(200, {"id": "p1", "status": "starting"})


class Sleeps:
    """The injected sleep: records each wait, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(
    script: Script | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    base_url: str = BASE,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> HttpClient:
    options.setdefault("token_env", TOKEN_ENV)
    return HttpClient(
        name="flux",
        base_url=base_url,
        sleep=sleep or Sleeps(),
        clock=lambda: NOW,
        transport=transport or httpx.MockTransport(script or Script([OK])),
        **options,
    )


async def call(
    client: HttpClient, method: str = "GET", path: str = "predictions/p1", **kwargs: Any
) -> httpx.Response:
    kwargs.setdefault("billable", False)
    try:
        return await client.request(method, path, **kwargs)
    finally:
        await client.aclose()


def create(client: HttpClient, **kwargs: Any) -> Coroutine[Any, Any, httpx.Response]:
    """A billable create call, as a Replicate adapter would make it."""
    return call(client, "POST", "predictions", billable=True, json={"input": {}}, **kwargs)


# --------------------------------------------------------------------------- 429


def test_429_waits_for_retry_after_seconds_then_succeeds():
    script = Script([reply(429, Retry_After="7"), reply(429, Retry_After="7"), OK])
    sleeps = Sleeps()
    response = run(create(client_for(script, sleep=sleeps)))
    assert response.status_code == 200
    assert sleeps.waits == [7.0, 7.0]
    assert len(script.received) == 3  # a 429 is a refusal: retried even when billable


def test_429_waits_until_a_retry_after_http_date():
    when = email.utils.formatdate(NOW + 12, usegmt=True)
    script = Script([reply(429, Retry_After=when), OK])
    sleeps = Sleeps()
    assert run(call(client_for(script, sleep=sleeps))).status_code == 200
    assert sleeps.waits == [12.0]
    assert len(script.received) == 2


def test_429_without_retry_after_backs_off_exponentially_then_gives_up():
    script = Script([reply(429, {"error": {"message": "slow down"}})])
    sleeps = Sleeps()
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script, sleep=sleeps)))
    assert len(script.received) == 4  # the first try and 3 retries
    assert len(sleeps.waits) == 3
    assert sleeps.waits[0] < sleeps.waits[1] < sleeps.waits[2]  # growing
    for retry, wait in enumerate(sleeps.waits, start=1):  # jittered around 1, 2, 4 s
        assert 0.75 * 2 ** (retry - 1) <= wait <= 2 ** (retry - 1)
    error = caught.value
    assert error.transient is True
    assert error.retry_after is None
    assert error.status == 429
    assert "gave up after 4 tries" in str(error)
    assert "slow down" in str(error)


def test_429_gives_up_with_the_servers_retry_after():
    script = Script([reply(429, Retry_After="5")])
    sleeps = Sleeps()
    with pytest.raises(GenerationError) as caught:
        run(call(client_for(script, sleep=sleeps)))
    assert len(script.received) == 4
    assert sleeps.waits == [5.0, 5.0, 5.0]
    assert caught.value.transient is True
    assert caught.value.retry_after == 5.0  # the worker waits at least that long


def test_429_asking_for_longer_than_max_wait_is_handed_to_the_worker_at_once():
    script = Script([reply(429, Retry_After="600"), OK])
    sleeps = Sleeps()
    with pytest.raises(GenerationError) as caught:
        run(call(client_for(script, sleep=sleeps, max_wait=60.0)))
    assert len(script.received) == 1
    assert sleeps.waits == []  # no worker slot held for ten minutes
    assert caught.value.transient is True
    assert caught.value.retry_after == 600.0
    assert "asks to wait 600 s" in str(caught.value)


def test_429_insufficient_quota_is_permanent_and_not_retried():
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    script = Script([reply(429, body, Retry_After="1"), OK])
    sleeps = Sleeps()
    with pytest.raises(GenerationError) as caught:
        run(create(client_for(script, sleep=sleeps)))
    assert len(script.received) == 1
    assert sleeps.waits == []
    assert caught.value.transient is False
    assert str(caught.value) == (
        "flux: quota (429): You exceeded your current quota, please check your plan and billing."
    )


# --------------------------------------------------------------------------- 5xx


def test_5xx_on_a_lookup_is_retried_once():
    script = Script([reply(503), OK])
    sleeps = Sleeps()
    assert run(call(client_for(script, sleep=sleeps))).status_code == 200
    assert len(script.received) == 2
    assert len(sleeps.waits) == 1
    assert 0.75 <= sleeps.waits[0] <= 1.0


def test_5xx_on_a_lookup_gives_up_after_one_retry():
    script = Script([reply(502, {"detail": "bad gateway"})])
    with pytest.raises(HttpError) as caught:
        run(call(client_for(script)))
    assert len(script.received) == 2
    assert caught.value.transient is True
    assert caught.value.status == 502
    assert not isinstance(caught.value, MaybeStarted)
    assert "bad gateway" in str(caught.value)


def test_5xx_retry_honours_retry_after():
    script = Script([reply(503, Retry_After="3"), OK])
    sleeps = Sleeps()
    assert run(call(client_for(script, sleep=sleeps))).status_code == 200
    assert sleeps.waits == [3.0]
    assert len(script.received) == 2


def test_5xx_on_a_billable_create_is_never_resent():
    script = Script([reply(500, {"detail": "internal error"}), OK])
    sleeps = Sleeps()
    with pytest.raises(MaybeStarted) as caught:
        run(create(client_for(script, sleep=sleeps)))
    assert len(script.received) == 1  # exactly one request reached the server
    assert sleeps.waits == []
    error = caught.value
    assert error.transient is True
    assert error.status == 500
    assert "may have started a generation" in str(error)
    assert str(error).startswith("flux: POST /v1/predictions failed (500 Internal Server Error")


# --------------------------------------------------------------------------- lost connections


def test_billable_create_refused_before_sending_is_retried():
    script = Script([REFUSE, OK])
    sleeps = Sleeps()
    response = run(create(client_for(script, sleep=sleeps)))
    assert response.status_code == 200
    assert script.attempts == 2
    assert len(script.received) == 1  # the refused try never reached the server
    assert len(sleeps.waits) == 1


def test_billable_create_refused_twice_gives_up_transient():
    script = Script([REFUSE])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script)))
    assert script.attempts == 2
    assert script.received == []
    assert caught.value.transient is True
    assert not isinstance(caught.value, MaybeStarted)  # nothing can have started
    assert "ConnectError" in str(caught.value)


@pytest.mark.parametrize("failure", [TIMEOUT, DROP])
def test_billable_create_that_reached_the_server_is_not_resent(failure: str):
    script = Script([failure, OK])
    sleeps = Sleeps()
    with pytest.raises(MaybeStarted) as caught:
        run(create(client_for(script, sleep=sleeps)))
    assert len(script.received) == 1
    assert sleeps.waits == []
    assert caught.value.transient is True
    assert caught.value.status is None
    assert "may have started a generation, so it was not sent again" in str(caught.value)


@pytest.mark.parametrize("failure", [TIMEOUT, DROP])
def test_lookup_that_lost_its_connection_is_retried_once(failure: str):
    script = Script([failure, OK])
    assert run(call(client_for(script))).status_code == 200
    assert len(script.received) == 2

    script = Script([failure])
    with pytest.raises(HttpError) as caught:
        run(call(client_for(script)))
    assert len(script.received) == 2
    assert caught.value.transient is True


def test_rate_limits_and_failures_have_separate_budgets():
    script = Script([reply(429), REFUSE, reply(429), reply(429), OK])
    sleeps = Sleeps()
    assert run(create(client_for(script, sleep=sleeps))).status_code == 200
    assert script.attempts == 5
    assert len(script.received) == 4
    assert len(sleeps.waits) == 4


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_names_the_variable_and_is_not_retried(status: int):
    script = Script([reply(status, {"detail": "Invalid token."}), OK])
    sleeps = Sleeps()
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script, sleep=sleeps)))
    assert len(script.received) == 1
    assert sleeps.waits == []
    assert caught.value.transient is False
    assert caught.value.status == status
    assert f"rejected the token in ${TOKEN_ENV} ({status}" in str(caught.value)
    assert str(caught.value).endswith("; check it")


def test_402_is_a_permanent_billing_error():
    body = {"title": "Payment required", "detail": "You have insufficient credit.", "status": 402}
    script = Script([reply(402, body), OK])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script)))
    assert len(script.received) == 1
    assert caught.value.transient is False
    assert str(caught.value) == "flux: billing (402): You have insufficient credit."


def test_classify_hook_names_a_content_policy_refusal():
    def openai_classify(response: httpx.Response) -> Classification | None:
        error = response.json().get("error", {})
        if response.status_code == 400 and error.get("code") == "moderation_blocked":
            return Classification("content policy", "the prompt was refused by the safety system")
        return None

    body = {"error": {"message": "Your request was rejected", "code": "moderation_blocked"}}
    script = Script([reply(400, body), OK])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script, classify=openai_classify)))
    assert len(script.received) == 1
    assert caught.value.transient is False
    assert str(caught.value) == (
        "flux: content policy (400): the prompt was refused by the safety system"
    )


def test_classify_hook_returning_none_keeps_the_defaults():
    script = Script([reply(402, {"detail": "no credit"})])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script, classify=lambda response: None)))
    assert len(script.received) == 1
    assert "billing (402)" in str(caught.value)


def test_other_4xx_is_permanent_with_a_short_escaped_excerpt():
    message = "Invalid input: \x1b[31mwidth\x1b[0m must be a multiple of 16. " + "x" * 5_000
    script = Script([reply(422, {"detail": message, "everything": "y" * 10_000}), OK])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(script)))
    assert len(script.received) == 1
    text = str(caught.value)
    assert caught.value.transient is False
    assert caught.value.status == 422
    assert text.startswith(
        "flux: POST /v1/predictions failed (422 Unprocessable Entity: Invalid input: "
        "\\x1b[31mwidth\\x1b[0m must be"
    )
    assert "\x1b" not in text
    assert "yyy" not in text
    assert len(text) < 300
    assert "authorization" not in text.lower()


def test_a_non_json_error_body_is_excerpted_too():
    script = Script([httpx.Response(404, text="<html>\n<h1>Not Found</h1>\n</html>")])
    with pytest.raises(HttpError) as caught:
        run(call(client_for(script)))
    assert len(script.received) == 1
    assert str(caught.value) == (
        "flux: GET /v1/predictions/p1 failed (404 Not Found: <html> <h1>Not Found</h1> </html>)"
    )


def test_default_classify_leaves_an_ordinary_429_alone():
    assert default_classify(reply(429, {"error": {"type": "rate_limit_exceeded"}})) is None
    assert default_classify(httpx.Response(429, text="not json")) is None
    assert default_classify(reply(400, {"error": {"code": "insufficient_quota"}})) is None


# --------------------------------------------------------------------------- secrets


def test_missing_token_variable_is_reported_by_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(TOKEN_ENV)
    script = Script([OK])
    with pytest.raises(GenerationError) as caught:
        run(create(client_for(script)))
    assert str(caught.value) == f"flux: not configured (set {TOKEN_ENV})"
    assert caught.value.transient is False
    assert script.attempts == 0

    monkeypatch.setenv(TOKEN_ENV, "  ")  # set but blank is not configured either
    with pytest.raises(GenerationError, match=f"set {TOKEN_ENV}"):
        run(create(client_for(script)))
    assert script.attempts == 0


def test_token_is_read_from_the_environment_at_request_time(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(TOKEN_ENV)
    script = Script([OK])
    client = client_for(script)  # built before the variable is set
    monkeypatch.setenv(TOKEN_ENV, "first")

    async def two_calls() -> None:
        await client.request("GET", "a", billable=False)
        monkeypatch.setenv(TOKEN_ENV, "second")
        await client.request("GET", "b", billable=False)
        await client.aclose()

    run(two_calls())
    assert [r.headers["authorization"] for r in script.received] == [
        "Bearer first",
        "Bearer second",
    ]


def test_token_leaks_nowhere(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {TOKEN}"}}
    script = Script(
        [
            reply(429, echo, Retry_After="1"),  # logged as a retry
            reply(503, echo),  # logged as a retry
            OK,
        ]
    )
    client = client_for(script)
    response = run(call(client, params={"token": "signed-query-secret"}))
    rejected = Script([reply(401, echo)])
    with pytest.raises(HttpError) as caught:
        run(create(client_for(rejected)))
    timed_out = Script([TIMEOUT])
    with pytest.raises(MaybeStarted) as lost:
        run(create(client_for(timed_out)))

    # The server did get the token, every time.
    received = script.received + rejected.received + timed_out.received
    assert len(received) == 5
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in received)
    # But nothing we show or return carries it.
    shown = [
        str(caught.value),
        repr(caught.value),
        str(lost.value),
        repr(client),
        caplog.text,
        repr(response.request.headers),
        str(dict(response.request.headers)),
        repr(response),
    ]
    for text in shown:
        assert TOKEN not in text
    assert "***" in str(caught.value)  # the echoed token is masked, the rest is kept
    assert "authorization" not in response.request.headers
    # Our retry lines show the path, not the query (httpx's own INFO line does show it).
    ours = [r.getMessage() for r in caplog.records if r.name == http.__name__]
    assert len(ours) == 2
    assert not any("signed-query-secret" in line for line in ours)


def test_custom_auth_header_without_scheme():
    script = Script([OK])
    run(call(client_for(script, auth_header="apikey", auth_scheme=None)))
    assert script.received[0].headers["apikey"] == TOKEN
    assert "authorization" not in script.received[0].headers


def test_extra_auth_headers_are_sent_on_every_try_and_never_returned():
    script = Script([reply(503), OK])
    client = client_for(
        script,
        auth_header="apikey",
        auth_scheme=None,
        extra_auth=lambda token: {"Authorization": f"Bearer {token}", "X-Key": token},
    )
    response = run(call(client))
    assert len(script.received) == 2
    for received in script.received:
        assert received.headers["apikey"] == TOKEN
        assert received.headers["authorization"] == f"Bearer {TOKEN}"
        assert received.headers["x-key"] == TOKEN
    assert TOKEN not in repr(response.request.headers) + str(dict(response.request.headers))


def test_classified_refusal_carries_its_kind():
    def classify(response: httpx.Response) -> Classification | None:
        return Classification("duplicate", "exists") if response.status_code == 400 else None

    with pytest.raises(HttpError) as caught:
        run(call(client_for(Script([reply(400, {})]), classify=classify)))
    assert caught.value.kind == "duplicate"
    with pytest.raises(HttpError) as other:
        run(call(client_for(Script([reply(404, {})]), classify=classify)))
    assert other.value.kind is None


def test_token_goes_only_to_the_base_urls_origin():
    script = Script([OK])
    output = "https://files.example.test/out/1.png"

    async def downloads() -> None:
        client = client_for(script)
        await client.request("GET", output, billable=False)
        await client.request("GET", output, billable=False, authenticate=True)
        await client.request("GET", f"{BASE}/predictions/p1", billable=False)
        await client.aclose()

    run(downloads())
    assert len(script.received) == 3
    assert [r.url for r in script.received] == [output, output, f"{BASE}/predictions/p1"]
    assert [r.headers.get("authorization") for r in script.received] == [
        None,
        f"Bearer {TOKEN}",
        f"Bearer {TOKEN}",
    ]


def test_no_token_env_sends_no_auth_and_needs_no_variable():
    script = Script([OK])
    run(call(client_for(script, token_env=None, base_url="http://127.0.0.1:8188")))
    assert len(script.received) == 1
    assert "authorization" not in script.received[0].headers


# --------------------------------------------------------------------------- logging, timeouts


def test_one_log_line_per_retry_with_method_path_status_and_wait(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger=http.__name__)
    script = Script([reply(429, Retry_After="2"), reply(503, Retry_After="4"), OK])
    run(call(client_for(script), path="predictions/p1?cursor=abc"))
    assert len(script.received) == 3
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "flux: GET /v1/predictions/p1: 429 Too Many Requests; retry 1 of 3 in 2.0 s",
        ),
        (
            logging.WARNING,
            "flux: GET /v1/predictions/p1: 503 Service Unavailable; retry 1 of 1 in 4.0 s",
        ),
    ]


def test_timeouts_default_and_per_request():
    script = Script([OK])
    client = client_for(script, timeout=httpx.Timeout(30.0, connect=2.0))

    async def two_calls() -> None:
        await client.request("GET", "a", billable=False)
        await client.request("POST", "b", billable=True, timeout=httpx.Timeout(5.0, read=65.0))
        await client.aclose()

    run(two_calls())
    assert len(script.received) == 2
    assert script.received[0].timeout == {"connect": 2.0, "read": 30.0, "write": 30.0, "pool": 30.0}
    assert script.received[1].timeout == {"connect": 5.0, "read": 65.0, "write": 5.0, "pool": 5.0}


def test_request_body_and_headers_are_sent_on_every_try():
    script = Script([reply(429, Retry_After="0"), OK])
    run(create(client_for(script), headers={"Prefer": "wait=60"}))
    assert len(script.received) == 2
    for received in script.received:
        assert received.body == b'{"input":{}}'
        assert received.headers["prefer"] == "wait=60"
        assert received.headers["authorization"] == f"Bearer {TOKEN}"


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # past: now
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "-3"}, 0.0),
        ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),  # OpenAI's, more precise
        ({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None):
    assert parse_retry_after(httpx.Headers(headers), NOW) == seconds


# --------------------------------------------------------------------------- a real local server


class LocalServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records each request it reads
    and then answers as `mode` says: "ok" (200 JSON), "hang" (never answers)
    or "drop" (closes the connection)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> int:
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock)
        else:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _version = head[0].split(" ")
            headers = dict(line.split(": ", 1) for line in head[1:] if line)
            headers = {name.lower(): value for name, value in headers.items()}
            await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append((method, target, headers))
            if self.mode == "hang":
                await self.release.wait()
            elif self.mode == "ok":
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        finally:
            writer.close()


def test_base_url_is_honoured_with_its_path_prefix(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log too: not the token either
    server = LocalServer()

    async def scenario() -> httpx.Response:
        port = await server.start()
        client = HttpClient(
            name="flux", base_url=f"http://127.0.0.1:{port}/gateway/v1", token_env=TOKEN_ENV
        )
        try:
            return await call(client, "GET", "predictions/p1")
        finally:
            await server.stop()

    response = run(scenario())
    assert response.json() == {"ok": True}
    assert len(server.received) == 1
    method, target, headers = server.received[0]
    assert (method, target) == ("GET", "/gateway/v1/predictions/p1")
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert "httpcore" in caplog.text
    assert TOKEN not in caplog.text
    assert "authorization" not in response.request.headers


def test_real_connection_refused_on_a_billable_create_is_retried():
    """The port is bound but not listening, so the first try is refused by the
    kernel; the (injected) sleep starts the server there, and the retry lands."""
    server = LocalServer()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def start_listening(_seconds: float) -> None:
        await server.start(sock)

    async def scenario() -> httpx.Response:
        client = HttpClient(
            name="flux",
            base_url=f"http://127.0.0.1:{port}",
            token_env=TOKEN_ENV,
            sleep=start_listening,
        )
        try:
            return await create(client)
        finally:
            await server.stop()

    try:
        response = run(scenario())
    finally:
        sock.close()
    assert response.status_code == 200
    assert len(server.received) == 1


@pytest.mark.parametrize("mode", ["hang", "drop"])
def test_real_billable_create_that_reached_the_server_is_not_resent(mode: str):
    server = LocalServer(mode)
    sleeps = Sleeps()

    async def scenario() -> None:
        port = await server.start()
        client = HttpClient(
            name="flux",
            base_url=f"http://127.0.0.1:{port}",
            token_env=TOKEN_ENV,
            timeout=httpx.Timeout(10.0, read=0.3),  # "hang" waits this long, once
            sleep=sleeps,
        )
        try:
            await create(client)
        finally:
            await server.stop()

    with pytest.raises(MaybeStarted) as caught:
        run(scenario())
    assert len(server.received) == 1
    assert sleeps.waits == []
    expected = "ReadTimeout" if mode == "hang" else "RemoteProtocolError"
    assert expected in str(caught.value)


def test_an_unsupported_url_scheme_is_permanent():
    server = LocalServer()

    async def scenario() -> None:
        port = await server.start()
        client = HttpClient(name="flux", base_url=f"ftp://127.0.0.1:{port}", token_env=TOKEN_ENV)
        try:
            await call(client)
        finally:
            await server.stop()

    with pytest.raises(HttpError) as caught:
        run(scenario())
    assert server.received == []  # httpx refuses the scheme before connecting
    assert caught.value.transient is False
    assert str(caught.value).startswith("flux: bad URL /predictions/p1")
