"""The cost ledger against real PostgreSQL: a usage row for every image made by
`imagen generate` and by the worker, never the prompt, a ledger failure that
never loses the image, and `imagen usage` totals exact to the cent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Progress, Request, Result
from imagen_tui.backends.mock import MockBackend
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.db.repositories import fetch, usage_totals
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id
from imagen_tui.text import json_text
from tests.conftest import Home
from tests.helpers import sql

PROMPT = "a secret lighthouse recipe"
PROMPT_SHA = hashlib.sha256(PROMPT.encode()).hexdigest()


def usage_dump(db_url: str) -> str:
    """Every value of every usage row, as text: where a prompt would show."""
    return json_text([[str(v) for v in row] for row in sql(db_url, "SELECT * FROM imagen.usage")])


# --------------------------------------------------------------------------- imagen generate


def test_generate_appends_a_usage_row_per_image(home: Home, db_url: str):
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    home.env["IMAGEN_DATABASE_URL"] = db_url
    home.env["IMAGEN_CALLER"] = "ci-runner"
    done = home.imagen("generate", PROMPT, "--seed", "41", "--count", "2", "--size", "64x64")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    rows = sql(
        db_url,
        """SELECT backend, backend_type, model, seed, prompt_sha256, width, height, cost_usd,
                  caller, source, job_id, worker_id, latency_ms > 0
             FROM imagen.usage ORDER BY seed""",
    )
    assert rows == [
        ("mock", "mock", "mock-v1", seed, PROMPT_SHA, 64, 64, Decimal(0), "ci-runner", "cli",
         None, None, True)
        for seed in (41, 42)
    ]  # fmt: skip
    assert "lighthouse" not in usage_dump(db_url)


def test_generate_caller_defaults_to_user_at_host(home: Home, db_url: str):
    home.env["IMAGEN_DATABASE_URL"] = db_url
    home.env.pop("IMAGEN_CALLER", None)
    done = home.imagen("generate", "x", "--size", "64x64")
    assert done.returncode == 0, done.stderr
    ((caller,),) = sql(db_url, "SELECT caller FROM imagen.usage")
    user, _, host = caller.partition("@")
    assert user and host


def test_an_unreachable_ledger_warns_and_keeps_the_image(home: Home):
    home.env["IMAGEN_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/imagen?connect_timeout=2"
    done = home.imagen("generate", PROMPT, "--size", "64x64")
    assert done.returncode == 0, done.stderr
    assert "warning: usage not recorded: cannot reach" in done.stderr
    path = Path(done.stdout.strip())
    assert path.is_file()


def test_a_ledger_that_refuses_the_row_warns_and_keeps_the_image(home: Home, db_url: str):
    sql(db_url, "ALTER TABLE imagen.usage ADD CONSTRAINT no_rows CHECK (false) NOT VALID")
    home.env["IMAGEN_DATABASE_URL"] = db_url
    done = home.imagen("generate", PROMPT, "--size", "64x64")
    assert done.returncode == 0, done.stderr
    assert "warning: usage not recorded" in done.stderr
    assert Path(done.stdout.strip()).is_file()
    assert PROMPT not in done.stderr


def test_a_ledger_whose_schema_is_behind_says_so_once_and_stops_trying(home: Home, db_url: str):
    sql(db_url, "ALTER TABLE imagen.usage DROP COLUMN caller")
    home.env["IMAGEN_DATABASE_URL"] = db_url
    done = home.imagen("generate", PROMPT, "--size", "64x64", "--count", "3")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 3  # every image kept
    warnings = [line for line in done.stderr.splitlines() if "usage not recorded" in line]
    assert len(warnings) == 1, done.stderr  # not once per image
    assert warnings[0].endswith("(the database schema is behind: run `imagen db migrate`)")


def test_no_database_records_nothing_quietly(home: Home):
    home.env.pop("IMAGEN_DATABASE_URL", None)
    done = home.imagen("generate", "x", "--size", "64x64")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1  # the summary line only
    assert not (home.root / ".local" / "share" / "imagen" / "pgdata").exists()  # not started


# --------------------------------------------------------------------------- the worker


class NoSeedBackend(MockBackend):
    """Like OpenAI: no seed, a real size other than the one asked for, a cost."""

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        made = await super().generate(request._replace(width=96, height=64), progress)
        return made._replace(seed=None, width=96, height=64, cost_usd=Decimal("0.042"))


@pytest.fixture
def workbench(home: Home) -> Iterator[Workbench]:
    mock = registry.get_type("mock")
    assert mock is not None
    registry.register(registry.BackendType("noseed", "test", mock.options, NoSeedBackend, "n"))
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\nbackends:\n  noseed:\n    type: noseed\n"
    )
    yield open_workbench(path)
    registry.unregister("noseed")


def add_job(db_url: str, prompt: str = PROMPT, **columns: object) -> int:
    columns = {"prompt": prompt, "width": 64, "height": 64, **columns}
    names, marks = ", ".join(columns), ", ".join(["%s"] * len(columns))
    ((job_id,),) = sql(
        db_url, f"INSERT INTO imagen.jobs ({names}) VALUES ({marks}) RETURNING id",
        list(columns.values()),
    )  # fmt: skip
    return job_id


def run_worker(db_url: str, workbench: Workbench) -> Worker:
    worker_id = new_worker_id()
    worker = Worker(workbench, PgQueue(db_url, worker_id), WorkerOptions(once=True))
    asyncio.run(worker.run())
    return worker


def test_worker_appends_a_usage_row(db_url, workbench, monkeypatch):
    monkeypatch.setenv("IMAGEN_CALLER", "render-box")
    job_id = add_job(db_url, seed=42)
    worker = run_worker(db_url, workbench)
    assert worker.stats["done"] == 1
    rows = sql(
        db_url,
        """SELECT job_id, backend, model, seed, prompt_sha256, cost_usd, caller, source,
                  worker_id IS NOT NULL FROM imagen.usage""",
    )
    assert rows == [(job_id, "mock", "mock-v1", 42, PROMPT_SHA, Decimal(0), "render-box", "worker",
                     True)]  # fmt: skip
    assert "lighthouse" not in usage_dump(db_url)


def test_worker_records_no_seed_and_the_real_size(db_url, workbench):
    job_id = add_job(db_url, backend="noseed", seed=None)
    assert run_worker(db_url, workbench).stats["done"] == 1
    images = sql(db_url, "SELECT seed, width, height, metadata FROM imagen.images")
    [(seed, width, height, metadata)] = images
    assert (seed, width, height) == (None, 96, 64)
    assert metadata["seed"] is None
    assert metadata["requested_size"] == "64x64"
    usage = sql(db_url, "SELECT job_id, seed, width, height, cost_usd FROM imagen.usage")
    assert usage == [(job_id, None, 96, 64, Decimal("0.042"))]


def test_worker_ledger_failure_warns_and_keeps_the_image(db_url, workbench, caplog):
    caplog.set_level(logging.WARNING)
    sql(db_url, "ALTER TABLE imagen.usage ADD CONSTRAINT no_rows CHECK (false) NOT VALID")
    job_id = add_job(db_url)
    worker = run_worker(db_url, workbench)
    assert worker.stats["done"] == 1
    [(status, image_id)] = sql(db_url, "SELECT status, image_id FROM imagen.jobs")
    assert status == "done" and image_id is not None
    [(uri,)] = sql(db_url, "SELECT storage_uri FROM imagen.images WHERE job_id = %s", (job_id,))
    assert Path(uri.removeprefix("file://")).is_file()
    assert sql(db_url, "SELECT count(*) FROM imagen.usage") == [(0,)]
    assert "recording it without its usage row" in caplog.text


# --------------------------------------------------------------------------- the report


def add_usage(db_url: str, n: int, backend: str, cost: str | None, when: str = "now()") -> None:
    sql(
        db_url,
        f"""INSERT INTO imagen.usage (backend, backend_type, model, seed, prompt_sha256, width,
                                      height, latency_ms, cost_usd, caller, source, created_at)
            SELECT %s, 'replicate', %s || '-model', i, repeat('ab', 32), 1024, 1024,
                   100 * i, %s::numeric, 'ada@box', 'cli', {when}
              FROM generate_series(1, %s) AS i""",
        (backend, backend, cost, n),
    )


def test_totals_are_exact_to_the_cent(db_url):
    add_usage(db_url, 1000, "flux", "0.003")  # 3.00 exactly (a float sum would drift)
    add_usage(db_url, 1, "gpt", "0.125")  # 0.13, half up
    add_usage(db_url, 3, "local", None)  # unpriced
    with psycopg.connect(db_url, autocommit=True) as conn:
        totals = fetch(conn, usage_totals("backend"))
    by_key = {t.key: t for t in totals}
    assert [t.key for t in totals] == ["flux", "gpt", "local", None]  # the grand total last
    assert by_key["flux"].total_cost == Decimal("3.000000")
    assert by_key["flux"].mean_cost == Decimal("0.003")
    assert by_key["flux"].mean_latency_ms == pytest.approx(50050.0)
    assert (by_key["local"].count, by_key["local"].priced) == (3, 0)
    assert by_key[None].count == 1004
    assert by_key[None].total_cost == Decimal("3.125")


def test_usage_command_prints_totals_to_the_cent(home: Home, db_url: str):
    add_usage(db_url, 1000, "flux", "0.003")
    add_usage(db_url, 1, "gpt", "0.125")
    add_usage(db_url, 2, "local", None)
    home.env["IMAGEN_DATABASE_URL"] = db_url
    done = home.imagen("usage")
    assert done.returncode == 0, done.stderr
    rows = [line.split("  ") for line in done.stdout.splitlines()]
    rows = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert rows[0] == ["BACKEND", "IMAGES", "TOTAL COST", "MEAN COST", "MEAN LATENCY"]
    assert rows[1] == ["flux", "1000", "$3.00", "$0.0030", "50050 ms"]
    assert rows[2] == ["gpt", "1", "$0.13", "$0.1250", "100 ms"]
    assert rows[3] == ["local", "2", "$0.00 (+2 unpriced)", "?", "150 ms"]
    assert rows[4][:3] == ["TOTAL", "1003", "$3.13 (+2 unpriced)"]
    as_json = [json.loads(line) for line in home.imagen("usage", "--json").stdout.splitlines()]
    assert as_json[-1]["total"] is True
    assert as_json[-1]["total_cost_usd"] == "3.125000"  # exact, as a string
    assert as_json[0] == {
        "backend": "flux", "total": False, "count": 1000, "priced": 1000,
        "total_cost_usd": "3.000000", "mean_cost_usd": "0.003000",
        "mean_latency_ms": 50050.0,
    }  # fmt: skip


def test_usage_by_day_and_window(home: Home, db_url: str):
    today = datetime.now().astimezone().date()
    old = today - timedelta(days=10)
    add_usage(db_url, 2, "flux", "0.5")
    add_usage(db_url, 1, "flux", "1.25", when=f"'{old.isoformat()} 12:00'::timestamp")
    home.env["IMAGEN_DATABASE_URL"] = db_url
    by_day = home.imagen("usage", "--by", "day", "--json")
    lines = [json.loads(line) for line in by_day.stdout.splitlines()]
    assert [(line["day"], line["total_cost_usd"]) for line in lines] == [
        (today.isoformat(), "1.000000"),
        (old.isoformat(), "1.250000"),
        (None, "2.250000"),
    ]
    since = home.imagen("usage", "--since", (today - timedelta(days=1)).isoformat(), "--json")
    assert json.loads(since.stdout.splitlines()[-1])["count"] == 2
    until = home.imagen("usage", "--until", old.isoformat(), "--json")
    assert json.loads(until.stdout.splitlines()[-1])["count"] == 1  # the day itself included
    bad = home.imagen("usage", "--since", "yesterday")
    assert bad.returncode == 2
    assert "is not a date" in bad.stderr


def test_usage_raw_lists_rows_without_prompts(home: Home, db_url: str):
    home.env["IMAGEN_DATABASE_URL"] = db_url
    assert home.imagen("generate", PROMPT, "--size", "64x64", "--seed", "5").returncode == 0
    raw = home.imagen("usage", "--raw", "--json")
    assert raw.returncode == 0, raw.stderr
    [row] = [json.loads(line) for line in raw.stdout.splitlines()]
    assert row["prompt_sha256"] == PROMPT_SHA
    assert row["seed"] == 5
    assert "lighthouse" not in raw.stdout
    table = home.imagen("usage", "--raw")
    assert "mock-v1" in table.stdout and "lighthouse" not in table.stdout


# --------------------------------------------------------------------------- UsageLedger


def one_outcome(workbench: Workbench) -> Any:
    from imagen_tui.core.pipeline import plan, run
    from imagen_tui.core.spec import RequestSpec

    async def go() -> Any:
        try:
            planned = plan(workbench, RequestSpec(PROMPT, width=64, height=64, seed=9))
            return await run(planned, workbench.backend("mock"))
        finally:
            await workbench.aclose()

    return asyncio.run(go())


def test_ledger_uses_a_running_embedded_server(home: Home, db_url: str, monkeypatch):
    from imagen_tui import services
    from imagen_tui.db import postmaster

    monkeypatch.delenv("IMAGEN_DATABASE_URL", raising=False)
    monkeypatch.setattr(postmaster, "running_url", lambda: db_url)
    workbench = open_workbench(home.write_config(f"output:\n  directory: {home.root}/o\n"))
    warnings: list[str] = []
    with services.UsageLedger(workbench, warnings.append) as ledger:
        assert ledger.record(one_outcome(workbench)) is not None
    assert warnings == []
    assert sql(db_url, "SELECT seed, source FROM imagen.usage") == [(9, "cli")]


def test_ledger_with_an_unset_url_variable_warns_once(home: Home, monkeypatch):
    from imagen_tui import services

    monkeypatch.delenv("IMAGEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("UNSET_QUEUE_URL", raising=False)
    workbench = open_workbench(
        home.write_config(
            f"output:\n  directory: {home.root}/o\ndatabase:\n  url_env: UNSET_QUEUE_URL\n"
        )
    )
    warnings: list[str] = []
    with services.UsageLedger(workbench, warnings.append) as ledger:
        outcome = one_outcome(workbench)
        assert ledger.record(outcome) is None
        assert ledger.record(outcome) is None
    assert len(warnings) == 1
    assert "usage not recorded" in warnings[0] and "UNSET_QUEUE_URL" in warnings[0]
