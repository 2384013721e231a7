"""The Series screen: the series list and, for the highlighted one, its tries."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from imagen_tui.errors import DatabaseError
from imagen_tui.text import one_line
from imagen_tui.tui import cells
from imagen_tui.tui.messages import JobsUpdate

if TYPE_CHECKING:
    from imagen_tui.db.repositories import SeriesRow
    from imagen_tui.tui.app import WorkbenchApp


class SeriesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "reload", "Reload", id="reload-series", show=False),
    ]

    @property
    def workbench_app(self) -> WorkbenchApp:
        from imagen_tui.tui.app import WorkbenchApp

        assert isinstance(self.app, WorkbenchApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[Text] = DataTable(id="series-list", cursor_type="row")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#series-list", DataTable)
        for key, label in (
            ("id", "Series"),
            ("prompt", "Prompt"),
            ("done", "Done"),
            ("winner", "Winner"),
        ):
            table.add_column(label, key=key)
        self.workbench_app.jobs_signal.subscribe(self, self._on_jobs)
        if self.workbench_app.session is not None:
            self.action_reload()

    def _on_jobs(self, update: JobsUpdate) -> None:
        if update.reload or any(row.series_id is not None for row in update.rows):
            self.action_reload()

    _wanted: int | None = None  # a series to put the cursor on once loaded

    def show_series(self, series_id: int) -> None:
        """Put the cursor on this series (safe before the screen is mounted)."""
        self._wanted = series_id
        if self.is_mounted and self.workbench_app.session is not None:
            self.action_reload()

    @work(thread=True, exclusive=True, group="series-load", exit_on_error=False)
    def action_reload(self) -> None:
        app = self.workbench_app
        try:
            rows = app.require_session().series(100)
        except DatabaseError as error:
            app.notify(one_line(str(error), 300), title="Series", severity="error", markup=False)
            return
        app.call_from_thread(self._show, rows)

    def _show(self, rows: list[SeriesRow]) -> None:
        table = self.query_one("#series-list", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(
                Text(str(row.id), justify="right"),
                cells.user_text(row.prompt, 60),
                Text(f"{row.done}/{row.count}"),
                Text("" if row.winner_idx is None else f"★ {row.winner_idx}"),
                key=str(row.id),
            )
        table.move_cursor(row=min(cursor, max(0, table.row_count - 1)))
        if self._wanted is not None and str(self._wanted) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self._wanted)))
            self._wanted = None

    @on(DataTable.RowSelected, "#series-list")
    def _selected(self, event: DataTable.RowSelected) -> None:
        pass
