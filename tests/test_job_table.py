"""`JobTable` draws its own lines (the Line API) from a cache keyed by
everything a line shows: these tests change each of those things and check
that the line on screen follows (no stale cell), without a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.app import App, ComposeResult

from imagen_tui.tui.widgets.job_table import JobTable
from tests.tui import run
from tests.tui_fixtures import JOBS, clock, job


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield JobTable(clock, id="jobs")


def line_of(table: JobTable, job_id: int) -> Any:
    """The strip drawn for this job (the header is line 0)."""
    return table.render_line(1 + table.get_row_index(job_id) - round(table.scroll_y))


def test_every_change_to_a_job_is_drawn_even_back_to_an_earlier_look():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            await pilot.pause()
            first = line_of(table, 11).text
            for progress in (0.5, 0.7, None):  # the last one looks as the first did
                table.upsert([replace(JOBS[1], progress=progress, status="running")])
                table.upsert([JOBS[1]])
                assert line_of(table, 11).text == first
            table.upsert([replace(JOBS[1], status="canceled")])
            assert "canceled" in line_of(table, 11).text
            assert table.get_cell("11", "status").plain == "canceled"
            table.upsert([JOBS[1]])
            assert line_of(table, 11).text == first

    run(scenario())


def test_a_job_dropped_and_shown_again_is_drawn_as_it_is_now():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            await pilot.pause()
            assert "pending" in line_of(table, 11).text
            table.show([row for row in JOBS if row.id != 11])
            table.show([*JOBS[:1], replace(JOBS[1], status="canceled"), *JOBS[2:]])
            assert "canceled" in line_of(table, 11).text

    run(scenario())


def test_the_cursor_and_the_theme_are_drawn_at_once():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            app.theme = "textual-dark"
            table = app.query_one(JobTable)
            table.show(JOBS)
            table.focus()
            await pilot.pause()
            on_cursor = line_of(table, 12)
            off_cursor = line_of(table, 11)
            await pilot.press("down")
            assert table.current_job is not None and table.current_job.id == 11
            assert line_of(table, 11).text == off_cursor.text
            assert list(line_of(table, 11)) != list(off_cursor)  # now highlighted
            assert list(line_of(table, 12)) != list(on_cursor)  # no longer
            before = list(line_of(table, 10))
            app.theme = "nord"
            await pilot.pause()
            assert list(line_of(table, 10)) != before

    run(scenario())


def test_a_wider_cell_widens_its_column_for_every_row():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(200, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            await pilot.pause()
            header = table.render_line(0).text
            table.upsert([replace(JOBS[0], seed=12345678901234)])
            assert "12345678901234" in line_of(table, 12).text
            assert table.render_line(0).text != header  # the header moved with it
            column = line_of(table, 12).text.index("12345678901234")
            assert line_of(table, 7).text[column:].lstrip().startswith("1007")

    run(scenario())


def test_rows_arriving_on_top_keep_the_cursor_on_its_job_and_its_line():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            table.move_cursor(row=table.get_row_index("10"))
            await pilot.pause()
            table.upsert([job(13, "pending"), job(14, "pending")])
            assert table.job_ids[:2] == [14, 13]
            assert table.current_job is not None and table.current_job.id == 10
            assert table.cursor_row == 4
            drawn = line_of(table, 10)
            cursor = table.get_component_styles("datatable--cursor").rich_style
            assert any(
                segment.style and segment.style.bgcolor == cursor.bgcolor for segment in drawn
            )

    run(scenario())


def test_enter_on_the_table_opens_the_highlighted_jobs_series(home):
    from imagen_tui.core.workbench import open_workbench
    from imagen_tui.tui.app import WorkbenchApp
    from imagen_tui.tui.screens.jobs import JobsScreen
    from tests.tui import until
    from tests.tui_fixtures import FixedSession

    app = WorkbenchApp(
        open_workbench(home.write_config("default_backend: mock\n")),
        open_session=FixedSession,
        clock=clock,
    )

    async def scenario():
        async with app.run_test(size=(140, 20)) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            table = app.screen.query_one(JobTable)
            await until(pilot, lambda: table.row_count == len(JOBS))
            table.focus()
            await pilot.press("down", "enter")  # job 11, of series 3
            await until(pilot, lambda: app.current_mode == "series")
            return app.get_screen("series")

    screen = run(scenario())
    assert screen._wanted == 3  # the series it was asked for


def test_the_cursor_moved_by_keys_stays_in_view():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show([job(n, "pending") for n in range(1, 41)])
            table.focus()
            await pilot.pause()
            await pilot.press(*["down"] * 25)
            await pilot.pause()
            assert table.current_job is not None and table.current_job.id == 40 - 25
            shown = [table.render_line(y).text for y in range(1, table.size.height)]
            assert any(line.split()[:1] == ["15"] for line in shown)
            await pilot.press("home")
            await pilot.pause()
            assert table.cursor_row == 0 and round(table.scroll_y) == 0

    run(scenario())


def test_a_click_puts_the_cursor_on_that_job():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            await pilot.pause()
            await pilot.click(JobTable, offset=(5, 3))  # the header, then jobs 12, 11, 10
            assert table.current_job is not None and table.current_job.id == 10

    run(scenario())


def test_a_change_to_a_job_below_the_top_is_painted_when_the_table_is_scrolled():
    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show([job(n, "pending") for n in range(1, 41)])
            table.focus()
            await pilot.press(*["down"] * 25)
            await pilot.pause()
            assert round(table.scroll_y) > 0
            before = app.export_screenshot()
            widths = table.render_line(0).text
            table.upsert([job(16, "pending", seed=1099)])  # no wider: only its line
            assert table.render_line(0).text == widths
            await pilot.pause()
            after = app.export_screenshot()
            return before, after

    before, after = run(scenario())
    assert "1099" not in before
    assert "1099" in after


def test_a_cell_whose_style_alone_changes_is_drawn_anew(monkeypatch):
    from rich.text import Text

    from imagen_tui.tui.widgets import job_table

    async def scenario():
        app = TableApp()
        async with app.run_test(size=(140, 12)) as pilot:
            table = app.query_one(JobTable)
            table.show(JOBS)
            await pilot.pause()
            before = list(line_of(table, 11))
            # The same text in another colour (as a status might be shown).
            original = job_table.cells.status
            monkeypatch.setattr(
                job_table.cells, "status", lambda value: Text(original(value).plain, "magenta")
            )
            table.upsert([JOBS[1]])
            after = list(line_of(table, 11))
            assert [s.text for s in after] == [s.text for s in before]
            assert after != before

    run(scenario())
