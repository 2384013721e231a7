"""The queries front ends need: submit a series, list jobs and series, show a
series with its images, pick a winner, count the queue. Front ends call these
and never write SQL themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from imagen_tui.errors import InputError

JOB_STATUSES = ("pending", "running", "done", "failed", "canceled")


@dataclass(frozen=True)
class NewSeries:
    prompt: str
    count: int = 1
    negative_prompt: str = ""
    style: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None  # try i gets seed + i - 1; None: each try a random seed
    backend: str | None = None  # None: the worker's default backend
    options: dict[str, Any] | None = None


def submit_series(conn: psycopg.Connection, new: NewSeries) -> tuple[int, list[int]]:
    """Insert a series and its `count` jobs in one transaction; (series id, job ids)."""
    params = {**new.__dict__, "options": Jsonb(new.options or {})}
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO imagen.series (prompt, negative_prompt, style, width, height, steps,
                                          seed, backend, count)
               VALUES (%(prompt)s, %(negative_prompt)s, %(style)s, %(width)s, %(height)s,
                       %(steps)s, %(seed)s, %(backend)s, %(count)s)
               RETURNING id""",
            params,
        ).fetchone()
        assert row is not None
        series_id = row[0]
        # One INSERT statement for all tries: one wake-up notification.
        jobs = conn.execute(
            """INSERT INTO imagen.jobs (series_id, series_idx, prompt, negative_prompt, style,
                                        width, height, steps, seed, backend, options)
               SELECT %(series_id)s, i, %(prompt)s, %(negative_prompt)s, %(style)s, %(width)s,
                      %(height)s, %(steps)s, %(seed)s::bigint + i - 1, %(backend)s, %(options)s
                 FROM generate_series(1, %(count)s) AS i
                ORDER BY i
               RETURNING id""",
            {**params, "series_id": series_id},
        ).fetchall()
    return series_id, sorted(job[0] for job in jobs)


def list_jobs(
    conn: psycopg.Connection, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT j.id, j.status, j.series_id, j.series_idx, j.prompt, j.backend,
                      coalesce(i.seed, j.seed) AS seed, j.attempts, j.progress, j.error,
                      j.created_at, i.storage_uri
                 FROM imagen.jobs j LEFT JOIN imagen.images i ON i.id = j.image_id
                WHERE %(status)s::text IS NULL OR j.status = %(status)s
                ORDER BY j.id DESC
                LIMIT %(limit)s""",
            {"status": status, "limit": limit},
        ).fetchall()


def list_series(conn: psycopg.Connection, limit: int = 20) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT s.id, s.prompt, s.style, s.count, s.created_at,
                      count(*) FILTER (WHERE j.status = 'done') AS done,
                      count(*) FILTER (WHERE j.status = 'failed') AS failed,
                      (SELECT series_idx FROM imagen.images w
                        WHERE w.id = s.selected_image_id) AS winner_idx
                 FROM imagen.series s LEFT JOIN imagen.jobs j ON j.series_id = s.id
                GROUP BY s.id
                ORDER BY s.id DESC
                LIMIT %(limit)s""",
            {"limit": limit},
        ).fetchall()


def series_detail(conn: psycopg.Connection, series_id: int) -> dict[str, Any]:
    """The series row plus `tries`: one dict per job, with its image if done."""
    with conn.cursor(row_factory=dict_row) as cur:
        series = cur.execute("SELECT * FROM imagen.series WHERE id = %s", (series_id,)).fetchone()
        if series is None:
            raise InputError(
                "series", f"no series {series_id}; list them with `imagen series list`"
            )
        series["tries"] = cur.execute(
            """SELECT j.series_idx AS idx, j.id AS job_id, j.status, j.progress, j.error,
                      coalesce(i.seed, j.seed) AS seed, i.id AS image_id, i.storage_uri,
                      i.width, i.height, i.model, i.backend,
                      (i.id IS NOT NULL AND i.id = %(winner)s) AS winner
                 FROM imagen.jobs j LEFT JOIN imagen.images i ON i.id = j.image_id
                WHERE j.series_id = %(series)s
                ORDER BY j.series_idx""",
            {"series": series_id, "winner": series["selected_image_id"]},
        ).fetchall()
    for attempt in series["tries"]:
        attempt["path"] = uri_to_path(attempt["storage_uri"])
    return series


def pick_winner(conn: psycopg.Connection, series_id: int, idx: int) -> int:
    """Mark try `idx` of the series as its winner; the image id."""
    detail = series_detail(conn, series_id)
    chosen = next((t for t in detail["tries"] if t["idx"] == idx), None)
    if chosen is None:
        raise InputError("idx", f"series {series_id} has tries 1 to {detail['count']}, not {idx}")
    if chosen["image_id"] is None:
        raise InputError(
            "idx", f"try {idx} of series {series_id} has no image yet (it is {chosen['status']})"
        )
    conn.execute(
        "UPDATE imagen.series SET selected_image_id = %s WHERE id = %s",
        (chosen["image_id"], series_id),
    )
    return int(chosen["image_id"])


def queue_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM imagen.jobs GROUP BY status").fetchall()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def uri_to_path(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    return Path(unquote(urlparse(uri).path))
