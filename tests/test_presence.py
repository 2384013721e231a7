"""Workers announce themselves in `imagen.workers`: a row on start, kept fresh by
the heartbeat, removed on a clean exit; a killed worker's row goes stale (not
online) and is pruned by a later start. Real worker processes, real PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors

from imagen_tui import services
from imagen_tui.core.workbench import open_workbench
from tests.conftest import Home
from tests.helpers import acting, scalar, sql
from tests.processes import insert_jobs, wait_until, write_config


@pytest.fixture
def queue(home: Home, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database as this process's (and its children's) queue."""
    write_config(home)
    home.env["IMAGEN_DATABASE_URL"] = db_url
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    yield db_url


def row_of(url: str, pid: int) -> dict[str, Any] | None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM imagen.workers WHERE pid = %s", (pid,))
        assert cur.description is not None
        names = [column.name for column in cur.description]
        found = cur.fetchone()
    return dict(zip(names, found, strict=True)) if found else None


def presence(pid: int) -> Any:
    """What `services.workers` says about the worker with this pid (None: no row)."""
    found = [w for w in services.workers(open_workbench()) if w.pid == pid]
    return found[0] if found else None


def test_a_worker_announces_itself_stays_fresh_and_withdraws_on_sigterm(home, queue, workers):
    worker = workers.start(queue, "--lease", "3", "--concurrency", "2", "--poll-interval", "0.5")
    row = wait_until(lambda: row_of(queue, worker.pid), "the presence row", workers=[worker])
    assert row["host"] == socket.gethostname()
    assert row["backends"] == ["mock"]
    assert row["concurrency"] == 2
    assert row["lease_s"] == 3.0
    assert row["id"].startswith(f"{socket.gethostname()}:{worker.pid}:")
    first_seen: datetime = row["last_seen"]

    # The heartbeat (every lease/3 = 1 s) moves last_seen on; started_at stays.
    later = wait_until(
        lambda: (r := row_of(queue, worker.pid)) and r["last_seen"] > first_seen and r,
        "last_seen to advance",
        workers=[worker],
    )
    assert later["started_at"] == row["started_at"]

    # It is the id the queue records: a job it renders carries it.
    (job_id,) = insert_jobs(queue, 1, size=64)
    wait_until(
        lambda: scalar(queue, "SELECT status FROM imagen.jobs WHERE id = %s", (job_id,)) == "done",
        "the job",
        workers=[worker],
    )
    assert scalar(queue, "SELECT worker_id FROM imagen.jobs WHERE id = %s", (job_id,)) == row["id"]

    online = services.workers_online(open_workbench())
    assert [(w.id, w.pid, w.backends, w.online) for w in online] == [
        (row["id"], worker.pid, ("mock",), True)
    ]
    listed = home.imagen("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    (shown,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert shown["id"] == row["id"] and shown["online"] is True
    assert shown["backends"] == ["mock"]
    status = home.imagen("db", "status")
    assert "workers: 1 online (see `imagen workers`)" in status.stdout.splitlines()

    # A clean stop removes the row before the process exits.
    assert worker.terminate() == 0, worker.log()
    assert row_of(queue, worker.pid) is None
    assert services.workers(open_workbench()) == []


def test_a_once_worker_leaves_no_row(queue, workers):
    insert_jobs(queue, 2)
    worker = workers.start(queue, "--once")
    assert worker.wait(120) == 0, worker.log()
    assert sql(queue, "SELECT id FROM imagen.workers") == []


def test_a_killed_worker_goes_stale_and_a_later_start_prunes_it(home, queue, workers):
    killed = workers.start(queue, "--lease", "1", "--poll-interval", "0.5")
    wait_until(lambda: presence(killed.pid), "the presence row", workers=[killed])
    assert presence(killed.pid).online
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait(10)

    # Not online once a lease passes without a heartbeat; still listed, as stale.
    wait_until(lambda: not presence(killed.pid).online, "the killed worker to go stale")
    assert services.workers_online(open_workbench()) == []
    listed = home.imagen("workers")
    assert listed.returncode == 0, listed.stderr
    assert "stale" in listed.stdout
    status = home.imagen("db", "status")
    assert "workers: none online, 1 stale (see `imagen workers`)" in status.stdout

    # An hour later, the next worker to start removes it.
    sql(queue, "UPDATE imagen.workers SET last_seen = last_seen - interval '2 hours'")
    fresh = workers.start(queue, "--lease", "1", "--poll-interval", "0.5")
    wait_until(lambda: presence(fresh.pid), "the new worker's row", workers=[fresh])
    wait_until(lambda: presence(killed.pid) is None, "the stale row to be pruned")
    assert [w.pid for w in services.workers_online(open_workbench())] == [fresh.pid]
    assert fresh.terminate() == 0, fresh.log()


def test_no_workers_is_said_on_stderr(home, queue):
    listed = home.imagen("workers")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""
    assert "no worker has announced itself" in listed.stderr
    assert home.imagen("workers", "--json").stdout == ""


def test_users_see_that_workers_run_but_not_where(api, admin_conn):
    admin_conn.execute(
        "INSERT INTO imagen.workers (id, host, pid, backends, concurrency, lease_s)"
        " VALUES ('gpu1:42:abc', 'gpu1', 42, '{mock}', 1, 60)"
    )
    with acting(api, "00000000-0000-0000-0000-0000000000a1"):
        rows = api.execute("SELECT backends, concurrency FROM imagen.workers").fetchall()
    assert rows == [(["mock"], 1)]
    for column in ("id", "host", "pid"):
        with pytest.raises(errors.InsufficientPrivilege), acting(api, None):
            api.execute(f"SELECT {column} FROM imagen.workers")
    with pytest.raises(errors.InsufficientPrivilege), acting(api, None):
        api.execute("DELETE FROM imagen.workers")


@pytest.fixture
def admin_conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn
