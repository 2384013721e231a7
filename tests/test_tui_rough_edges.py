"""Rough edges a new user met (issue 18, part 3): where the focus starts and lands,
what enter does on the Jobs screen, what a narrow Jobs table keeps, what a large
terminal's grid does with its room, the usage chart's free days, and a database
that cannot be opened."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from textual.notifications import Notify
from textual.widgets import Input, Static

from imagen_tui.core.rows import UsageTotal
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import DatabaseError
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.compose import ComposeScreen
from imagen_tui.tui.screens.jobs import JobsScreen
from imagen_tui.tui.screens.series import SeriesScreen
from imagen_tui.tui.screens.usage import bar_chart
from imagen_tui.tui.widgets.image_grid import MIN_TILE, _roomier
from imagen_tui.tui.widgets.job_table import JobTable
from imagen_tui.tui.widgets.prompt_area import PromptArea
from tests.helpers import sql
from tests.tui import enqueue, make_app, open_jobs, run, until


def test_jobs_screen_starts_in_the_table_and_enter_opens_the_series(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    [series_id] = [
        row[0]
        for row in sql(db_url, "INSERT INTO imagen.series (prompt) VALUES ('x') RETURNING id")
    ]
    sql(
        db_url,
        "INSERT INTO imagen.jobs (series_id, series_idx, prompt) VALUES (%s, 1, 'x')",
        (series_id,),
    )

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_jobs(app, pilot)
            await until(pilot, lambda: table.row_count == 1)
            assert isinstance(app.focused, JobTable)  # not the status filter
            await pilot.press("enter")
            await until(
                pilot,
                lambda: isinstance(app.screen, SeriesScreen) and app.screen.series_id == series_id,
            )

    run(scenario())


def test_compose_puts_the_cursor_in_the_prompt_on_return_and_on_clear(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.query_one("#seed", Input).focus()
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            await pilot.press("f1")
            await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
            await until(pilot, lambda: isinstance(app.focused, PromptArea))
            await pilot.press("x")
            assert app.query_one("#prompt", PromptArea).text.startswith("x")
            assert app.query_one("#seed", Input).value == ""
            app.query_one("#size", Input).focus()
            await pilot.press("ctrl+r")
            await until(pilot, lambda: isinstance(app.focused, PromptArea))
            assert app.query_one("#prompt", PromptArea).text == ""

    run(scenario())


def test_a_narrow_jobs_table_cuts_the_prompt_and_keeps_the_error(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)
    [job] = enqueue(db_url, "a very long prompt about a lighthouse at dusk in oils")
    error = "mock backend refused: out of memory on the device"
    sql(db_url, "UPDATE imagen.jobs SET status = 'failed', error = %s WHERE id = %s", (error, job))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_jobs(app, pilot, showing=[job])
            await pilot.pause()
            header = table.render_line(0).text
            line = table.render_line(1).text
            assert "Error" in header
            assert "mock backend" in line  # its start, at least
            assert "a very long" in line and "in oils" not in line  # the prompt gave way
            assert table.virtual_size.width <= table.size.width  # no sideways scrolling

    run(scenario())


def test_a_large_terminal_grows_the_tiles_of_a_ten_try_series():
    # The Series screen's grid at 200x50 has 142x47 cells (measured).
    columns, tile_width, picture_height = _roomier(10, 142, 47) or (0, 0, 0)
    assert (columns, picture_height) == (5, 13)  # two rows of five, all in view
    assert tile_width > MIN_TILE
    # 80x24 (a grid of 51x21): no room to spare, the usual small tiles stay.
    assert _roomier(10, 51, 21) is None


def test_a_day_of_free_images_shows_its_count_in_the_usage_chart():
    today = date(2026, 12, 1)

    def total(day: str, count: int, cost: str) -> UsageTotal:
        priced = count if cost != "0" else 0
        return UsageTotal(day, count, priced, Decimal(cost), None, 1000.0)

    chart = bar_chart([total("2026-12-01", 12, "0"), total("2026-11-30", 2, "0.04")], today).plain
    lines = chart.splitlines()
    assert lines[-1].endswith("12 images, no cost")
    assert lines[-2].endswith("$0.04")
    assert lines[-3].endswith("$0.00")  # a day with nothing at all


@pytest.fixture
def no_database(home) -> WorkbenchApp:
    reason = "the embedded server did not start: " + "x" * 300 + " (see the end)"

    def fail() -> Any:
        raise DatabaseError(reason)

    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    return WorkbenchApp(workbench, open_session=fail)


def test_a_database_that_cannot_open_is_said_whole_and_submitting_is_impossible(no_database):
    app = no_database
    notes: list[str] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            banner = app.query_one("#database-error", Static)
            await until(pilot, lambda: banner.display)
            text = str(banner.render())
            assert "x" * 300 + " (see the end)" in text.replace("\n", "")
            assert not any("did not start" in note for note in notes)  # once, not as a toast
            app.query_one("#prompt", PromptArea).text = "a fox"
            await pilot.press("ctrl+s")
            note = await until(pilot, lambda: [n for n in notes if "impossible" in n])
            assert "not open yet" not in note[0]

    run(scenario())
