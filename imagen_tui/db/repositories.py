"""The statements front ends need, as typed queries and their runner.

Each function here builds a `Query[T]`: one SQL statement (so one
transaction, atomic by itself), its parameters, and how its rows become a
typed result `T`. `fetch(conn, query)` runs it on a psycopg connection, so
a CLI command and the TUI (through the services' Session, in its thread
workers) share every statement without writing it twice:

    jobs = fetch(conn, jobs_page(status="failed", limit=20))

A query whose rows say the input was wrong (no such series, a try without an
image, a job that cannot be canceled) raises `InputError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from imagen_tui.core.ledger import UsageEntry

# The rows live in core (front ends read them without this driver); built here.
from imagen_tui.core.rows import GalleryCard as GalleryCard
from imagen_tui.core.rows import ImageRow as ImageRow
from imagen_tui.core.rows import JobChange as JobChange
from imagen_tui.core.rows import JobRow as JobRow
from imagen_tui.core.rows import PreviewRow as PreviewRow
from imagen_tui.core.rows import Recalled as Recalled
from imagen_tui.core.rows import Search as Search
from imagen_tui.core.rows import SeriesDetail as SeriesDetail
from imagen_tui.core.rows import SeriesRow as SeriesRow
from imagen_tui.core.rows import Submitted as Submitted
from imagen_tui.core.rows import TryRow as TryRow
from imagen_tui.core.rows import UsageRow as UsageRow
from imagen_tui.core.rows import UsageTotal as UsageTotal
from imagen_tui.core.rows import WorkerPresence as WorkerPresence
from imagen_tui.core.rows import uri_to_path as uri_to_path
from imagen_tui.core.spec import REQUEST_FIELDS, RequestSpec
from imagen_tui.errors import InputError
from imagen_tui.limits import (
    CANCELABLE_STATUSES,
    JOB_STATUSES,
    RETRYABLE_STATUSES,
    USAGE_GROUPS,
)

T = TypeVar("T")
Row = dict[str, Any]


@dataclass(frozen=True)
class Query(Generic[T]):
    """One statement, its parameters, and how its rows become a `T`."""

    sql: str
    params: Mapping[str, Any]
    decode: Callable[[list[Row]], T]


# Columns that say which machine and account ran a job (images.storage_uri,
# usage.caller, usage.worker_id, jobs.worker_id): users (Supabase's
# `authenticated`) may not read them (migration 0007). A query marks each use as
# FLEET + column; `fetch` sends the column on a connection whose role may read
# it, NULL on any other, so the same statements serve the operator and a user.
FLEET = "/*fleet*/"
_FLEET_RE = re.compile(re.escape(FLEET) + r"[A-Za-z_.]+")


def _sees_fleet(conn: psycopg.Connection[Any]) -> bool:
    """Whether the current role may read those columns (asked each time: a
    connection's role may change, as PostgREST's does per request)."""
    row = conn.execute(
        "SELECT has_column_privilege('imagen.images', 'storage_uri', 'SELECT')"
    ).fetchone()
    return bool(row and row[0])


def _statement(conn: psycopg.Connection[Any], sql: str) -> str:
    if FLEET not in sql:
        return sql
    if _sees_fleet(conn):
        return sql.replace(FLEET, "")
    return _FLEET_RE.sub("NULL::text", sql)


def fetch(conn: psycopg.Connection[Any], query: Query[T]) -> T:
    """Run `query` on a (sync) connection."""
    sql = _statement(conn, query.sql)
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql, query.params)
        rows = cursor.fetchall() if cursor.description else []
    return query.decode(rows)


# --------------------------------------------------------------------------- rows


def _build(cls: type[T], row: Row) -> T:
    return cls(**{name: row[name] for name in cls.__dataclass_fields__})  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- reads

# A pending job no online worker can take: none serves its backend, or (a job
# with no backend) none has a default. Online as in 0003_workers.sql.
_UNSERVED = """(j.status = 'pending' AND NOT EXISTS (
        SELECT 1 FROM imagen.workers w
         WHERE w.last_seen >= now() - make_interval(secs => w.lease_s)
           AND (j.backend = ANY(w.backends)
                OR (j.backend IS NULL AND w.default_backend IS NOT NULL))))"""

# The backend shown: the job's instance, else (a job with no backend) the one
# its image was made with; NULL while a worker's default has yet to decide.
_JOB_SELECT = f"""
SELECT j.id, j.status, j.series_id, j.series_idx, j.prompt,
       coalesce(j.backend, i.backend) AS backend,
       coalesce(i.seed, j.seed) AS seed, j.attempts, j.max_attempts, j.progress, j.error,
       j.image_id, /*fleet*/i.storage_uri AS storage_uri, j.created_at, j.started_at,
       j.finished_at, i.object_uri, {_UNSERVED} AS unserved, j.steps
  FROM imagen.jobs j LEFT JOIN imagen.images i ON i.id = j.image_id
"""


def jobs_page(
    status: str | None = None, limit: int = 50, before_id: int | None = None
) -> Query[list[JobRow]]:
    """The newest jobs (older than `before_id`, for paging), optionally of one status."""
    if status is not None and status not in JOB_STATUSES:
        raise InputError("status", f"{status!r} is not a job status; use {', '.join(JOB_STATUSES)}")
    return Query(
        f"""{_JOB_SELECT}
         WHERE (%(status)s::text IS NULL OR j.status = %(status)s)
           AND (%(before)s::bigint IS NULL OR j.id < %(before)s)
         ORDER BY j.id DESC
         LIMIT %(limit)s""",
        {"status": status, "limit": limit, "before": before_id},
        lambda rows: [_build(JobRow, row) for row in rows],
    )


def jobs_by_id(ids: Sequence[int]) -> Query[list[JobRow]]:
    """These jobs (a live view re-reading rows its events named), newest first."""
    return Query(
        f"{_JOB_SELECT} WHERE j.id = ANY(%(ids)s) ORDER BY j.id DESC",
        {"ids": list(ids)},
        lambda rows: [_build(JobRow, row) for row in rows],
    )


def job_preview(job_id: int) -> Query[PreviewRow | None]:
    """The latest preview of a running job; None when it has none (or it is not
    the caller's: the table's row-level security is that of jobs)."""
    return Query(
        """SELECT job_id, step, total, width, height, jpeg, updated_at
             FROM imagen.previews WHERE job_id = %(id)s""",
        {"id": job_id},
        lambda rows: (
            _build(PreviewRow, {**rows[0], "jpeg": bytes(rows[0]["jpeg"])}) if rows else None
        ),
    )


def like_pattern(text: str) -> str | None:
    """An ILIKE pattern matching `text` anywhere, its wildcards taken literally
    (None: no text, no filter)."""
    text = text.strip()
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search_params(search: Search | None) -> dict[str, Any]:
    search = search or Search()
    return {"pattern": like_pattern(search.text), "backend": search.backend, "since": search.since}


# Rows may be filtered by prompt text (ILIKE: served by the trigram indexes of
# 0009 where the server has pg_trgm, a scan of the user's own rows otherwise),
# by backend and by date. Row-level security keeps them to the user's rows.
_SERIES_SEARCH = """(%(pattern)s::text IS NULL OR s.prompt ILIKE %(pattern)s)
           AND (%(since)s::timestamptz IS NULL OR s.created_at >= %(since)s)
           AND (%(backend)s::text IS NULL OR s.backend = %(backend)s
                OR EXISTS (SELECT 1 FROM imagen.images b
                            WHERE b.series_id = s.id AND b.backend = %(backend)s))"""


def series_page(
    limit: int = 20, before_id: int | None = None, search: Search | None = None
) -> Query[list[SeriesRow]]:
    """The newest series (older than `before_id`), those matching `search` if given."""
    return Query(
        f"""SELECT s.id, s.prompt, s.style, s.count, s.created_at,
                  count(j.id) FILTER (WHERE j.status = 'done') AS done,
                  count(j.id) FILTER (WHERE j.status = 'failed') AS failed,
                  (SELECT w.series_idx FROM imagen.images w
                    WHERE w.id = s.selected_image_id) AS winner_idx
             FROM imagen.series s LEFT JOIN imagen.jobs j ON j.series_id = s.id
            WHERE (%(before)s::bigint IS NULL OR s.id < %(before)s)
              AND {_SERIES_SEARCH}
            GROUP BY s.id
            ORDER BY s.id DESC
            LIMIT %(limit)s""",
        {"limit": limit, "before": before_id, **_search_params(search)},
        lambda rows: [_build(SeriesRow, row) for row in rows],
    )


_SERIES_COLUMNS = ", ".join(f"s.{name}" for name in REQUEST_FIELDS)


def series_detail(series_id: int) -> Query[SeriesDetail]:
    """A series with its tries (jobs joined with their images), in try order."""

    def decode(rows: list[Row]) -> SeriesDetail:
        if not rows:
            raise InputError(
                "series", f"no series {series_id}; list them with `imagen series list`"
            )
        first = rows[0]
        tries = tuple(
            TryRow(
                idx=row["idx"],
                job_id=row["job_id"],
                status=row["status"],
                progress=row["progress"],
                error=row["error"],
                seed=row["try_seed"],
                image_id=row["image_id"],
                storage_uri=row["storage_uri"],
                width=row["image_width"],
                height=row["image_height"],
                model=row["model"],
                backend=row["image_backend"],
                winner=row["image_id"] is not None
                and row["image_id"] == first["selected_image_id"],
                object_uri=row["object_uri"],
                job_backend=row["job_backend"],
                unserved=bool(row["unserved"]),
            )
            for row in rows
            if row["job_id"] is not None
        )
        return SeriesDetail(
            id=first["series_id"],
            spec=RequestSpec.from_row(first),
            count=first["count"],
            selected_image_id=first["selected_image_id"],
            created_at=first["created_at"],
            tries=tries,
        )

    return Query(
        f"""SELECT s.id AS series_id, {_SERIES_COLUMNS}, s.count, s.selected_image_id,
                   s.created_at, j.series_idx AS idx, j.id AS job_id, j.status, j.progress,
                   j.error, coalesce(i.seed, j.seed) AS try_seed, i.id AS image_id,
                   /*fleet*/i.storage_uri AS storage_uri, i.width AS image_width,
                   i.height AS image_height, i.model,
                   i.backend AS image_backend, i.object_uri, j.backend AS job_backend,
                   {_UNSERVED} AS unserved
              FROM imagen.series s
              LEFT JOIN imagen.jobs j ON j.series_id = s.id
              LEFT JOIN imagen.images i ON i.id = j.image_id
             WHERE s.id = %(series)s
             ORDER BY j.series_idx""",
        {"series": series_id},
        decode,
    )


_IMAGE_NAMES = """id, job_id, series_id, series_idx, seed, width, height, backend, model,
    storage_uri, thumbnail, thumbnail_mime, metadata, created_at, object_uri"""


def _image_columns(prefix: str = "") -> str:
    names = [name.strip() for name in _IMAGE_NAMES.split(",")]
    return ", ".join(
        f"{FLEET}{prefix}{name} AS {name}" if name == "storage_uri" else f"{prefix}{name}"
        for name in names
    )


_IMAGE_COLUMNS = _image_columns()


def series_images(series_id: int) -> Query[list[ImageRow]]:
    """The images of a series with their thumbnails, in try order."""
    return Query(
        f"""SELECT {_IMAGE_COLUMNS} FROM imagen.images
             WHERE series_id = %(series)s ORDER BY series_idx, id""",
        {"series": series_id},
        lambda rows: [_image(row) for row in rows],
    )


def _image(row: Row) -> ImageRow:
    thumbnail = row["thumbnail"]
    return _build(ImageRow, {**row, "thumbnail": None if thumbnail is None else bytes(thumbnail)})


def gallery(
    limit: int = 100, before_id: int | None = None, search: Search | None = None
) -> Query[list[GalleryCard]]:
    """Solo images (`series_id IS NULL`) and one card per series that has an image,
    newest first (by the cover image's id; `before_id` pages on it); those
    matching `search` (its prompt, the cover's backend, made since) if given."""

    def decode(rows: list[Row]) -> list[GalleryCard]:
        return [
            GalleryCard(
                image=_image(row),
                prompt=row["card_prompt"] or "",
                series_id=row["card_series"],
                series_count=row["card_count"],
                series_images=row["card_images"],
                winner=row["card_winner"],
            )
            for row in rows
        ]

    columns = _image_columns("i.")
    return Query(
        f"""SELECT * FROM (
                SELECT {columns}, coalesce(j.prompt, i.metadata->>'prompt') AS card_prompt,
                       NULL::bigint AS card_series, 1 AS card_count, 1::bigint AS card_images,
                       false AS card_winner
                  FROM imagen.images i LEFT JOIN imagen.jobs j ON j.id = i.job_id
                 WHERE i.series_id IS NULL
                UNION ALL (
                SELECT DISTINCT ON (s.id) {columns}, s.prompt, s.id, s.count,
                       count(*) OVER (PARTITION BY s.id),
                       i.id IS NOT DISTINCT FROM s.selected_image_id
                  FROM imagen.series s JOIN imagen.images i ON i.series_id = s.id
                 ORDER BY s.id, i.id IS NOT DISTINCT FROM s.selected_image_id DESC,
                          i.series_idx, i.id)
            ) AS cards
             WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
               AND (%(pattern)s::text IS NULL OR card_prompt ILIKE %(pattern)s)
               AND (%(backend)s::text IS NULL OR backend = %(backend)s)
               AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
             ORDER BY id DESC
             LIMIT %(limit)s""",
        {"limit": limit, "before": before_id, **_search_params(search)},
        decode,
    )


def recall(job_id: int | None = None, image_id: int | None = None) -> Query[Recalled]:
    """What a job asked for (or the job that made an image): its request, the
    seed the try used (the image's, once known), and its series' tries."""
    what = f"job {job_id}" if job_id is not None else f"image {image_id}"
    columns = ", ".join(f"j.{name}" for name in REQUEST_FIELDS if name != "seed")

    def decode(rows: list[Row]) -> Recalled:
        if not rows:
            field = "job" if job_id is not None else "image"
            raise InputError(field, f"no {what} with a job to recall (it may have been deleted)")
        row = rows[0]
        return Recalled(
            job_id=row["job_id"],
            series_id=row["series_id"],
            series_idx=row["series_idx"],
            spec=RequestSpec.from_row(row),
            tries=int(row["tries"]),
        )

    return Query(
        f"""SELECT j.id AS job_id, j.series_id, j.series_idx, {columns},
                   coalesce(i.seed, j.seed) AS seed, coalesce(s.count, 1) AS tries
              FROM imagen.jobs j
              LEFT JOIN imagen.images i ON i.id = j.image_id
              LEFT JOIN imagen.series s ON s.id = j.series_id
             WHERE j.id = coalesce(%(job)s::bigint,
                                   (SELECT job_id FROM imagen.images WHERE id = %(image)s))""",
        {"job": job_id, "image": image_id},
        decode,
    )


def prompt_history(search: str = "", limit: int = 50) -> Query[list[str]]:
    """The user's earlier prompts (row-level security: only their own jobs), newest
    first, each once; those containing `search` (case-insensitive) if given."""
    return Query(
        """SELECT prompt FROM imagen.jobs
            WHERE (%(pattern)s::text IS NULL OR prompt ILIKE %(pattern)s)
            GROUP BY prompt
            ORDER BY max(id) DESC
            LIMIT %(limit)s""",
        {"pattern": like_pattern(search), "limit": limit},
        lambda rows: [row["prompt"] for row in rows],
    )


def queue_counts() -> Query[dict[str, int]]:
    def decode(rows: list[Row]) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({row["status"]: int(row["n"]) for row in rows})
        return counts

    return Query("SELECT status, count(*) AS n FROM imagen.jobs GROUP BY status", {}, decode)


def worker_presences() -> Query[list[WorkerPresence]]:
    """Every announced worker, online ones first, then by start time."""

    def decode(rows: list[Row]) -> list[WorkerPresence]:
        return [_build(WorkerPresence, {**row, "backends": tuple(row["backends"])}) for row in rows]

    sql = """
    SELECT id, host, pid, backends, default_backend, concurrency, lease_s, started_at, last_seen,
           note,
           extract(epoch FROM now() - last_seen)::float8 AS seen_ago_s,
           last_seen >= now() - make_interval(secs => lease_s) AS online
      FROM imagen.workers
     ORDER BY online DESC, started_at, id
    """
    return Query(sql, {}, decode)


def pending_backends() -> Query[list[str | None]]:
    """The backend instances pending jobs name (None: a job naming none, which
    the default of whichever worker takes it renders), each once."""

    def decode(rows: list[Row]) -> list[str | None]:
        return [row["backend"] for row in rows]

    sql = "SELECT DISTINCT backend FROM imagen.jobs WHERE status = 'pending'"
    return Query(sql, {}, decode)


def jobs_running_on(worker_id: str) -> Query[list[int]]:
    """The ids of the jobs a worker holds now (running under its claim), oldest first."""
    return Query(
        """SELECT id FROM imagen.jobs
            WHERE status = 'running' AND worker_id = %(worker)s ORDER BY id""",
        {"worker": worker_id},
        lambda rows: [int(row["id"]) for row in rows],
    )


# --------------------------------------------------------------------------- writes


def submit_series(spec: RequestSpec, count: int) -> Query[Submitted]:
    """Insert a series and its `count` jobs in one statement (one transaction and one
    wake-up). Try i gets seed + i - 1, or its own random seed when `spec.seed` is None.
    The spec must be checked first (`RequestSpec.checked`, `try_seeds`)."""
    columns = ", ".join(REQUEST_FIELDS)
    values = ", ".join(f"%({name})s" for name in REQUEST_FIELDS)
    per_try = ", ".join(
        "s.seed + (i - 1)" if name == "seed" else f"s.{name}" for name in REQUEST_FIELDS
    )
    row = {**spec.to_row(), "options": Jsonb(dict(spec.options)), "count": count}

    def decode(rows: list[Row]) -> Submitted:
        return Submitted(rows[0]["series_id"], tuple(rows[0]["job_ids"]))

    return Query(
        f"""WITH s AS (
                INSERT INTO imagen.series ({columns}, count) VALUES ({values}, %(count)s)
                RETURNING *
            ), j AS (
                INSERT INTO imagen.jobs (series_id, series_idx, {columns})
                SELECT s.id, i, {per_try}
                  FROM s, generate_series(1, s.count) AS i
                 ORDER BY i
                RETURNING id
            )
            SELECT (SELECT id FROM s) AS series_id, array_agg(j.id ORDER BY j.id) AS job_ids
              FROM j""",
        row,
        decode,
    )


def pick_winner(series_id: int, idx: int | None) -> Query[int | None]:
    """Mark try `idx` of the series as its winner (None: no winner); the image id.

    One statement: it reads the try and updates the series only when that try
    has an image, and its rows say why not otherwise.
    """

    def decode(rows: list[Row]) -> int | None:
        if not rows:
            raise InputError(
                "series", f"no series {series_id}; list them with `imagen series list`"
            )
        row = rows[0]
        if idx is None:
            return None
        if row["status"] is None:
            raise InputError("idx", f"series {series_id} has tries 1 to {row['count']}, not {idx}")
        if row["image_id"] is None:
            status = row["status"]
            if status in RETRYABLE_STATUSES:
                why = f"it {status}" if status == "failed" else "it was canceled"
                fix = f"retry it with `imagen jobs retry {row['job_id']}`"
                raise InputError(
                    "idx", f"try {idx} of series {series_id} has no image: {why}; {fix}"
                )
            raise InputError(
                "idx", f"try {idx} of series {series_id} has no image yet (it is {status})"
            )
        return int(row["image_id"])

    return Query(
        """WITH s AS (SELECT id, count FROM imagen.series WHERE id = %(series)s),
                t AS (SELECT j.id AS job_id, j.status, j.image_id FROM imagen.jobs j
                       WHERE j.series_id = %(series)s AND j.series_idx = %(idx)s),
                u AS (UPDATE imagen.series SET selected_image_id = (SELECT image_id FROM t)
                       WHERE id = %(series)s
                         AND (%(idx)s::int IS NULL
                              OR EXISTS (SELECT 1 FROM t WHERE image_id IS NOT NULL))
                      RETURNING id)
           SELECT s.count, t.job_id, t.status, t.image_id, (SELECT count(*) FROM u) AS updated
             FROM s LEFT JOIN t ON true""",
        {"series": series_id, "idx": idx},
        decode,
    )


def _change_status(
    ids: Sequence[int], to: str, allowed: Sequence[str], verb: str
) -> Query[list[JobChange]]:
    """Move every job in `ids` to `to`, all or none: refused (InputError naming the
    first job at fault) unless each exists and is in one of `allowed`."""
    wanted = sorted(set(ids))

    def decode(rows: list[Row]) -> list[JobChange]:
        found = {row["id"]: row for row in rows}
        for job_id in wanted:
            row = found.get(job_id)
            if row is None:
                raise InputError("job", f"no job {job_id}; list them with `imagen jobs`")
            if row["was"] not in allowed:
                raise InputError(
                    "job",
                    f"job {job_id} is {row['was']}; only {' or '.join(allowed)} jobs can be {verb}",
                )
        return [JobChange(row["id"], row["status"], row["was"]) for row in rows]

    return Query(
        """WITH wanted AS (
                SELECT id, status FROM imagen.jobs WHERE id = ANY(%(ids)s) FOR UPDATE
            ), verdict AS (
                SELECT count(*) = cardinality(%(ids)s::bigint[])
                       AND coalesce(bool_and(status = ANY(%(allowed)s)), false) AS ok
                  FROM wanted
            ), changed AS (
                UPDATE imagen.jobs AS j SET status = %(to)s
                  FROM verdict WHERE verdict.ok AND j.id IN (SELECT id FROM wanted)
                RETURNING j.id, j.status
            )
            SELECT w.id, coalesce(c.status, w.status) AS status, w.status AS was
              FROM wanted w LEFT JOIN changed c ON c.id = w.id
             ORDER BY w.id""",
        {"ids": wanted, "to": to, "allowed": list(allowed)},
        decode,
    )


def cancel_jobs(ids: Sequence[int]) -> Query[list[JobChange]]:
    """Cancel pending or running jobs (a running one's worker stops it at once)."""
    return _change_status(ids, "canceled", CANCELABLE_STATUSES, "canceled")


def retry_jobs(ids: Sequence[int]) -> Query[list[JobChange]]:
    """Queue failed or canceled jobs again: same parameters and seed, fresh attempts."""
    return _change_status(ids, "pending", RETRYABLE_STATUSES, "retried")


# --------------------------------------------------------------------------- the ledger


_USAGE_FIELDS = tuple(f.name for f in fields(UsageEntry))  # the columns a caller provides
_USAGE_COLUMNS = ", ".join(_USAGE_FIELDS)


def record_usage(entry: UsageEntry) -> Query[int]:
    """Append one usage row (`imagen generate`'s; the worker's goes with its image)."""
    values = ", ".join(f"%({name})s" for name in _USAGE_FIELDS)
    return Query(
        f"INSERT INTO imagen.usage ({_USAGE_COLUMNS}) VALUES ({values}) RETURNING id",
        entry.__dict__,
        lambda rows: int(rows[0]["id"]),
    )


_WINDOW = """(%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)"""


def usage_totals(
    by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    utc_offset: timedelta = timedelta(0),
) -> Query[list[UsageTotal]]:
    """Totals per `by` (backend, model, caller, or day in the given UTC offset),
    newest day first or by name, then the grand total (key None). Costs are
    summed exactly (numeric); `until` is exclusive."""
    if by not in USAGE_GROUPS:
        raise InputError("by", f"{by!r} is not one of {', '.join(USAGE_GROUPS)}")
    key = "((created_at AT TIME ZONE %(offset)s::interval)::date)::text" if by == "day" else by
    if by == "caller":
        key = FLEET + key
    order = "key DESC" if by == "day" else "key"
    sql = f"""
SELECT {key} AS key, GROUPING({key}) = 1 AS is_total, count(*) AS count,
       count(cost_usd) AS priced, coalesce(sum(cost_usd), 0) AS total_cost,
       round(avg(cost_usd), 6) AS mean_cost,
       coalesce(avg(latency_ms), 0)::float8 AS mean_latency_ms
  FROM imagen.usage
 WHERE {_WINDOW}
 GROUP BY GROUPING SETS (({key}), ())
 ORDER BY is_total, {order}
"""

    def decode(rows: list[Row]) -> list[UsageTotal]:
        return [
            UsageTotal(
                key=None if row["is_total"] else row["key"],
                count=int(row["count"]),
                priced=int(row["priced"]),
                total_cost=Decimal(row["total_cost"]),
                mean_cost=None if row["mean_cost"] is None else Decimal(row["mean_cost"]),
                mean_latency_ms=float(row["mean_latency_ms"]),
            )
            for row in rows
        ]

    params = {"since": since, "until": until, "offset": utc_offset}
    return Query(sql, params, decode)


def usage_rows(
    since: datetime | None = None, until: datetime | None = None, limit: int = 1000
) -> Query[list[UsageRow]]:
    """The raw rows in the window, oldest first (at most `limit`)."""
    columns = ", ".join(
        f"{FLEET}{name} AS {name}" if name in ("caller", "worker_id") else name
        for name in _USAGE_FIELDS
    )
    sql = f"""
SELECT id, created_at, {columns}
  FROM imagen.usage
 WHERE {_WINDOW}
 ORDER BY created_at, id
 LIMIT %(limit)s
"""
    params = {"since": since, "until": until, "limit": limit}
    return Query(sql, params, lambda rows: [_build(UsageRow, row) for row in rows])
