"""`imagen backends` with cloud instances: the status without a call, and
`--check` making one authenticated call each to a local fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from tests.cloudfakes import JsonHandler, serving
from tests.conftest import Home

REPLICATE_TOKEN = "r8_GoodT0kenValue"
OPENAI_KEY = "sk-proj-GoodKeyValue"


class FakeCloud(JsonHandler):
    """GET /v1/account (Replicate) and /v1/models/<id> (OpenAI), with the tokens above."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        FakeCloud.seen.append((self.path, auth))
        if auth not in (f"Bearer {REPLICATE_TOKEN}", f"Bearer {OPENAI_KEY}"):
            self.send_json(401, {"detail": "Invalid token."})
        elif self.path == "/replicate/v1/account":
            self.send_json(200, {"type": "user", "username": "ada\x1b[31m"})
        elif self.path == "/openai/v1/models/gpt-image-2":
            self.send_json(200, {"id": "gpt-image-2", "object": "model"})
        else:
            self.send_json(404, {"error": {"message": "no such model", "code": "model_not_found"}})


@pytest.fixture
def fake_cloud() -> Iterator[str]:
    FakeCloud.seen = []
    with serving(FakeCloud) as base:
        yield base


def config(base: str) -> str:
    return (
        "backends:\n"
        "  flux:\n    type: replicate\n    api_token_env: TEST_REPLICATE_TOKEN\n"
        f"    base_url: {base}/replicate/v1\n"
        "  gpt:\n    type: openai\n    model: gpt-image-2\n    api_key_env: TEST_OPENAI_KEY\n"
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
