"""The ledger does not trust a server's figures (issue 17 point 2): negative or
absurd token counts make the cost unknown (NULL, unpriced), and the usage row is
always written with the image."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from imagen_tui.backends.openai import models
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id
from tests.cloudfakes import JsonHandler, png, serving
from tests.conftest import Home
from tests.helpers import add_job, sql

TOKEN = "sk-proj-LedgerTestKey"


class FakeOpenAI(JsonHandler):
    usage: ClassVar[dict[str, Any]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        image = base64.b64encode(png(1024, 1024)).decode()
        body = {"created": 1, "data": [{"b64_json": image}], "usage": FakeOpenAI.usage}
        self.send_json(200, body)


@pytest.fixture
def workbench(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workbench]:
    monkeypatch.setenv("LEDGER_KEY", TOKEN)
    with serving(FakeOpenAI) as base:
        path = home.write_config(
            f"output:\n  directory: {home.root / 'out'}\n"
            "backends:\n  gpt:\n    type: openai\n    model: gpt-image-2.6-sunburst\n"
            f"    token_env: LEDGER_KEY\n    base_url: {base}/v1\n"
        )
        yield open_workbench(path)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": -8_000_000, "output_tokens": 0},  # -$40 at $5 per million
        {"input_tokens": 12, "output_tokens": 10**15},  # past numeric(12, 6): refused
        {"input_tokens": 12, "output_tokens": 4160.5},  # not a count
        {"input_tokens": 12, "output_tokens": True},
        {"input_tokens_details": {"text_tokens": -1, "image_tokens": 0}, "output_tokens": 4},
    ],
)
def test_absurd_token_counts_are_recorded_unpriced_never_dropped(db_url, workbench, usage):
    FakeOpenAI.usage = usage
    job_id = add_job(db_url, width=1024, height=1024, backend="gpt")
    worker = Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True))
    asyncio.run(worker.run())
    assert worker.stats["done"] == 1
    rows = sql(db_url, "SELECT job_id, cost_usd FROM imagen.usage")
    assert rows == [(job_id, None)]  # the row is there, unpriced
    [(metadata,)] = sql(db_url, "SELECT metadata FROM imagen.images")
    assert metadata["cost_usd"] is None


def test_sane_counts_are_priced_to_the_token():
    usage = {"input_tokens": 12, "output_tokens": 4160}
    assert models.cost_of(usage, models.rules("gpt-image-2.6").prices) == Decimal("0.12486")
    assert models.sane_usage({"a": -1, "b": 3, "c": {"d": 10**15, "e": 2}}) == {
        "b": 3,
        "c": {"e": 2},
    }


@pytest.mark.parametrize("cost", [Decimal(-40), Decimal(10**7), Decimal("NaN")])
def test_any_backend_cost_out_of_range_is_unpriced(home: Home, cost: Decimal):
    """The one check every result passes (the CLI, the worker, the TUI), whatever
    the adapter computed its cost from."""

    from imagen_tui.core.pipeline import plan, run
    from imagen_tui.core.spec import RequestSpec

    workbench = open_workbench()
    planned = plan(workbench, RequestSpec("a fox", width=64, height=64, seed=1))
    real = workbench.backend(planned.backend)

    class Priced:
        name, type_name, model = real.name, real.type_name, real.model

        async def generate(self, request, progress=None):
            return (await real.generate(request, progress))._replace(cost_usd=cost)

        async def aclose(self) -> None:
            await real.aclose()

    outcome = asyncio.run(run(planned, Priced()))
    assert outcome.result.cost_usd is None
    assert outcome.record["cost_usd"] is None
