"""The database session front ends hold: `session(workbench)` / `open_session`.

A `Session` submits a series, lists and shows jobs and series, picks a
winner, cancels and retries jobs, reads the usage ledger and who is online.
Database failures arrive as one-line `DatabaseError`s.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from imagen_tui.core.events import Connected, Disconnected, JobEvent
from imagen_tui.core.rows import (
    GalleryCard,
    ImageRow,
    JobChange,
    JobRow,
    PreviewRow,
    Recalled,
    Search,
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
from imagen_tui.db.events import job_events
from imagen_tui.db.locks import start_locks
from imagen_tui.db.pool import Pool, open_pool
from imagen_tui.services.requests import Submission, check_submission

T = TypeVar("T")


class Session(Protocol):
    """What the TUI and the CLI may ask of a session (they are typed against this,
    not a class): `DbSession` is the real one, the snapshot tests' fixed one
    answers from fixed rows. Every method blocks; DatabaseError (one line) when
    the database fails, InputError naming the field when the input is wrong."""

    def close(self) -> None: ...

    def events(self) -> AsyncIterator[Connected | Disconnected | JobEvent]: ...

    def submit(self, workbench: Workbench, spec: RequestSpec, count: int) -> Submission: ...

    def jobs(self, status: str | None = None, limit: int = 50) -> list[JobRow]: ...

    def jobs_by_id(self, job_ids: Sequence[int]) -> list[JobRow]: ...

    def job_preview(self, job_id: int) -> PreviewRow | None: ...

    def series(self, limit: int = 20, search: Search | None = None) -> list[SeriesRow]: ...

    def series_detail(self, series_id: int) -> SeriesDetail: ...

    def series_images(self, series_id: int) -> list[ImageRow]: ...

    def gallery(
        self, limit: int = 100, before_id: int | None = None, search: Search | None = None
    ) -> list[GalleryCard]: ...

    def recall(self, job_id: int | None = None, image_id: int | None = None) -> Recalled: ...

    def prompt_history(self, search: str = "", limit: int = 50) -> list[str]: ...

    def pick(self, series_id: int, idx: int | None) -> int | None: ...

    def cancel(self, job_ids: Sequence[int]) -> list[JobChange]: ...

    def retry(self, job_ids: Sequence[int]) -> list[JobChange]: ...

    def workers(self) -> list[WorkerPresence]: ...

    def workers_online(self) -> list[WorkerPresence]: ...

    def jobs_running_on(self, worker_id: str) -> list[int]: ...

    def usage_totals(
        self,
        by: str = "backend",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageTotal]: ...

    def usage_rows(
        self, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[UsageRow]: ...


class DbSession:
    """The `Session` on the configured database (its schema checked). Opened by
    `session()` (a context manager) or `open_session()`.

    Safe to use from several threads at once: each call takes a connection
    from a small pool, checked first, so a connection the server dropped (a
    restart, a cut line) is replaced before the statement is sent, and a
    long-lived front end (the TUI) outlives a database restart. A statement
    is never sent twice: one whose connection broke under it fails with a
    DatabaseError (a write's commit may have landed).
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def close(self) -> None:
        """Close the connections (safe to call twice)."""
        self._pool.close()

    def run(self, query: q.Query[T]) -> T:
        """Run one statement; a database error becomes a one-line DatabaseError."""
        return self._pool.run(query)

    def events(self) -> AsyncIterator[Connected | Disconnected | JobEvent]:
        """Job events, forever, on a connection of their own (it reconnects by itself)."""
        return job_events(self._pool.url)

    def submit(self, workbench: Workbench, spec: RequestSpec, count: int) -> Submission:
        """Queue one series of `count` tries (one transaction)."""
        spec, warnings = check_submission(workbench, spec, count)
        submitted: Submitted = self.run(q.submit_series(spec, count))
        return Submission(submitted.series_id, submitted.job_ids, spec, tuple(warnings))

    def jobs(self, status: str | None = None, limit: int = 50) -> list[JobRow]:
        return self.run(q.jobs_page(status, limit))

    def jobs_by_id(self, job_ids: Sequence[int]) -> list[JobRow]:
        """These jobs as they are now (a live view re-reading what its events named)."""
        return self.run(q.jobs_by_id(job_ids))

    def job_preview(self, job_id: int) -> PreviewRow | None:
        """The running job's latest live preview (a small JPEG), if it has one."""
        return self.run(q.job_preview(job_id))

    def series(self, limit: int = 20, search: Search | None = None) -> list[SeriesRow]:
        """The newest series, those matching `search` (prompt text, backend, since) if given."""
        return self.run(q.series_page(limit, search=search))

    def series_detail(self, series_id: int) -> SeriesDetail:
        return self.run(q.series_detail(series_id))

    def series_images(self, series_id: int) -> list[ImageRow]:
        """The images of a series with their thumbnails and metadata, in try order."""
        return self.run(q.series_images(series_id))

    def gallery(
        self, limit: int = 100, before_id: int | None = None, search: Search | None = None
    ) -> list[GalleryCard]:
        """Solo images and one card per series (its winner, else its first image),
        those matching `search` if given."""
        return self.run(q.gallery(limit, before_id, search))

    def recall(self, job_id: int | None = None, image_id: int | None = None) -> Recalled:
        """What a job (or the job of an image) asked for, with the seed it used and
        its series' tries: to fill the form again or queue it again."""
        if (job_id is None) == (image_id is None):
            raise ValueError("recall takes a job id or an image id")
        return self.run(q.recall(job_id, image_id))

    def prompt_history(self, search: str = "", limit: int = 50) -> list[str]:
        """The user's earlier prompts, newest first, each once (containing `search`)."""
        return self.run(q.prompt_history(search, limit))

    def pick(self, series_id: int, idx: int | None) -> int | None:
        """Mark try `idx` the series' winner (None: no winner); the image id."""
        return self.run(q.pick_winner(series_id, idx))

    def cancel(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Cancel pending or running jobs, all or none (InputError names the first at fault)."""
        return self.run(q.cancel_jobs(job_ids))

    def retry(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Queue failed or canceled jobs again (same seed), all or none."""
        return self.run(q.retry_jobs(job_ids))

    def workers(self) -> list[WorkerPresence]:
        """Every announced worker (online first); stale ones have `online` False."""
        return self.run(q.worker_presences())

    def workers_online(self) -> list[WorkerPresence]:
        return [worker for worker in self.workers() if worker.online]

    @property
    def embedded(self) -> bool:
        """On the private embedded server (not a queue others share)."""
        return self._pool.embedded

    def pending_backends(self) -> list[str | None]:
        """The backends pending jobs name, each once (None: the taker's default)."""
        return self.run(q.pending_backends())

    def start_locks(
        self, backends: Iterable[str], abort: threading.Event | None = None
    ) -> AbstractContextManager[bool]:
        """Hold the worker start lock of each backend (see db.locks): True once held."""
        return start_locks(self._pool.url, backends, abort)

    def jobs_running_on(self, worker_id: str) -> list[int]:
        """The ids of the jobs that worker renders now (what a quitting app waits for)."""
        return self.run(q.jobs_running_on(worker_id))

    def usage_totals(
        self,
        by: str = "backend",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageTotal]:
        """The ledger's totals per `by` (backend, model, caller or day), then the
        grand total (key None); `until` is exclusive, days are local."""
        offset = datetime.now().astimezone().utcoffset() or timedelta(0)
        return self.run(q.usage_totals(by, since, until, offset))

    def usage_rows(
        self, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[UsageRow]:
        """The ledger's raw rows in the window (never a prompt, only its hash)."""
        return self.run(q.usage_rows(since, until, limit))


@contextmanager
def session(workbench: Workbench) -> Iterator[DbSession]:
    """A session on the configured database (the embedded one is started and migrated)."""
    opened = open_session(workbench)
    try:
        yield opened
    finally:
        opened.close()


def open_session(workbench: Workbench) -> DbSession:
    """A session the caller closes (a front end that keeps one for its lifetime)."""
    return DbSession(open_pool(workbench.config))


def workers(workbench: Workbench) -> list[WorkerPresence]:
    """Every worker that announced itself on the configured queue, online ones
    first; a stale one (`online` False) died without withdrawing its row."""
    with session(workbench) as db:
        return db.workers()


def workers_online(workbench: Workbench) -> list[WorkerPresence]:
    """The workers online on the configured queue (renewed their row within their lease)."""
    with session(workbench) as db:
        return db.workers_online()
