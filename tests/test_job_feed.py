"""`services.feed.JobFeed` without an App: events become re-read rows (bursts
coalesced), news (a failed job, a finished series) is told once per round,
and a listener that reconnects asks for a reload. Real PostgreSQL, its
triggers' NOTIFYs, no Textual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from imagen_tui import services
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench
from imagen_tui.services.feed import JobFeed, JobsUpdate, Notice


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def execute(db_url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.fixture
def session(home, monkeypatch, db_url):
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    with services.session(workbench) as opened:
        yield workbench, opened


def test_the_feed_rereads_coalesces_and_tells_news_once_per_round(session, db_url):
    workbench, opened = session
    updates: list[JobsUpdate] = []
    links: list[bool] = []
    notices: list[Notice] = []
    feed = JobFeed(
        opened,
        on_update=updates.append,
        on_link=lambda online, _error: links.append(online),
        on_notice=notices.append,
    )

    def status_of(job_id: int) -> str | None:
        rows = [row for update in updates for row in update.rows if row.id == job_id]
        return rows[-1].status if rows else None

    async def scenario() -> None:
        task = asyncio.create_task(feed.run())
        try:
            await until(lambda: links == [True])
            submitted = opened.submit(workbench, RequestSpec(prompt="a cat", seed=1), 2)
            first, second = submitted.job_ids
            # A burst: 100 commits, 100 notifications, a few reads, the latest row last.
            with psycopg.connect(db_url, autocommit=True) as conn:
                for step in range(1, 101):
                    conn.execute(
                        "UPDATE imagen.jobs SET progress = %s WHERE id = %s", (step / 100, first)
                    )
            await until(
                lambda: any(r.id == first and r.progress == 1.0 for u in updates for r in u.rows)
            )
            assert len(updates) < 50, f"{len(updates)} reads for 100 events: not coalesced"

            fail = "UPDATE imagen.jobs SET status = 'failed', error = %s WHERE id = %s"
            execute(db_url, fail, ("boom [bold]", first))
            await until(lambda: status_of(first) == "failed")
            # Another event for the failed job (its progress): not news again.
            execute(db_url, "UPDATE imagen.jobs SET progress = 0.5 WHERE id = %s", (first,))
            await until(
                lambda: any(r.id == first and r.progress == 0.5 for u in updates for r in u.rows)
            )
            execute(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (second,))
            await until(lambda: any("complete" in n.title for n in notices))
            # A retry that fails again is news again, and so is the series.
            execute(db_url, "UPDATE imagen.jobs SET status = 'pending' WHERE id = %s", (first,))
            await until(lambda: status_of(first) == "pending")
            execute(db_url, fail, ("boom twice", first))
            await until(lambda: sum("complete" in n.title for n in notices) == 2)
            assert [(n.title, n.severity) for n in notices] == [
                (f"Job {first} failed", "error"),
                (f"Series {submitted.series_id} complete", "information"),
                (f"Job {first} failed", "error"),
                (f"Series {submitted.series_id} complete", "information"),
            ]
            assert notices[0].message == "boom [bold]"  # literal: the front end escapes
            assert notices[1].message == "0 of 2 tries done"

            # The listener loses its line: told, then back, then one reload.
            execute(
                db_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%%'",
            )
            await until(lambda: links[-2:] == [False, True], timeout=30)
            await until(lambda: updates[-1].reload)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
