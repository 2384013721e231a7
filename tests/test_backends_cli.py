"""`imagen backends` with cloud instances: the status without a call, and
`--check` making one authenticated call each to a local fake server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.conftest import Home

REPLICATE_TOKEN = "r8_GoodT0kenValue"
OPENAI_KEY = "sk-proj-GoodKeyValue"


class FakeCloud(BaseHTTPRequestHandler):
    """GET /v1/account (Replicate) and /v1/models/<id> (OpenAI), with the tokens above."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        FakeCloud.seen.append((self.path, auth))
        if auth not in (f"Bearer {REPLICATE_TOKEN}", f"Bearer {OPENAI_KEY}"):
            self._send(401, {"detail": "Invalid token."})
        elif self.path == "/replicate/v1/account":
            self._send(200, {"type": "user", "username": "ada\x1b[31m"})
        elif self.path == "/openai/v1/models/gpt-image-2":
            self._send(200, {"id": "gpt-image-2", "object": "model"})
        else:
            self._send(404, {"error": {"message": "no such model", "code": "model_not_found"}})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def fake_cloud() -> Iterator[str]:
    FakeCloud.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def config(base: str) -> str:
    return (
        "backends:\n"
        "  flux:\n    type: replicate\n    token_env: TEST_REPLICATE_TOKEN\n"
        f"    base_url: {base}/replicate/v1\n"
        "  gpt:\n    type: openai\n    model: gpt-image-2\n    token_env: TEST_OPENAI_KEY\n"
        f"    base_url: {base}/openai/v1\n"
    )


def test_status_names_the_missing_variables_without_a_call(home: Home, fake_cloud: str):
    home.write_config(config(fake_cloud))
    done = home.imagen("backends")
    assert done.returncode == 0, done.stderr
    rows = [line.split(None, 3) for line in done.stdout.splitlines()]
    assert [
        "flux",
        "replicate",
        "black-forest-labs/flux-schnell",
        "not configured (set TEST_REPLICATE_TOKEN)",
    ] in rows
    assert ["gpt", "openai", "gpt-image-2", "not configured (set TEST_OPENAI_KEY)"] in rows
    assert FakeCloud.seen == []


def test_check_calls_each_cloud_backend_once(home: Home, fake_cloud: str):
    home.write_config(config(fake_cloud))
    home.env["TEST_REPLICATE_TOKEN"] = REPLICATE_TOKEN
    home.env["TEST_OPENAI_KEY"] = OPENAI_KEY
    done = home.imagen("backends", "--check")
    assert done.returncode == 0, done.stderr
    assert "ok: token works (account ada\\x1b[31m)" in done.stdout  # escaped
    assert "ok: token works; model gpt-image-2 is available" in done.stdout
    assert "mock" in done.stdout  # the mock has no check: its status as usual
    assert sorted(FakeCloud.seen) == [
        ("/openai/v1/models/gpt-image-2", f"Bearer {OPENAI_KEY}"),
        ("/replicate/v1/account", f"Bearer {REPLICATE_TOKEN}"),
    ]


def test_check_reports_a_rejected_token_by_its_variable(home: Home, fake_cloud: str):
    home.write_config(config(fake_cloud))
    home.env["TEST_REPLICATE_TOKEN"] = "r8_WrongT0ken"
    home.env["TEST_OPENAI_KEY"] = OPENAI_KEY
    done = home.imagen("backends", "--check")
    assert done.returncode == 1
    assert "failed: flux rejected the token in $TEST_REPLICATE_TOKEN" in done.stdout
    assert "r8_WrongT0ken" not in done.stdout + done.stderr
