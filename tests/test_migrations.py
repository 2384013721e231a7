"""Schema migrations: applying, racing, failing halfway, refusing a stale schema,
and the `imagen db ...` commands that show and fix the schema version."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from imagen_tui.db import migrate
from imagen_tui.db.connect import redact
from imagen_tui.errors import DatabaseError
from tests.pg import with_database


@pytest.fixture
def empty_db(pg_server) -> Iterator[str]:
    """A database ImaGen never touched (not cloned from the migrated template)."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield with_database(pg_server.admin_url, name)
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def recorded(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        if migrate.current_version(conn) == 0:
            return []
        return conn.execute(
            "SELECT version, name, checksum FROM imagen.schema_migrations ORDER BY version"
        ).fetchall()


def exists(url: str, relation: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- migrate()


def test_migrating_a_current_database_applies_nothing(db_url):
    before = recorded(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert migrate.migrate(conn) == []
        assert migrate.current_version(conn) == migrate.latest_version()
    assert recorded(db_url) == before


def test_an_empty_database_gets_every_migration_in_order_once(empty_db):
    shipped = migrate.available()
    versions = [m.version for m in shipped]
    # In order and unique; a gap is fine (a number may be reserved for another change).
    assert versions == sorted(set(versions)) and versions[0] == 1
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert migrate.current_version(conn) == 0
        applied = migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in shipped]
        assert migrate.current_version(conn) == migrate.latest_version()
        assert migrate.migrate(conn) == []
        # The schema is usable: a minimal job goes in.
        conn.execute("INSERT INTO imagen.jobs (prompt) VALUES ('x')")
    assert recorded(empty_db) == [
        (m.version, m.name, hashlib.sha256(m.path.read_bytes()).hexdigest()) for m in shipped
    ]


def test_concurrent_migrations_both_succeed_and_apply_once(empty_db):
    results: dict[str, list[migrate.Migration] | BaseException] = {}

    def run(name: str) -> None:
        try:
            with psycopg.connect(empty_db, autocommit=True) as conn:
                results[name] = migrate.migrate(conn)
        except BaseException as error:
            results[name] = error

    def waiting_for_the_lock(conn: psycopg.Connection) -> int:
        row = conn.execute(
            """SELECT count(*) FROM pg_locks
                WHERE locktype = 'advisory' AND NOT granted
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
        ).fetchone()
        return int(row[0]) if row else 0

    threads = [threading.Thread(target=run, args=(name,)) for name in ("one", "two")]
    with psycopg.connect(empty_db, autocommit=True) as holder:
        # Hold the migration lock so both migrators are surely in the race at once.
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate._LOCK_KEY,))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while waiting_for_the_lock(holder) < 2:
            assert not results, f"a migrator finished while the lock was held: {results}"
            assert time.monotonic() < deadline, "the migrators never queued on the lock"
            time.sleep(0.02)
        holder.execute("SELECT pg_advisory_unlock(%s)", (migrate._LOCK_KEY,))
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()

    errors = [r for r in results.values() if isinstance(r, BaseException)]
    assert errors == []
    applied = sorted(len(r) for r in results.values() if isinstance(r, list))
    assert applied == [0, len(migrate.available())]
    assert [v for v, _, _ in recorded(empty_db)] == [m.version for m in migrate.available()]


@pytest.mark.parametrize(
    "broken",
    [
        "SELEC 1;",  # rejected before anything runs
        "ALTER TABLE imagen.no_such_table ADD COLUMN x int;",  # fails after the CREATE ran
    ],
    ids=["syntax-error", "runtime-error"],
)
def test_a_failing_migration_leaves_nothing_behind(empty_db, tmp_path, monkeypatch, broken):
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    # (migrate() runs ANALYZE imagen.jobs after applying, so the first one makes it.)
    (tmp_path / "0001_x.sql").write_text("CREATE TABLE imagen.jobs (id int);\n")
    second = tmp_path / "0002_y.sql"
    second.write_text(f"CREATE TABLE imagen.half_done (id int);\n{broken}\n")

    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(psycopg.Error):
            migrate.migrate(conn)
        assert [v for v, _, _ in recorded(empty_db)] == [1]
        assert exists(empty_db, "imagen.jobs")
        assert not exists(empty_db, "imagen.half_done")
        # The failed migrator released the lock: others are not stuck behind it.
        with psycopg.connect(empty_db, autocommit=True) as other:
            row = other.execute("SELECT pg_try_advisory_lock(%s)", (migrate._LOCK_KEY,))
            assert row.fetchone() == (True,)
            other.execute("SELECT pg_advisory_unlock(%s)", (migrate._LOCK_KEY,))

    # Fix the file and run again: 0002 is applied, 0001 is not run twice.
    second.write_text("CREATE TABLE imagen.half_done (id int);\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert [m.version for m in migrate.migrate(conn)] == [2]
    assert [v for v, _, _ in recorded(empty_db)] == [1, 2]
    assert exists(empty_db, "imagen.half_done")


def test_require_current_on_an_empty_database_says_what_to_run(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(DatabaseError) as caught:
            migrate.require_current(conn)
        assert migrate.current_version(conn) == 0  # refusing changed nothing
    message = str(caught.value)
    assert "version 0" in message
    assert f"needs {migrate.latest_version()}" in message
    assert "run `imagen db migrate`" in message


def test_require_current_accepts_current_and_refuses_newer(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        migrate.require_current(conn)
        newer = migrate.latest_version() + 1
        conn.execute(
            "INSERT INTO imagen.schema_migrations (version, name, checksum) "
            "VALUES (%s, 'from_the_future', 'x')",
            (newer,),
        )
        with pytest.raises(DatabaseError, match="upgrade ImaGen"):
            migrate.require_current(conn)


# --------------------------------------------------------------------------- the CLI


def test_cli_refuses_an_unmigrated_server_until_db_migrate(home, empty_db):
    home.env["IMAGEN_DATABASE_URL"] = empty_db
    latest = migrate.latest_version()

    jobs = home.imagen("jobs")
    assert jobs.returncode == 1
    assert jobs.stdout == ""
    lines = jobs.stderr.splitlines()
    assert len(lines) == 1, jobs.stderr
    assert "run `imagen db migrate`" in lines[0]

    status = home.imagen("db", "status")
    assert status.returncode == 0, status.stderr
    assert f"version 0 of {latest}" in status.stdout
    assert "behind" in status.stdout
    assert recorded(empty_db) == []  # status only looks: a configured server is never migrated

    first = home.imagen("db", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"schema version {latest} (migrated)"]
    assert "0001_schema" in first.stderr

    again = home.imagen("db", "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"schema version {latest} (already current)"]

    jobs = home.imagen("jobs")
    assert jobs.returncode == 0, jobs.stderr
    [header] = jobs.stdout.splitlines()  # no jobs yet: just the header
    assert header.split()[:3] == ["ID", "STATUS", "SERIES"]


def test_db_status_masks_the_password_and_counts_jobs(home, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO imagen.jobs (prompt, status, worker_id, lease_expires_at)
               VALUES ('a', 'pending', NULL, NULL), ('b', 'pending', NULL, NULL),
                      ('c', 'running', 'w1', now() + interval '1 minute'),
                      ('d', 'done', NULL, NULL), ('e', 'failed', NULL, NULL),
                      ('f', 'failed', NULL, NULL), ('g', 'failed', NULL, NULL)"""
        )
    params = conninfo_to_dict(db_url)
    url = (
        f"postgresql://{params['user']}:hunter2@/{params['dbname']}"
        f"?host={quote(str(params['host']), safe='')}"
    )
    home.env["IMAGEN_DATABASE_URL"] = url  # trust auth on the socket: any password works

    done = home.imagen("db", "status")
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"server:  {redact(url)}  ($IMAGEN_DATABASE_URL)"
    assert f"{params['user']}:***@/{params['dbname']}" in lines[0]
    latest = migrate.latest_version()
    assert lines[1] == f"schema:  version {latest} of {latest} (current)"
    assert lines[2] == "jobs:    2 pending, 1 running, 1 done, 3 failed, 0 canceled"
    assert lines[3] == "workers: none online (see `imagen workers`)"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:hunter2@db.example.com:5432/imagen",
        "postgresql://:hunter2@db.example.com/imagen",  # user from PGUSER
        "postgresql://ann@db.example.com/imagen?password=hunter2&sslmode=require",
        "host=db.example.com user=ann password=hunter2 dbname=imagen",
        "host=db.example.com user=ann password = 'hunter2 and more' dbname=imagen",
    ],
    ids=["url", "url-no-user", "url-query", "conninfo", "conninfo-quoted"],
)
def test_redact_hides_every_password_form_libpq_accepts(url):
    assert str(conninfo_to_dict(url)["password"]).startswith("hunter2")  # a form libpq reads
    shown = redact(url)
    assert "hunter2" not in shown
    assert "and more" not in shown
    assert "db.example.com" in shown


# --------------------------------------------------------------------------- upgrades


def test_a_database_of_the_first_schema_upgrades_in_place(empty_db, tmp_path, monkeypatch, home):
    """A queue migrated by an earlier ImaGen (schema 1), with rows a second user
    wrote by hand, is brought up to date by `imagen db migrate`."""
    first_only = tmp_path / "v1"
    first_only.mkdir()
    (first_only / "0001_schema.sql").write_bytes(
        (migrate.MIGRATIONS_DIR / "0001_schema.sql").read_bytes()
    )
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", first_only)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert [m.version for m in migrate.migrate(conn)] == [1]
        conn.execute(
            """INSERT INTO imagen.jobs (id, prompt, options, priority, max_attempts)
               VALUES (500, 'hand-picked id', '{}', 2147483647, 2147483647),
                      (501, 'bad options', '[1, 2]', 0, 3)"""
        )
        conn.execute(
            """INSERT INTO imagen.jobs (prompt, status, worker_id, lease_expires_at)
               VALUES ('claimed by an old worker', 'running', 'w-old', now())"""
        )
    monkeypatch.undo()

    home.env["IMAGEN_DATABASE_URL"] = empty_db
    done = home.imagen("db", "migrate")
    assert done.returncode == 0, done.stderr
    assert "applied 0002_hardening" in done.stderr
    assert done.stdout.strip() == f"schema version {migrate.latest_version()} (migrated)"

    with psycopg.connect(empty_db, autocommit=True) as conn:
        rows = dict(
            (prompt, rest)
            for prompt, *rest in conn.execute(
                "SELECT prompt, status, options, priority, max_attempts, error FROM imagen.jobs"
            ).fetchall()
        )
        # The job that crashed old workers failed with a reason; every row is valid now.
        assert rows["bad options"][:2] == ["failed", {}]
        assert rows["bad options"][4].startswith("options: must be a JSON object")
        assert rows["hand-picked id"][2:4] == [100, 10]  # bounded
        assert rows["claimed by an old worker"][0] == "running"  # left to its lease
        # The next id the database assigns is past the one written by hand.
        new = conn.execute("INSERT INTO imagen.jobs (prompt) VALUES ('new') RETURNING id")
        assert (new.fetchone() or (0,))[0] > 501
        can_insert_id = conn.execute(
            "SELECT has_column_privilege('authenticated', 'imagen.jobs', 'id', 'INSERT')"
        ).fetchone()
        assert can_insert_id == (False,)
    jobs = home.imagen("jobs", "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert len(jobs.stdout.splitlines()) == 4
