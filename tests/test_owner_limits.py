"""Per-owner limits in the shared queue (issue 17 point 3): a user may have at most
imagen.settings.max_pending_per_owner pending jobs; an operator changes it with one
UPDATE. Checked with the `authenticated` role as PostgREST runs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from tests.helpers import acting

ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def insert_jobs(api: psycopg.Connection, uid: str, count: int) -> int:
    with acting(api, uid):
        cursor = api.execute(
            "INSERT INTO imagen.jobs (prompt) SELECT 'a fox ' || i FROM generate_series(1, %s) i",
            (count,),
        )
        return cursor.rowcount


def pending(admin: psycopg.Connection, uid: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM imagen.jobs WHERE owner_user_id = %s AND status = 'pending'", (uid,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_ten_thousand_jobs_in_one_insert_are_refused(api, admin):
    with pytest.raises(errors.ProgramLimitExceeded) as refused:
        insert_jobs(api, ALICE, 10_000)
    message = str(refused.value)
    assert "at most 1000 pending jobs (imagen.settings.max_pending_per_owner)" in message
    assert refused.value.diag.message_hint is not None
    assert "UPDATE imagen.settings SET max_pending_per_owner" in refused.value.diag.message_hint
    assert pending(admin, ALICE) == 0  # nothing half-written
    assert insert_jobs(api, ALICE, 1000) == 1000  # up to the cap is fine


def test_the_cap_is_per_owner_and_set_with_one_statement(api, admin):
    admin.execute("UPDATE imagen.settings SET max_pending_per_owner = 3")
    assert insert_jobs(api, ALICE, 3) == 3
    with pytest.raises(errors.ProgramLimitExceeded, match="at most 3 pending jobs"):
        insert_jobs(api, ALICE, 1)
    assert insert_jobs(api, BOB, 3) == 3  # Bob has his own
    # A canceled job no longer counts; retrying it past the cap is refused like an insert.
    with acting(api, ALICE):
        first = "(SELECT min(id) FROM imagen.jobs)"
        api.execute(f"UPDATE imagen.jobs SET status = 'canceled' WHERE id = {first}")
    assert insert_jobs(api, ALICE, 1) == 1
    with pytest.raises(errors.ProgramLimitExceeded), acting(api, ALICE):
        api.execute("UPDATE imagen.jobs SET status = 'pending' WHERE status = 'canceled'")
    admin.execute("UPDATE imagen.settings SET max_pending_per_owner = NULL")  # no cap
    assert insert_jobs(api, ALICE, 50) == 50


def test_workers_and_service_role_are_not_capped(api, admin):
    admin.execute("UPDATE imagen.settings SET max_pending_per_owner = 2")
    five = (
        "INSERT INTO imagen.jobs (prompt, owner_user_id) SELECT 'x', %s FROM generate_series(1, 5)"
    )
    admin.execute(five, (ALICE,))
    with acting(api, None, role="service_role"):
        api.execute(five, (ALICE,))
    assert pending(admin, ALICE) == 10


def test_users_read_the_cap_but_cannot_change_it(api):
    with acting(api, ALICE):
        row = api.execute("SELECT max_pending_per_owner FROM imagen.settings").fetchone()
    assert row == (1000,)
    with pytest.raises(errors.InsufficientPrivilege), acting(api, ALICE):
        api.execute("UPDATE imagen.settings SET max_pending_per_owner = 1000000")
