"""The worker against a real PostgreSQL, in-process: claim -> pipeline -> record,
and every way that can go wrong (lost leases, lost replies, refused writes,
crashing slots, stops, retries running out, cancels)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image

from imagen_tui.backends import registry
from imagen_tui.backends.base import Progress, Request, Result
from imagen_tui.backends.mock import MockBackend
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue, Presence
from imagen_tui.errors import GenerationError
from imagen_tui.jobs.types import Job, Signal, Wake
from imagen_tui.jobs.worker import Worker, WorkerCrashed, new_worker_id
from tests.helpers import (
    add_job,
    files_in,
    job_row,
    make_worker,
    running_worker,
    sql,
    status_is,
    wait_for,
)
from tests.proxy import pg_proxy

# --------------------------------------------------------------------------- helpers


class Gate:
    """Shared by the test and the `gate` backend instances: each generation
    waits until the test opens the gate, and what happened is recorded."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered: list[Request] = []
        self.cancelled = 0
        self.fail_with: BaseException | None = None
        # Set: a cancelled generation takes its time to stop (as a cloud backend
        # cancelling its prediction on the server does) until cancelled again.
        self.slow_to_stop = False

    async def wait_entered(self, n: int = 1, timeout: float = 20) -> None:
        await wait_for(lambda: len(self.entered) >= n, timeout, f"{n} generation(s) to start")


GATE = Gate()


class GateBackend(MockBackend):
    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        GATE.entered.append(request)
        try:
            await GATE.open.wait()
        except asyncio.CancelledError:
            GATE.cancelled += 1
            if GATE.slow_to_stop:
                await asyncio.Event().wait()
            raise
        if GATE.fail_with is not None:
            raise GATE.fail_with
        return await super().generate(request, progress)


@pytest.fixture
def workbench(home) -> Iterator[Workbench]:
    global GATE
    GATE = Gate()
    mock = registry.get_type("mock")
    assert mock is not None
    registry.register(registry.BackendType("gate", "test", mock.options, GateBackend, "gate-v1"))
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "backends:\n"
        "  slow:\n    type: mock\n    delay_ms: 1500\n"
        "  broken:\n    type: mock\n    fail_if_prompt_contains: boom\n"
        "  gate:\n    type: gate\n"
    )
    yield open_workbench(path)
    registry.unregister("gate")


# --------------------------------------------------------------------------- the happy path


def test_job_done_writes_image_rows_and_file(db_url, workbench):
    owner = uuid.uuid4()
    job_id = add_job(db_url, "a lighthouse at dusk", seed=42, owner_user_id=owner)
    asyncio.run(make_worker(db_url, workbench, once=True).run())

    job = job_row(db_url, job_id)
    assert job["status"] == "done"
    assert job["attempts"] == 1
    assert job["progress"] == 1
    assert job["lease_id"] is not None and job["lease_expires_at"] is None
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
    # Only the image and its sidecar stay: no temp file, no journal link.
    assert files_in(workbench.config.output.directory) == sorted([path, path.with_suffix(".json")])
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert (sidecar["job"], sidecar["series"], sidecar["seed"]) == (job_id, None, 42)
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


def test_the_highest_priority_is_claimed_first_then_the_oldest(db_url, workbench):
    low = add_job(db_url, "low", priority=-3)
    plain = add_job(db_url, "plain")
    urgent = add_job(db_url, "urgent", priority=5)
    urgent_too = add_job(db_url, "urgent too", priority=5)
    worker = make_worker(db_url, workbench, once=True)  # one slot: one job at a time
    asyncio.run(worker.run())
    assert worker.stats["done"] == 4
    started = sql(db_url, "SELECT id FROM imagen.jobs ORDER BY started_at")
    assert [job_id for (job_id,) in started] == [urgent, urgent_too, plain, low]


def test_series_tries_land_in_one_folder_and_solo_jobs_keep_their_naming(db_url, workbench):
    ((series_id,),) = sql(
        db_url, "INSERT INTO imagen.series (prompt, count) VALUES ('a fox', 3) RETURNING id"
    )
    sql(
        db_url,
        "INSERT INTO imagen.jobs (series_id, series_idx, prompt, width, height, seed) "
        "SELECT %s, i, 'a fox', 64, 64, 100 + i FROM generate_series(1, 3) i",
        (series_id,),
    )
    solo = add_job(db_url, "solo fox", seed=7)
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    rows = sql(
        db_url,
        "SELECT series_id, series_idx, seed, storage_uri FROM imagen.images ORDER BY job_id",
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (series_id, 1, 101),
        (series_id, 2, 102),
        (series_id, 3, 103),
        (None, None, 7),
    ]
    paths = [Path(r[3].removeprefix("file://")) for r in rows]
    # output.series_naming: {date}/series-{series}_{slug}/{idx:02d}_{seed}
    folders = {path.parent for path in paths[:3]}
    assert len(folders) == 1
    (folder,) = folders
    assert folder.name == f"series-{series_id}_a-fox"
    assert [path.name for path in paths[:3]] == ["01_101.png", "02_102.png", "03_103.png"]
    # a solo job: output.naming, {date}/{time}_{slug}_{seed}
    assert paths[3].parent == folder.parent and paths[3].name.endswith("_solo-fox_7.png")
    sidecar = json.loads(paths[0].with_suffix(".json").read_text())
    assert sidecar["series"] == series_id and sidecar["idx"] == 1  # a number, like the CLI's
    ((solo_series,),) = sql(
        db_url, "SELECT series_id FROM imagen.images WHERE job_id = %s", (solo,)
    )
    assert solo_series is None


def test_a_series_created_before_midnight_keeps_its_date_folder_after_it(db_url, workbench):
    """Tries rendered after midnight still join the folder dated by the series'
    creation, not one dated by their own render time."""
    yesterday = datetime.now().astimezone() - timedelta(days=1)
    created = yesterday.replace(hour=23, minute=59, second=0, microsecond=0)
    ((series_id,),) = sql(
        db_url,
        "INSERT INTO imagen.series (prompt, count, created_at) "
        "VALUES ('a fox', 2, %s) RETURNING id",
        (created,),
    )
    sql(
        db_url,
        "INSERT INTO imagen.jobs (series_id, series_idx, prompt, width, height, seed) "
        "SELECT %s, i, 'a fox', 64, 64, 100 + i FROM generate_series(1, 2) i",
        (series_id,),
    )
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    rows = sql(db_url, "SELECT storage_uri FROM imagen.images ORDER BY series_idx")
    folders = {Path(uri.removeprefix("file://")).parent for (uri,) in rows}
    assert len(rows) == 2 and len(folders) == 1
    (folder,) = folders
    # output.series_naming: {date}/series-{series}_{slug}/{idx:02d}_{seed}
    assert folder == (
        workbench.config.output.directory
        / created.strftime("%Y-%m-%d")
        / f"series-{series_id}_a-fox"
    )


def test_notify_wakes_an_idle_worker_long_before_the_safety_poll(db_url, workbench):
    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=120)
        async with running_worker(worker) as running:
            # The worker found the queue empty and now waits (up to 120 s) for a wake-up.
            async with asyncio.timeout(20):
                await worker.idle.wait()
            job_id = add_job(db_url)
            await wait_for(
                status_is(db_url, job_id, "done"), 15, "the job, without the safety poll"
            )
            worker.stop()
            await running

    asyncio.run(scenario())


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
            assert "owner" not in event  # payloads are hints: no user ids in them
            if "preview" in event:
                continue  # a new preview, not a progress write (tests/test_previews.py)
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


# --------------------------------------------------------------------------- bad jobs


def test_bad_job_parameters_fail_with_the_reason(db_url, workbench):
    unknown_style = add_job(db_url, style="vaporwave")
    unknown_backend = add_job(db_url, backend="gpu-box")
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    style_job, backend_job = job_row(db_url, unknown_style), job_row(db_url, unknown_backend)
    assert style_job["status"] == "failed"
    # Job errors name the job's column, not a CLI flag: the job may come from plain SQL.
    assert style_job["error"].startswith("style: unknown style 'vaporwave'; known styles:")
    assert style_job["attempts"] == 1  # bad input is not retried
    # A backend this worker lacks is not the job's fault: another worker may have
    # it, so the job is never claimed here, let alone failed (docs/worker.md, Routing).
    assert (backend_job["status"], backend_job["attempts"], backend_job["error"]) == (
        "pending",
        0,
        None,
    )
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]


def test_generation_failure_is_stored_and_not_retried(db_url, workbench):
    job_id = add_job(db_url, "boom goes the dynamite", backend="broken")
    asyncio.run(make_worker(db_url, workbench, once=True).run())
    job = job_row(db_url, job_id)
    assert job["status"] == "failed"
    assert "fail_if_prompt_contains" in job["error"]
    assert job["finished_at"] is not None
    assert job["seed"] is not None  # the seed it was given is kept, so a retry reuses it
    assert not files_in(workbench.config.output.directory)


def test_an_unexpected_error_fails_only_that_job_and_the_worker_goes_on(db_url, workbench):
    """A backend bug (here a TypeError, as a malformed option once raised in plan)
    fails its own job with the real error; the next job is still done."""
    GATE.open.set()
    GATE.fail_with = TypeError("unhashable type: 'list'")
    poisoned = add_job(db_url, backend="gate")
    healthy = add_job(db_url)
    worker = make_worker(db_url, workbench, once=True)
    asyncio.run(worker.run())
    job = job_row(db_url, poisoned)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert "TypeError: unhashable type: 'list'" in job["error"]
    assert job_row(db_url, healthy)["status"] == "done"
    assert worker.stats == {"failed": 1, "done": 1}


def test_an_adapter_that_cannot_even_be_built_fails_its_job_not_the_worker(db_url, home):
    def broken_factory(name: str, block: object) -> Any:
        raise KeyError("model")

    registry.register(registry.BackendType("unbuildable", "test", (), broken_factory, "x"))
    try:
        path = home.write_config(
            f"output:\n  directory: {home.root / 'out'}\nbackends:\n  bad:\n    type: unbuildable\n"
        )
        workbench = open_workbench(path)
        broken, fine = add_job(db_url, backend="bad"), add_job(db_url)
        asyncio.run(make_worker(db_url, workbench, once=True).run())
    finally:
        registry.unregister("unbuildable")
    assert job_row(db_url, broken)["status"] == "failed"
    assert "KeyError" in job_row(db_url, broken)["error"]
    assert job_row(db_url, fine)["status"] == "done"


# --------------------------------------------------------------------------- retries


class _Flaky(MockBackend):
    """A remote backend that fails transiently `failures` times (as rate-limited APIs do)."""

    calls = 0
    failures = 1
    retry_after: float | None = None

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        _Flaky.calls += 1
        if _Flaky.calls <= _Flaky.failures:
            raise GenerationError(
                "flaky: 503 from the server", transient=True, retry_after=_Flaky.retry_after
            )
        return await super().generate(request, progress)


@pytest.fixture
def flaky_workbench(home) -> Iterator[Workbench]:
    mock = registry.get_type("mock")
    assert mock is not None
    registry.register(registry.BackendType("flaky", "test", mock.options, _Flaky, "m"))
    _Flaky.calls, _Flaky.failures, _Flaky.retry_after = 0, 1, None
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "default_backend: f\nbackends:\n  f:\n    type: flaky\n"
    )
    yield open_workbench(path)
    registry.unregister("flaky")


def test_transient_error_is_retried_with_backoff_then_succeeds(db_url, flaky_workbench):
    job_id = add_job(db_url)
    events: list[tuple[str, str | None]] = []

    async def scenario() -> None:
        # A poll far longer than the test: the retry must run when its backoff
        # ends, not at the next safety poll.
        worker = make_worker(db_url, flaky_workbench, poll_interval=600)
        async with running_worker(worker) as running:

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


def test_transient_retries_run_out_at_max_attempts(db_url, flaky_workbench):
    _Flaky.failures = 99
    job_id = add_job(db_url, max_attempts=2)

    async def scenario() -> Worker:
        worker = make_worker(db_url, flaky_workbench, poll_interval=600)
        async with running_worker(worker) as running:
            await wait_for(status_is(db_url, job_id, "failed"), what="the job to fail for good")
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    job = job_row(db_url, job_id)
    assert (job["attempts"], job["error"]) == (2, "flaky: 503 from the server")
    assert _Flaky.calls == 2
    assert worker.stats == {"retried": 1, "failed": 1}


def test_a_retry_waits_as_long_as_the_backend_asked(db_url, flaky_workbench):
    _Flaky.retry_after = 3600.0  # Retry-After: an hour
    job_id = add_job(db_url)

    async def scenario() -> None:
        worker = make_worker(db_url, flaky_workbench, poll_interval=600)
        async with running_worker(worker) as running:
            await wait_for(status_is(db_url, job_id, "pending"), what="the job to be requeued")
            worker.stop()
            await running

    asyncio.run(scenario())
    ((wait_s,),) = sql(
        db_url,
        "SELECT extract(epoch FROM run_at - now()) FROM imagen.jobs WHERE id = %s",
        (job_id,),
    )
    assert 3000 < wait_s <= 3600  # not the backoff's half second


# --------------------------------------------------------------------------- leases


def test_lost_lease_cancels_the_generation_and_drops_the_result(db_url, workbench):
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, lease_s=0.6, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            # Another claim took it over (as after a rescue): our lease token is gone.
            takeover = (
                "UPDATE imagen.jobs SET worker_id = 'elsewhere', lease_id = gen_random_uuid(), "
                "lease_expires_at = now() + interval '1 hour' WHERE id = %s"
            )
            sql(db_url, takeover, (job_id,))
            await wait_for(lambda: worker.stats["dropped"] == 1, what="the result to be dropped")
            worker.stop()
            await running
            return worker

    asyncio.run(scenario())
    assert GATE.cancelled == 1  # the heartbeat stopped the generation; it never finished
    job = job_row(db_url, job_id)
    assert job["status"] == "running" and job["worker_id"] == "elsewhere"  # untouched
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]
    assert not files_in(workbench.config.output.directory)


def test_cancelling_the_worker_cancels_its_slots_and_hands_the_job_back(db_url, workbench):
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            running.cancel()  # not a stop request: the task itself
            done, _ = await asyncio.wait({running}, timeout=20)
            assert running in done, "the worker did not end when cancelled"
            # Its slot ended with it (not later, when the event loop closes).
            assert GATE.cancelled == 1
            assert worker.stats == {"released": 1}
            job = job_row(db_url, job_id)
            assert (job["status"], job["attempts"], job["worker_id"]) == ("pending", 0, None)

    asyncio.run(scenario())


def test_a_cancelled_slot_ends_even_when_its_job_was_already_lost(db_url, workbench):
    """The job is lost and its generation is still stopping when the worker is
    cancelled: the slot must end, not take that cancellation for the lost job's
    own and go on claiming."""
    GATE.slow_to_stop = True
    job_id = add_job(db_url, backend="gate")
    later = add_job(db_url)

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, lease_s=0.6, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            sql(db_url, "UPDATE imagen.jobs SET lease_id = gen_random_uuid() WHERE id = %s",
                (job_id,))  # fmt: skip
            await wait_for(lambda: GATE.cancelled == 1, what="the lost job's generation to stop")
            running.cancel()
            done, _ = await asyncio.wait({running}, timeout=20)
            assert running in done, "a slot went on after the worker was cancelled"
            return worker

    worker = asyncio.run(scenario())
    assert worker.stats == {"dropped": 1}
    assert job_row(db_url, later)["status"] == "pending"  # nothing claimed after the cancel


class TakeoverQueue(PgQueue):
    """A queue whose job is taken over by another claim just before it records a result."""

    async def complete(self, job: Job, done: Any) -> int | None:
        sql(
            self.url,
            "UPDATE imagen.jobs SET lease_id = gen_random_uuid() WHERE id = %s",
            (job.id,),
        )
        return await super().complete(job, done)


def test_completion_after_losing_the_lease_writes_nothing_and_removes_the_file(db_url, workbench):
    job_id = add_job(db_url)
    queue = TakeoverQueue(db_url, new_worker_id())
    worker = make_worker(db_url, workbench, queue=queue, once=True)
    asyncio.run(worker.run())
    assert worker.stats == {"dropped": 1}
    assert job_row(db_url, job_id)["status"] == "running"
    assert sql(db_url, "SELECT count(*) FROM imagen.images") == [(0,)]
    assert sql(db_url, "SELECT count(*) FROM imagen.usage") == [(0,)]
    assert not files_in(workbench.config.output.directory)  # image, sidecar, journal: gone


def test_a_job_claimed_again_under_a_new_lease_is_recorded_once(db_url, workbench):
    """A claim lost on a server crash (it commits without waiting for the WAL flush)
    puts the job back to pending while this very worker still renders it; the
    worker may then claim it again in another slot. Only the newer claim's
    result may land: fencing on the worker id alone accepted both."""
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, concurrency=2, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered(1)
            first_lease = job_row(db_url, job_id)["lease_id"]
            # The claim is "lost": the job is pending again, as after the crash.
            sql(
                db_url,
                "UPDATE imagen.jobs SET status = 'pending', worker_id = NULL, lease_id = NULL, "
                "lease_expires_at = NULL, attempts = 0 WHERE id = %s",
                (job_id,),
            )
            await GATE.wait_entered(2)  # the second slot claimed it again
            assert job_row(db_url, job_id)["lease_id"] not in (None, first_lease)
            GATE.open.set()
            await wait_for(status_is(db_url, job_id, "done"), what="the job to be done")
            await wait_for(lambda: worker.stats["dropped"] + worker.stats["done"] == 2)
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    assert worker.stats == {"done": 1, "dropped": 1}
    ((images, image_uri),) = sql(
        db_url, "SELECT count(*), min(storage_uri) FROM imagen.images WHERE job_id = %s", (job_id,)
    )
    assert images == 1
    pngs = sorted(workbench.config.output.directory.rglob("*.png"))
    assert [p.as_uri() for p in pngs] == [image_uri]  # the dropped run left no file


def test_a_lost_reply_to_the_completion_keeps_the_image(db_url, workbench):
    """The completion commits, but the connection dies before its reply arrives.
    The worker retries; the retry must find its own result, not delete the image
    the committed row points to."""
    job_id = add_job(db_url, "a lighthouse", seed=5)

    with pg_proxy(db_url) as proxy:
        proxy.cut_after_reply(b"INSERT INTO imagen.images")
        worker = make_worker(proxy.url, workbench, once=True)
        asyncio.run(worker.run())
        assert proxy.cut_done.is_set()  # the reply really was lost

    assert worker.stats == {"done": 1}
    job = job_row(db_url, job_id)
    assert job["status"] == "done"
    ((image_id, uri),) = sql(db_url, "SELECT id, storage_uri FROM imagen.images")
    assert job["image_id"] == image_id
    image = Path(uri.removeprefix("file://"))
    assert image.is_file() and image.with_suffix(".json").is_file()
    assert files_in(workbench.config.output.directory) == sorted(
        [image, image.with_suffix(".json")]
    )


def test_a_database_refusing_the_result_fails_the_job_and_removes_its_files(db_url, workbench):
    """Not a connection error: a constraint refuses the completion (here another
    images row already holds the job's one slot). The job fails with the real
    message, nothing is left on disk, and the worker goes on."""
    job_id = add_job(db_url, backend="gate")
    next_job = add_job(db_url)

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            sql(
                db_url,
                "INSERT INTO imagen.images (job_id, seed, width, height, backend, model, "
                "mime_type, sha256, bytes, storage_uri) VALUES (%s, 1, 64, 64, 'x', 'x', "
                "'image/png', 'x', 1, 'file:///elsewhere.png')",
                (job_id,),
            )
            GATE.open.set()
            await wait_for(status_is(db_url, next_job, "done"), what="the next job")
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    job = job_row(db_url, job_id)
    assert job["status"] == "failed"
    assert job["error"].startswith("the database refused the result: duplicate key value")
    assert worker.stats == {"failed": 1, "done": 1}
    ((uri,),) = sql(db_url, "SELECT storage_uri FROM imagen.images WHERE job_id = %s", (next_job,))
    image = Path(uri.removeprefix("file://"))
    assert files_in(workbench.config.output.directory) == sorted(
        [image, image.with_suffix(".json")]
    )


# --------------------------------------------------------------------------- cancel


def test_canceling_a_running_job_stops_its_generation_at_once(db_url, workbench):
    """The worker hears the job event: the lease here is an hour, so its next
    heartbeat is 20 minutes away and cannot be what stops the generation."""
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, lease_s=3600, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job_id,))
            await wait_for(lambda: GATE.cancelled == 1, what="the generation to be cancelled")
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    assert worker.stats == {"dropped": 1}
    job = job_row(db_url, job_id)
    assert (job["status"], job["image_id"]) == ("canceled", None)
    assert job["finished_at"] is not None
    assert not files_in(workbench.config.output.directory)


def test_a_forged_cancel_event_does_not_stop_a_job(db_url, workbench):
    """Any session may NOTIFY: the worker asks the database before cancelling."""
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, lease_s=3600, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            sql(db_url, "SELECT pg_notify('imagen_job_cancels', %s)", (str(job_id),))
            await wait_for(lambda: worker.cancel_checks == 1, what="the hint to be checked")
            GATE.open.set()
            await wait_for(status_is(db_url, job_id, "done"), what="the job to finish")
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    assert GATE.cancelled == 0
    assert worker.stats == {"done": 1}


# --------------------------------------------------------------------------- stops and crashes


def test_graceful_stop_finishes_the_running_job_and_claims_nothing_more(db_url, workbench):
    first = add_job(db_url, backend="gate")
    later = [add_job(db_url), add_job(db_url)]

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            worker.stop()
            GATE.open.set()
            await running

    asyncio.run(scenario())
    assert job_row(db_url, first)["status"] == "done"
    assert [job_row(db_url, job)["status"] for job in later] == ["pending", "pending"]


def test_a_second_stop_cancels_the_job_and_hands_it_back_with_its_attempt(db_url, workbench):
    job_id = add_job(db_url, backend="gate")

    async def scenario() -> Worker:
        worker = make_worker(db_url, workbench, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            assert job_row(db_url, job_id)["attempts"] == 1
            worker.stop()
            worker.stop()
            await running
            return worker

    worker = asyncio.run(scenario())
    assert worker.forced
    assert GATE.cancelled == 1
    assert worker.stats == {"released": 1}
    job = job_row(db_url, job_id)
    assert (job["status"], job["attempts"], job["worker_id"], job["lease_id"]) == (
        "pending",
        0,  # the attempt is given back: the stop was not the job's fault
        None,
        None,
    )


class CrashingQueue(PgQueue):
    """A queue whose second claim hits a bug."""

    claims = 0

    async def claim(self, backends: Sequence[str], accept_default: bool) -> Job | None:
        CrashingQueue.claims += 1
        if CrashingQueue.claims == 2:
            raise RuntimeError("bug in claim")
        return await super().claim(backends, accept_default)


def test_a_crashing_slot_is_logged_at_once_and_stops_the_worker(db_url, workbench, caplog):
    """With two slots, one crashes while the other renders: the crash is logged
    at once (not when the worker stops), the other slot finishes its job, and
    the worker ends with WorkerCrashed (exit 1, so systemd restarts it)."""
    job_id = add_job(db_url, backend="gate")
    CrashingQueue.claims = 0
    queue = CrashingQueue(db_url, new_worker_id())

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, queue=queue, concurrency=2, poll_interval=0.2)
        async with running_worker(worker) as running:
            await wait_for(
                lambda: any("worker slot crashed" in r.message for r in caplog.records),
                what="the crash to be logged",
            )
            assert job_row(db_url, job_id)["status"] == "running"  # logged before the job ended
            GATE.open.set()
            with pytest.raises(WorkerCrashed, match="RuntimeError: bug in claim"):
                await running

    with caplog.at_level(logging.INFO, logger="imagen.worker"):
        asyncio.run(scenario())
    assert job_row(db_url, job_id)["status"] == "done"
    crash_lines = [r for r in caplog.records if "worker slot crashed" in r.message]
    assert len(crash_lines) == 1 and crash_lines[0].exc_info is not None


class BrokenListenerQueue(PgQueue):
    """A queue whose notification stream hits a bug after its first wake-up."""

    async def signals(self) -> AsyncIterator[Signal]:
        yield Wake()
        raise RuntimeError("bug in the listener")


def test_a_crashing_listener_is_logged_and_stops_the_worker(db_url, workbench, caplog):
    worker = make_worker(db_url, workbench, queue=BrokenListenerQueue(db_url, new_worker_id()))
    crashed = pytest.raises(WorkerCrashed, match="the listener crashed: RuntimeError")
    with caplog.at_level(logging.INFO, logger="imagen.worker"), crashed:
        asyncio.run(worker.run())
    lines = [r for r in caplog.records if "listener crashed" in r.message]
    assert len(lines) == 1 and lines[0].exc_info is not None


# --------------------------------------------------------------------------- outages


def test_an_outage_while_recording_is_logged_once_and_ridden_out(db_url, workbench, caplog):
    job_id = add_job(db_url, backend="gate")

    async def scenario(proxy: Any) -> Worker:
        worker = make_worker(proxy.url, workbench, lease_s=60, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            proxy.down()
            GATE.open.set()
            before = proxy.connections
            # The completion keeps trying: at least three refused connections.
            await wait_for(lambda: proxy.connections >= before + 3, what="retries")
            proxy.up()
            await wait_for(status_is(db_url, job_id, "done"), what="the job to be recorded")
            worker.stop()
            await running
            return worker

    with caplog.at_level(logging.INFO), pg_proxy(db_url) as proxy:
        worker = asyncio.run(scenario(proxy))
    assert worker.stats == {"done": 1}
    messages = [r.getMessage() for r in caplog.records]
    mine = [m for m in messages if m.startswith(f"job {job_id}: database")]
    assert len(mine) == 2, mine  # one line when the outage began, one when it ended
    assert "database unavailable, retrying" in mine[0]
    assert "database back after" in mine[1]
    for component in ("listener", "claims"):
        lines = [m for m in messages if m.startswith(f"{component}: database unavailable")]
        assert len(lines) <= 1, lines


def test_an_outage_is_logged_once_by_the_listener_and_once_by_the_heartbeat(
    db_url, workbench, caplog
):
    """Both keep retrying through the outage (the heartbeat beats every second
    here), each says so once when it starts and once when it is over."""
    job_id = add_job(db_url, backend="gate")

    def lines(what: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(what)]

    async def scenario(proxy: Any) -> None:
        worker = make_worker(proxy.url, workbench, lease_s=3, poll_interval=0.2)
        async with running_worker(worker) as running:
            await GATE.wait_entered()
            proxy.down()
            await wait_for(lambda: bool(lines("heartbeat: database unavailable")), what="a beat")
            await wait_for(
                lambda: bool(lines("listener: database unavailable")), what="the listener"
            )
            before = proxy.connections
            await wait_for(lambda: proxy.connections >= before + 2, what="more refused retries")
            proxy.up()
            await wait_for(lambda: bool(lines("heartbeat: database back")), what="a beat again")
            await wait_for(
                lambda: bool(lines("listener: database back")), what="the listener again"
            )
            GATE.open.set()
            await wait_for(status_is(db_url, job_id, "done"), what="the job")
            worker.stop()
            await running

    with caplog.at_level(logging.INFO), pg_proxy(db_url) as proxy:
        asyncio.run(scenario(proxy))
    for part in ("heartbeat", "listener"):
        assert len(lines(f"{part}: database unavailable, retrying")) == 1, part
        assert len(lines(f"{part}: database back after")) == 1, part


# --------------------------------------------------------------------------- rescue


def test_rescue_requeues_until_max_attempts_then_gives_up_exactly_there(db_url):
    """A job whose worker died goes back to pending while it has attempts left;
    the rescue that finds it at max_attempts fails it, naming the lease."""

    def dead_claim(attempts: int) -> int:
        return add_job(
            db_url,
            status="running",
            worker_id="w-dead",
            lease_id=str(uuid.uuid4()),
            lease_expires_at=datetime.now(UTC) - timedelta(minutes=1),
            attempts=attempts,
            max_attempts=3,
        )

    below, at = dead_claim(2), dead_claim(3)
    alive = add_job(
        db_url,
        status="running",
        worker_id="w-alive",
        lease_id=str(uuid.uuid4()),
        lease_expires_at=datetime.now(UTC) + timedelta(hours=1),
        attempts=3,
        max_attempts=3,
    )
    rescued = asyncio.run(PgQueue(db_url, new_worker_id()).rescue())
    assert sorted(rescued) == sorted([(below, "pending"), (at, "failed")])
    again = job_row(db_url, below)
    assert (again["status"], again["attempts"], again["lease_id"]) == ("pending", 2, None)
    gave_up = job_row(db_url, at)
    assert gave_up["status"] == "failed"
    # Its owner reads the error: no worker id (host:pid) in it (issue 17 point 14).
    assert gave_up["error"] == "its worker stopped renewing its lease; gave up after 3 attempts"
    assert job_row(db_url, alive)["status"] == "running"  # a live lease is never touched


# --------------------------------------------------------------------------- routing


def test_a_claim_takes_only_its_backends_and_no_backend_only_with_a_default(db_url):
    """One statement decides: a job for another instance is skipped (even ahead in
    claim order), a job with no backend is taken only when accept_default."""
    foreign = add_job(db_url, backend="comfy-gpu", priority=10)
    no_backend = add_job(db_url, priority=5)
    ours = add_job(db_url, backend="slow")
    queue = PgQueue(db_url, new_worker_id())

    async def claims() -> list[int | None]:
        try:
            taken = []
            for backends, accept_default in ((["slow"], False), (["slow"], False), ([], True)):
                job = await queue.claim(backends, accept_default)
                taken.append(None if job is None else job.id)
            return taken
        finally:
            await queue.close()

    assert asyncio.run(claims()) == [ours, None, no_backend]
    assert job_row(db_url, foreign)["status"] == "pending"


def test_next_due_counts_only_claimable_jobs(db_url):
    """A due job for another instance must not make an idle worker poll without pause."""
    add_job(db_url, backend="comfy-gpu")
    queue = PgQueue(db_url, new_worker_id())

    async def due() -> tuple[float | None, float | None]:
        try:
            return await queue.next_due(["slow"], True), await queue.next_due(["comfy-gpu"], False)
        finally:
            await queue.close()

    mine, theirs = asyncio.run(due())
    assert mine is None
    assert theirs is not None and theirs <= 0


def test_a_held_back_instance_is_not_claimed_for_and_nor_are_its_default_jobs(db_url, workbench):
    """The worker's claim filter comes from its config (its ready instances; jobs
    with no backend while its default is one of them). An instance held back (the
    GPU seam) is not claimed for, nor are jobs with no backend when it is the
    default; jobs for the other instances still flow."""
    worker = make_worker(db_url, workbench, once=True)
    assert worker.claimable() == (["broken", "gate", "mock", "slow"], True)
    worker.held_back.update({"mock", "gate"})
    assert worker.claimable() == (["broken", "slow"], False)
    no_backend = add_job(db_url)
    held = add_job(db_url, backend="gate")
    fine = add_job(db_url, backend="broken")  # not "boom": done
    asyncio.run(worker.run())
    assert [job_row(db_url, i)["status"] for i in (no_backend, held, fine)] == [
        "pending",
        "pending",
        "done",
    ]


def test_a_worker_with_a_ready_default_takes_jobs_with_no_backend(db_url, home):
    out = home.root / "out"
    path = home.write_config(
        f"default_backend: quick\noutput:\n  directory: {out}\n"
        "backends:\n  quick:\n    type: mock\n"
    )
    worker = make_worker(db_url, open_workbench(path), once=True)
    assert worker.claimable() == (["mock", "quick"], True)
    job_id = add_job(db_url)
    asyncio.run(worker.run())
    row = job_row(db_url, job_id)
    assert row["status"] == "done"
    assert sql(db_url, "SELECT backend FROM imagen.images WHERE job_id = %s", (job_id,)) == [
        ("quick",)
    ]


def test_a_stopping_worker_is_offline_at_once_while_its_job_finishes(db_url, workbench):
    """The first stop withdraws the presence row at once (not at the next beat,
    10 s away with this lease), so an app starts another worker; the job in
    flight still finishes under its renewed lease."""
    worker_id = new_worker_id()
    presence = Presence(worker_id, "box", 4242, ("slow",), 1, "slow")
    queue = PgQueue(db_url, worker_id, lease_s=30, presence=presence)
    job_id = add_job(db_url, backend="slow")  # 1.5 s
    rows = "SELECT default_backend FROM imagen.workers WHERE id = %s"

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, queue=queue, poll_interval=0.2)
        async with running_worker(worker) as running:
            await wait_for(lambda: job_row(db_url, job_id)["status"] == "running", what="a claim")
            assert sql(db_url, rows, (worker_id,)) == [("slow",)]
            worker.stop()
            await wait_for(lambda: not sql(db_url, rows, (worker_id,)), 2.0, "the withdrawal")
            assert job_row(db_url, job_id)["status"] == "running"
            await running
        assert job_row(db_url, job_id)["status"] == "done"
        assert sql(db_url, rows, (worker_id,)) == []

    asyncio.run(scenario())
