"""The live feed: bursts coalesce into few re-reads, and failures and finished
series are announced once each (real database, real worker processes)."""

from __future__ import annotations

import psycopg
from textual.notifications import Notify

from tests.tui import enqueue, make_app, open_jobs, render_queue, run, until


def test_a_burst_of_events_for_one_job_is_read_a_few_times_and_ends_on_the_latest(
    home, monkeypatch, db_url
):
    app = make_app(home, monkeypatch, db_url)
    (job_id,) = enqueue(db_url)
    reads: list[list[int]] = []

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot)
            await until(pilot, lambda: str(job_id) in table.rows)
            session = app.session
            assert session is not None
            original = session.jobs_by_id

            def counted(ids):
                reads.append(list(ids))
                return original(ids)

            session.jobs_by_id = counted  # type: ignore[method-assign]
            with psycopg.connect(db_url, autocommit=True) as conn:
                for step in range(1, 101):  # 100 commits, 100 notifications
                    conn.execute(
                        "UPDATE imagen.jobs SET progress = %s WHERE id = %s", (step / 100, job_id)
                    )
            await until(
                pilot, lambda: (row := table.job(job_id)) is not None and row.progress == 1.0
            )

    run(scenario())
    assert reads and all(ids == [job_id] for ids in reads)
    assert len(reads) < 50, f"{len(reads)} reads for 100 events: bursts are not coalesced"


def test_failures_and_a_finished_series_are_announced_once_per_round(home, monkeypatch, db_url):
    config = (
        "default_backend: mock\n"
        'backends:\n  mock:\n    type: mock\n    fail_if_prompt_contains: "boom"\n'
    )
    seen: list[object] = []
    app = make_app(home, monkeypatch, db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        inserted = conn.execute(
            "INSERT INTO imagen.series (prompt, count) VALUES ('a [bold]boom[/]', 2) RETURNING id"
        ).fetchone()
        assert inserted is not None
        (series_id,) = inserted
        ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO imagen.jobs (prompt, series_id, series_idx, max_attempts) "
                "SELECT 'a [bold]boom[/]', %s, g, 1 FROM generate_series(1, 2) g RETURNING id",
                (series_id,),
            )
        ]

    def notices():
        return [m.notification for m in seen if isinstance(m, Notify)]

    def titles(word: str) -> list[str]:
        return [n.title for n in notices() if word in n.title]

    async def scenario():
        async with app.run_test(size=(140, 30), message_hook=seen.append) as pilot:
            await open_jobs(app, pilot)
            render_queue(home, db_url)
            await until(pilot, lambda: titles("complete"))
            # A retried try that fails again is news again, and so is the series.
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("UPDATE imagen.jobs SET status = 'pending' WHERE id = %s", (ids[0],))
            render_queue(home, db_url)
            await until(pilot, lambda: len(titles("complete")) == 2)

    run(scenario())
    # In order, each once per round: a repeat of round one would show before round two's.
    assert sorted(titles("failed")) == sorted(f"Job {i} failed" for i in [*ids, ids[0]])
    failed = [n for n in notices() if "failed" in n.title]
    assert all("boom" in n.message and not n.markup for n in failed)
    assert titles("complete") == [f"Series {series_id} complete"] * 2
    assert [n.message for n in notices() if "complete" in n.title] == ["0 of 2 tries done"] * 2
