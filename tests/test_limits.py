"""The schema's CHECK constraints agree with imagen_tui/limits.py: each bound is
accepted by the database and the value just past it is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from imagen_tui import limits


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def insert(conn: psycopg.Connection, table: str, **columns: object) -> None:
    columns = {"prompt": "x", **columns}
    query = sql.SQL("INSERT INTO imagen.{} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    conn.execute(query, list(columns.values()))


def add_series(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "INSERT INTO imagen.series (prompt, count) VALUES ('x', %s) RETURNING id",
        (limits.MAX_COUNT,),
    ).fetchone()
    assert row is not None
    return int(row[0])


L = limits
# (table, column values that sit on a bound, the same just past it)
BOUNDS = [
    ("jobs", {"width": L.MIN_SIDE, "height": 64}, {"width": L.MIN_SIDE - 1, "height": 64}),
    ("jobs", {"width": 64, "height": L.MAX_SIDE}, {"width": 64, "height": L.MAX_SIDE + 1}),
    ("series", {"width": L.MAX_SIDE, "height": 64}, {"width": L.MAX_SIDE + 1, "height": 64}),
    ("series", {"width": 64, "height": L.MIN_SIDE}, {"width": 64, "height": L.MIN_SIDE - 1}),
    ("jobs", {"steps": L.MIN_STEPS}, {"steps": L.MIN_STEPS - 1}),
    ("jobs", {"steps": L.MAX_STEPS}, {"steps": L.MAX_STEPS + 1}),
    ("series", {"steps": L.MAX_STEPS}, {"steps": L.MAX_STEPS + 1}),
    ("series", {"count": L.MIN_COUNT}, {"count": L.MIN_COUNT - 1}),
    ("series", {"count": L.MAX_COUNT}, {"count": L.MAX_COUNT + 1}),
    ("jobs", {"seed": L.MIN_SEED}, {"seed": L.MIN_SEED - 1}),
    ("series", {"seed": L.MIN_SEED}, {"seed": L.MIN_SEED - 1}),
    ("jobs", {"priority": L.MIN_PRIORITY}, {"priority": L.MIN_PRIORITY - 1}),
    ("jobs", {"priority": L.MAX_PRIORITY}, {"priority": L.MAX_PRIORITY + 1}),
    ("jobs", {"max_attempts": L.MIN_MAX_ATTEMPTS}, {"max_attempts": L.MIN_MAX_ATTEMPTS - 1}),
    ("jobs", {"max_attempts": L.MAX_MAX_ATTEMPTS}, {"max_attempts": L.MAX_MAX_ATTEMPTS + 1}),
    ("jobs", {"attempts": 0}, {"attempts": -1}),
    ("jobs", {"options": '{"a": 1}'}, {"options": "[1, 2]"}),
    ("series", {"options": "{}"}, {"options": "42"}),
]


@pytest.mark.parametrize(("table", "ok", "past"), BOUNDS, ids=lambda v: str(v))
def test_each_bound_is_accepted_and_the_next_value_refused(admin, table, ok, past):
    insert(admin, table, **ok)
    with pytest.raises(errors.CheckViolation):
        insert(admin, table, **past)


def test_the_seed_bound_is_the_largest_bigint(admin):
    insert(admin, "jobs", seed=limits.MAX_SEED)
    with pytest.raises(errors.NumericValueOutOfRange):
        insert(admin, "jobs", seed=limits.MAX_SEED + 1)


def test_try_numbers_run_from_1_to_the_largest_count(admin):
    series = add_series(admin)
    insert(admin, "jobs", series_id=series, series_idx=1)
    insert(admin, "jobs", series_id=series, series_idx=limits.MAX_COUNT)
    for idx in (0, limits.MAX_COUNT + 1):
        with pytest.raises(errors.CheckViolation):
            insert(admin, "jobs", series_id=series, series_idx=idx)


def test_oom_handbacks_cannot_go_negative(admin):
    insert(admin, "jobs", oom_handbacks=0)
    with pytest.raises(errors.CheckViolation):
        insert(admin, "jobs", oom_handbacks=-1)


def test_the_job_statuses_are_exactly_those_of_limits(admin):
    (definition,) = admin.execute(
        """SELECT pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = 'imagen.jobs'::regclass AND contype = 'c'
              AND pg_get_constraintdef(oid) LIKE '%status = ANY%'"""
    ).fetchone()
    assert set(re.findall(r"'(\w+)'::text", definition)) == set(limits.JOB_STATUSES)
    assert set(limits.CANCELABLE_STATUSES) | set(limits.RETRYABLE_STATUSES) <= set(
        limits.JOB_STATUSES
    )


def add_worker(conn: psycopg.Connection, name: str, **columns: object) -> None:
    row = {"id": name, "host": "h", "pid": 1, "concurrency": 1, "lease_s": 60, **columns}
    query = sql.SQL("INSERT INTO imagen.workers ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    conn.execute(query, list(row.values()))


@pytest.mark.parametrize(
    ("ok", "past"),
    [
        ({"concurrency": 1}, {"concurrency": 0}),
        ({"concurrency": L.MAX_CONCURRENCY}, {"concurrency": L.MAX_CONCURRENCY + 1}),
        ({"lease_s": L.MIN_LEASE_S}, {"lease_s": L.MIN_LEASE_S - 0.5}),
        ({"lease_s": L.MAX_LEASE_S}, {"lease_s": L.MAX_LEASE_S + 1}),
        ({"note": "n" * L.MAX_WORKER_NOTE_CHARS}, {"note": "n" * (L.MAX_WORKER_NOTE_CHARS + 1)}),
    ],
    ids=lambda v: str(v)[:40],
)
def test_worker_presence_bounds_agree_with_the_worker_flags(admin, ok, past):
    add_worker(admin, "ok", **ok)
    with pytest.raises(errors.CheckViolation):
        add_worker(admin, "past", **past)
