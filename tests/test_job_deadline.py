"""A queued job's own deadline covers the whole run, upload included: the backend's
timeout plus the upload's (jobs/worker.py job_deadline_s). Past it, only that job
stops: a stuck generation fails its job, a stuck upload leaves the image local."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Progress, Request, Result
from imagen_tui.backends.mock import MockBackend
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.jobs import worker as worker_module
from imagen_tui.jobs.worker import Worker, WorkerOptions, job_deadline_s, new_worker_id
from imagen_tui.limits import JOB_SLACK_S, UPLOAD_DEADLINE_S
from imagen_tui.storage import Upload
from tests.conftest import Home
from tests.helpers import add_job, job_row, sql


class StuckBackend(MockBackend):
    """Never finishes (a server that drips, a hung GPU); declares a 0.3 s timeout."""

    timeout_s = 0.3

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class StuckStorage:
    type_name = "stuck"

    async def store(self, upload: Upload) -> str | None:
        await asyncio.Event().wait()
        return None


@pytest.fixture
def workbench(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workbench]:
    mock = registry.get_type("mock")
    assert mock is not None
    registry.register(registry.BackendType("stuck", "test", mock.options, StuckBackend, "s"))
    monkeypatch.setattr(worker_module, "JOB_SLACK_S", 0.2)
    monkeypatch.setattr(worker_module, "UPLOAD_DEADLINE_S", 0.5)
    monkeypatch.setattr(worker_module, "DEFAULT_GENERATION_S", 3.0)
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\nbackends:\n  stuck:\n    type: stuck\n"
    )
    yield open_workbench(path)
    registry.unregister("stuck")


def drain(db_url: str, workbench: Workbench) -> Worker:
    worker = Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True))

    async def go() -> None:
        await asyncio.wait_for(worker.run(), 30)  # a hang fails here, not at the suite's timeout

    asyncio.run(go())
    return worker


def test_a_generation_past_the_jobs_deadline_fails_only_that_job(db_url, workbench):
    stuck = add_job(db_url, backend="stuck", seed=1)
    fine = add_job(db_url, backend="mock", seed=2)
    worker = drain(db_url, workbench)
    assert (worker.stats["failed"], worker.stats["done"]) == (1, 1)
    row = job_row(db_url, stuck)
    assert row["status"] == "failed"
    assert row["error"] == (
        "the job ran past its deadline of 1 s (the backend's timeout plus the upload's); "
        "stopped, nothing recorded"
    )
    assert job_row(db_url, fine)["status"] == "done"


def test_an_upload_past_the_jobs_deadline_leaves_the_image_local(db_url, workbench, monkeypatch):
    monkeypatch.setattr(workbench, "storage", lambda: StuckStorage())
    job_id = add_job(db_url, backend="mock", seed=3)
    worker = drain(db_url, workbench)
    assert worker.stats["done"] == 1
    [(uri, object_uri)] = sql(db_url, "SELECT storage_uri, object_uri FROM imagen.images")
    assert object_uri is None
    assert Path(uri.removeprefix("file://")).is_file()
    assert job_row(db_url, job_id)["status"] == "done"


def test_the_deadline_is_the_backends_timeout_plus_the_uploads():
    class Timed:
        timeout_s = 60.0

    assert job_deadline_s(Timed()) == 60.0 + JOB_SLACK_S + UPLOAD_DEADLINE_S
    assert job_deadline_s(object()) == worker_module.DEFAULT_GENERATION_S + JOB_SLACK_S + (
        UPLOAD_DEADLINE_S
    )
