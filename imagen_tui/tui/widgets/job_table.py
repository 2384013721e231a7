"""`JobTable`: the live job list, updated cell by cell.

`show(rows)` replaces the content (first load, a new filter, a reload after
the listener reconnected); `upsert(rows)` applies re-read rows: it rewrites
only the cells whose text changed, puts new jobs at the top and drops jobs
that left the status filter. DataTable keeps the cursor's row *number*
across a sort or a removal, so the table remembers which job the cursor is
on and puts it back there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist, RowKey

from imagen_tui.tui import cells

if TYPE_CHECKING:
    from imagen_tui.core.rows import JobRow

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "Job"),
    ("try", "Series·try"),
    ("status", "Status"),
    ("progress", "Progress"),
    ("prompt", "Prompt"),
    ("backend", "Backend"),
    ("seed", "Seed"),
    ("elapsed", "Elapsed"),
    ("error", "Error"),
)
PROMPT_WIDTH = 32
ROW_CACHES = ("_cell_render_cache", "_row_render_cache", "_row_renderable_cache", "_line_cache")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
ERROR_WIDTH = 60


def job_cells(row: JobRow, now: datetime) -> tuple[Text, ...]:
    """The cells of one job, in COLUMNS order."""
    series = f"{row.series_id}·{row.series_idx}" if row.series_id is not None else "—"
    return (
        Text(str(row.id), justify="right"),
        Text(series),
        cells.status(row.status),
        cells.progress_bar(row.progress, row.status),
        cells.user_text(row.prompt, PROMPT_WIDTH),
        cells.user_text(row.backend or "default", 16),
        Text("" if row.seed is None else str(row.seed), justify="right"),
        cells.elapsed(row.started_at, row.finished_at, now),
        cells.user_text(row.error, ERROR_WIDTH),
    )


def _discard_where(cache: LRUCache[K, V], stale: Callable[[K], bool]) -> None:
    for key in [key for key in cache.keys() if stale(key)]:  # noqa: SIM118 (an LRUCache)
        cache.discard(key)


class JobTable(DataTable[Text]):
    """Jobs, newest first, one row per job keyed by its id."""

    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
    }
    """

    def __init__(self, clock: Callable[[], datetime], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._clock = clock
        self._rows: dict[int, JobRow] = {}
        self.status_filter: str | None = None
        # The DataTable caches `_update_row_cell` prunes (Textual 8.2): without
        # them (another Textual), every update takes DataTable's own path.
        self._row_caches_known = all(hasattr(self, name) for name in ROW_CACHES)

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    # ----------------------------------------------------------------- reading

    @property
    def job_ids(self) -> list[int]:
        return list(self._rows)

    def job(self, job_id: int) -> JobRow | None:
        """The row shown for this job, as last read."""
        return self._rows.get(job_id)

    @property
    def current_job(self) -> JobRow | None:
        """The job under the cursor."""
        key = self._cursor_key()
        return None if key is None else self._rows.get(int(str(key.value)))

    def _cursor_key(self) -> RowKey | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None

    def _keep_cursor(self, key: RowKey | None) -> None:
        if key is None:
            return
        # A job that left the table leaves the cursor on its row number.
        with contextlib.suppress(RowDoesNotExist):
            self.move_cursor(row=self.get_row_index(key), animate=False, scroll=False)

    def _wanted(self, row: JobRow) -> bool:
        return self.status_filter is None or row.status == self.status_filter

    # ----------------------------------------------------------------- writing

    def show(self, rows: Iterable[JobRow]) -> None:
        """Replace the content with `rows` (those the filter lets through)."""
        key = self._cursor_key()
        self.clear(columns=False)
        self._rows.clear()
        now = self._clock()
        for row in sorted(rows, key=lambda r: r.id, reverse=True):
            if self._wanted(row):
                self._add(row, now)
        self._keep_cursor(key)

    def upsert(self, rows: Iterable[JobRow]) -> None:
        """Apply re-read rows: changed cells only, new jobs on top, filtered-out ones gone."""
        key = self._cursor_key()
        now = self._clock()
        added = removed = False
        for row in rows:
            if row.id in self._rows:
                if not self._wanted(row):
                    self.remove_row(str(row.id))
                    del self._rows[row.id]
                    removed = True
                else:
                    self._update(row, now)
            elif self._wanted(row):
                self._add(row, now)
                added = True
        if added:
            self.sort("id", key=lambda cell: int(cell.plain), reverse=True)
        if added or removed:
            self._keep_cursor(key)

    def tick(self) -> None:
        """Advance the elapsed time of running jobs."""
        now = self._clock()
        for job_id, row in self._rows.items():
            if row.status == "running":
                self._set(job_id, "elapsed", cells.elapsed(row.started_at, row.finished_at, now))

    def _add(self, row: JobRow, now: datetime) -> None:
        self._rows[row.id] = row
        self.add_row(*job_cells(row, now), key=str(row.id))

    def _update(self, row: JobRow, now: datetime) -> None:
        self._rows[row.id] = row
        for (key, _label), cell in zip(COLUMNS, job_cells(row, now), strict=True):
            self._set(row.id, key, cell)

    def _set(self, job_id: int, column: str, cell: Text) -> None:
        if self.get_cell(str(job_id), column) == cell:
            return  # unchanged: no redraw
        # A seed, an elapsed time or an error may need a wider column. Only then
        # is the width worth DataTable's attention: for a cell no wider than its
        # column, it measures every cell of the column (1,000 jobs: 1,000
        # measures on each event) to see whether the column may shrink.
        key, column_key = RowKey(str(job_id)), ColumnKey(column)
        if cell.cell_len <= self.columns[column_key].content_width and self._row_caches_known:
            self._update_row_cell(key, column_key, cell)
        else:
            self.update_cell(key, column_key, cell, update_width=True)  # redraws everything

    def _update_row_cell(self, row_key: RowKey, column_key: ColumnKey, cell: Text) -> None:
        """`update_cell` for a cell that fits its column, redrawing only its row.

        DataTable counts its updates and keys every cached render by the count,
        so one changed cell re-renders every row on screen: 45 ms a frame with
        35 rows in view, on each progress event, enough to delay the next
        event's cells. Here the count stays; the changed row's cached renders
        (cells, row lines, renderables) and the assembled screen lines are
        dropped, and only the row's region is refreshed. Row heights never
        change here (one line a job), so the row offsets stay valid."""
        self._data[row_key][column_key] = cell
        index = self.get_row_index(row_key)
        _discard_where(self._cell_render_cache, lambda cached: cached[0] == row_key)
        _discard_where(self._row_render_cache, lambda cached: cached[0] == row_key)
        _discard_where(self._row_renderable_cache, lambda cached: cached[1] == index)
        self._line_cache.clear()
        self.refresh_row(index)
