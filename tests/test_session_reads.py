"""Every read a front end makes through `services.Session` outlives a dropped
connection: it runs once more on a new one, so a long-lived app (the TUI)
shows the data instead of an error after the database restarted or a proxy
cut the line. Writes are not re-sent (their commit may have landed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from imagen_tui import services
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import DatabaseError
from tests.helpers import sql

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


def test_a_write_is_not_sent_twice_when_its_connection_dropped(home, monkeypatch, db_url):
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    with services.session(workbench) as session:
        submitted = session.submit(workbench, RequestSpec(prompt="a cat", seed=1), 1)
        drop_other_connections(db_url)
        with pytest.raises(DatabaseError):
            session.cancel(list(submitted.job_ids))
        assert session.jobs()[0].status == "pending"  # the next call has a new connection
