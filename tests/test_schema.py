"""The schema as users and workers meet it: defaults, CHECKs, the series winner,
notifications, and row-level security the way Supabase/PostgREST applies it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row

from tests.helpers import acting

# --------------------------------------------------------------------------- helpers


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection]:
    """The database owner (a superuser): what the CLI and the worker use."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def add_series(conn: psycopg.Connection, count: int = 2, tries: int | None = None) -> int:
    """A series and its jobs (tries 1..`tries`, default `count`); the series id."""
    row = conn.execute(
        "INSERT INTO imagen.series (prompt, count) VALUES ('a fox', %s) RETURNING id", (count,)
    ).fetchone()
    assert row is not None
    conn.execute(
        """INSERT INTO imagen.jobs (series_id, series_idx, prompt)
           SELECT %s, i, 'a fox' FROM generate_series(1, %s) AS i""",
        (row[0], count if tries is None else tries),
    )
    return int(row[0])


def job_ids(conn: psycopg.Connection, series_id: int) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM imagen.jobs WHERE series_id = %s ORDER BY series_idx", (series_id,)
    ).fetchall()
    return [r[0] for r in rows]


def add_image(
    conn: psycopg.Connection,
    *,
    series_id: int | None = None,
    series_idx: int | None = None,
    job_id: int | None = None,
    owner: str | None = None,
) -> int:
    row = conn.execute(
        """INSERT INTO imagen.images (job_id, series_id, series_idx, seed, width, height,
                                      backend, model, mime_type, sha256, bytes, storage_uri,
                                      owner_user_id)
           VALUES (%s, %s, %s, 7, 512, 512, 'mock', 'mock-v1', 'image/png', 'ab12', 100,
                   'file:///tmp/x.png', %s)
           RETURNING id""",
        (job_id, series_id, series_idx, owner),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_usage(conn: psycopg.Connection, owner: str | None, job_id: int | None) -> None:
    conn.execute(
        """INSERT INTO imagen.usage (owner_user_id, job_id, backend, backend_type, model, seed,
                                     prompt_sha256, width, height, latency_ms, caller)
           VALUES (%s, %s, 'mock', 'mock', 'mock-v1', 7, repeat('cafe', 16), 512, 512, 12.5,
                   'w1')""",
        (owner, job_id),
    )


# --------------------------------------------------------------------------- defaults, CHECKs


def test_a_minimal_insert_is_a_valid_pending_job(admin):
    with admin.cursor(row_factory=dict_row) as cur:
        job = cur.execute("INSERT INTO imagen.jobs (prompt) VALUES ('x') RETURNING *").fetchone()
    assert job is not None
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert job["max_attempts"] == 3
    assert job["priority"] == 0
    assert job["options"] == {}
    for column in ("backend", "seed", "width", "height", "steps", "series_id", "series_idx"):
        assert job[column] is None, column
    for column in ("worker_id", "lease_expires_at", "progress", "error", "image_id"):
        assert job[column] is None, column
    assert job["run_at"] is not None  # runnable at once


@pytest.mark.parametrize("count", [0, 11])
def test_series_count_outside_1_to_10_is_rejected(admin, count):
    with pytest.raises(errors.CheckViolation):
        admin.execute("INSERT INTO imagen.series (prompt, count) VALUES ('x', %s)", (count,))
    assert admin.execute("SELECT count(*) FROM imagen.series").fetchone() == (0,)


@pytest.mark.parametrize("count", [1, 10])
def test_series_count_at_the_bounds_is_accepted(admin, count):
    row = admin.execute(
        "INSERT INTO imagen.series (prompt, count) VALUES ('x', %s) RETURNING count", (count,)
    ).fetchone()
    assert row == (count,)


def test_unknown_job_status_is_rejected(admin):
    with pytest.raises(errors.CheckViolation):
        admin.execute("INSERT INTO imagen.jobs (prompt, status) VALUES ('x', 'bogus')")
    job = admin.execute("INSERT INTO imagen.jobs (prompt) VALUES ('x') RETURNING id").fetchone()
    assert job is not None
    with pytest.raises(errors.CheckViolation):
        admin.execute("UPDATE imagen.jobs SET status = 'bogus' WHERE id = %s", job)


def test_a_running_job_must_carry_its_lease(admin):
    with pytest.raises(errors.CheckViolation):
        admin.execute("INSERT INTO imagen.jobs (prompt, status) VALUES ('x', 'running')")
    admin.execute(
        """INSERT INTO imagen.jobs (prompt, status, worker_id, lease_expires_at)
           VALUES ('x', 'running', 'w1', now() + interval '1 minute')"""
    )


@pytest.mark.parametrize("table", ["jobs", "series"])
@pytest.mark.parametrize("prompt", ["", "   ", "\t\n "], ids=["empty", "spaces", "tab-newline"])
def test_empty_or_blank_prompt_is_rejected(admin, table, prompt):
    query = sql.SQL("INSERT INTO imagen.{} (prompt) VALUES (%s)").format(sql.Identifier(table))
    with pytest.raises(errors.CheckViolation):
        admin.execute(query, (prompt,))


def test_series_id_and_series_idx_come_together(admin):
    series = add_series(admin, count=2, tries=0)
    with pytest.raises(errors.CheckViolation):
        admin.execute("INSERT INTO imagen.jobs (prompt, series_id) VALUES ('x', %s)", (series,))
    with pytest.raises(errors.CheckViolation):
        admin.execute("INSERT INTO imagen.jobs (prompt, series_idx) VALUES ('x', 1)")
    assert admin.execute("SELECT count(*) FROM imagen.jobs").fetchone() == (0,)


def test_the_same_try_of_a_series_cannot_be_queued_twice(admin):
    series = add_series(admin, count=2)
    with pytest.raises(errors.UniqueViolation):
        admin.execute(
            "INSERT INTO imagen.jobs (prompt, series_id, series_idx) VALUES ('x', %s, 2)",
            (series,),
        )
    assert len(job_ids(admin, series)) == 2


# --------------------------------------------------------------------------- winner, images


def test_the_winner_can_be_an_image_of_its_own_series(admin):
    series = add_series(admin, count=2)
    image = add_image(admin, series_id=series, series_idx=2, job_id=job_ids(admin, series)[1])
    admin.execute("UPDATE imagen.series SET selected_image_id = %s WHERE id = %s", (image, series))
    row = admin.execute("SELECT selected_image_id FROM imagen.series WHERE id = %s", (series,))
    assert row.fetchone() == (image,)


def test_the_winner_cannot_be_an_image_of_another_series(admin):
    mine, other = add_series(admin), add_series(admin)
    foreign = add_image(admin, series_id=other, series_idx=1)
    with pytest.raises(errors.ForeignKeyViolation):
        admin.execute(
            "UPDATE imagen.series SET selected_image_id = %s WHERE id = %s", (foreign, mine)
        )
    row = admin.execute("SELECT selected_image_id FROM imagen.series WHERE id = %s", (mine,))
    assert row.fetchone() == (None,)


def test_the_winner_cannot_be_a_solo_image(admin):
    series = add_series(admin)
    solo = add_image(admin)  # series_id NULL: from `imagen submit` without a series, say
    with pytest.raises(errors.ForeignKeyViolation):
        admin.execute(
            "UPDATE imagen.series SET selected_image_id = %s WHERE id = %s", (solo, series)
        )


def test_deleting_the_winning_image_clears_the_pick_but_keeps_the_series(admin):
    series = add_series(admin, count=2)
    winner = add_image(admin, series_id=series, series_idx=1)
    other = add_image(admin, series_id=series, series_idx=2)
    admin.execute("UPDATE imagen.series SET selected_image_id = %s WHERE id = %s", (winner, series))
    admin.execute("DELETE FROM imagen.images WHERE id = %s", (winner,))
    row = admin.execute("SELECT selected_image_id FROM imagen.series WHERE id = %s", (series,))
    assert row.fetchone() == (None,)
    # The rest of the series is untouched.
    assert len(job_ids(admin, series)) == 2
    images = admin.execute("SELECT id FROM imagen.images WHERE series_id = %s", (series,))
    assert images.fetchall() == [(other,)]


def test_a_job_has_at_most_one_image(admin):
    job = admin.execute("INSERT INTO imagen.jobs (prompt) VALUES ('x') RETURNING id").fetchone()
    assert job is not None
    add_image(admin, job_id=job[0])
    with pytest.raises(errors.UniqueViolation):
        add_image(admin, job_id=job[0])
    count = admin.execute("SELECT count(*) FROM imagen.images WHERE job_id = %s", job)
    assert count.fetchone() == (1,)


# --------------------------------------------------------------------------- notifications

SENTINEL_CHANNEL = "test_sentinel"


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for channel in ("imagen_jobs", "imagen_job_events", "imagen_job_cancels", SENTINEL_CHANNEL):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield conn


def received(listener: psycopg.Connection, writer: psycopg.Connection) -> list[psycopg.Notify]:
    """Every notification delivered before a sentinel the writer sends now.

    Notifications reach a listener in commit order, so everything the writer
    committed before the sentinel has arrived once the sentinel has: no waiting
    "long enough" for something that should not come.
    """
    writer.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(SENTINEL_CHANNEL)))
    got: list[psycopg.Notify] = []
    for notify in listener.notifies(timeout=30):
        if notify.channel == SENTINEL_CHANNEL:
            return got
        got.append(notify)
    pytest.fail(f"the sentinel notification never arrived; got {got}")


def on(channel: str, notifies: list[psycopg.Notify]) -> list[psycopg.Notify]:
    return [n for n in notifies if n.channel == channel]


def test_one_insert_of_three_jobs_wakes_workers_once(admin, listener):
    admin.execute(
        "INSERT INTO imagen.jobs (prompt) SELECT 'try ' || i FROM generate_series(1, 3) AS i"
    )
    got = received(listener, admin)
    assert [n.payload for n in on("imagen_jobs", got)] == [""]
    assert len(on("imagen_job_events", got)) == 3  # while the live table hears of each job


def test_requeueing_a_job_wakes_workers_but_a_heartbeat_does_not(admin, listener):
    job = admin.execute(
        """INSERT INTO imagen.jobs (prompt, status, worker_id, lease_expires_at)
           VALUES ('x', 'running', 'w1', now() + interval '1 minute') RETURNING id"""
    ).fetchone()
    received(listener, admin)  # the insert's own notifications
    admin.execute(
        "UPDATE imagen.jobs SET lease_expires_at = now() + interval '2 minutes' WHERE id = %s",
        job,
    )
    assert received(listener, admin) == []
    admin.execute(
        """UPDATE imagen.jobs SET status = 'pending', worker_id = NULL, lease_expires_at = NULL
           WHERE id = %s""",
        job,
    )
    wakes = on("imagen_jobs", received(listener, admin))
    assert [n.payload for n in wakes] == [""]


def test_job_events_for_each_insert_and_status_change_but_not_heartbeats(admin, listener):
    series = add_series(admin, count=2, tries=0)

    def events() -> list[dict[str, Any]]:
        return [json.loads(n.payload) for n in on("imagen_job_events", received(listener, admin))]

    rows = admin.execute(
        """INSERT INTO imagen.jobs (series_id, series_idx, prompt)
           VALUES (%(s)s, 1, 'a'), (%(s)s, 2, 'b') RETURNING id""",
        {"s": series},
    ).fetchall()
    first, second = (r[0] for r in rows)
    inserted = events()
    assert sorted(e["id"] for e in inserted) == [first, second]
    for event in inserted:
        assert event["status"] == "pending"
        assert event["series_id"] == series
        assert event["progress"] is None
        assert event["image_id"] is None

    admin.execute(
        """UPDATE imagen.jobs SET status = 'running', worker_id = 'w1',
                  lease_expires_at = now() + interval '1 minute', started_at = now()
           WHERE id = %s""",
        (first,),
    )
    [running] = events()
    assert (running["id"], running["status"], running["progress"]) == (first, "running", None)

    # A heartbeat moves only the lease: nobody watching the table cares.
    admin.execute(
        "UPDATE imagen.jobs SET lease_expires_at = now() + interval '2 minutes' WHERE id = %s",
        (first,),
    )
    assert events() == []

    admin.execute("UPDATE imagen.jobs SET progress = 0.5 WHERE id = %s", (first,))
    [step] = events()
    assert (step["id"], step["status"], step["progress"]) == (first, "running", 0.5)

    image = add_image(admin, series_id=series, series_idx=1, job_id=first)
    admin.execute(
        """UPDATE imagen.jobs SET status = 'done', progress = 1, image_id = %s,
                  worker_id = NULL, lease_expires_at = NULL, finished_at = now()
           WHERE id = %s""",
        (image, first),
    )
    [done] = events()
    assert {k: done[k] for k in ("id", "status", "series_id", "progress", "image_id")} == {
        "id": first,
        "status": "done",
        "series_id": series,
        "progress": 1,
        "image_id": image,
    }


def test_canceling_a_running_job_tells_its_worker_and_nothing_else_does(admin, listener):
    rows = admin.execute(
        """INSERT INTO imagen.jobs (prompt, status, worker_id, lease_expires_at)
           VALUES ('running', 'running', 'w1', now() + interval '1 minute'),
                  ('pending', 'pending', NULL, NULL)
           RETURNING id"""
    ).fetchall()
    running, pending = (row[0] for row in rows)
    received(listener, admin)
    admin.execute("UPDATE imagen.jobs SET progress = 0.5 WHERE id = %s", (running,))
    admin.execute("UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (pending,))
    assert on("imagen_job_cancels", received(listener, admin)) == []  # no worker holds it
    admin.execute("UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (running,))
    cancels = on("imagen_job_cancels", received(listener, admin))
    assert [n.payload for n in cancels] == [str(running)]


# --------------------------------------------------------------------------- row-level security

RLS_VIOLATION = "new row violates row-level security policy"
ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


def one(conn: psycopg.Connection, query: str | sql.Composed, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def alices(api, admin) -> dict[str, int]:
    """Alice's series of two tries, written through the API as Alice; the image of
    try 1 and its usage row, written as the worker would (admin)."""
    with acting(api, ALICE):
        series = one(
            api, "INSERT INTO imagen.series (prompt, count) VALUES ('fox', 2) RETURNING id"
        )
        jobs = api.execute(
            """INSERT INTO imagen.jobs (series_id, series_idx, prompt)
               SELECT %s, i, 'fox' FROM generate_series(1, 2) AS i ORDER BY i RETURNING id""",
            (series,),
        ).fetchall()
    image = add_image(admin, series_id=series, series_idx=1, job_id=jobs[0][0], owner=ALICE)
    add_usage(admin, ALICE, jobs[0][0])
    return {"series": series, "job": jobs[0][0], "job2": jobs[1][0], "image": image}


def test_rows_written_through_the_api_belong_to_the_caller(admin, alices):
    for table in ("series", "jobs"):
        owners = admin.execute(
            sql.SQL("SELECT DISTINCT owner_user_id::text FROM imagen.{}").format(
                sql.Identifier(table)
            )
        ).fetchall()
        assert owners == [(ALICE,)], table


@pytest.mark.parametrize(
    ("table", "alice_has"), [("series", 1), ("jobs", 2), ("images", 1), ("usage", 1)]
)
def test_users_see_only_their_own_rows(api, alices, table, alice_has):
    query = sql.SQL("SELECT count(*) FROM imagen.{}").format(sql.Identifier(table))
    with acting(api, ALICE):
        assert one(api, query) == alice_has
    with acting(api, BOB):
        assert one(api, query) == 0
        # (users may not SELECT * from jobs, images or usage: tests/test_user_columns.py)
        everything = sql.SQL("SELECT id, owner_user_id FROM imagen.{}").format(
            sql.Identifier(table)
        )
        assert api.execute(everything).fetchall() == []


def test_a_user_cannot_write_rows_owned_by_someone_else(api, admin, alices):
    for table in ("series", "jobs"):
        query = sql.SQL("INSERT INTO imagen.{} (owner_user_id, prompt) VALUES (%s, 'x')").format(
            sql.Identifier(table)
        )
        with pytest.raises(errors.InsufficientPrivilege), acting(api, BOB):
            api.execute(query, (ALICE,))
    assert one(admin, "SELECT count(*) FROM imagen.jobs") == 2
    assert one(admin, "SELECT count(*) FROM imagen.series") == 1


def test_a_user_cannot_queue_a_job_in_someone_elses_series(api, admin, alices):
    with pytest.raises(errors.InsufficientPrivilege, match=RLS_VIOLATION), acting(api, BOB):
        api.execute(
            "INSERT INTO imagen.jobs (series_id, series_idx, prompt) VALUES (%s, 3, 'x')",
            (alices["series"],),
        )
    assert one(admin, "SELECT count(*) FROM imagen.jobs") == 2


def test_updates_of_someone_elses_rows_change_nothing(api, admin, alices):
    with acting(api, BOB):
        cur = api.execute(
            "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (alices["job"],)
        )
        assert cur.rowcount == 0
        cur = api.execute(
            "UPDATE imagen.series SET selected_image_id = NULL WHERE id = %s", (alices["series"],)
        )
        assert cur.rowcount == 0
    assert one(admin, "SELECT status FROM imagen.jobs WHERE id = %s", (alices["job"],)) == "pending"
    # ...while the owner's own cancel goes through.
    with acting(api, ALICE):
        cur = api.execute(
            "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (alices["job"],)
        )
        assert cur.rowcount == 1


@pytest.mark.parametrize(
    "attach",
    ["move own job into the series", "image for the job", "image in the series"],
)
def test_a_user_cannot_attach_rows_to_someone_elses_series_or_job(api, admin, alices, attach):
    """Bob must not be able to hang rows on Alice's: a job moved into her series
    shows up among her tries, and an image claiming her job takes the job's one
    image slot (images.job_id is UNIQUE), so her worker can never finish it."""
    with acting(api, BOB):
        bobs_job = one(api, "INSERT INTO imagen.jobs (prompt) VALUES ('b') RETURNING id")
    with pytest.raises(errors.InsufficientPrivilege), acting(api, BOB):
        if attach == "move own job into the series":
            api.execute(
                "UPDATE imagen.jobs SET series_id = %s, series_idx = 3 WHERE id = %s",
                (alices["series"], bobs_job),
            )
        elif attach == "image for the job":
            add_image(api, job_id=alices["job2"])
        else:
            add_image(api, series_id=alices["series"], series_idx=2)
    assert (
        one(admin, "SELECT count(*) FROM imagen.jobs WHERE series_id = %s", (alices["series"],))
        == 2
    )
    assert one(admin, "SELECT count(*) FROM imagen.images") == 1


# The columns a worker (or the schema's owner) manages; users set none of them.
SCHEDULING = {
    "id": "424242",
    "priority": "2147483647",
    "attempts": "-5",
    "max_attempts": "2147483647",
    "status": "'running'",
    "worker_id": "'w'",
    "lease_id": "gen_random_uuid()",
    "lease_expires_at": "now()",
    "run_at": "now() + interval '1 day'",
    "progress": "0.5",
    "error": "'x'",
    "image_id": "1",
    "owner_user_id": "gen_random_uuid()",
}


@pytest.mark.parametrize("column", sorted(SCHEDULING))
def test_a_user_cannot_insert_a_job_with_a_scheduling_column(api, admin, column):
    query = f"INSERT INTO imagen.jobs (prompt, {column}) VALUES ('x', {SCHEDULING[column]})"
    refused = (errors.InsufficientPrivilege, errors.GeneratedAlways)  # id: refused either way
    with pytest.raises(refused), acting(api, ALICE):
        api.execute(query)
    assert one(admin, "SELECT count(*) FROM imagen.jobs") == 0


@pytest.mark.parametrize("column", sorted(set(SCHEDULING) - {"status"}))
def test_a_user_cannot_change_a_scheduling_column_of_their_own_job(api, admin, alices, column):
    query = f"UPDATE imagen.jobs SET {column} = {SCHEDULING[column]} WHERE id = %s"
    refused = (errors.InsufficientPrivilege, errors.GeneratedAlways)  # id: refused either way
    with pytest.raises(refused), acting(api, ALICE):
        api.execute(query, (alices["job"],))
    assert one(admin, "SELECT attempts FROM imagen.jobs WHERE id = %s", (alices["job"],)) == 0


def test_a_user_may_insert_every_request_field(api, admin):
    with acting(api, ALICE):
        series = one(
            api,
            """INSERT INTO imagen.series (prompt, negative_prompt, style, width, height, steps,
                                          seed, backend, options, count)
               VALUES ('fox', 'dogs', 'photo', 512, 512, 20, 7, 'mock', '{"a": 1}', 1)
               RETURNING id""",
        )
        api.execute(
            """INSERT INTO imagen.jobs (series_id, series_idx, prompt, negative_prompt, style,
                                        width, height, steps, seed, backend, options)
               VALUES (%s, 1, 'fox', 'dogs', 'photo', 512, 512, 20, 7, 'mock', '{"a": 1}')""",
            (series,),
        )
    assert one(admin, "SELECT count(*) FROM imagen.jobs WHERE series_id = %s", (series,)) == 1


def set_status(conn: psycopg.Connection, job_id: int, status: str, **columns: Any) -> None:
    assignments = ", ".join(["status = %(status)s", *(f"{c} = %({c})s" for c in columns)])
    conn.execute(
        f"UPDATE imagen.jobs SET {assignments} WHERE id = %(id)s",
        {"status": status, "id": job_id, **columns},
    )


@pytest.mark.parametrize("start", ["pending", "running"])
def test_a_user_may_cancel_their_own_pending_or_running_job(api, admin, alices, start):
    if start == "running":
        set_status(
            admin, alices["job"], "running", worker_id="w1", lease_expires_at=datetime.now(UTC)
        )
    with acting(api, ALICE):
        set_status(api, alices["job"], "canceled")
    row = admin.execute(
        "SELECT status, finished_at IS NOT NULL, lease_expires_at FROM imagen.jobs WHERE id = %s",
        (alices["job"],),
    ).fetchone()
    assert row == ("canceled", True, None)


@pytest.mark.parametrize("start", ["failed", "canceled"])
def test_a_user_may_retry_their_own_failed_or_canceled_job(api, admin, alices, start):
    admin.execute(
        """UPDATE imagen.jobs SET status = 'running', worker_id = 'w1', attempts = 3,
                  lease_expires_at = now() + interval '1 minute', seed = 42
            WHERE id = %s""",
        (alices["job"],),
    )
    set_status(admin, alices["job"], start, error="it broke")
    with acting(api, ALICE):
        set_status(api, alices["job"], "pending")
    row = admin.execute(
        """SELECT status, attempts, error, worker_id, lease_expires_at, seed, run_at <= now()
             FROM imagen.jobs WHERE id = %s""",
        (alices["job"],),
    ).fetchone()
    assert row == ("pending", 0, None, None, None, 42, True)  # same seed, fresh attempts


@pytest.mark.parametrize(
    ("start", "to"),
    [("pending", "running"), ("pending", "done"), ("pending", "failed"), ("done", "pending")],
)
def test_a_user_cannot_make_a_workers_transition(api, admin, alices, start, to):
    if start == "done":
        admin.execute(
            "UPDATE imagen.jobs SET status = 'done', image_id = %s WHERE id = %s",
            (alices["image"], alices["job"]),
        )
    with pytest.raises((errors.InsufficientPrivilege, errors.CheckViolation)), acting(api, ALICE):
        set_status(api, alices["job"], to)
    assert one(admin, "SELECT status FROM imagen.jobs WHERE id = %s", (alices["job"],)) == start


def test_a_finished_job_cannot_be_canceled_by_anyone(admin, alices):
    admin.execute(
        "UPDATE imagen.jobs SET status = 'done', image_id = %s WHERE id = %s",
        (alices["image"], alices["job"]),
    )
    with pytest.raises(errors.CheckViolation, match="only pending or running jobs"):
        set_status(admin, alices["job"], "canceled")


def test_a_user_may_pick_the_winner_of_their_own_series(api, admin, alices):
    with acting(api, ALICE):
        cur = api.execute(
            "UPDATE imagen.series SET selected_image_id = %s WHERE id = %s",
            (alices["image"], alices["series"]),
        )
        assert cur.rowcount == 1
    assert (
        one(admin, "SELECT selected_image_id FROM imagen.series WHERE id = %s", (alices["series"],))
        == alices["image"]
    )


def test_users_have_no_rights_on_sequences(admin):
    rows = admin.execute(
        """SELECT c.relname,
                  has_sequence_privilege('authenticated', c.oid, 'USAGE, SELECT, UPDATE')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'imagen' AND c.relkind = 'S'"""
    ).fetchall()
    assert len(rows) == 4  # series, jobs, images, usage
    assert [name for name, allowed in rows if allowed] == []


@pytest.mark.parametrize("table", ["series", "jobs", "images", "usage"])
def test_ids_are_assigned_by_the_database_alone(admin, table):
    """GENERATED ALWAYS: not even the owner slips an id in by accident, so no user
    can claim the ids another user's next rows will get."""
    query = sql.SQL("INSERT INTO imagen.{} (id) VALUES (1000)").format(sql.Identifier(table))
    with pytest.raises(errors.GeneratedAlways):
        admin.execute(query)


def test_anonymous_requests_see_nothing(api, alices):
    # Role authenticated but no claims: auth.uid() is NULL, no row matches.
    with acting(api, None):
        for table in ("series", "jobs", "images", "usage"):
            query = sql.SQL("SELECT count(*) FROM imagen.{}").format(sql.Identifier(table))
            assert one(api, query) == 0, table
    # PostgREST's anonymous role has no access to the schema at all.
    with pytest.raises(errors.InsufficientPrivilege), acting(api, None, role="anon"):
        api.execute("SELECT count(*) FROM imagen.jobs")


def test_service_role_sees_every_users_rows(api, alices):
    with acting(api, BOB):
        api.execute("INSERT INTO imagen.jobs (prompt) VALUES ('b')")
    with acting(api, None, role="service_role"):
        owners = api.execute(
            "SELECT owner_user_id::text, count(*) FROM imagen.jobs GROUP BY 1 ORDER BY 2"
        ).fetchall()
    assert owners == [(BOB, 1), (ALICE, 2)]


def test_auth_uid_is_the_callers_sub_claim_or_null(api):
    with acting(api, ALICE):
        assert str(one(api, "SELECT auth.uid()")) == ALICE
    # Claims are transaction-local: the next request, without any, is anonymous.
    with acting(api, None):
        assert one(api, "SELECT auth.uid()") is None


def test_the_migration_provides_the_supabase_roles_and_auth_uid(admin):
    roles = admin.execute(
        """SELECT rolname, rolcanlogin, rolbypassrls FROM pg_roles
            WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname"""
    ).fetchall()
    assert roles == [
        ("anon", False, False),
        ("authenticated", False, False),
        ("service_role", False, True),
    ]
    returns = admin.execute(
        """SELECT p.prorettype::regtype::text FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'auth' AND p.proname = 'uid' AND p.pronargs = 0"""
    ).fetchall()
    assert returns == [("uuid",)]
