"""The job queue on PostgreSQL: claim, lease, fenced completion, rescue, wake-ups.

Every write a worker makes to a job it claimed is fenced on
`worker_id = me AND status = 'running'`: when it affects no row, the lease was
lost (the job was rescued and may be running elsewhere) and the caller drops
its result. Four connections per worker, none shared across purposes:

- the work connection (asyncio): progress, completion, failure, rescue;
- the claim connection (asyncio): claims only, committed without waiting for
  the WAL flush (see `PgQueue._connection`);
- the listen connection (asyncio): LISTEN imagen_jobs, idle between
  notifications (psycopg holds a connection's lock while it waits);
- the heartbeat connection (a thread): lease renewals that a busy
  generation cannot starve.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from imagen_tui.db.connect import redact

WAKE_CHANNEL = "imagen_jobs"
EVENTS_CHANNEL = "imagen_job_events"

_JOB_COLUMNS = """id, owner_user_id, series_id, series_idx, prompt, negative_prompt, style,
    width, height, steps, seed, backend, options, attempts, max_attempts"""

_CLAIM = f"""
UPDATE imagen.jobs
   SET status = 'running', attempts = attempts + 1, worker_id = %(me)s,
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       started_at = now(), updated_at = now(), progress = 0, error = NULL
 WHERE id = (SELECT id FROM imagen.jobs
              WHERE status = 'pending' AND run_at <= now()
              ORDER BY priority DESC, id
              FOR UPDATE SKIP LOCKED
              LIMIT 1)
RETURNING {_JOB_COLUMNS}
"""

# One statement, so one transaction and one job event that already carries
# the image id. `fenced` is empty when the lease was lost: nothing is written.
_COMPLETE = """
WITH fenced AS (
    SELECT id, owner_user_id FROM imagen.jobs
     WHERE id = %(job_id)s AND worker_id = %(me)s AND status = 'running'
       FOR UPDATE
), image AS (
    INSERT INTO imagen.images (owner_user_id, job_id, series_id, series_idx, seed, width,
                               height, steps, backend, model, mime_type, sha256, bytes,
                               storage_uri, thumbnail, thumbnail_mime, metadata)
    SELECT owner_user_id, id, %(series_id)s, %(series_idx)s, %(seed)s, %(width)s,
           %(height)s, %(steps)s, %(backend)s, %(model)s, %(mime_type)s, %(sha256)s,
           %(bytes)s, %(storage_uri)s, %(thumbnail)s, %(thumbnail_mime)s, %(metadata)s
      FROM fenced
    RETURNING id
), usage AS (
    INSERT INTO imagen.usage (owner_user_id, job_id, backend, backend_type, model, seed,
                              prompt_sha256, width, height, latency_ms, cost_usd, caller)
    SELECT owner_user_id, id, %(backend)s, %(backend_type)s, %(model)s, %(seed)s,
           %(prompt_sha256)s, %(width)s, %(height)s, %(latency_ms)s, %(cost_usd)s, %(me)s
      FROM fenced
)
UPDATE imagen.jobs AS j
   SET status = 'done', image_id = image.id, progress = 1, seed = coalesce(j.seed, %(seed)s),
       finished_at = now(), updated_at = now(), lease_expires_at = NULL
  FROM image
 WHERE j.id = %(job_id)s
RETURNING image.id
"""

_FENCE = "WHERE id = %(job_id)s AND worker_id = %(me)s AND status = 'running'"

_FAIL = f"""
UPDATE imagen.jobs
   SET status = 'failed', error = %(error)s, finished_at = now(), updated_at = now(),
       lease_expires_at = NULL
 {_FENCE}
"""

_RETRY = f"""
UPDATE imagen.jobs
   SET status = 'pending', error = %(error)s, run_at = now() + make_interval(secs => %(delay)s),
       worker_id = NULL, lease_expires_at = NULL, progress = NULL, updated_at = now()
 {_FENCE}
"""

# Handing a job back unfinished (shutdown): it was not the job's fault, so the
# attempt does not count.
_RELEASE = f"""
UPDATE imagen.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), worker_id = NULL,
       lease_expires_at = NULL, progress = NULL, updated_at = now()
 {_FENCE}
"""

_PROGRESS = f"UPDATE imagen.jobs SET progress = %(progress)s {_FENCE}"

# Jobs whose worker stopped renewing its lease (it died, or lost the database
# for longer than the lease): back to pending, or failed after max_attempts.
# Live workers' jobs have unexpired leases and are never touched.
_RESCUE = """
UPDATE imagen.jobs
   SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
       error = CASE WHEN attempts >= max_attempts
                    THEN format('worker %s stopped renewing its lease; gave up after %s attempts',
                                worker_id, attempts)
                    ELSE format('worker %s stopped renewing its lease; retrying', worker_id)
               END,
       finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
       worker_id = NULL, lease_expires_at = NULL, progress = NULL, updated_at = now()
 WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, status
"""

# Seconds until the earliest pending job becomes due (retry backoff, run_at).
_NEXT_DUE = """
SELECT extract(epoch FROM min(run_at) - now()) AS seconds
  FROM imagen.jobs WHERE status = 'pending'
"""

_RENEW = """
UPDATE imagen.jobs SET lease_expires_at = now() + make_interval(secs => %(lease)s)
 WHERE id = ANY(%(ids)s) AND worker_id = %(me)s AND status = 'running'
RETURNING id
"""


class QueueUnavailable(Exception):
    """The database could not be reached; the caller backs off and tries again."""


@dataclass(frozen=True)
class Job:
    """A claimed job: what to make, and whose it is."""

    id: int
    prompt: str
    owner_user_id: UUID | None = None
    series_id: int | None = None
    series_idx: int | None = None
    negative_prompt: str = ""
    style: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    backend: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 1
    max_attempts: int = 3


@dataclass(frozen=True)
class Completion:
    """What a finished job writes: its images row and its usage row."""

    seed: int
    width: int
    height: int
    steps: int | None
    backend: str
    backend_type: str
    model: str
    mime_type: str
    sha256: str
    bytes: int
    storage_uri: str
    thumbnail: bytes | None
    thumbnail_mime: str | None
    metadata: Mapping[str, Any]
    prompt_sha256: str
    latency_ms: float
    cost_usd: float | None


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with jitter: ~base * 2^(attempt-1), at most `cap` seconds."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * random.uniform(0.75, 1.0)


class PgQueue:
    """The worker's side of the queue (see the module docstring)."""

    def __init__(self, url: str, worker_id: str, lease_s: float = 60.0) -> None:
        self.url = url
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._conn: psycopg.AsyncConnection | None = None
        self._claim_conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the two connections

    # ----------------------------------------------------------- work connection

    async def _run(
        self, query: str, params: Mapping[str, Any] | None, *, claim: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """Run one statement on the work (or claim) connection; (rows, rowcount)."""
        async with self._lock:
            try:
                conn = await self._connection(claim)
                cursor = await conn.execute(query, params)
                rows = await cursor.fetchall() if cursor.description else []
                return rows, cursor.rowcount
            except psycopg.OperationalError as error:
                await self._drop_connections()
                raise QueueUnavailable(f"{redact(self.url)}: {error}") from error

    async def _connection(self, claim: bool) -> psycopg.AsyncConnection:
        conn = self._claim_conn if claim else self._conn
        if conn is not None and not conn.closed:
            return conn
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, row_factory=dict_row
        )
        if claim:
            # A claim does not wait for its WAL flush (~0.6 ms of a ~2 ms pickup on
            # bench/job_queue.py's VM). If the server crashes before the flush, the claim
            # is lost: the job is pending again, and whatever this worker then
            # writes for it is refused by the fence, as for a lease lost. Anything
            # committed after it (a completion) flushes the claim's WAL too.
            await conn.execute("SET synchronous_commit TO off")
            self._claim_conn = conn
        else:
            self._conn = conn
        return conn

    async def _drop_connections(self) -> None:
        conns, self._conn, self._claim_conn = (self._conn, self._claim_conn), None, None
        for conn in conns:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def close(self) -> None:
        async with self._lock:
            await self._drop_connections()

    def _fenced(self, job: Job, **params: Any) -> dict[str, Any]:
        return {"job_id": job.id, "me": self.worker_id, **params}

    async def claim(self) -> Job | None:
        rows, _ = await self._run(_CLAIM, {"me": self.worker_id, "lease": self.lease_s}, claim=True)
        if not rows:
            return None
        row = rows[0]
        return Job(**{**row, "options": row["options"] or {}})

    async def complete(self, job: Job, done: Completion) -> int | None:
        """Record the result; the new image id, or None when the lease was lost."""
        params = self._fenced(
            job,
            series_id=job.series_id,
            series_idx=job.series_idx,
            **{**done.__dict__, "metadata": Jsonb(dict(done.metadata))},
        )
        rows, _ = await self._run(_COMPLETE, params)
        return rows[0]["id"] if rows else None

    async def fail(self, job: Job, error: str) -> bool:
        return await self._write(_FAIL, self._fenced(job, error=error))

    async def retry(self, job: Job, error: str, delay_s: float) -> bool:
        return await self._write(_RETRY, self._fenced(job, error=error, delay=delay_s))

    async def release(self, job: Job) -> bool:
        return await self._write(_RELEASE, self._fenced(job))

    async def progress(self, job: Job, fraction: float) -> bool:
        return await self._write(_PROGRESS, self._fenced(job, progress=fraction))

    async def next_due(self) -> float | None:
        """Seconds until a pending job becomes claimable (<= 0: now); None: none pending."""
        rows, _ = await self._run(_NEXT_DUE, None)
        seconds = rows[0]["seconds"] if rows else None
        return None if seconds is None else float(seconds)

    async def rescue(self) -> list[tuple[int, str]]:
        """Requeue (or fail) jobs whose lease expired; [(job id, new status)]."""
        # No parameters: the %s in its format() calls are SQL's own, and psycopg
        # would rewrite them into $n placeholders if any params (even {}) were given.
        rows, _ = await self._run(_RESCUE, None)
        return [(row["id"], row["status"]) for row in rows]

    def heartbeat(
        self, in_flight: Callable[[], Iterable[int]], on_lost: Callable[[int], None]
    ) -> Heartbeat:
        return Heartbeat(self.url, self.worker_id, self.lease_s, in_flight, on_lost)

    async def _write(self, query: str, params: Mapping[str, Any]) -> bool:
        """A fenced UPDATE; False when it touched nothing (the lease was lost)."""
        _rows, count = await self._run(query, params)
        return count > 0

    # ----------------------------------------------------------- wake-ups

    async def wakeups(self, retry_cap_s: float = 5.0) -> AsyncIterator[None]:
        """Yield once at start and after every (re)connect, then once per notification.

        Notifications sent while disconnected are lost, so each reconnect
        yields at once: the worker then claims whatever arrived meanwhile.
        """
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    failures = 0
                    yield
                    async for _ in conn.notifies():
                        yield
            except psycopg.OperationalError:
                failures += 1
                await asyncio.sleep(min(retry_cap_s, 0.1 * 2**failures))


class Heartbeat(threading.Thread):
    """Renews the leases of in-flight jobs every lease/3 seconds, from its own
    thread and connection, so no generation (however busy) can starve it.

    Leases it finds lost are passed to `on_lost(job_id)` (called in this thread).
    """

    def __init__(
        self,
        url: str,
        worker_id: str,
        lease_s: float,
        in_flight: Callable[[], Iterable[int]],  # the job ids to renew
        on_lost: Callable[[int], None],
    ) -> None:
        super().__init__(name="imagen-heartbeat", daemon=True)
        self.url = url
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.interval = lease_s / 3
        self._in_flight = in_flight
        self._on_lost = on_lost
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            ids = list(self._in_flight())
            if ids:
                self.renew(ids)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def renew(self, ids: Iterable[int]) -> set[int]:
        """Extend the given leases; report and return the ids whose lease is lost."""
        wanted = set(ids)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True)
            rows = self._conn.execute(
                _RENEW, {"ids": sorted(wanted), "me": self.worker_id, "lease": self.lease_s}
            ).fetchall()
        except psycopg.OperationalError:
            # The database is away: try again next beat. If it stays away past the
            # lease, the jobs get rescued and the fenced completion will say so.
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
            return set()
        lost = wanted - {row[0] for row in rows}
        for job_id in lost:
            self._on_lost(job_id)
        return lost
