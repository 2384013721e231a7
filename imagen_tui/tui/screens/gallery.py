"""The Gallery screen: every finished image at a glance.

Solo images (not part of a series) each get a card; a series gets one card,
its cover being its winner, or its first image until one is picked
(`Session.gallery`). Thumbnails come from the database and are decoded in a
thread worker. Enter on a series card opens it on the Series screen, on a
solo image shows it full-screen (`f` does so for any card); `o` opens the
file with the system viewer when it is on this machine. The gallery reloads
when a job finishes and whenever the screen comes back into view (a winner
picked on the Series screen changes a cover). `e` recalls the card's request
into the Compose form, `a` queues it again with fresh seeds (a series card
shows its winner once one is picked: again from the winner). `/` filters
by prompt text, `b` by backend, `d` by date (on the server, the user's own
rows only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Header, Static

from imagen_tui.errors import DatabaseError
from imagen_tui.tui.messages import JobsUpdate
from imagen_tui.tui.pictures import decode
from imagen_tui.tui.screens.base import SearchingScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen, ViewItem, open_image_file
from imagen_tui.tui.widgets.footer import Footer
from imagen_tui.tui.widgets.image_grid import ImageGrid
from imagen_tui.tui.widgets.image_tile import TileInfo
from imagen_tui.tui.widgets.search_bar import SearchBar

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

    from imagen_tui.core.rows import GalleryCard

PAGE = 200


def card_key(card: GalleryCard) -> str:
    return f"s{card.series_id}" if card.series_id is not None else f"i{card.image.id}"


def card_info(card: GalleryCard) -> TileInfo:
    if card.series_id is None:
        title = f"image {card.image.id}"
    else:
        mark = " ★" if card.winner else ""
        title = f"series {card.series_id} · {card.series_images}/{card.series_count}{mark}"
    return TileInfo(
        key=card_key(card),
        title=title,
        caption=card.prompt,
        has_image=card.image.thumbnail is not None,
    )


class GalleryScreen(SearchingScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_card", "Open", id="open-card"),
        Binding("f", "full_screen", "Full screen", id="gallery-full-screen"),
        Binding("o", "open_file", "Open file", id="gallery-open-file"),
        Binding("e", "recall", "Recall", id="gallery-recall", tooltip="Fill the form with it"),
        Binding("a", "again", "Again", id="gallery-again", tooltip="Again, fresh seeds"),
        Binding("slash", "search", "Search", id="gallery-search", tooltip="Filter by prompt"),
        Binding("b", "filter_backend", "Backend filter", id="gallery-backend", show=False),
        Binding("d", "filter_date", "Date filter", id="gallery-date", show=False),
        Binding("ctrl+l", "reload", "Reload", id="reload-gallery", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[GalleryCard] = []
        self.pictures: dict[int, Picture] = {}  # decoded thumbnails, by image id
        self._asked = 0  # loads asked for; an answer older than the last is dropped

    @property
    def grid(self) -> ImageGrid:
        return self.query_one("#gallery-grid", ImageGrid)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading…", id="gallery-title", markup=False)
        app = self.workbench_app
        yield SearchBar(sorted(app.workbench.backend_blocks), app.clock, id="gallery-search")
        yield ImageGrid(id="gallery-grid")
        yield Footer()

    def on_mount(self) -> None:
        self.workbench_app.jobs_signal.subscribe(self, self._on_jobs)
        self.grid.focus()
        if self.workbench_app.session is not None:
            self.action_reload()

    def on_screen_resume(self) -> None:
        if self.workbench_app.session is not None:
            self.action_reload()

    def _on_jobs(self, update: JobsUpdate) -> None:
        if update.reload or any(row.status == "done" for row in update.rows):
            self.action_reload()

    def action_reload(self) -> None:
        self._asked += 1
        self._load(self._asked)

    @work(thread=True, exclusive=True, group="gallery-load", exit_on_error=False)
    def _load(self, asked: int) -> None:
        app = self.workbench_app
        try:
            cards = app.require_session().gallery(PAGE, search=self.search)
        except DatabaseError as error:
            app.tell(str(error), title="Gallery", severity="error")
            return
        known = dict(self.pictures)
        decoded: dict[int, Picture | None] = {}
        for card in cards:
            image = card.image
            decoded[image.id] = known.get(image.id) or decode.decode_thumbnail(image.thumbnail)
        app.call_from_thread(self._show, asked, cards, decoded)

    def _show(
        self, asked: int, cards: list[GalleryCard], decoded: dict[int, Picture | None]
    ) -> None:
        if asked != self._asked:
            return  # a newer load is on its way
        self.cards = cards
        self.pictures = {key: value for key, value in decoded.items() if value is not None}
        solo = sum(card.series_id is None for card in cards)
        title = Text()
        title.append("Gallery", style="bold")
        series = len(cards) - solo
        title.append(f"  {series} series · {solo} single image{'' if solo == 1 else 's'}")
        if not cards:
            empty = "nothing finished yet" if self.search.empty else "nothing matches the filter"
            title.append(f"  ({empty})", style="dim")
        self.query_one("#gallery-title", Static).update(title)
        grid = self.grid
        grid.show([card_info(card) for card in cards])
        for card in cards:
            grid.set_picture(card_key(card), self.pictures.get(card.image.id))
        self.refresh_bindings()

    # ----------------------------------------------------------------- actions

    def current_card(self) -> GalleryCard | None:
        key = self.grid.current_key if self.is_mounted else None
        return next((card for card in self.cards if card_key(card) == key), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open_card", "full_screen", "open_file", "recall", "again"):
            return self.current_card() is not None or None
        return True

    @on(ImageGrid.Highlighted, "#gallery-grid")
    def _tile_highlighted(self) -> None:
        self.refresh_bindings()

    def action_open_card(self) -> None:
        card = self.current_card()
        if card is None:
            return
        if card.series_id is not None:
            self.workbench_app.show_series(card.series_id)
        else:
            self.action_full_screen()

    def action_full_screen(self) -> None:
        card = self.current_card()
        if card is None:
            return
        items = [
            ViewItem(self._title(each), each.image, self.pictures.get(each.image.id))
            for each in self.cards
        ]
        self.app.push_screen(ImageViewScreen(items, self.cards.index(card)))

    def action_open_file(self) -> None:
        card = self.current_card()
        if card is not None:
            open_image_file(self, card.image)

    def action_recall(self) -> None:
        if (card := self.current_card()) is not None:
            self.workbench_app.recall(image_id=card.image.id)

    def action_again(self) -> None:
        if (card := self.current_card()) is not None:
            self.workbench_app.again(image_id=card.image.id)

    # ----------------------------------------------------------------- search

    def search_changed(self) -> None:
        self.action_reload()

    def search_closed(self) -> None:
        self.grid.focus()

    @staticmethod
    def _title(card: GalleryCard) -> str:
        if card.series_id is None:
            return f"Image {card.image.id} · {card.prompt}"
        winner = "winner" if card.winner else "first image"
        return f"Series {card.series_id} ({winner}) · {card.prompt}"
