"""A job's `options` are untrusted input on paid backends (issue 17 point 1): each
adapter declares what a job may set, typed and bounded; everything else is refused
at submit and fails a job that arrives by SQL, naming the key; what was used is
recorded in the sidecar, the PNG metadata and the images row."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imagen_tui.backends.base import Request
from imagen_tui.backends.openai import OpenAIBackend
from imagen_tui.backends.replicate import ReplicateBackend
from imagen_tui.core.metadata import read_png_text, sidecar_path
from imagen_tui.core.pipeline import plan
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.errors import InputError
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id
from imagen_tui.services.requests import check_submission
from tests.cloudfakes import JsonHandler, png, serving
from tests.conftest import Home
from tests.helpers import add_job, job_row, sql

TOKEN = "r8_OptionsTestToken"


class FakeReplicate(JsonHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeReplicate.bodies.append(body)
        output = [f"http://{self.headers['Host']}/files/out.png"]
        self.send_json(201, {"id": "p1", "status": "succeeded", "output": output})

    def do_GET(self) -> None:
        self.send_body(200, png(1024, 1024), "image/png")


@pytest.fixture
def cloud(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workbench]:
    FakeReplicate.bodies = []
    monkeypatch.setenv("OPT_KEY", TOKEN)
    with serving(FakeReplicate) as base:
        path = home.write_config(
            f"output:\n  directory: {home.root / 'out'}\n"
            "backends:\n"
            "  flux:\n    type: replicate\n    model: black-forest-labs/flux-schnell\n"
            f"    token_env: OPT_KEY\n    base_url: {base}/v1\n"
            "  gpt:\n    type: openai\n    model: gpt-image-2\n    token_env: OPT_KEY\n"
            "    quality: medium\n"
        )
        yield open_workbench(path)


def refusal(workbench: Workbench, backend: str, options: dict[str, Any]) -> str:
    spec = RequestSpec("a fox", width=1024, height=1024, backend=backend, options=options)
    with pytest.raises(InputError) as caught:
        plan(workbench, spec)
    assert caught.value.field == "options"
    with pytest.raises(InputError) as at_submit:
        check_submission(workbench, spec, 1)
    assert at_submit.value.field == "options"
    return caught.value.message


@pytest.mark.parametrize(
    "options",
    [
        {"num_outputs": 4},
        {"disable_safety_checker": True},
        {"seed": 5},
        {"aspect_ratio": "21:9"},
        {"output_format": "webp"},
        {"num_inference_steps": 50},
        {"prompt": "something else"},
    ],
)
def test_replicate_refuses_keys_a_job_may_not_set(cloud: Workbench, options: dict[str, Any]):
    [key] = options
    message = refusal(cloud, "flux", options)
    assert message.startswith(f"{key}: not an option a job may set on a replicate backend")
    assert "go_fast" in message  # says what a job may set


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"output_quality": 101}, "output_quality: 101 is above the maximum 100"),
        ({"output_quality": -1}, "output_quality: -1 is below the minimum 0"),
        ({"go_fast": "no"}, "go_fast: expected true or false, got 'no'"),
        ({"guidance": True}, "guidance: expected a number, got True"),
        ({"megapixels": "4"}, "megapixels: '4' is not one of 1, 0.25"),
    ],
)
def test_replicate_bounds_what_a_job_may_set(cloud: Workbench, options: dict[str, Any], why: str):
    assert refusal(cloud, "flux", options) == why


@pytest.mark.parametrize(
    "options",
    [{"n": 10}, {"size": "4096x4096"}, {"stream": True}, {"moderation": "low"}, {"model": "x"}],
)
def test_openai_refuses_keys_a_job_may_not_set(cloud: Workbench, options: dict[str, Any]):
    [key] = options
    assert refusal(cloud, "gpt", options).startswith(f"{key}: not an option a job may set")


def test_openai_quality_may_only_go_down(cloud: Workbench):
    assert refusal(cloud, "gpt", {"quality": "high"}) == "quality: 'high' is not one of low, medium"
    spec = RequestSpec("a fox", width=1024, height=1024, backend="gpt", options={"quality": "low"})
    assert plan(cloud, spec).request.options == {"quality": "low"}


def test_openai_quality_above_the_configured_one_is_refused(home: Home, monkeypatch):
    monkeypatch.setenv("OPT_KEY", TOKEN)
    path = home.write_config(
        "backends:\n  gpt:\n    type: openai\n    model: gpt-image-2\n    token_env: OPT_KEY\n"
        "    quality: low\n"
    )
    spec = RequestSpec("a", width=1024, height=1024, backend="gpt", options={"quality": "medium"})
    with pytest.raises(InputError, match="above this backend's configured quality 'low'"):
        plan(open_workbench(path), spec)


def test_adapters_never_let_options_override_their_own_inputs(monkeypatch):
    """Behind the allowlist: an adapter handed such options anyway keeps its own values."""
    monkeypatch.setenv("OPT_KEY", TOKEN)
    replicate = ReplicateBackend(
        "flux", {"type": "replicate", "model": "black-forest-labs/flux-schnell",
                 "token_env": "OPT_KEY"},
    )  # fmt: skip
    sneaky = {"num_outputs": 4, "seed": 1, "disable_safety_checker": True, "go_fast": False}
    inputs, _, _ = replicate.build_input(Request("a", seed=7, options=sneaky))
    assert (inputs["num_outputs"], inputs["seed"], inputs["go_fast"]) == (1, 7, False)
    assert "disable_safety_checker" not in inputs
    openai = OpenAIBackend(
        "gpt", {"type": "openai", "model": "gpt-image-2", "token_env": "OPT_KEY"}
    )
    body = openai.build_body(
        Request("a", width=1024, height=1024, options={"n": 10, "size": "1x1", "stream": True})
    )
    assert (body["n"], body["size"]) == (1, "1024x1024")
    assert "stream" not in body
    asyncio.run(replicate.aclose())
    asyncio.run(openai.aclose())


def run_worker(db_url: str, workbench: Workbench) -> Worker:
    worker = Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True))
    asyncio.run(worker.run())
    return worker


def test_a_job_inserted_by_sql_with_a_forbidden_option_fails_naming_it(db_url, cloud):
    job_id = add_job(
        db_url, width=1024, height=1024, backend="flux",
        options=json.dumps({"num_outputs": 4, "go_fast": False}),
    )  # fmt: skip
    run_worker(db_url, cloud)
    row = job_row(db_url, job_id)
    assert row["status"] == "failed"
    assert row["error"].startswith("options: num_outputs: not an option a job may set")
    assert FakeReplicate.bodies == []  # nothing was sent, nothing billed


def test_the_options_used_are_recorded_everywhere(db_url, cloud):
    options = {"go_fast": False, "output_quality": 90}
    add_job(db_url, width=1024, height=1024, backend="flux", options=json.dumps(options))
    assert run_worker(db_url, cloud).stats["done"] == 1
    [body] = FakeReplicate.bodies
    assert body["input"]["go_fast"] is False and body["input"]["num_outputs"] == 1
    [(stored, metadata, uri)] = sql(
        db_url, "SELECT options, metadata, storage_uri FROM imagen.images"
    )
    assert stored == options
    assert metadata["options"] == options
    image = Path(uri.removeprefix("file://"))
    assert json.loads(sidecar_path(image).read_text())["options"] == options
    chunks = read_png_text(image)
    assert json.loads(chunks["imagen"])["options"] == options
    assert 'Options: "{\\"go_fast\\": false, \\"output_quality\\": 90}"' in chunks["parameters"]
