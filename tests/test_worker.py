"""The worker against a real PostgreSQL, in-process: claim -> pipeline -> complete."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request, Result
from imagen_tui.backends.mock import MockBackend
from imagen_tui.core.pipeline import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.errors import GenerationError
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id


@pytest.fixture
def workbench(home) -> Workbench:
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "backends:\n"
        "  slow:\n    type: mock\n    delay_ms: 1500\n"
        "  broken:\n    type: mock\n    fail_if_prompt_contains: boom\n"
    )
    return open_workbench(path)


def make_worker(db_url: str, workbench: Workbench, lease_s: float = 30, **options) -> Worker:
    queue = PgQueue(db_url, new_worker_id(), lease_s=lease_s)
    return Worker(workbench, queue, WorkerOptions(**options))


def sql(db_url: str, query: str, params: object = None) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def job_row(db_url: str, job_id: int) -> dict:
    with psycopg.connect(db_url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("SELECT * FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()
        assert row is not None
        return row


def add_job(db_url: str, prompt: str = "a red fox", **columns: object) -> int:
    columns = {"prompt": prompt, "width": 64, "height": 64, **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    ((job_id,),) = sql(
        db_url, f"INSERT INTO imagen.jobs ({names}) VALUES ({marks}) RETURNING id",
        list(columns.values()),
    )  # fmt: skip
    return job_id


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_job_done_writes_image_rows_and_file(db_url, workbench):
    owner = uuid.uuid4()
    job_id = add_job(db_url, "a lighthouse at dusk", seed=42, owner_user_id=owner)
    asyncio.run(make_worker(db_url, workbench, once=True).run())

    job = job_row(db_url, job_id)
    assert job["status"] == "done"
    assert job["attempts"] == 1
    assert job["progress"] == 1
    assert job["worker_id"] is not None and job["lease_expires_at"] is None
    (image,) = sql(
        db_url,
        "SELECT id, job_id, series_id, seed, width, height, model, storage_uri, sha256, "
        "thumbnail, owner_user_id FROM imagen.images",
    )
    image_id, image_job, series, seed, width, height, model, uri, sha, thumb, image_owner = image
    assert (image_job, series, seed, width, height, model) == (job_id, None, 42, 64, 64, "mock-v1")
    assert job["image_id"] == image_id
    assert image_owner == owner  # the job's owner, not the worker's
    path = Path(uri.removeprefix("file://"))
    assert path.is_file()
    with Image.open(io.BytesIO(bytes(thumb))) as preview:
        assert preview.format == "JPEG" and max(preview.size) <= 256
    assert len(sha) == 64
    (usage,) = sql(
        db_url,
        "SELECT prompt_sha256, backend, model, seed, owner_user_id, caller FROM imagen.usage",
    )
    assert usage[0] == hashlib.sha256(b"a lighthouse at dusk").hexdigest()
    assert usage[1:5] == ("mock", "mock-v1", 42, owner)
    assert "lighthouse" not in json.dumps([str(value) for value in usage])  # never the prompt


def test_null_seed_is_random_and_recorded(db_url, workbench):
    job_id = add_job(db_url)
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    job = job_row(db_url, job_id)
    ((image_seed,),) = sql(db_url, "SELECT seed FROM imagen.images")
    assert job["seed"] == image_seed is not None


def test_bad_job_parameters_fail_with_the_reason(db_url, workbench):
    unknown_style = add_job(db_url, style="vaporwave")
    unknown_backend = add_job(db_url, backend="gpu-box")
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    style_job, backend_job = job_row(db_url, unknown_style), job_row(db_url, unknown_backend)
    assert style_job["status"] == "failed"
    # Job errors name the job's column, not a CLI flag: the job may come from plain SQL.
    assert style_job["error"].startswith("style: unknown style 'vaporwave'; known styles:")
    assert backend_job["status"] == "failed"
    assert backend_job["error"].startswith("backend: no backend named 'gpu-box'; configured:")
    assert style_job["attempts"] == 1  # bad input is not retried
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]


def test_generation_failure_is_stored_and_not_retried(db_url, workbench):
    job_id = add_job(db_url, "boom goes the dynamite", backend="broken")
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    job = job_row(db_url, job_id)
    assert job["status"] == "failed"
    assert "fail_if_prompt_contains" in job["error"]
    assert job["finished_at"] is not None
    assert not list((workbench.config.output.directory).rglob("*.png"))


def test_drains_a_backlog(db_url, workbench):
    sql(
        db_url,
        "INSERT INTO imagen.jobs (prompt, width, height) "
        "SELECT 'fox ' || i, 64, 64 FROM generate_series(1, 25) i",
    )
    worker = make_worker(db_url, workbench, once=True)
    asyncio.run(worker.run())
    assert worker.stats["done"] == 25
    assert sql(db_url, "SELECT status, count(*) FROM imagen.jobs GROUP BY status") == [("done", 25)]


def test_series_propagates_to_images_and_solo_jobs_have_none(db_url, workbench):
    ((series_id,),) = sql(
        db_url, "INSERT INTO imagen.series (prompt, count) VALUES ('fox', 3) RETURNING id"
    )
    sql(
        db_url,
        "INSERT INTO imagen.jobs (series_id, series_idx, prompt, width, height, seed) "
        "SELECT %s, i, 'fox', 64, 64, 100 + i FROM generate_series(1, 3) i",
        (series_id,),
    )
    solo = add_job(db_url, "solo fox")
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    rows = sql(db_url, "SELECT series_id, series_idx, seed FROM imagen.images ORDER BY id")
    assert sorted(rows, key=str) == sorted(
        [(series_id, 1, 101), (series_id, 2, 102), (series_id, 3, 103), (None, None, rows[-1][2])],
        key=str,
    )
    ((solo_series,),) = sql(
        db_url, "SELECT series_id FROM imagen.images WHERE job_id = %s", (solo,)
    )
    assert solo_series is None


def test_notify_wakes_an_idle_worker_long_before_the_safety_poll(db_url, workbench):
    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=120)
        running = asyncio.create_task(worker.run())
        # idle: the queue is empty and the listener is attached
        await wait_for(
            lambda: (
                sql(
                    db_url,
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%%'",
                )[0][0]
                > 0
            ),
            what="the worker's LISTEN",
        )
        await asyncio.sleep(0.3)  # past its first claim: now it waits (up to 120 s)
        job_id = add_job(db_url)
        await wait_for(lambda: job_row(db_url, job_id)["status"] == "done", timeout=15,
                       what="the job to be done without waiting for the poll")  # fmt: skip
        worker.stop()
        await running

    asyncio.run(scenario())


def test_graceful_stop_finishes_the_running_job_and_claims_nothing_more(db_url, workbench):
    first = add_job(db_url, backend="slow")
    later = [add_job(db_url), add_job(db_url)]

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2)
        running = asyncio.create_task(worker.run())
        await wait_for(lambda: job_row(db_url, first)["status"] == "running", what="a claim")
        worker.stop()
        await running

    asyncio.run(scenario())
    assert job_row(db_url, first)["status"] == "done"
    assert [job_row(db_url, job)["status"] for job in later] == ["pending", "pending"]


class _Flaky(MockBackend):
    """A remote backend that times out once, then works (as rate-limited APIs do)."""

    calls: int = 0

    async def generate(self, request: Request, progress=None) -> Result:
        _Flaky.calls += 1
        if _Flaky.calls == 1:
            raise GenerationError("flaky: 503 from the server", transient=True)
        return await super().generate(request, progress)


@pytest.fixture
def flaky_workbench(home) -> Iterator[Workbench]:
    mock = registry.get_type("mock")
    assert mock is not None
    registry.register(
        registry.BackendType("flaky", "test", mock.options, _Flaky, mock.default_model)
    )
    _Flaky.calls = 0
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "default_backend: f\nbackends:\n  f:\n    type: flaky\n"
    )
    yield open_workbench(path)
    registry._TYPES.pop("flaky")


def test_transient_error_is_retried_with_backoff_then_succeeds(db_url, flaky_workbench):
    job_id = add_job(db_url)
    events: list[tuple[str, str | None]] = []

    async def scenario() -> None:
        # A poll far longer than the test: the retry must run when its backoff
        # ends, not at the next safety poll.
        worker = make_worker(db_url, flaky_workbench, poll_interval=600)
        running = asyncio.create_task(worker.run())

        def settled() -> bool:
            job = job_row(db_url, job_id)
            events.append((job["status"], job["error"]))
            return job["status"] == "done"

        await wait_for(settled, what="the retried job to succeed")
        worker.stop()
        await running
        assert worker.stats["retried"] == 1

    asyncio.run(scenario())
    job = job_row(db_url, job_id)
    assert job["attempts"] == 2
    assert ("pending", "flaky: 503 from the server") in events  # waited out its backoff
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(1,)]


def test_lost_lease_cancels_the_generation_and_drops_the_result(db_url, workbench):
    job_id = add_job(db_url, backend="slow")

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, lease_s=0.6, poll_interval=0.2)
        running = asyncio.create_task(worker.run())
        await wait_for(lambda: job_row(db_url, job_id)["status"] == "running", what="a claim")
        # Another worker took it over (as after a rescue): our lease is gone.
        takeover = (
            "UPDATE imagen.jobs SET worker_id = 'elsewhere', "
            "lease_expires_at = now() + interval '1 hour' WHERE id = %s"
        )
        sql(db_url, takeover, (job_id,))
        await wait_for(lambda: worker.stats["dropped"] == 1, what="the result to be dropped")
        worker.stop()
        await running

    asyncio.run(scenario())
    job = job_row(db_url, job_id)
    assert job["status"] == "running" and job["worker_id"] == "elsewhere"  # untouched
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]
    assert not list(workbench.config.output.directory.rglob("*.png"))


def test_completion_after_losing_the_lease_writes_nothing_and_removes_the_file(
    db_url, workbench, monkeypatch
):
    job_id = add_job(db_url)
    worker = make_worker(db_url, workbench, lease_s=30, once=True)
    original = worker.queue.complete

    async def complete_after_takeover(job, done):
        sql(db_url, "UPDATE imagen.jobs SET worker_id = 'elsewhere' WHERE id = %s", (job.id,))
        return await original(job, done)

    monkeypatch.setattr(worker.queue, "complete", complete_after_takeover)
    asyncio.run(worker.run())
    assert worker.stats["dropped"] == 1
    assert job_row(db_url, job_id)["status"] == "running"
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]
    assert sql(db_url, "SELECT count(*) FROM imagen.usage") == [(0,)]
    assert not list(workbench.config.output.directory.rglob("*.*"))


def test_progress_events_are_throttled_to_two_per_second(db_url, workbench):
    job_id = add_job(db_url, backend="slow", steps=50)  # 50 progress ticks in 1.5 s
    progress_events: list[float] = []

    async def scenario() -> float:
        listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        await listener.execute("LISTEN imagen_job_events")
        worker = make_worker(db_url, workbench, once=True)
        started = time.monotonic()
        await worker.run()
        elapsed = time.monotonic() - started
        async for note in listener.notifies(timeout=0.5):
            event = json.loads(note.payload)
            if event["id"] == job_id and event["status"] == "running":
                progress_events.append(event["progress"])
        await listener.close()
        return elapsed

    elapsed = asyncio.run(scenario())
    assert job_row(db_url, job_id)["status"] == "done"
    # the claim's 0, then at most one write per half second
    assert 2 <= len(progress_events) <= 2 + 2 * elapsed
    assert progress_events == sorted(progress_events)
    assert 0 < progress_events[-1] <= 1


def test_a_crashing_slot_is_not_swallowed(db_url, workbench, monkeypatch):
    worker = make_worker(db_url, workbench, once=True)

    async def broken_claim():
        raise RuntimeError("bug in claim")

    monkeypatch.setattr(worker.queue, "claim", broken_claim)
    with pytest.raises(RuntimeError, match="bug in claim"):
        asyncio.run(worker.run())
