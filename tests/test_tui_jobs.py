"""The Jobs screen against a real database and real worker processes.

The table has no polling at all: a row changes only because a NOTIFY on
`imagen_job_events` arrived (or because the listener came back and reloaded).
"""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from imagen_tui.tui.widgets.job_table import JobTable
from tests.helpers import sql, status_of
from tests.proxy import PgProxy
from tests.tui import enqueue, make_app, open_jobs, render_queue, run, until


def cell(table: JobTable, job_id: int, column: str) -> str:
    return table.get_cell(str(job_id), column).plain


def shown_line(table: JobTable, job_id: int) -> str:
    """The table's line for this job, as drawn on the screen."""
    lines = [table.render_line(y).text for y in range(table.size.height)]
    return next(line for line in lines if line.split()[:1] == [str(job_id)])


def test_a_changed_cell_is_drawn_and_the_rows_around_it_stay_as_they_were(
    home, monkeypatch, db_url
):
    app = make_app(home, monkeypatch, db_url)
    first, second, third = enqueue(db_url, count=3)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[first, second, third])
            await pilot.pause()
            before = {job: shown_line(table, job) for job in (first, second, third)}
            # Progress of a pending job: a cell no wider than its column (only its row redrawn).
            sql(db_url, "UPDATE imagen.jobs SET progress = 0.5 WHERE id = %s", (second,))
            await until(pilot, lambda: "━━━━━─────" in shown_line(table, second))
            assert shown_line(table, first) == before[first]
            assert shown_line(table, third) == before[third]
            # An error wider than its (empty) column widens it: DataTable redraws all.
            sql(
                db_url,
                "UPDATE imagen.jobs SET status = 'failed', error = 'out of paint' WHERE id = %s",
                (second,),
            )
            await until(pilot, lambda: "out of paint" in shown_line(table, second))
            assert "failed" in shown_line(table, second)

    run(scenario())


def footer_keys(app) -> dict[str, bool]:
    """The Footer's keys as the user sees them: label -> enabled."""
    return {key.description: not key.has_class("-disabled") for key in app.screen.query(FooterKey)}


def test_the_footer_follows_the_highlighted_job_and_is_rebuilt_only_for_a_change(
    home, monkeypatch, db_url
):
    app = make_app(home, monkeypatch, db_url)
    first, second = enqueue(db_url, count=2)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[first, second])
            table.move_cursor(row=table.get_row_index(str(first)))
            await until(pilot, lambda: footer_keys(app).get("Cancel job") is True)
            assert footer_keys(app)["Retry job"] is False  # a pending job: nothing to retry
            keys = list(app.screen.query(FooterKey))
            table.move_cursor(row=table.get_row_index(str(second)))  # the same keys apply
            await pilot.pause(0.1)
            assert list(app.screen.query(FooterKey)) == keys  # the very same widgets

            # Another client fails the highlighted job: no cursor move, only the event.
            sql(db_url, "UPDATE imagen.jobs SET status = 'failed' WHERE id = %s", (second,))
            await until(pilot, lambda: footer_keys(app).get("Retry job") is True)
            assert footer_keys(app)["Cancel job"] is False

    run(scenario())


def test_a_worker_process_finishing_a_job_updates_its_row(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    (job_id,) = enqueue(db_url)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[job_id])
            assert cell(table, job_id, "status") == "pending"
            render_queue(home, db_url)
            await until(pilot, lambda: cell(table, job_id, "status") == "done")
            assert cell(table, job_id, "seed") == "1"

    run(scenario())


def test_new_jobs_appear_on_top_and_the_cursor_stays_on_its_job(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    first, second, _third = enqueue(db_url, count=3)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[first, second, _third])
            table.move_cursor(row=table.get_row_index(str(second)))
            assert table.current_job and table.current_job.id == second
            new = enqueue(db_url, "newer", count=2)
            sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (first,))
            await until(pilot, lambda: all(str(j) in table.rows for j in new))
            await until(pilot, lambda: cell(table, first, "status") == "canceled")
            assert table.current_job and table.current_job.id == second
            assert table.get_row_index(str(max(new))) == 0  # newest on top
            return new

    run(scenario())


def test_cancel_then_retry_from_the_table(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    (job_id,) = enqueue(db_url)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[job_id])
            table.focus()
            await pilot.press("c")
            await until(pilot, lambda: cell(table, job_id, "status") == "canceled")
            assert status_of(db_url, job_id) == "canceled"
            await pilot.press("r")
            await until(pilot, lambda: cell(table, job_id, "status") == "pending")
            assert status_of(db_url, job_id) == "pending"

    run(scenario())


def test_a_status_filter_keeps_only_matching_jobs_live(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    keep, drop = enqueue(db_url, count=2)
    sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (drop,))

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[keep, drop])
            table.focus()
            await pilot.press("s")  # all -> pending
            await until(pilot, lambda: list(table.job_ids) == [keep])
            sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (keep,))
            await until(pilot, lambda: table.row_count == 0)
            (late,) = enqueue(db_url)
            await until(pilot, lambda: list(table.job_ids) == [late])

    run(scenario())


@pytest.mark.parametrize(
    "prompt",
    ["[bold red]boom[/]", "ring \x1b]0;pwned\x07 the bell"],
    ids=["markup", "escape-sequence"],
)
def test_user_text_is_shown_literally(home, monkeypatch, db_url, prompt):
    app = make_app(home, monkeypatch, db_url)
    (job_id,) = enqueue(db_url, prompt)
    sql(
        db_url,
        "UPDATE imagen.jobs SET status = 'failed', error = %s WHERE id = %s",
        (prompt, job_id),
    )

    async def scenario():
        async with app.run_test(size=(160, 30)) as pilot:
            await open_jobs(app, pilot, showing=[job_id])
            await pilot.pause()
            return app.export_screenshot()

    screen = run(scenario())
    shown = prompt.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert "\x1b" not in screen and "\x07" not in screen
    # The SVG escapes text for XML; [ and ] survive, so markup shows as typed.
    svg_text = shown.replace("&", "&amp;").replace(" ", "&#160;")
    assert svg_text[:16] in screen


def test_updates_missed_while_the_listener_was_away_arrive_after_it_reconnects(
    home, monkeypatch, db_url
):
    proxy = PgProxy(db_url).start()
    try:
        app = make_app(home, monkeypatch, proxy.url)
        (job_id,) = enqueue(db_url)

        async def scenario():
            async with app.run_test(size=(140, 30)) as pilot:
                table = await open_jobs(app, pilot, showing=[job_id])
                await until(pilot, lambda: "live" in app.sub_title)
                proxy.down()
                await until(pilot, lambda: "reconnecting" in app.sub_title)
                # Its NOTIFY goes nowhere: the app is not listening right now.
                sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job_id,))
                proxy.up()
                await until(pilot, lambda: "live" in app.sub_title, timeout=60)
                await until(pilot, lambda: cell(table, job_id, "status") == "canceled")

        run(scenario())
    finally:
        proxy.close()


def test_the_listener_reconnects_after_the_database_restarts(
    home, monkeypatch, db_url, restartable
):
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(140, 30)) as pilot:
            table = await open_jobs(app, pilot)
            await until(pilot, lambda: "live" in app.sub_title)
            restartable.stop()
            await until(pilot, lambda: "reconnecting" in app.sub_title)
            restartable.start_again()
            await until(pilot, lambda: "live" in app.sub_title, timeout=60)
            (job_id,) = enqueue(db_url)
            await until(pilot, lambda: str(job_id) in table.rows)

    run(scenario())
