"""Helpers shared by the tests (no test module imports another): plain SQL on
a test database, a job's row, a request as PostgREST runs it, polling with a
deadline, and an in-process worker that a failing test always stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from imagen_tui.backends.base import Preview, Progress
from imagen_tui.core.workbench import Workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id

T = TypeVar("T")


# --------------------------------------------------------------------------- SQL


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """One statement on its own autocommit connection (as another client would,
    and surviving server restarts); its rows, or [] for a statement without any."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def scalar(url: str, statement: str, params: Any = None) -> Any:
    """The first column of the first row."""
    return sql(url, statement, params)[0][0]


def job_row(url: str, job_id: int) -> dict[str, Any]:
    """The job's row in imagen.jobs, column name -> value."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT * FROM imagen.jobs WHERE id = %s", (job_id,))
        assert cursor.description is not None
        names = [column.name for column in cursor.description]
        row = cursor.fetchone()
    assert row is not None, f"no job {job_id}"
    return dict(zip(names, row, strict=True))


@contextlib.contextmanager
def acting(
    conn: psycopg.Connection, uid: str | None, role: str = "authenticated"
) -> Iterator[psycopg.Connection]:
    """One request transaction as PostgREST runs it: role and claims SET LOCAL
    (on the `api` fixture's connection, as its login role)."""
    with conn.transaction():
        conn.execute("SELECT set_config('role', %s, true)", (role,))
        if uid is not None:
            claims = json.dumps({"sub": uid, "role": role})
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        yield conn


def status_of(url: str, job_id: int) -> str:
    status: str = scalar(url, "SELECT status FROM imagen.jobs WHERE id = %s", (job_id,))
    return status


# --------------------------------------------------------------------------- polling


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = 30.0,
    *,
    interval: float = 0.02,
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it is truthy and return its value; fail naming `what`
    after `timeout` seconds. `check` runs at each poll (it may fail the test
    early); `details` adds to the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """In a running event loop: poll `predicate` (in a thread, it may block on
    the database) until it holds; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'a condition'}")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- files


def files_in(directory: Path) -> list[Path]:
    """Every file under `directory`, hidden ones included."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


# --------------------------------------------------------------------------- workers


@contextlib.asynccontextmanager
async def running_worker(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """`worker.run()` as a task for the body of the `async with`.

    When the body fails (a test noticed a bug), the worker is stopped hard, its
    jobs cancelled, so the test fails instead of waiting for ever on a job that
    never finishes. When the body ends normally and left it running, it is
    stopped gracefully and awaited.
    """
    task = asyncio.create_task(worker.run())
    try:
        yield task
    except BaseException:
        if not task.done():
            worker.stop()
            worker.stop()  # the second request cancels in-flight jobs
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        raise
    if not task.done():
        worker.stop()
        await task


def make_worker(
    db_url: str,
    workbench: Workbench,
    lease_s: float = 30,
    queue: PgQueue | None = None,
    **options: Any,
) -> Worker:
    """An in-process worker on `db_url` (its own queue unless given one)."""
    queue = queue or PgQueue(db_url, new_worker_id(), lease_s=lease_s)
    return Worker(workbench, queue, WorkerOptions(**options))


def add_job(db_url: str, prompt: str = "a red fox", **columns: object) -> int:
    """A 64x64 job inserted with plain SQL (these columns too); its id."""
    columns = {"prompt": prompt, "width": 64, "height": 64, **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    ((job_id,),) = sql(
        db_url, f"INSERT INTO imagen.jobs ({names}) VALUES ({marks}) RETURNING id",
        list(columns.values()),
    )  # fmt: skip
    return int(job_id)


def status_is(db_url: str, job_id: int, status: str) -> Callable[[], bool]:
    return lambda: job_row(db_url, job_id)["status"] == status


def fractions_into(seen: list[float]) -> Progress:
    """A backend's progress callback that records the fractions (previews ignored)."""

    def progress(fraction: float, preview: Preview | None = None) -> None:
        seen.append(fraction)

    return progress
