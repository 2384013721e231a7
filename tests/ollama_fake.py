"""A fake Ollama server for tests: real HTTP on 127.0.0.1, an ephemeral port.

It serves what the worker uses (docs/worker.md, "Sharing the GPU"):

- `GET /api/ps`: the loaded models, as Ollama lists them (`name`, `model`,
  `size`, `size_vram`, `expires_at` in Go's RFC 3339 with nanoseconds);
- `POST /api/generate` with `keep_alive: 0` and no prompt: unloads the model
  (it leaves `models`) and answers as Ollama does (`done_reason: "unload"`).

`load(name, last_used_s_ago)` puts a model in memory as if its last request
ended that long ago (its `expires_at` is that moment plus `keep_alive_s`);
`pinned=True` is a model loaded with `keep_alive: -1`. `on_unload` is called
with each unloaded name (a test frees GPU memory there). Every call is
recorded in `calls`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOllama:
    def __init__(self, keep_alive_s: float = 300.0) -> None:
        self.keep_alive_s = keep_alive_s
        self.models: dict[str, str] = {}  # name -> expires_at
        self.calls: list[tuple[str, str, Any]] = []
        self.on_unload: Callable[[str], None] = lambda name: None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake._record("GET", self.path, None)
                if self.path != "/api/ps":
                    return self._answer(404, {"error": "not found"})
                with fake._lock:
                    models = [
                        {
                            "name": name,
                            "model": name,
                            "size": 6591830464,
                            "digest": "a2af6cc3eb7f",
                            "details": {"format": "gguf", "family": "gemma3"},
                            "expires_at": expires,
                            "size_vram": 5333539264,
                            "context_length": 4096,
                        }
                        for name, expires in fake.models.items()
                    ]
                self._answer(200, {"models": models})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fake._record("POST", self.path, body)
                if self.path != "/api/generate" or not isinstance(body, dict):
                    return self._answer(404, {"error": "not found"})
                name = str(body.get("model"))
                with fake._lock:
                    known = fake.models.pop(name, None) is not None
                if not known:
                    return self._answer(404, {"error": f"model '{name}' not found"})
                if body.get("keep_alive") == 0:
                    fake.on_unload(name)
                self._answer(
                    200,
                    {
                        "model": name,
                        "created_at": _go_time(datetime.now(UTC)),
                        "response": "",
                        "done": True,
                        "done_reason": "unload",
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def load(self, name: str, last_used_s_ago: float, pinned: bool = False) -> None:
        now = datetime.now(UTC)
        if pinned:
            expires = datetime(2318, 1, 1, tzinfo=UTC)
        else:
            expires = (
                now - timedelta(seconds=last_used_s_ago) + timedelta(seconds=self.keep_alive_s)
            )
        with self._lock:
            self.models[name] = _go_time(expires)

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.calls.append((method, path, body))

    def called(self, method: str, path: str) -> list[Any]:
        with self._lock:
            return [body for m, p, body in self.calls if m == method and p == path]


def _go_time(moment: datetime) -> str:
    """As Go writes a time: RFC 3339 with nanoseconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123+00:00"
