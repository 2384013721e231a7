"""Every call a front end makes through `services.Session` outlives a dropped
connection: the session's pool checks a connection before handing it out and
replaces a dead one, so a long-lived app (the TUI) shows the data instead of
an error after the database restarted or a proxy cut the line. A statement is
never sent twice (a write's commit may have landed). Several threads use one
session at once, and closing it ends its connections and its thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from imagen_tui import services
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import DatabaseError
from tests.helpers import sql
from tests.proxy import pg_proxy

READS: dict[str, Callable[[services.Session, int, list[int]], Any]] = {
    "jobs": lambda session, series, jobs: session.jobs(),
    "jobs_by_id": lambda session, series, jobs: session.jobs_by_id(jobs),
    "series": lambda session, series, jobs: session.series(),
    "series_detail": lambda session, series, jobs: session.series_detail(series),
    "series_images": lambda session, series, jobs: session.series_images(series),
    "gallery": lambda session, series, jobs: session.gallery(),
    "workers": lambda session, series, jobs: session.workers(),
    "usage_totals": lambda session, series, jobs: session.usage_totals(),
    "usage_rows": lambda session, series, jobs: session.usage_rows(),
}


def drop_other_connections(db_url: str) -> None:
    """What a server restart or a cut line does to the session's connection."""
    sql(
        db_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )


@pytest.mark.parametrize("read", READS)
def test_a_read_runs_again_on_a_new_connection_after_the_old_one_dropped(
    home, monkeypatch, db_url, read
):
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    with services.session(workbench) as session:
        submitted = session.submit(workbench, RequestSpec(prompt="a cat", seed=1), 2)
        expected = READS[read](session, submitted.series_id, list(submitted.job_ids))
        drop_other_connections(db_url)
        again = READS[read](session, submitted.series_id, list(submitted.job_ids))
    assert again == expected


def test_a_write_whose_reply_was_lost_is_not_sent_again(home, monkeypatch, db_url):
    with pg_proxy(db_url) as proxy:
        monkeypatch.setenv("IMAGEN_DATABASE_URL", proxy.url)
        workbench = open_workbench(home.write_config("default_backend: mock\n"))
        with services.session(workbench) as session:
            proxy.cut_after_reply(b"INSERT INTO imagen.series")
            with pytest.raises(DatabaseError):
                session.submit(workbench, RequestSpec(prompt="a cat", seed=1), 1)
            assert proxy.cut_done.is_set()
            assert len(session.jobs()) == 1  # the next call has a new connection
    assert sql(db_url, "SELECT count(*) FROM imagen.series") == [(1,)]  # sent once


def session_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("imagen-session")]


def connections_to(db_url: str) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(sql(db_url, query)[0][0])


def test_two_threads_share_a_session_across_a_dropped_connection(home, monkeypatch, db_url):
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    failures: list[BaseException] = []
    with services.session(workbench) as session:
        submitted = session.submit(workbench, RequestSpec(prompt="a cat", seed=1), 2)
        series_id, job_ids = submitted.series_id, list(submitted.job_ids)
        start = threading.Barrier(2)

        def reads(read: Callable[[], object]) -> None:
            try:
                start.wait(10)
                for _ in range(20):
                    assert read()
            except BaseException as error:
                failures.append(error)

        for _round in ("first", "after the drop"):
            threads = [
                threading.Thread(target=reads, args=(lambda: session.jobs_by_id(job_ids),)),
                threading.Thread(target=reads, args=(lambda: session.series_detail(series_id),)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert failures == []
            assert 1 <= connections_to(db_url) <= 4  # the pool's bound, none leaked
            drop_other_connections(db_url)
            start.reset()
        assert session_threads()
    assert session_threads() == []  # closing the session ends the pool's thread
    assert connections_to(db_url) == 0


def test_a_connection_cut_while_idle_is_replaced(home, monkeypatch, db_url):
    with pg_proxy(db_url) as proxy:
        monkeypatch.setenv("IMAGEN_DATABASE_URL", proxy.url)
        workbench = open_workbench(home.write_config("default_backend: mock\n"))
        with services.session(workbench) as session:
            assert session.jobs() == []
            before = proxy.connections
            proxy.down()
            proxy.up()
            assert session.jobs() == []  # on a new connection, not an error
            assert proxy.connections > before
