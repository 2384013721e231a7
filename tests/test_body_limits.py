"""Untrusted bodies: every answer is capped in bytes (Content-Length first,
then as it streams) and every call has one deadline, however slowly the
server drips (`HttpClient.request`'s max_bytes and deadline_s)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request
from imagen_tui.backends.http import HttpClient, HttpError, MaybeStarted, TooLarge
from imagen_tui.backends.replicate import ReplicateBackend
from imagen_tui.errors import ConfigError
from tests.cloudfakes import Clock, Server, reply
from tests.comfyui_fake import FakeComfy

BASE = "https://api.example.test/v1"
REPLICATE = "https://api.replicate.test/v1"
TOKEN_ENV = "IMAGEN_TEST_REPLICATE_TOKEN"
CREATE = "POST /v1/models/black-forest-labs/flux-schnell/predictions"
OUT_URL = "https://replicate.delivery/xezq/out-0.png"
DOWNLOAD = "GET /xezq/out-0.png"


def client(handler: httpx.MockTransport | None = None, **kwargs: object) -> HttpClient:
    return HttpClient(name="svc", base_url=BASE, transport=handler, **kwargs)  # type: ignore[arg-type]


async def fetch(c: HttpClient, url: str = "out.png", **kwargs: object) -> httpx.Response:
    try:
        return await c.request("GET", url, billable=False, **kwargs)  # type: ignore[arg-type]
    finally:
        await c.aclose()


class Body:
    """A streamed body that counts how much of it was read."""

    def __init__(self, chunks: int, size: int = 1024) -> None:
        self.chunks, self.size, self.sent = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += self.size
            yield b"x" * self.size


def test_a_body_announcing_more_than_the_cap_is_refused_unread():
    body = Body(1000)
    transport = httpx.MockTransport(
        lambda _r: httpx.Response(200, headers={"Content-Length": str(10**9)}, content=body)
    )
    with pytest.raises(TooLarge, match="larger than the 4,096-byte limit") as caught:
        asyncio.run(fetch(client(transport, max_bytes=4096)))
    assert caught.value.transient is False
    assert body.sent == 0


def test_a_body_without_length_is_cut_off_at_the_cap():
    body = Body(1000)
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, content=body))
    with pytest.raises(TooLarge):
        asyncio.run(fetch(client(transport), max_bytes=10 * 1024))
    assert body.sent <= 11 * 1024  # stopped at the first chunk past the cap


def test_a_body_within_the_cap_is_returned_whole():
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, content=Body(4)))
    response = asyncio.run(fetch(client(transport, max_bytes=4096)))
    assert response.content == b"x" * 4096


def test_an_error_body_is_capped_too():
    transport = httpx.MockTransport(lambda _r: httpx.Response(500, content=Body(1000)))
    with pytest.raises(TooLarge):
        asyncio.run(fetch(client(transport, max_bytes=4096)))


def test_the_default_cap_is_64_mib():
    assert client().max_bytes == 64 * 2**20


# --------------------------------------------------------------------------- a dripping server


@pytest.fixture
def drip() -> Iterator[str]:
    """A real server on 127.0.0.1 that answers 200 then sends one byte every 0.2 s
    for 3 s, then hangs up (each read is quick, so no read timeout ever fires)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            until = time.monotonic() + 3
            while not stop.is_set() and time.monotonic() < until:
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                stop.wait(0.2)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_dripping_server_is_given_up_on_at_the_deadline(drip: str):
    c = HttpClient(name="svc", base_url=drip, deadline_s=1.0)
    started = time.monotonic()
    with pytest.raises(HttpError, match=r"no complete answer within 1 s") as caught:
        asyncio.run(fetch(c, "/view"))
    assert time.monotonic() - started < 5
    assert caught.value.transient is True


def test_a_billable_call_past_its_deadline_may_have_started(drip: str):
    c = HttpClient(name="svc", base_url=drip)

    async def go() -> None:
        try:
            await c.request("POST", "/predictions", billable=True, json={}, deadline_s=0.5)
        finally:
            await c.aclose()

    with pytest.raises(MaybeStarted, match=r"no complete answer within 0\.5 s"):
        asyncio.run(go())


# --------------------------------------------------------------------------- the adapters


def replicate(server: Server, **options: object) -> ReplicateBackend:
    block = registry.validate_block(
        "flux",
        {"type": "replicate", "token_env": TOKEN_ENV, "base_url": REPLICATE, **options},
    )
    clock = Clock()
    return ReplicateBackend(
        "flux",
        block,
        transport=server.transport,
        sleep=clock.sleep,
        clock=clock,
        resolve=public_dns,
    )


async def public_dns(_host: str, _port: int) -> list[str]:
    return ["93.184.215.14"]


def run_replicate(b: ReplicateBackend) -> Any:
    async def go() -> Any:
        try:
            return await b.generate(Request("a red fox", seed=7))
        finally:
            await b.aclose()

    return asyncio.run(go())


def succeeded() -> httpx.Response:
    return reply(201, {"id": "p1", "status": "succeeded", "output": [OUT_URL]})


def test_a_replicate_output_above_max_download_mb_is_refused(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "r8_token")
    big = Body(3 * 1024, 1024)  # 3 MiB
    server = (
        Server().on(CREATE, succeeded()).on(DOWNLOAD, lambda _r: httpx.Response(200, content=big))
    )
    with pytest.raises(TooLarge, match=r"1,048,576-byte limit"):
        run_replicate(replicate(server, max_download_mb=1))
    assert big.sent <= 1024 * 1024 + 1024


def test_a_dripping_replicate_output_ends_with_the_jobs_timeout(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "r8_token")

    async def one_byte_every_2_s() -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(2)

    server = (
        Server()
        .on(CREATE, succeeded())
        .on(DOWNLOAD, lambda _r: httpx.Response(200, content=one_byte_every_2_s()))
    )
    started = time.monotonic()
    with pytest.raises(HttpError, match=r"no complete answer within 5 s"):
        run_replicate(replicate(server, timeout_s=5))
    assert time.monotonic() - started < 15


def test_max_download_mb_is_bounded_at_config_load():
    with pytest.raises(ConfigError, match="max_download_mb"):
        registry.validate_block("flux", {"type": "replicate", "max_download_mb": 0})
    with pytest.raises(ConfigError, match="max_download_mb"):
        registry.validate_block("c", {"type": "comfyui", "max_download_mb": 10**6})


def test_a_comfyui_view_above_max_download_mb_is_refused():
    fake = FakeComfy().start()
    try:
        fake._png = b"\x89PNG" + b"\x00" * (2 * 2**20)  # what /view serves: 2 MiB
        block = registry.validate_block(
            "flux", {"type": "comfyui", "url": fake.url, "run_timeout": 20.0, "max_download_mb": 1}
        )
        made = registry.create("flux", block)

        async def go() -> None:
            try:
                await made.generate(Request(prompt="a fox", seed=1))
            finally:
                await made.aclose()

        with pytest.raises(TooLarge, match="GET /view"):
            asyncio.run(go())
    finally:
        fake.stop()
