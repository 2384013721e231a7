"""The job queue on PostgreSQL: the worker's side of `jobs.types.Queue`.

Claim, lease, fenced writes, idempotent completion, rescue, wake-ups.

Every claim sets a new lease token (`jobs.lease_id`), and every later write
a worker makes about that job is fenced on `lease_id = <token> AND status =
'running'`. When such a write affects no row, this claim no longer holds the
job (it was canceled, or rescued and perhaps claimed again, even by this
very worker) and the caller drops its result. Four connections per worker,
none shared across purposes:

- the work connection (asyncio): progress, completion, failure, rescue;
- the claim connection (asyncio): claims only, committed without waiting for
  the WAL flush (see `PgQueue._connection`);
- the listen connection (asyncio, `db.events.listen`): LISTEN on
  `imagen_jobs` (wake-ups) and `imagen_job_cancels` (cancel hints; not the
  busy `imagen_job_events`, whose every claim and progress step would cost
  each pickup a little);
- the heartbeat connection (a thread): lease renewals that a busy
  generation cannot starve, and the worker's presence row
  (`imagen.workers`: inserted at start, its `last_seen` refreshed at every
  beat, deleted at a clean exit; see migrations/0003_workers.sql).

Connection errors become `QueueUnavailable` (retry later); any other error
the database raises becomes `QueueRejected` (that statement cannot succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from imagen_tui.core.events import Connected
from imagen_tui.core.spec import REQUEST_FIELDS, RequestSpec
from imagen_tui.db.connect import first_line, redact
from imagen_tui.db.events import CANCELS_CHANNEL, WAKE_CHANNEL, Notification, listen
from imagen_tui.jobs.types import (
    CancelHint,
    Completion,
    Job,
    PreviewImage,
    QueueRejected,
    QueueUnavailable,
    Signal,
    Wake,
)
from imagen_tui.limits import MAX_WORKER_NOTE_CHARS, STALE_WORKER_KEEP_S
from imagen_tui.retry import Outage
from imagen_tui.text import one_line

log = logging.getLogger("imagen.worker")

_REQUEST_COLUMNS = ", ".join(REQUEST_FIELDS)

_CLAIM = f"""
UPDATE imagen.jobs AS j
   SET status = 'running', attempts = attempts + 1, worker_id = %(me)s,
       lease_id = gen_random_uuid(),
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       started_at = now(), updated_at = now(), progress = 0, error = NULL
 WHERE id = (SELECT id FROM imagen.jobs
              WHERE status = 'pending' AND run_at <= now()
                AND (backend = ANY(%(backends)s::text[])
                     OR (backend IS NULL AND %(accept_default)s))
              ORDER BY priority DESC, id
              FOR UPDATE SKIP LOCKED
              LIMIT 1)
RETURNING {_REQUEST_COLUMNS}, id, lease_id::text AS lease, owner_user_id, series_id,
          series_idx, attempts, max_attempts,
          (SELECT s.created_at FROM imagen.series s WHERE s.id = j.series_id)
              AS series_created_at
"""

_FENCE = "WHERE id = %(job_id)s AND lease_id = %(lease)s AND status = 'running'"

# One statement, so one transaction and one job event that already carries
# the image id. `fenced` is empty when the claim no longer holds the job:
# then nothing is written.
_COMPLETE = f"""
WITH fenced AS (
    SELECT id, owner_user_id FROM imagen.jobs {_FENCE} FOR UPDATE
), image AS (
    INSERT INTO imagen.images (owner_user_id, job_id, series_id, series_idx, seed, width,
                               height, steps, backend, model, mime_type, sha256, bytes,
                               storage_uri, object_uri, thumbnail, thumbnail_mime, metadata,
                               options)
    SELECT owner_user_id, id, %(series_id)s, %(series_idx)s, %(seed)s, %(width)s,
           %(height)s, %(steps)s, %(backend)s, %(model)s, %(mime_type)s, %(sha256)s,
           %(byte_size)s, %(storage_uri)s, %(object_uri)s, %(thumbnail)s, %(thumbnail_mime)s,
           %(metadata)s, %(options)s
      FROM fenced
    RETURNING id
), usage AS (
    INSERT INTO imagen.usage (owner_user_id, job_id, backend, backend_type, model, seed,
                              prompt_sha256, width, height, latency_ms, cost_usd, caller,
                              source, worker_id)
    SELECT owner_user_id, id, %(backend)s, %(backend_type)s, %(model)s, %(seed)s,
           %(prompt_sha256)s, %(width)s, %(height)s, %(latency_ms)s, %(cost_usd)s,
           %(caller)s, 'worker', %(me)s
      FROM fenced
     WHERE %(ledger)s
)
UPDATE imagen.jobs AS j
   SET status = 'done', image_id = image.id, progress = 1, seed = coalesce(j.seed, %(seed)s),
       finished_at = now(), updated_at = now(), lease_expires_at = NULL
  FROM image
 WHERE j.id = %(job_id)s
RETURNING image.id
"""

# After a completion wrote nothing: did an earlier try of the same completion
# commit (its reply lost with the connection)? The lease token stays on a
# done job, so this tells our own committed result from someone else's.
_COMPLETED_BY_US = """
SELECT image_id FROM imagen.jobs
 WHERE id = %(job_id)s AND lease_id = %(lease)s AND status = 'done'
"""

_FAIL = f"""
UPDATE imagen.jobs
   SET status = 'failed', error = %(error)s, seed = coalesce(seed, %(seed)s),
       finished_at = now(), updated_at = now(), lease_expires_at = NULL
 {_FENCE}
"""

_RETRY = f"""
UPDATE imagen.jobs
   SET status = 'pending', error = %(error)s, seed = coalesce(seed, %(seed)s),
       run_at = now() + make_interval(secs => %(delay)s),
       worker_id = NULL, lease_id = NULL, lease_expires_at = NULL, progress = NULL,
       updated_at = now()
 {_FENCE}
"""

# Handing a job back unfinished (a stop): not the job's fault, so the attempt
# does not count.
_RELEASE = f"""
UPDATE imagen.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), worker_id = NULL,
       lease_id = NULL, lease_expires_at = NULL, progress = NULL, updated_at = now()
 {_FENCE}
"""

# The GPU ran out of memory (another server on the card held it): not the job's
# fault, so the attempt does not count, at most %(limit)s times per job.
_HAND_BACK = f"""
UPDATE imagen.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), error = %(error)s,
       oom_handbacks = oom_handbacks + 1, seed = coalesce(seed, %(seed)s),
       run_at = now() + make_interval(secs => %(delay)s),
       worker_id = NULL, lease_id = NULL, lease_expires_at = NULL, progress = NULL,
       updated_at = now()
 {_FENCE} AND oom_handbacks < %(limit)s
"""

_PROGRESS = f"UPDATE imagen.jobs SET progress = %(progress)s {_FENCE}"

# The job's latest preview, and a job event saying so (the payload names the
# step and size, never the picture: listeners read it if they show it). FOR
# SHARE: a completion or cancel committing meanwhile is waited for and seen, so
# no preview outlives its job's run (the trigger of 0008 deletes it then).
_PREVIEW = f"""
WITH job AS (
    SELECT id, series_id, series_idx, progress FROM imagen.jobs {_FENCE} FOR SHARE
), kept AS (
    INSERT INTO imagen.previews (job_id, step, total, width, height, jpeg, updated_at)
    SELECT id, %(step)s, %(total)s, %(width)s, %(height)s, %(jpeg)s, now() FROM job
    ON CONFLICT (job_id) DO UPDATE
       SET step = EXCLUDED.step, total = EXCLUDED.total, width = EXCLUDED.width,
           height = EXCLUDED.height, jpeg = EXCLUDED.jpeg, updated_at = EXCLUDED.updated_at
    RETURNING job_id
)
SELECT pg_notify('imagen_job_events', json_build_object(
           'id', job.id, 'series_id', job.series_id, 'series_idx', job.series_idx,
           'status', 'running', 'progress', job.progress,
           'preview', json_build_object('step', %(step)s::int, 'total', %(total)s::int,
                                        'width', %(width)s::int, 'height', %(height)s::int,
                                        'bytes', octet_length(%(jpeg)s::bytea))
       )::text)
  FROM job JOIN kept ON kept.job_id = job.id
"""

_STATE = "SELECT status, lease_id = %(lease)s AS ours FROM imagen.jobs WHERE id = %(job_id)s"

_RECORDED_FILES = "SELECT storage_uri FROM imagen.images WHERE job_id = ANY(%(job_ids)s)"

_LIVE_LEASES = """
SELECT lease_id::text AS lease FROM imagen.jobs
 WHERE status = 'running' AND lease_expires_at > now() AND lease_id = ANY(%(leases)s::uuid[])
"""

# Jobs whose worker stopped renewing its lease (it died, or lost the database
# for longer than the lease): back to pending, or failed after max_attempts.
# Live workers' jobs have unexpired leases and are never touched.
_RESCUE = """
UPDATE imagen.jobs
   SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
       -- The job's owner reads `error`: no worker id (host:pid), only what happened.
       error = CASE WHEN attempts >= max_attempts
                    THEN format('its worker stopped renewing its lease; gave up after %s attempts',
                                attempts)
                    ELSE 'its worker stopped renewing its lease; retrying'
               END,
       finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
       worker_id = NULL, lease_id = NULL, lease_expires_at = NULL, progress = NULL,
       updated_at = now()
 WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, status
"""

# Seconds until the earliest pending job becomes due (retry backoff, run_at).
# Only jobs this worker may claim: one for another backend, due now, would
# otherwise keep an idle worker polling without pause.
_NEXT_DUE = """
SELECT extract(epoch FROM min(run_at) - now()) AS seconds
  FROM imagen.jobs
 WHERE status = 'pending'
   AND (backend = ANY(%(backends)s::text[]) OR (backend IS NULL AND %(accept_default)s))
"""

_RENEW = """
UPDATE imagen.jobs AS j
   SET lease_expires_at = now() + make_interval(secs => %(lease)s)
  FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[]) AS held (id, lease_id)
 WHERE j.id = held.id AND j.lease_id = held.lease_id AND j.status = 'running'
RETURNING j.id
"""


# The worker's presence row: inserted at the first beat, last_seen refreshed at
# every later one (and the row put back if something deleted it meanwhile).
_ANNOUNCE = """
INSERT INTO imagen.workers (id, host, pid, backends, default_backend, concurrency, lease_s, note)
VALUES (%(id)s, %(host)s, %(pid)s, %(backends)s, %(default_backend)s, %(concurrency)s, %(lease)s,
        %(note)s)
ON CONFLICT (id) DO UPDATE SET last_seen = now(), note = excluded.note
"""

_NOTE = "UPDATE imagen.workers SET note = %(note)s WHERE id = %(id)s"

# Rows of workers that died without withdrawing, stale for long enough that
# nobody needs to be told about them any more.
_PRUNE = """
DELETE FROM imagen.workers
 WHERE last_seen < now() - make_interval(secs => lease_s + %(keep)s)
"""

_WITHDRAW = "DELETE FROM imagen.workers WHERE id = %(id)s"


@dataclass(frozen=True)
class Presence:
    """What a worker announces about itself in `imagen.workers`."""

    worker_id: str
    host: str
    pid: int
    backends: tuple[str, ...]
    concurrency: int
    default_backend: str | None = None  # the instance a job with no backend (NULL) gets


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        spec=RequestSpec.from_row(row),
        lease=row["lease"],
        owner_user_id=row["owner_user_id"],
        series_id=row["series_id"],
        series_idx=row["series_idx"],
        series_created_at=row["series_created_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
    )


def _one_line(error: psycopg.Error, url: str | None = None) -> str:
    """The driver's message on one line (escaped), anything that may be a secret masked."""
    return one_line(first_line(error, url))


class PgQueue:
    """The worker's side of the queue (see the module docstring)."""

    def __init__(
        self, url: str, worker_id: str, lease_s: float = 60.0, *, presence: Presence | None = None
    ) -> None:
        self.url = url
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.presence = presence  # announced by the heartbeat; None: not announced
        self.note: str | None = None  # the presence row's note (set_note)
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._claim_conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the two connections

    # ----------------------------------------------------------- statements

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
                message = _one_line(error, self.url)
                raise QueueUnavailable(f"{redact(self.url)}: {message}") from error
            except psycopg.Error as error:
                raise QueueRejected(_one_line(error)) from error

    async def _connection(self, claim: bool) -> psycopg.AsyncConnection[dict[str, Any]]:
        conn = self._claim_conn if claim else self._conn
        if conn is not None and not conn.closed:
            return conn
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, row_factory=dict_row
        )
        if claim:
            # A claim does not wait for its WAL flush (~0.6 ms of a ~2 ms pickup on
            # bench/job_queue.py's VM). If the server crashes before the flush, the
            # claim is lost and the job is pending again; a new claim of it gets a
            # new lease token, so whatever this worker then writes under the old one
            # is refused by the fence. Anything committed after it (a completion)
            # flushes the claim's WAL too.
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
        # Not under the lock: a statement stuck on a dead server must not hold up a stop.
        await self._drop_connections()

    def _fenced(self, job: Job, **params: Any) -> dict[str, Any]:
        return {"job_id": job.id, "lease": job.lease, **params}

    async def _write(self, query: str, params: Mapping[str, Any]) -> bool:
        """A fenced UPDATE; False when it touched nothing (the claim no longer holds the job)."""
        _rows, count = await self._run(query, params)
        return count > 0

    # ----------------------------------------------------------- the Queue protocol

    async def claim(self, backends: Sequence[str], accept_default: bool) -> Job | None:
        params = {
            "me": self.worker_id,
            "lease": self.lease_s,
            "backends": list(backends),
            "accept_default": accept_default,
        }
        rows, _ = await self._run(_CLAIM, params, claim=True)
        return job_from_row(rows[0]) if rows else None

    async def hand_back(
        self, job: Job, error: str, delay_s: float, seed: int | None, limit: int
    ) -> bool:
        params = self._fenced(job, error=error, delay=delay_s, seed=seed, limit=limit)
        return await self._write(_HAND_BACK, params)

    async def set_note(self, note: str | None) -> None:
        self.note = None if note is None else one_line(note, MAX_WORKER_NOTE_CHARS)
        if self.presence is not None:
            await self._run(_NOTE, {"id": self.presence.worker_id, "note": self.note})

    async def complete(self, job: Job, done: Completion) -> int | None:
        params = self._fenced(
            job,
            me=self.worker_id,
            series_id=job.series_id,
            series_idx=job.series_idx,
            **{
                **done.__dict__,
                "metadata": Jsonb(dict(done.metadata)),
                "options": Jsonb(dict(done.options)),
            },
        )
        rows, _ = await self._run(_COMPLETE, params)
        if rows:
            return int(rows[0]["id"])
        rows, _ = await self._run(_COMPLETED_BY_US, self._fenced(job))
        return int(rows[0]["image_id"]) if rows and rows[0]["image_id"] is not None else None

    async def fail(self, job: Job, error: str, seed: int | None) -> bool:
        return await self._write(_FAIL, self._fenced(job, error=error, seed=seed))

    async def retry(self, job: Job, error: str, delay_s: float, seed: int | None) -> bool:
        return await self._write(_RETRY, self._fenced(job, error=error, delay=delay_s, seed=seed))

    async def release(self, job: Job) -> bool:
        return await self._write(_RELEASE, self._fenced(job))

    async def progress(self, job: Job, fraction: float) -> bool:
        return await self._write(_PROGRESS, self._fenced(job, progress=fraction))

    async def preview(self, job: Job, preview: PreviewImage) -> bool:
        params = self._fenced(job, **preview.__dict__)
        rows, _ = await self._run(_PREVIEW, params)
        return bool(rows)

    async def lost(self, job: Job) -> str | None:
        rows, _ = await self._run(_STATE, self._fenced(job))
        if not rows:
            return "the job was deleted"
        status, ours = rows[0]["status"], rows[0]["ours"]
        if status == "running" and ours:
            return None
        if status == "canceled":
            return "canceled"
        return "taken over after its lease expired" if not ours else f"now {status}"

    async def recorded_files(self, job_ids: Sequence[int]) -> set[str]:
        rows, _ = await self._run(_RECORDED_FILES, {"job_ids": list(job_ids)})
        return {row["storage_uri"] for row in rows}

    async def live_leases(self, leases: Sequence[str]) -> set[str]:
        rows, _ = await self._run(_LIVE_LEASES, {"leases": list(leases)})
        return {row["lease"] for row in rows}

    async def next_due(self, backends: Sequence[str], accept_default: bool) -> float | None:
        params = {"backends": list(backends), "accept_default": accept_default}
        rows, _ = await self._run(_NEXT_DUE, params)
        seconds = rows[0]["seconds"] if rows else None
        return None if seconds is None else float(seconds)

    async def rescue(self) -> list[tuple[int, str]]:
        # No parameters: the %s in its format() calls are SQL's own, and psycopg
        # would rewrite them into $n placeholders if any params (even {}) were given.
        rows, _ = await self._run(_RESCUE, None)
        return [(row["id"], row["status"]) for row in rows]

    async def signals(self) -> AsyncIterator[Signal]:
        """Wake-ups (and one after every reconnect) and cancel hints."""
        async for item in listen(self.url, (WAKE_CHANNEL, CANCELS_CHANNEL), label="listener"):
            if isinstance(item, Connected):
                yield Wake()  # notifications sent while disconnected are lost
            elif isinstance(item, Notification):
                if item.channel == WAKE_CHANNEL:
                    yield Wake()
                elif item.payload.isdigit():  # a job id; anything else is not ours
                    yield CancelHint(int(item.payload))

    def heartbeat(
        self, in_flight: Callable[[], Mapping[int, str]], on_lost: Callable[[int], object]
    ) -> Heartbeat:
        return Heartbeat(
            self.url,
            self.lease_s,
            in_flight,
            on_lost,
            presence=self.presence,
            note=lambda: self.note,
        )


class Heartbeat(threading.Thread):
    """Renews the leases of in-flight jobs every lease/3 seconds, from its own
    thread and connection, so no generation (however busy) can starve it.

    Leases it finds lost are passed to `on_lost(job_id)` (called in this thread).
    With a `presence`, it also announces the worker at once (pruning rows of
    long-dead workers), refreshes its row's `last_seen` at every beat and
    deletes the row when stopped, or as soon as `withdraw()` asks (a stopping
    worker: offline at once, while it still renews the leases of its jobs).
    """

    # How long `stop()` waits for the thread to withdraw the presence row.
    STOP_WAIT_S = 5.0

    def __init__(
        self,
        url: str,
        lease_s: float,
        in_flight: Callable[[], Mapping[int, str]],  # job id -> lease token, to renew
        on_lost: Callable[[int], object],
        *,
        presence: Presence | None = None,
        note: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(name="imagen-heartbeat", daemon=True)
        self._note = note
        self.url = url
        self.lease_s = lease_s
        self.interval = lease_s / 3
        self.presence = presence
        self._in_flight = in_flight
        self._on_lost = on_lost
        self._stop_event = threading.Event()
        self._poke = threading.Event()  # wakes the thread early: stop() or withdraw()
        self._withdrawing = False  # announce no more; delete the row
        self._withdrawn = False
        self._conn: psycopg.Connection[Any] | None = None
        self._outage = Outage(log, "heartbeat")

    def stop(self) -> None:
        """Stop beating; with a presence, wait (a few seconds at most) for the row
        to be withdrawn, so a clean exit leaves no row behind."""
        self._stop_event.set()
        self._poke.set()
        if self.presence is not None and self.is_alive() and self is not threading.current_thread():
            self.join(self.STOP_WAIT_S)

    def withdraw(self) -> None:
        """Delete the presence row now (in this thread, without waiting) and announce
        no more; leases are still renewed until `stop()`. Safe from any thread."""
        self._withdrawing = True
        self._poke.set()

    def run(self) -> None:
        if self.presence is not None:
            self._statement(_PRUNE, {"keep": STALE_WORKER_KEEP_S})
            if not self._withdrawing:
                self.announce()
        next_beat = time.monotonic() + self.interval
        while not self._stop_event.is_set():
            self._poke.wait(max(next_beat - time.monotonic(), 0.0))
            self._poke.clear()
            if self._withdrawing:
                self._withdraw()
            if self._stop_event.is_set() or time.monotonic() < next_beat:
                continue  # woken early: stop, or withdraw (done above)
            next_beat = time.monotonic() + self.interval
            held = dict(self._in_flight())
            if held:
                self.renew(held)
            if self.presence is not None and not self._withdrawing:
                self.announce()
        self._withdraw()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _withdraw(self) -> None:
        """Delete the presence row unless done (tried again at the next beat if it failed)."""
        if self.presence is not None and not self._withdrawn:
            done = self._statement(_WITHDRAW, {"id": self.presence.worker_id})
            self._withdrawn = done is not None

    def announce(self) -> bool:
        """Insert or refresh the presence row; False if the database could not be reached."""
        if self.presence is None:
            return False
        presence = self.presence
        params = {
            "id": presence.worker_id,
            "host": presence.host,
            "pid": presence.pid,
            "backends": list(presence.backends),
            "default_backend": presence.default_backend,
            "concurrency": presence.concurrency,
            "lease": self.lease_s,
            "note": self._note(),
        }
        return self._statement(_ANNOUNCE, params) is not None

    def _statement(self, query: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
        """Run one statement on the heartbeat's connection; None when it failed
        (logged once per outage; tried again at the next beat)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True)
            cursor = self._conn.execute(query, params)
            rows = cursor.fetchall() if cursor.description else []
        except psycopg.Error as error:
            # The database is away: try again next beat. If it stays away past the
            # lease, the jobs get rescued and the fenced completion will say so.
            self._outage.failed(_one_line(error, self.url))
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
            return None
        self._outage.recovered()
        return rows

    def renew(self, held: Mapping[int, str]) -> set[int]:
        """Extend the given leases; report and return the job ids whose lease is lost."""
        ids = sorted(held)
        rows = self._statement(
            _RENEW, {"ids": ids, "leases": [held[i] for i in ids], "lease": self.lease_s}
        )
        if rows is None:
            return set()
        lost = set(ids) - {row[0] for row in rows}
        for job_id in lost:
            self._on_lost(job_id)
        return lost
