"""The Series screen: the series list and, for the highlighted one, its tries as an
image grid.

The list shows each series' prompt, tries done of total and the winner's try.
Highlighting a series loads its tries (`Session.series_detail`) and their
thumbnails (`Session.series_images`: from the database, so the grid works on
any machine that reaches it) in a thread worker, which also decodes them.
Tries still rendering show their status and progress in their tile; the
app's `jobs` signal updates them live, and a try turning done loads its
thumbnail.

In the grid: arrows or h/j/k/l move, enter or space picks the winner (one
`Session.pick`; picking the winner again, `u` or backspace clears it; on a
failed try it says why not, with the error), `o` opens the file with the
system viewer when it is on this machine, `f` shows the image full-screen
with its metadata.

The loop: `e` recalls the try's request into the Compose form, `a` queues
the series again with fresh seeds (from the winner's request once one is
picked), `m` marks tries and `c` compares two side by side, `p` picks by
pairs (two at a time, N-1 choices); either ends in the winner being
picked. `/` filters the list by prompt text, `b` by backend, `d` by date.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Static

from imagen_tui.errors import DatabaseError, InputError
from imagen_tui.limits import FINISHED_STATUSES
from imagen_tui.text import one_line
from imagen_tui.tui import cells
from imagen_tui.tui.messages import JobsUpdate
from imagen_tui.tui.pictures import decode
from imagen_tui.tui.previews import LivePreviews
from imagen_tui.tui.screens.base import SearchingScreen
from imagen_tui.tui.screens.duel import DuelEntry, DuelScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen, ViewItem, open_image_file
from imagen_tui.tui.screens.live_view import LiveViewScreen
from imagen_tui.tui.widgets.footer import Footer
from imagen_tui.tui.widgets.image_grid import ImageGrid
from imagen_tui.tui.widgets.image_tile import TileInfo
from imagen_tui.tui.widgets.search_bar import SearchBar

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

    from imagen_tui.core.events import JobEvent
    from imagen_tui.core.rows import ImageRow, JobRow, SeriesDetail, SeriesRow, TryRow
    from imagen_tui.services import Submission

LIST_PAGE = 100


@dataclass(frozen=True)
class TryState:
    """One try as the grid knows it: from the series detail, then from live job rows."""

    idx: int
    job_id: int
    status: str
    progress: float | None
    error: str | None
    seed: int | None
    image_id: int | None
    waiting: str | None = None  # "waiting for a worker with X" while none online serves it

    @classmethod
    def from_try(cls, row: TryRow) -> TryState:
        return cls(
            row.idx,
            row.job_id,
            row.status,
            row.progress,
            row.error,
            row.seed,
            row.image_id,
            row.waiting,
        )

    def updated(self, job: JobRow) -> TryState:
        return replace(
            self,
            status=job.status,
            progress=job.progress,
            error=job.error,
            seed=job.seed if job.seed is not None else self.seed,
            image_id=job.image_id,
            waiting=job.waiting,
        )


class SeriesScreen(SearchingScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,space", "pick", "Pick winner", id="pick-winner"),
        Binding("e", "recall", "Recall", id="recall-try", tooltip="Fill the form with this try"),
        Binding(
            "a",
            "again",
            "Again",
            id="again-series",
            tooltip="The same series again, fresh seeds (from the winner once picked)",
        ),
        Binding("c", "compare", "Compare", id="compare-tries", tooltip="Two tries side by side"),
        Binding("p", "pairs", "Pick by pairs", id="pick-by-pairs"),
        Binding("u,backspace", "clear_winner", "Clear winner", id="clear-winner"),
        Binding("f", "full_screen", "Full screen", id="full-screen"),
        Binding("o", "open_file", "Open file", id="open-file"),
        Binding("m", "mark", "Mark", id="mark-try", tooltip="Mark a try to compare"),
        Binding("slash", "search", "Search", id="search-series", tooltip="Filter by prompt"),
        Binding("b", "filter_backend", "Backend filter", id="series-backend", show=False),
        Binding("d", "filter_date", "Date filter", id="series-date", show=False),
        Binding("escape", "focus_list", "Series list", id="focus-series-list", show=False),
        Binding("ctrl+l", "reload", "Reload", id="reload-series", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.series_id: int | None = None  # the series in the grid
        self.selected_image_id: int | None = None
        self.tries: dict[int, TryState] = {}  # by try number
        self.images: dict[int, ImageRow] = {}  # by image id
        self.pictures: dict[int, Picture] = {}  # decoded thumbnails, by image id
        self._prompt = ""
        self.marked: list[int] = []  # tries marked to compare, in marking order
        self._wanted: int | None = None  # a series to put the cursor on once loaded
        self._loading: int | None = None  # the series last asked for (older answers are dropped)
        self._built = False  # on_mount ran: the widgets are there
        # A series read before the screen was mounted, for on_mount to show.
        self._unshown: tuple[SeriesDetail, list[ImageRow], dict[int, Picture | None]] | None = None
        # Live previews of running tries (read on their events, shown in their tiles).
        self._previews = LivePreviews(
            self, lambda: self.workbench_app.require_session(), self._show_preview
        )

    @property
    def grid(self) -> ImageGrid:
        return self.query_one("#series-grid", ImageGrid)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#series-list", DataTable)

    def compose(self) -> ComposeResult:
        yield Header()
        app = self.workbench_app
        yield SearchBar(sorted(app.workbench.backend_blocks), app.clock, id="series-search")
        with Horizontal(id="series-body"):
            table: DataTable[Text] = DataTable(id="series-list", cursor_type="row")
            yield table
            with Vertical(id="series-side"):
                yield Static("No series yet", id="series-title", markup=False)
                yield ImageGrid(id="series-grid")
        yield Footer()

    def on_mount(self) -> None:
        for key, label in (
            ("id", "Series"),
            ("done", "Done"),
            ("winner", "★"),
            ("prompt", "Prompt"),
        ):
            self.table.add_column(label, key=key)
        self.workbench_app.jobs_signal.subscribe(self, self._on_jobs)
        self.workbench_app.previews_signal.subscribe(self, self._on_preview)
        self._built = True
        if self._unshown is not None:
            self._show_series(*self._unshown)
            self._unshown = None
        elif self.series_id is not None:  # a series just queued, shown while it is read
            self._refresh_grid()
        if self.workbench_app.session is not None:
            self._load_unless_known(self._wanted)
            self._load_list()

    # ----------------------------------------------------------------- the list

    def action_reload(self) -> None:
        """Read the list and the series shown again."""
        self._load_list()
        if self.series_id is not None:
            self._load_series(self.series_id)

    def show_series(self, series_id: int, queued: Submission | None = None) -> None:
        """Show this series. Safe before the screen is mounted: reading it starts
        at once, while the screen is built (the first time). A series just
        `queued` from this app is shown at once as its pending tries (what the
        database holds for it at that moment), so the first frame after a
        submit shows the new tiles, not the previous series' pictures."""
        self._wanted = series_id
        if not self._built:
            # Opened on a series: its tries, not the list, have the keys from the start.
            self.AUTO_FOCUS = "#series-grid"  # type: ignore[misc]  # Textual reads it per instance
        if queued is not None and queued.series_id == series_id != self.series_id:
            self._show_queued(queued)
        if self.workbench_app.session is not None:
            self._load_unless_known(self._wanted)  # the grid need not wait for the list
            if self._built and not self._select_wanted():
                self._load_list()  # a series the list does not hold yet

    @work(thread=True, exclusive=True, group="series-load", exit_on_error=False)
    def _load_list(self) -> None:
        app = self.workbench_app
        try:
            rows = app.require_session().series(LIST_PAGE, self.search)
        except DatabaseError as error:
            app.tell(str(error), title="Series", severity="error")
            return
        app.call_from_thread(self._show_list, rows)

    def _show_list(self, rows: list[SeriesRow]) -> None:
        table = self.table
        current = self._current_list_id()
        table.clear()
        for row in rows:
            table.add_row(
                Text(str(row.id), justify="right"),
                Text(f"{row.done}/{row.count}", justify="right"),
                Text("" if row.winner_idx is None else f"★{row.winner_idx}", style="green"),
                cells.user_text(row.prompt, 40),
                key=str(row.id),
            )
        if not self._select_wanted() and current is not None and str(current) in table.rows:
            table.move_cursor(row=table.get_row_index(str(current)), animate=False)
        chosen = self._current_list_id()
        if chosen is None:
            self.query_one("#series-title", Static).update("No series yet")
        else:
            self._load_unless_known(chosen)

    def _select_wanted(self) -> bool:
        """Put the list's cursor on the series asked for and the focus on its grid,
        if the list holds it."""
        wanted, table = self._wanted, self.table
        if wanted is None or str(wanted) not in table.rows:
            return False
        table.move_cursor(row=table.get_row_index(str(wanted)), animate=False)
        self._wanted = None
        self.grid.focus()
        return True

    def _current_list_id(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(str(row_key.value))

    @on(DataTable.RowHighlighted, "#series-list")
    def _highlighted(self) -> None:
        # The cursor as it is now: the event may be older than a reload of the list.
        self._load_unless_known(self._current_list_id())

    @on(DataTable.RowSelected, "#series-list")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.grid.focus()

    # ----------------------------------------------------------------- one series

    def _show_queued(self, queued: Submission) -> None:
        """The pending tries of a series just queued; then read it, for the rest."""
        self.series_id = queued.series_id
        self.selected_image_id = None
        self._prompt = queued.spec.prompt
        tries = zip(queued.job_ids, queued.seeds(), strict=True)
        self.tries = {
            idx: TryState(idx, job_id, "pending", None, None, seed, None)
            for idx, (job_id, seed) in enumerate(tries, start=1)
        }
        self.images, self.pictures, self.marked = {}, {}, []
        self._unshown = None  # an older read, for a series no longer wanted
        if self._built:
            self._refresh_grid()
        self._load_series(queued.series_id)

    def _load_unless_known(self, series_id: int | None) -> None:
        """Read this series, unless it is the one shown or the one being read."""
        if series_id is not None and series_id not in (self.series_id, self._loading):
            self._load_series(series_id)

    def _load_series(self, series_id: int) -> None:
        self._loading = series_id
        self._read_series(series_id)

    @work(thread=True, exclusive=True, group="series-detail", exit_on_error=False)
    def _read_series(self, series_id: int) -> None:
        app = self.workbench_app
        try:
            session = app.require_session()
            detail = session.series_detail(series_id)
            rows = session.series_images(series_id)
        except (DatabaseError, InputError) as error:
            message = error.message if isinstance(error, InputError) else str(error)
            app.tell(message, title="Series", severity="error")
            return
        known = dict(self.pictures) if series_id == self.series_id else {}
        decoded = {
            row.id: known[row.id] if row.id in known else decode.decode_thumbnail(row.thumbnail)
            for row in rows
        }
        app.call_from_thread(self._show_series, detail, rows, decoded)

    def _show_series(
        self, detail: SeriesDetail, rows: list[ImageRow], decoded: dict[int, Picture | None]
    ) -> None:
        if detail.id != self._loading:
            return  # the cursor moved on while this was read
        if not self._built:
            self._unshown = (detail, rows, decoded)  # shown by on_mount
            return
        if detail.id != self.series_id:
            self.pictures = {}
            self.marked = []
        self.series_id = detail.id
        self.selected_image_id = detail.selected_image_id
        self._prompt = detail.spec.prompt
        self.tries = {row.idx: TryState.from_try(row) for row in detail.tries}
        self.images = {row.id: row for row in rows}
        self.pictures.update({key: value for key, value in decoded.items() if value is not None})
        self._refresh_grid()

    def _refresh_grid(self) -> None:
        tries = sorted(self.tries.values(), key=lambda state: state.idx)
        done = sum(state.status == "done" for state in tries)
        title = Text()
        title.append(f"Series {self.series_id}", style="bold")
        title.append(f"  {done}/{len(tries)} done  ")
        title.append_text(cells.user_text(self._prompt, 200))
        self.query_one("#series-title", Static).update(title)
        pictures = {
            str(state.idx): None if state.image_id is None else self.pictures.get(state.image_id)
            for state in tries
        }
        grid = self.grid
        grid.show([self._tile_info(state) for state in tries], pictures=pictures)
        for key, picture in pictures.items():
            grid.set_picture(key, picture)
        self.refresh_bindings()

    def _tile_info(self, state: TryState) -> TileInfo:
        image = self.images.get(state.image_id) if state.image_id is not None else None
        seed = f"seed {state.seed}" if state.seed is not None else "seed —"
        caption = seed if image is None else f"{seed} · {image.model}"
        mark = " ◆" if state.idx in self.marked else ""
        return TileInfo(
            key=str(state.idx),
            title=f"#{state.idx}{mark}",
            caption=caption,
            status=state.status,
            progress=state.progress,
            error=state.error,
            waiting=state.waiting,
            winner=state.image_id is not None and state.image_id == self.selected_image_id,
            has_image=state.image_id is not None and (image is None or image.thumbnail is not None),
        )

    # ----------------------------------------------------------------- live

    def _on_jobs(self, update: JobsUpdate) -> None:
        if update.reload:
            self.action_reload()
            return
        ours = [row for row in update.rows if row.series_id == self.series_id]
        finished = any(
            row.series_id is not None and row.status in FINISHED_STATUSES for row in update.rows
        )
        if finished:
            self._load_list()  # done counts in the list
        if not ours or self.series_id is None:
            return
        need_images = False
        for row in ours:
            state = next((s for s in self.tries.values() if s.job_id == row.id), None)
            if state is None:
                continue
            self.tries[state.idx] = state = state.updated(row)
            if state.image_id is not None and state.image_id not in self.images:
                need_images = True
        self._refresh_grid()
        if need_images:
            self._load_series(self.series_id)

    def _on_preview(self, event: JobEvent) -> None:
        if any(state.job_id == event.id for state in self.tries.values()):
            self._previews.want(event.id)

    def _show_preview(
        self, job_id: int, picture: Picture | None, step: int | None, total: int | None
    ) -> None:
        state = next((s for s in self.tries.values() if s.job_id == job_id), None)
        if state is not None and self.is_mounted:
            self.grid.set_preview(str(state.idx), picture, step, total)

    # ----------------------------------------------------------------- actions

    def _current_try(self) -> TryState | None:
        key = self.grid.current_key if self.is_mounted else None
        return None if key is None else self.tries.get(int(key))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pick", "full_screen", "open_file", "mark"):
            state = self._current_try()
            if state is None or self.focused is self.table:
                return False
            if action == "full_screen" and state.status in ("pending", "running"):
                return True  # its live preview
            # pick: a try without an image says why it cannot be picked.
            return action == "pick" or state.image_id is not None or None
        if action == "clear_winner":
            return self.selected_image_id is not None or None
        if action in ("recall", "again"):
            return bool(self.tries) or None
        if action in ("compare", "pairs"):
            return len(self._pictured()) >= 2 or None
        return True

    @on(ImageGrid.Highlighted, "#series-grid")
    def _tile_highlighted(self) -> None:
        self.refresh_bindings()

    def action_pick(self) -> None:
        state = self._current_try()
        if state is None or self.series_id is None:
            return
        if state.image_id is None:
            self.notify(self._why_not(state), title="Pick", severity="warning", markup=False)
            return
        again = state.image_id == self.selected_image_id
        self._pick(self.series_id, None if again else state.idx)

    @staticmethod
    def _why_not(state: TryState) -> str:
        """Why a try without an image cannot be the winner (with its error)."""
        if state.status == "failed":
            error = one_line(state.error or "no error was recorded", 500)
            return (
                f"Try {state.idx} failed, so it has no image to pick: {error}. "
                f"Retry it with r on the Jobs screen (job {state.job_id})."
            )
        if state.status == "canceled":
            return f"Try {state.idx} was canceled: no image to pick (retry job {state.job_id})."
        return f"Try {state.idx} has no image yet ({state.status}): pick it once it is done."

    def action_clear_winner(self) -> None:
        if self.series_id is not None and self.selected_image_id is not None:
            self._pick(self.series_id, None)

    @work(thread=True, exclusive=True, group="series-pick", exit_on_error=False)
    def _pick(self, series_id: int, idx: int | None) -> None:
        app = self.workbench_app
        try:
            image_id = app.require_session().pick(series_id, idx)
        except (DatabaseError, InputError) as error:
            message = error.message if isinstance(error, InputError) else str(error)
            app.tell(message, title="Pick", severity="warning")
            return
        app.call_from_thread(self._picked, series_id, image_id)

    def _picked(self, series_id: int, image_id: int | None) -> None:
        if series_id == self.series_id:
            self.selected_image_id = image_id
            self._refresh_grid()
        self._load_list()  # the winner column

    def action_focus_list(self) -> None:
        self.table.focus()

    # ----------------------------------------------------------------- the loop

    def _chosen_try(self) -> TryState | None:
        """The try under the cursor, or the first one when the list has the focus."""
        current = self._current_try()
        if current is not None and self.focused is not self.table:
            return current
        return min(self.tries.values(), key=lambda s: s.idx, default=None)

    def action_recall(self) -> None:
        state = self._chosen_try()
        if state is not None:
            self.workbench_app.recall(job_id=state.job_id)

    def action_again(self) -> None:
        """Again from the winner once one is picked, else from the series' request."""
        if self.selected_image_id is not None:
            self.workbench_app.again(image_id=self.selected_image_id)
        elif (state := self._chosen_try()) is not None:
            self.workbench_app.again(job_id=state.job_id)

    def action_mark(self) -> None:
        state = self._current_try()
        if state is None or state.image_id is None:
            return
        if state.idx in self.marked:
            self.marked.remove(state.idx)
        else:
            self.marked = [*self.marked, state.idx][-2:]  # the last two marked
        self._refresh_grid()

    def _pictured(self) -> list[TryState]:
        """The tries with an image, in try order."""
        tries = sorted(self.tries.values(), key=lambda s: s.idx)
        return [state for state in tries if state.image_id in self.images]

    def _entry(self, state: TryState) -> DuelEntry:
        image = self.images[state.image_id] if state.image_id is not None else None
        assert image is not None
        seed = f"seed {state.seed}" if state.seed is not None else "no seed"
        return DuelEntry(state.idx, f"try {state.idx} · {seed}", image, self.pictures.get(image.id))

    def action_compare(self) -> None:
        """The two marked tries side by side (or the marked one and the current one)."""
        chosen = [self.tries[idx] for idx in self.marked if idx in self.tries]
        current = self._current_try()
        if len(chosen) == 1 and current is not None and current.idx != chosen[0].idx:
            chosen.append(current)
        chosen = [state for state in chosen if state.image_id in self.images]
        if len(chosen) != 2:
            hint = "Mark two tries with m (or one, then compare from another)"
            self.notify(hint, title="Compare")
            return
        self._duel([self._entry(state) for state in chosen], "Compare")

    def action_pairs(self) -> None:
        tries = self._pictured()
        if len(tries) >= 2:
            self._duel([self._entry(state) for state in tries], "Pick by pairs")

    def _duel(self, entries: list[DuelEntry], what: str) -> None:
        series_id = self.series_id
        if series_id is None:
            return
        title = f"{what} · series {series_id} · {self._prompt}"

        def chosen(idx: int | None) -> None:
            if idx is not None and series_id == self.series_id:
                self.marked = []
                self.grid.select(str(idx))
                self._pick(series_id, idx)

        self.app.push_screen(DuelScreen(entries, title), chosen)

    # ----------------------------------------------------------------- search

    def search_changed(self) -> None:
        self._load_list()

    def search_closed(self) -> None:
        self.table.focus()

    def action_full_screen(self) -> None:
        items: list[ViewItem] = []
        index = 0
        current = self._current_try()
        if current is not None and current.status in ("pending", "running"):
            if self.series_id is not None:  # its live preview, until its image comes
                title = f"Series {self.series_id} · try {current.idx} · {self._prompt}"
                self.app.push_screen(
                    LiveViewScreen(
                        current.job_id, self.series_id, title, current.status, current.progress
                    )
                )
            return
        for state in sorted(self.tries.values(), key=lambda s: s.idx):
            image = self.images.get(state.image_id) if state.image_id is not None else None
            if image is None:
                continue
            if current is not None and state.idx == current.idx:
                index = len(items)
            winner = " ★ winner" if image.id == self.selected_image_id else ""
            items.append(
                ViewItem(
                    f"Series {self.series_id} · try {state.idx}{winner} · {self._prompt}",
                    image,
                    self.pictures.get(image.id),
                )
            )
        if items:
            self.app.push_screen(ImageViewScreen(items, index))

    def action_open_file(self) -> None:
        state = self._current_try()
        image = self.images.get(state.image_id) if state and state.image_id else None
        if image is not None:
            open_image_file(self, image)
