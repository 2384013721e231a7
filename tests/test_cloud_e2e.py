"""`imagen generate` with the cloud adapters end to end: the real CLI process,
real HTTP to a local fake of each service, the files, the metadata and the
ledger rows."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from tests.cloudfakes import JsonHandler, png, serving
from tests.conftest import Home

TOKEN = "sk-proj-E2eS3cretValue"
USAGE = {"input_tokens": 12, "output_tokens": 4160, "total_tokens": 4172}


class FakeCloud(JsonHandler):
    """OpenAI's images/generations and Replicate's create + file download."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeCloud.bodies.append(body)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_json(401, {"error": {"message": "bad key"}})
        elif self.path == "/openai/v1/images/generations":
            image = base64.b64encode(png(1024, 1024)).decode()
            self.send_json(200, {"created": 1, "data": [{"b64_json": image}], "usage": USAGE})
        elif self.path == "/replicate/v1/models/black-forest-labs/flux-dev/predictions":
            host = self.headers["Host"]
            output = [f"http://{host}/replicate/files/out.png"]
            self.send_json(201, {"id": "p9", "status": "succeeded", "output": output})
        else:
            self.send_json(404, {"detail": "no route"})

    def do_GET(self) -> None:
        if self.path == "/replicate/files/out.png":
            self.send_body(200, png(1344, 768), "image/png")
        else:
            self.send_json(404, {"detail": "no route"})


@pytest.fixture
def cloud(home: Home) -> Iterator[str]:
    FakeCloud.bodies = []
    with serving(FakeCloud) as base:
        home.write_config(
            f"output:\n  directory: {home.root / 'out'}\n"
            "backends:\n"
            f"  gpt:\n    type: openai\n    model: gpt-image-2.6-sunburst\n"
            f"    token_env: E2E_KEY\n    base_url: {base}/openai/v1\n"
            f"  flux:\n    type: replicate\n    model: black-forest-labs/flux-dev\n"
            f"    token_env: E2E_KEY\n    base_url: {base}/replicate/v1\n"
        )
        home.env["E2E_KEY"] = TOKEN
        yield base


def test_openai_series_of_tries_without_seeds(home: Home, cloud: str, db_url: str):
    home.env["IMAGEN_DATABASE_URL"] = db_url
    done = home.imagen(
        "generate", "a lighthouse", "--backend", "gpt", "--count", "3", "--size", "1024x1024",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 3
    assert len({r["path"] for r in records}) == 3  # three images, none overwritten
    assert all(r["seed"] is None for r in records)
    assert all(Path(r["path"]).is_file() for r in records)
    assert all("seed" not in body for body in FakeCloud.bodies)
    assert "no seed" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert TOKEN not in "".join(Path(r["sidecar"]).read_text() for r in records)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT seed, cost_usd, model FROM imagen.usage").fetchall()
    # 12 text in at $5 + 4160 out at $30, per million tokens
    assert rows == [(None, Decimal("0.124860"), "gpt-image-2.6-sunburst")] * 3


def test_openai_size_the_model_lacks_is_refused_before_any_call(home: Home, cloud: str):
    done = home.imagen("generate", "x", "--backend", "gpt", "--size", "1000x1000")
    assert done.returncode == 2
    assert done.stderr.startswith("imagen: --size: gpt-image-2.6-sunburst: 1000x1000")
    assert FakeCloud.bodies == []
    assert not (home.root / "out").exists()


def test_replicate_records_the_real_size(home: Home, cloud: str):
    done = home.imagen(
        "generate", "a fox", "--backend", "flux", "--size", "1920x1080", "--seed", "3",
        "--steps", "80", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["width"], record["height"]) == (1344, 768)
    assert record["requested_size"] == "1920x1080"
    assert (record["seed"], record["steps"], record["cost_usd"]) == (3, 50, 0.025)
    [body] = FakeCloud.bodies
    assert body["input"]["aspect_ratio"] == "16:9"
    assert body["input"]["num_inference_steps"] == 50  # flux-dev's maximum
    assert "1344x768" in done.stderr
