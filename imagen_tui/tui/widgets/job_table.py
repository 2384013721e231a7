"""`JobTable`: the live job list, updated row by row.

`show(rows)` replaces the content (first load, a new filter, a reload after
the listener reconnected); `upsert(rows)` applies re-read rows: changed
rows are redrawn, new jobs go on top and jobs that left the status filter
go. The cursor is kept as a job id, so it stays on its job when rows
arrive above it.

The table draws itself with Textual's Line API (a `ScrollView` whose
`render_line` returns one line of the table), as Textualize's toolong does
for millions of log lines, and looks like Textual's `DataTable` (the same
component classes and CSS). Each drawn line is cached under everything it
is drawn from: the job, its row version (bumped by every change to its
cells), whether the cursor is on it, its stripe, the column widths, the
styles and the visible slice. A change to any of them is a new key, so a
stale line cannot be shown; redrawing one job costs one line, whatever the
number of jobs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.renderables.styled import Styled
from textual.scroll_view import ScrollView
from textual.strip import Strip

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
COLUMN_INDEX = {key: index for index, (key, _label) in enumerate(COLUMNS)}
PROMPT_WIDTH = 32
MIN_PROMPT_WIDTH = 12  # a narrow terminal cuts the prompt down to this before Error goes
MIN_ERROR_WIDTH = 16  # then the error, down to this, so its start stays in view
ERROR_WIDTH = 60
CELL_PADDING = 1  # blank cells each side of a cell, as in DataTable
HEADER_HEIGHT = 1
LINE_CACHE_SIZE = 1000  # drawn lines: a few screens' worth


def job_cells(row: JobRow, now: datetime) -> tuple[Text, ...]:
    """The cells of one job, in COLUMNS order."""
    series = f"{row.series_id}·{row.series_idx}" if row.series_id is not None else "—"
    return (
        Text(str(row.id), justify="right"),
        Text(series),
        cells.status(row.status),
        cells.progress_bar(row.progress, row.status),
        cells.user_text(row.prompt, PROMPT_WIDTH),
        cells.user_text(row.backend or "—", 16),
        Text("" if row.seed is None else str(row.seed), justify="right"),
        cells.elapsed(row.started_at, row.finished_at, now),
        cells.user_text(row.waiting or row.error, ERROR_WIDTH),
    )


def _looks(row_cells: tuple[Text, ...]) -> tuple[object, ...]:
    """Everything that decides how cells are drawn (Text's `==` compares only
    the text and its spans, not its own style or justification)."""
    return tuple(
        (cell.plain, tuple(cell.spans), str(cell.style), cell.justify, cell.overflow)
        for cell in row_cells
    )


def _job_id(key: int | str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


class JobKeys:
    """The jobs shown, as `str(job_id) in table.rows` asks (ints work too)."""

    def __init__(self, table: JobTable) -> None:
        self._table = table

    def __contains__(self, key: object) -> bool:
        job_id = _job_id(key) if isinstance(key, int | str) else None
        return job_id is not None and job_id in self._table._cells

    def __iter__(self) -> Iterator[str]:
        return (str(job_id) for job_id in self._table._order)

    def __len__(self) -> int:
        return len(self._table._order)


class JobTable(ScrollView, can_focus=True):
    """Jobs, newest first, one line per job."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First job", show=False),
        Binding("end,ctrl+end", "last", "Last job", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "datatable--cursor",
        "datatable--header",
        "datatable--odd-row",
        "datatable--even-row",
    }
    # DataTable's look (Textual 8.2's DEFAULT_CSS, the parts a row-cursor table uses).
    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .datatable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .datatable--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .datatable--even-row {
            background: $surface-darken-1 40%;
        }
        & > .datatable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .datatable--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .datatable--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .datatable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor is on another job (or the same job at another row)."""

        def __init__(self, table: JobTable, cursor_row: int, job_id: int | None) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.job_id = job_id

        @property
        def control(self) -> JobTable:
            return self.table

    def __init__(self, clock: Callable[[], datetime], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._rows: dict[int, JobRow] = {}
        self._cells: dict[int, tuple[Text, ...]] = {}
        # A job's row version: a new number (never reused) on every change to its cells.
        self._versions: dict[int, int] = {}
        self._next_version = itertools.count(1)
        self._order: list[int] = []  # job ids, newest first
        self._index: dict[int, int] = {}  # job id -> its row (rebuilt when the order changes)
        self._labels = tuple(Text(label) for _key, label in COLUMNS)
        self._widths = [label.cell_len for label in self._labels]
        self._cursor_job: int | None = None
        self._highlighted: tuple[int, int | None] | None = None
        self._lines: LRUCache[tuple[object, ...], Strip] = LRUCache(LINE_CACHE_SIZE)
        self.status_filter: str | None = None

    # ----------------------------------------------------------------- reading

    @property
    def job_ids(self) -> list[int]:
        return list(self._order)

    @property
    def rows(self) -> JobKeys:
        return JobKeys(self)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        """The row the cursor is on (0 when the table is empty)."""
        job = self._cursor_job
        return self._index.get(job, 0) if job is not None else 0

    def job(self, job_id: int) -> JobRow | None:
        """The row shown for this job, as last read."""
        return self._rows.get(job_id)

    @property
    def current_job(self) -> JobRow | None:
        """The job under the cursor."""
        return None if self._cursor_job is None else self._rows.get(self._cursor_job)

    def get_row_index(self, key: int | str) -> int:
        """The row of this job; KeyError when it is not shown."""
        job_id = _job_id(key)
        if job_id is None or job_id not in self._index:
            raise KeyError(key)
        return self._index[job_id]

    def get_cell(self, key: int | str, column: str) -> Text:
        """The cell shown for this job in this column; KeyError when not shown."""
        job_id = _job_id(key)
        if job_id is None or job_id not in self._cells:
            raise KeyError(key)
        return self._cells[job_id][COLUMN_INDEX[column]]

    def _wanted(self, row: JobRow) -> bool:
        return self.status_filter is None or row.status == self.status_filter

    # ----------------------------------------------------------------- writing

    def show(self, rows: Iterable[JobRow]) -> None:
        """Replace the content with `rows` (those the filter lets through)."""
        old_row = self.cursor_row
        self._rows.clear()
        self._cells.clear()
        self._widths = [label.cell_len for label in self._labels]
        now = self._clock()
        for row in rows:
            if self._wanted(row):
                self._store(row, job_cells(row, now))
        self._order = sorted(self._rows, reverse=True)
        self._versions = {job_id: next(self._next_version) for job_id in self._order}
        self._reindex()
        self._keep_cursor(old_row)
        self._layout_changed()

    def upsert(self, rows: Iterable[JobRow]) -> None:
        """Apply re-read rows: changed rows redrawn, new jobs on top, filtered-out ones gone."""
        old_row = self.cursor_row
        now = self._clock()
        added = removed = False
        widths = list(self._widths)
        changed: list[int] = []
        for row in rows:
            if row.id in self._rows:
                if not self._wanted(row):
                    self._drop(row.id)
                    removed = True
                elif self._update(row, job_cells(row, now)):
                    changed.append(row.id)
            elif self._wanted(row):
                self._store(row, job_cells(row, now))
                self._versions[row.id] = next(self._next_version)
                added = True
        if added or removed:
            self._order = sorted(self._rows, reverse=True)
            self._reindex()
            self._keep_cursor(old_row)
        if added or removed or widths != self._widths:
            self._layout_changed()
        else:
            for job_id in changed:
                self._refresh_job(job_id)

    def tick(self) -> None:
        """Advance the elapsed time of running jobs."""
        now = self._clock()
        for job_id, row in self._rows.items():
            if row.status == "running":
                cell = cells.elapsed(row.started_at, row.finished_at, now)
                self._set(job_id, COLUMN_INDEX["elapsed"], cell)

    def _store(self, row: JobRow, row_cells: tuple[Text, ...]) -> None:
        self._rows[row.id] = row
        self._cells[row.id] = row_cells
        self._widen(row_cells)

    def _update(self, row: JobRow, row_cells: tuple[Text, ...]) -> bool:
        """Store a re-read row; True when its cells changed (its version is bumped)."""
        self._rows[row.id] = row
        if _looks(self._cells[row.id]) == _looks(row_cells):
            return False
        self._cells[row.id] = row_cells
        self._versions[row.id] = next(self._next_version)
        self._widen(row_cells)
        return True

    def _set(self, job_id: int, column: int, cell: Text) -> None:
        row_cells = self._cells[job_id]
        if _looks((row_cells[column],)) == _looks((cell,)):
            return  # unchanged: no redraw
        self._cells[job_id] = (*row_cells[:column], cell, *row_cells[column + 1 :])
        self._versions[job_id] = next(self._next_version)
        widths = list(self._widths)
        self._widen(self._cells[job_id])
        if widths != self._widths:
            self._layout_changed()
        else:
            self._refresh_job(job_id)

    def _drop(self, job_id: int) -> None:
        del self._rows[job_id], self._cells[job_id], self._versions[job_id]

    def _widen(self, row_cells: tuple[Text, ...]) -> None:
        """Columns grow to fit their cells (they never shrink under a live update)."""
        for column, cell in enumerate(row_cells):
            if cell.cell_len > self._widths[column]:
                self._widths[column] = cell.cell_len

    def _reindex(self) -> None:
        self._index = {job_id: row for row, job_id in enumerate(self._order)}

    def _keep_cursor(self, old_row: int) -> None:
        """The cursor stays on its job; a job that left leaves it on its row number."""
        if self._cursor_job not in self._index:
            self._cursor_job = (
                self._order[min(old_row, len(self._order) - 1)] if self._order else None
            )
        self._highlight()

    # ----------------------------------------------------------------- the cursor

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on this row (clamped to the rows shown)."""
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        before = self._cursor_job
        self._cursor_job = self._order[row]
        if before != self._cursor_job:
            if before is not None:
                self._refresh_job(before)
            self._refresh_job(self._cursor_job)
        if scroll:
            self._scroll_to_row(row, animate)
        self._highlight()

    def _highlight(self) -> None:
        highlighted = (self.cursor_row, self._cursor_job)
        if highlighted != self._highlighted:
            self._highlighted = highlighted
            self.post_message(self.RowHighlighted(self, *highlighted))

    def _scroll_to_row(self, row: int, animate: bool) -> None:
        visible = max(1, self.size.height - HEADER_HEIGHT - self.scrollbar_size_horizontal)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=animate, immediate=not animate)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=animate, immediate=not animate)

    def _page(self) -> int:
        return max(1, self.size.height - HEADER_HEIGHT - 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + self._page())

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= HEADER_HEIGHT:
            self.move_cursor(row=event.y - HEADER_HEIGHT + round(self.scroll_y), scroll=False)

    # ----------------------------------------------------------------- drawing

    def _fitted(self, width: int) -> tuple[int, ...]:
        """The column widths for a table `width` cells wide: the prompt gives up
        room first (down to MIN_PROMPT_WIDTH), then the error (down to
        MIN_ERROR_WIDTH), so the Error column stays in view."""
        widths = list(self._widths)
        for column, least in (("prompt", MIN_PROMPT_WIDTH), ("error", MIN_ERROR_WIDTH)):
            over = sum(widths) + 2 * CELL_PADDING * len(widths) - width
            if over <= 0:
                break
            at = COLUMN_INDEX[column]
            widths[at] = max(min(widths[at], least), widths[at] - over)
        return tuple(widths)

    def _layout_changed(self) -> None:
        widths = self._fitted(self.size.width)
        width = sum(widths) + 2 * CELL_PADDING * len(widths)
        self.virtual_size = Size(width, HEADER_HEIGHT + len(self._order))
        self.refresh()

    def _refresh_job(self, job_id: int) -> None:
        """Repaint this job's line only (if it is in view)."""
        row = self._index.get(job_id)
        if row is None:
            return
        y = HEADER_HEIGHT + row - round(self.scroll_y)
        if HEADER_HEIGHT <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        x1 = round(self.scroll_x)
        base = self.rich_style
        header = self.get_component_styles("datatable--header").rich_style
        if y < HEADER_HEIGHT:
            return self._line(("header", header), header, self._labels, None, x1, width, base)
        row = y - HEADER_HEIGHT + round(self.scroll_y)
        if not 0 <= row < len(self._order):
            return Strip.blank(width, base)
        job_id = self._order[row]
        stripe = self.get_component_styles(
            "datatable--odd-row" if row % 2 else "datatable--even-row"
        ).rich_style
        cursor = self.get_component_styles("datatable--cursor").rich_style
        on_cursor = job_id == self._cursor_job
        key = ("job", job_id, self._versions[job_id], stripe, cursor if on_cursor else None)
        return self._line(
            key, stripe, self._cells[job_id], cursor if on_cursor else None, x1, width, base
        )

    def _line(
        self,
        key: tuple[object, ...],
        row_style: Style,
        row_cells: tuple[Text, ...],
        cursor: Style | None,
        x1: int,
        width: int,
        base: Style,
    ) -> Strip:
        """One line of the table, from the cache when everything it shows is the same."""
        cache_key = (*key, tuple(self._widths), x1, width, base)
        line = self._lines.get(cache_key)
        if line is None:
            line = self._draw(row_style, row_cells, cursor, x1, width, base)
            self._lines[cache_key] = line
        return line

    def _draw(
        self,
        row_style: Style,
        row_cells: tuple[Text, ...],
        cursor: Style | None,
        x1: int,
        width: int,
        base: Style,
    ) -> Strip:
        """Cells padded to their column widths, as DataTable draws them: the row's
        style under each cell, the cursor's over it (its colour wins)."""
        console = self.app.console
        cursor_style = cursor or Style.null()
        post = Style.null() if cursor is None else Style.from_color(color=cursor.color)
        segments: list[Segment] = []
        widths = self._fitted(width)
        for column, (cell, content_width) in enumerate(zip(row_cells, widths, strict=True)):
            # Each cell's own meta (its column) keeps its segments apart from its
            # neighbours', as in DataTable, so screenshots split the line alike.
            pre = row_style + Style.from_meta({"column": column}) + cursor_style
            cell_width = content_width + 2 * CELL_PADDING
            options = console.options.update_dimensions(cell_width, 1).update(
                no_wrap=True, overflow="ellipsis"
            )
            lines = console.render_lines(
                Styled(Padding(cell, (0, CELL_PADDING)), pre_style=pre, post_style=post),
                options,
            )
            segments.extend(lines[0])
        table_width = sum(widths) + 2 * CELL_PADDING * len(widths)
        rest = row_style + cursor_style + Style.from_meta({"out_of_bounds": True})
        segments.append(Segment(" " * max(0, width - table_width), rest))
        return Strip(segments).crop(x1, x1 + width).adjust_cell_length(width, base).simplify()

    def on_resize(self) -> None:
        self._lines.clear()  # lines of another width are of no more use
        self._layout_changed()  # the prompt's room depends on the width

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
