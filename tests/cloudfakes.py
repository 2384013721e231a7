"""Shared fakes for the cloud adapters' tests: a scripted HTTP server behind
`httpx.MockTransport`, a real one on 127.0.0.1 for whole commands
(`JsonHandler` + `serving`), a clock that only moves when the adapter
sleeps, and tiny real images."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from PIL import Image


def png(width: int = 16, height: int = 12, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, fmt)
    return buffer.getvalue()


@dataclass
class Seen:
    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def path(self) -> str:
        return self.url.path


Handler = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]


@dataclass
class Server:
    """Routes `METHOD path` (exact path, or a path prefix ending in `*`) to a
    list of responses or handlers taken in turn (the last one repeats);
    `seen` lists every request that reached it."""

    routes: dict[str, list[Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, route: str, *steps: Any) -> Server:
        self.routes[route] = list(steps)
        return self

    def calls(self, route: str) -> list[Seen]:
        method, _, path = route.partition(" ")
        if path.endswith("*"):
            return [s for s in self.seen if s.method == method and s.path.startswith(path[:-1])]
        return [s for s in self.seen if s.method == method and s.path == path]

    def _steps(self, request: httpx.Request) -> list[Any]:
        key = f"{request.method} {request.url.path}"
        if key in self.routes:
            return self.routes[key]
        for route, steps in self.routes.items():
            method, _, path = route.partition(" ")
            if (
                path.endswith("*")
                and method == request.method
                and request.url.path.startswith(path[:-1])
            ):
                return steps
        raise AssertionError(f"unexpected request {key}")

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        steps = self._steps(request)
        count = sum(
            1 for s in self.seen if s.method == request.method and s.path == request.url.path
        )
        self.seen.append(
            Seen(request.method, request.url, httpx.Headers(request.headers), request.content)
        )
        step = steps[min(count, len(steps) - 1)]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            step = step(request)
            if asyncio.iscoroutine(step):
                step = await step
        assert isinstance(step, httpx.Response)
        return step

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    hdrs = {name.replace("_", "-"): value for name, value in headers.items()}
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=hdrs)
    return httpx.Response(status, json=body, headers=hdrs)


class Clock:
    """A monotonic clock that moves only when the adapter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, never wait


# --------------------------------------------------------------------------- real sockets


class JsonHandler(BaseHTTPRequestHandler):
    """Subclasses define do_GET/do_POST/...; `send_json` answers, nothing is logged."""

    def send_json(self, status: int, body: object) -> None:
        self.send_body(status, json.dumps(body).encode(), "application/json")

    def send_body(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served until the block ends; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
