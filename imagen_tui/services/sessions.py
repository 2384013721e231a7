"""The database session front ends hold: `session(workbench)` / `open_session`.

A `Session` submits a series, lists and shows jobs and series, picks a
winner, cancels and retries jobs, reads the usage ledger and who is online.
Database failures arrive as one-line `DatabaseError`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg

from imagen_tui.core.events import Connected, Disconnected, JobEvent
from imagen_tui.core.rows import (
    GalleryCard,
    ImageRow,
    JobChange,
    JobRow,
    SeriesDetail,
    SeriesRow,
    Submitted,
    UsageRow,
    UsageTotal,
    WorkerPresence,
)
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import Workbench
from imagen_tui.db import repositories as q
from imagen_tui.db.connect import connect, connect_checked, database_errors
from imagen_tui.db.events import job_events
from imagen_tui.errors import DatabaseError
from imagen_tui.services.requests import Submission, check_submission

T = TypeVar("T")


class Session:
    """A connection to the configured database (its schema checked) and what
    front ends do with it. Use as a context manager; see `session()`.

    A connection the server dropped is opened again on the next call, so a
    long-lived front end (the TUI) outlives a database restart; the call
    that found it broken fails with a DatabaseError.
    """

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._conn, self._url = conn, url

    def close(self) -> None:
        self._conn.close()

    def run(self, query: q.Query[T], *, idempotent: bool = False) -> T:
        """Run one statement; a database error becomes a one-line DatabaseError.

        `idempotent` (reads, setting a winner): if the connection turns out
        to be dead (the server restarted since the last call), run it once
        more on a new one. Other statements are not re-sent: their commit
        may have landed before the connection died.
        """

        for attempt in (1, 2):
            if self._conn.closed or self._conn.broken:
                self._conn = connect(self._url, autocommit=True)
            try:
                with database_errors():
                    return q.fetch(self._conn, query)
            except DatabaseError:
                if attempt == 2 or not idempotent or not self._conn.broken:
                    raise
        raise AssertionError("unreachable")

    def events(self) -> AsyncIterator[Connected | Disconnected | JobEvent]:
        """Job events, forever, on a connection of their own (it reconnects by itself)."""
        return job_events(self._url)

    def submit(self, workbench: Workbench, spec: RequestSpec, count: int) -> Submission:
        """Queue one series of `count` tries (one transaction)."""
        spec, warnings = check_submission(workbench, spec, count)
        submitted: Submitted = self.run(q.submit_series(spec, count))
        return Submission(submitted.series_id, submitted.job_ids, tuple(warnings))

    def jobs(self, status: str | None = None, limit: int = 50) -> list[JobRow]:
        return self.run(q.jobs_page(status, limit), idempotent=True)

    def jobs_by_id(self, job_ids: Sequence[int]) -> list[JobRow]:
        """These jobs as they are now (a live view re-reading what its events named)."""
        return self.run(q.jobs_by_id(job_ids), idempotent=True)

    def series(self, limit: int = 20) -> list[SeriesRow]:
        return self.run(q.series_page(limit), idempotent=True)

    def series_detail(self, series_id: int) -> SeriesDetail:
        return self.run(q.series_detail(series_id), idempotent=True)

    def series_images(self, series_id: int) -> list[ImageRow]:
        """The images of a series with their thumbnails and metadata, in try order."""
        return self.run(q.series_images(series_id), idempotent=True)

    def gallery(self, limit: int = 100, before_id: int | None = None) -> list[GalleryCard]:
        """Solo images and one card per series (its winner, else its first image)."""
        return self.run(q.gallery(limit, before_id), idempotent=True)

    def pick(self, series_id: int, idx: int | None) -> int | None:
        """Mark try `idx` the series' winner (None: no winner); the image id."""
        return self.run(q.pick_winner(series_id, idx), idempotent=True)

    def cancel(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Cancel pending or running jobs, all or none (InputError names the first at fault)."""
        return self.run(q.cancel_jobs(job_ids))

    def retry(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Queue failed or canceled jobs again (same seed), all or none."""
        return self.run(q.retry_jobs(job_ids))

    def workers(self) -> list[WorkerPresence]:
        """Every announced worker (online first); stale ones have `online` False."""
        return self.run(q.worker_presences(), idempotent=True)

    def workers_online(self) -> list[WorkerPresence]:
        return [worker for worker in self.workers() if worker.online]

    def usage_totals(
        self,
        by: str = "backend",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageTotal]:
        """The ledger's totals per `by` (backend, model, caller or day), then the
        grand total (key None); `until` is exclusive, days are local."""
        offset = datetime.now().astimezone().utcoffset() or timedelta(0)
        return self.run(q.usage_totals(by, since, until, offset), idempotent=True)

    def usage_rows(
        self, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[UsageRow]:
        """The ledger's raw rows in the window (never a prompt, only its hash)."""
        return self.run(q.usage_rows(since, until, limit), idempotent=True)


@contextmanager
def session(workbench: Workbench) -> Iterator[Session]:
    """A `Session` on the configured database (the embedded one is started and migrated)."""
    opened = open_session(workbench)
    try:
        yield opened
    finally:
        opened.close()


def open_session(workbench: Workbench) -> Session:
    """A `Session` the caller closes (a front end that keeps one for its lifetime)."""
    with database_errors():
        database, conn = connect_checked(workbench.config)
    return Session(conn, database.url)


def workers(workbench: Workbench) -> list[WorkerPresence]:
    """Every worker that announced itself on the configured queue, online ones
    first; a stale one (`online` False) died without withdrawing its row."""
    with session(workbench) as db:
        return db.workers()


def workers_online(workbench: Workbench) -> list[WorkerPresence]:
    """The workers online on the configured queue (renewed their row within their lease)."""
    with session(workbench) as db:
        return db.workers_online()
