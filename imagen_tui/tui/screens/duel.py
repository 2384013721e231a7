"""Two images side by side, as large as the terminal allows: compare and pick by pairs.

`DuelScreen(entries)` shows the first two entries, each with the parameters
in which they differ (seed, model...). Left (or h) keeps the left one, right
(or l) the right one; the one kept meets the next entry, so N entries take
N-1 choices, and the last one standing is the answer: the screen is
dismissed with its entry's key (None when escape leaves it first). With two
entries this is a comparison. The screen writes nothing: whoever opened it
records the answer (the Series screen picks it as the winner, one UPDATE,
which `u` there takes back).

Pictures start as the thumbnails the caller has and are replaced by the
local files (read and scaled in a thread worker) when this machine has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker

from imagen_tui.text import one_line
from imagen_tui.tui.pictures import decode, protocol
from imagen_tui.tui.screens.base import forward_worker_state
from imagen_tui.tui.screens.image_view import metadata_rows
from imagen_tui.tui.widgets.footer import Footer

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual.events import Resize

    from imagen_tui.core.rows import ImageRow
    from imagen_tui.tui.pictures.protocol import PictureWidget

SIDES = ("left", "right")
SAME_EVERYWHERE = frozenset({"Image", "File"})  # differ always: not worth showing


@dataclass(frozen=True)
class DuelEntry:
    """One contender: its key (a try number), a label and its image."""

    key: int
    label: str
    image: ImageRow
    thumbnail: Picture | None = None


def differences(left: ImageRow, right: ImageRow) -> tuple[list[tuple[str, str]], ...]:
    """For each side, the (label, value) pairs in which the two images differ."""
    rows = [dict(metadata_rows(image)) for image in (left, right)]
    labels = [label for label in rows[0] if label not in SAME_EVERYWHERE]
    labels += [label for label in rows[1] if label not in rows[0] and label not in SAME_EVERYWHERE]
    differing = [label for label in labels if rows[0].get(label) != rows[1].get(label)]
    return tuple([(label, side.get(label, "—")) for label in differing] for side in rows)


def params_table(pairs: list[tuple[str, str]]) -> Table | Text:
    if not pairs:
        return Text("same parameters", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in pairs:
        table.add_row(Text(label), Text(one_line(value, 300)))
    return table


class DuelScreen(Screen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "keep('left')", "Keep left", id="keep-left"),
        Binding("right,l", "keep('right')", "Keep right", id="keep-right"),
        Binding("escape,q", "leave", "Leave (pick nothing)", id="leave-duel"),
    ]

    def __init__(self, entries: Sequence[DuelEntry], title: str) -> None:
        super().__init__(classes="duel")
        if len(entries) < 2:
            raise ValueError("a duel needs two entries")
        self.title_text = title
        self.kept: DuelEntry = entries[0]  # the one standing so far (left)
        self.waiting: list[DuelEntry] = list(entries[1:])  # its next challenger first
        self.choices = len(entries) - 1
        self.made = 0
        self._full: dict[int, Picture] = {}  # image id -> the local file, scaled
        self._pictures: dict[str, PictureWidget] = {}

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_state(self, event)

    @property
    def pair(self) -> tuple[DuelEntry, DuelEntry]:
        return self.kept, self.waiting[0]

    def compose(self) -> ComposeResult:
        yield Static(id="duel-title", markup=False)
        with Horizontal(id="duel-body"):
            for side in SIDES:
                with Vertical(id=f"duel-{side}", classes="duel-side"):
                    yield Static(id=f"duel-{side}-label", classes="duel-label", markup=False)
                    yield Vertical(id=f"duel-{side}-picture", classes="duel-picture")
                    yield Static(id=f"duel-{side}-params", classes="duel-params")
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def on_resize(self, event: Resize) -> None:
        self._size_pictures()

    # ----------------------------------------------------------------- showing

    def _show(self) -> None:
        title = Text(one_line(self.title_text, 200), style="bold")
        if self.choices > 1:
            title.append(f"  choice {self.made + 1} of {self.choices}")
        title.append("  ← keeps the left one, → the right one", style="dim")
        self.query_one("#duel-title", Static).update(title)
        pair = self.pair
        diffs = differences(pair[0].image, pair[1].image)
        for side, entry, diff in zip(SIDES, pair, diffs, strict=True):
            self.query_one(f"#duel-{side}-label", Static).update(one_line(entry.label, 200))
            self.query_one(f"#duel-{side}-params", Static).update(params_table(diff))
            self._set_picture(side, self._full.get(entry.image.id, entry.thumbnail))
            if entry.image.id not in self._full:
                self._load_full(side, entry.image)

    def _set_picture(self, side: str, picture: Picture | None) -> None:
        box = self.query_one(f"#duel-{side}-picture", Vertical)
        shown = self._pictures.pop(side, None)
        if shown is not None:
            shown.remove()
        if picture is None:
            return
        widget = protocol.new_picture(picture, classes="duel-image")
        self._pictures[side] = widget
        self._size_picture(side)
        box.mount(widget)

    def _size_pictures(self) -> None:
        for side in SIDES:
            self._size_picture(side)

    def _size_picture(self, side: str) -> None:
        """The largest box of the picture's shape that fits its half."""
        widget = self._pictures.get(side)
        if widget is None:
            return
        region = self.query_one(f"#duel-{side}-picture", Vertical).content_region
        image = self.pair[SIDES.index(side)].image
        box = protocol.cell_box(
            (image.width, image.height), max(4, region.width), max(2, region.height)
        )
        widget.styles.width, widget.styles.height = box

    @work(thread=True, group="duel-load", exit_on_error=False)
    def _load_full(self, side: str, image: ImageRow) -> None:
        path = image.path
        if path is None or not path.is_file():
            return
        picture = decode.load_file(path)
        if picture is not None:
            self.app.call_from_thread(self._loaded, side, image.id, picture)

    def _loaded(self, side: str, image_id: int, picture: Picture) -> None:
        self._full[image_id] = picture
        if self.pair[SIDES.index(side)].image.id == image_id:
            self._set_picture(side, picture)

    # ----------------------------------------------------------------- choosing

    def action_keep(self, side: str) -> None:
        challenger = self.waiting.pop(0)
        if side == "right":
            self.kept = challenger
        self.made += 1
        if not self.waiting:
            self.dismiss(self.kept.key)
            return
        self._show()

    def action_leave(self) -> None:
        self.dismiss(None)
