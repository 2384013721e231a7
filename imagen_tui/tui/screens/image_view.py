"""The full-screen view of one image: the picture and its metadata.

The picture is the local file when this machine has it (read and scaled in
a thread worker), else the thumbnail from the database; the metadata is what
the worker recorded with the image (prompt, seed, model, latency, cost...),
shown literally. Left/right step through the images the view was opened
with (a series' tries, the gallery's cards).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker

from imagen_tui.core.viewer import open_with_system_viewer
from imagen_tui.money import cost_text
from imagen_tui.text import one_line
from imagen_tui.tui.pictures import decode, protocol
from imagen_tui.tui.screens.base import forward_worker_state
from imagen_tui.tui.widgets.footer import Footer

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual.events import Resize

    from imagen_tui.core.rows import ImageRow
    from imagen_tui.tui.app import WorkbenchApp
    from imagen_tui.tui.pictures.protocol import PictureWidget

# Metadata keys shown first, with their labels; the rest follow as they are.
LABELS: tuple[tuple[str, str], ...] = (
    ("prompt", "Prompt"),
    ("negative_prompt", "Negative"),
    ("style", "Style"),
    ("prompt_styled", "Styled prompt"),
    ("seed", "Seed"),
    ("size", "Size"),
    ("steps", "Steps"),
    ("backend", "Backend"),
    ("model", "Model"),
    ("latency_ms", "Latency"),
    ("cost_usd", "Cost"),
    ("created_at", "Created"),
)
HIDDEN = frozenset({"width", "height", "mime_type", "imagen_version", "idx", "series", "job"})


@dataclass(frozen=True)
class ViewItem:
    """One image the view can show: its row, a title and its thumbnail (if decoded)."""

    title: str
    image: ImageRow
    thumbnail: Picture | None = None


def metadata_rows(image: ImageRow) -> Iterator[tuple[str, str]]:
    """(label, value) pairs for an image: its recorded metadata, then where it is."""
    meta: Mapping[str, Any] = image.metadata or {}
    merged: dict[str, Any] = {
        "seed": image.seed,
        "size": f"{image.width}x{image.height}",
        "backend": image.backend,
        "model": image.model,
        **{key: value for key, value in meta.items() if value not in (None, "")},
    }
    if merged.get("prompt_styled") == merged.get("prompt"):
        merged.pop("prompt_styled", None)
    for key, label in LABELS:
        if key in merged:
            yield label, _value(key, merged.pop(key))
    for key in sorted(merged):
        if key not in HIDDEN:
            yield key, _value(key, merged[key])
    yield "Image", f"#{image.id}" + (f" (job {image.job_id})" if image.job_id else "")
    yield "File", image.storage_uri


def _value(key: str, value: Any) -> str:
    if key == "latency_ms" and isinstance(value, int | float):
        return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"
    if key == "cost_usd" and isinstance(value, int | float) and not isinstance(value, bool):
        return cost_text(value)
    return str(value)


def metadata_table(image: ImageRow) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in metadata_rows(image):
        # Text, not a str: a prompt like `[red]x` is shown as written.
        table.add_row(Text(label), Text(one_line(value, 2000)))
    return table


class ImageViewScreen(Screen[None]):
    """One image, as large as the terminal allows, beside its metadata."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f,q", "close", "Close", id="close-image"),
        Binding("left,h", "step(-1)", "Previous", id="previous-image"),
        Binding("right,l", "step(1)", "Next", id="next-image"),
        Binding("o", "open_file", "Open file", id="open-image-file"),
        Binding("e", "recall", "Recall", id="view-recall", tooltip="Fill the form with it"),
        Binding("a", "again", "Again", id="view-again", tooltip="Again, fresh seeds"),
        Binding("m", "mark", "Mark", id="view-mark", tooltip="Mark it to compare"),
        Binding("c", "compare", "Compare", id="view-compare", tooltip="Beside the marked one"),
    ]

    def __init__(self, items: Sequence[ViewItem], index: int = 0) -> None:
        super().__init__(classes="image-view")
        self.items = list(items)
        self.index = max(0, min(index, len(self.items) - 1))
        self._full: dict[int, Picture] = {}  # image id -> the local file, scaled
        self._image: PictureWidget | None = None
        self.marked: int | None = None  # the index of the image marked to compare

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_state(self, event)

    @property
    def item(self) -> ViewItem:
        return self.items[self.index]

    def compose(self) -> ComposeResult:
        yield Static(id="image-view-title", markup=False)
        with Horizontal(id="image-view-body"):
            with Vertical(id="image-view-picture"):
                yield Static("", id="image-view-status")
            with VerticalScroll(id="image-view-meta"):
                yield Static(id="image-view-metadata")
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def on_resize(self, event: Resize) -> None:
        self._size_picture()

    # ----------------------------------------------------------------- showing

    def _show(self) -> None:
        item = self.item
        position = f"  ({self.index + 1}/{len(self.items)})" if len(self.items) > 1 else ""
        self.query_one("#image-view-title", Static).update(
            Text(one_line(item.title, 200) + position)
        )
        self.query_one("#image-view-metadata", Static).update(metadata_table(item.image))
        picture = self._full.get(item.image.id, item.thumbnail)
        self._set_picture(picture)
        if item.image.id not in self._full:
            self._load_full(item.image)

    def _set_picture(self, picture: Picture | None) -> None:
        status = self.query_one("#image-view-status", Static)
        status.display = picture is None
        status.update(Text("no preview of this image", style="dim"))
        if picture is None:
            if self._image is not None:
                self._image.remove()
                self._image = None
            return
        if self._image is None:
            self._image = protocol.new_picture(picture, id="image-view-image")
            self._size_picture()
            self.query_one("#image-view-picture", Vertical).mount(self._image)
        else:
            self._image.image = picture
            self._size_picture()

    def _size_picture(self) -> None:
        """The largest box of the picture's shape that fits."""
        if self._image is None:
            return
        region = self.query_one("#image-view-picture", Vertical).content_region
        image = self.item.image
        box = protocol.cell_box(
            (image.width, image.height), max(4, region.width), max(2, region.height)
        )
        self._image.styles.width, self._image.styles.height = box

    @work(thread=True, exclusive=True, group="image-view-load", exit_on_error=False)
    def _load_full(self, image: ImageRow) -> None:
        path = image.path
        if path is None or not path.is_file():
            return
        picture = decode.load_file(path)
        if picture is not None:
            self.app.call_from_thread(self._loaded, image.id, picture)

    def _loaded(self, image_id: int, picture: Picture) -> None:
        self._full[image_id] = picture
        if self.item.image.id == image_id:
            self._set_picture(picture)

    # ----------------------------------------------------------------- actions

    def action_close(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        target = self.index + delta
        if 0 <= target < len(self.items):
            self.index = target
            self._show()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "step":
            delta = parameters[0] if parameters else 0
            target = self.index + (delta if isinstance(delta, int) else 0)
            return 0 <= target < len(self.items) or None
        return True

    def action_open_file(self) -> None:
        open_image_file(self, self.item.image)

    # ----------------------------------------------------------------- the loop

    def action_recall(self) -> None:
        self.app.pop_screen()
        self._workbench().recall(image_id=self.item.image.id)

    def action_again(self) -> None:
        self._workbench().again(image_id=self.item.image.id)

    def action_mark(self) -> None:
        self.marked = None if self.marked == self.index else self.index
        what = "marked: move to another and press c" if self.marked is not None else "unmarked"
        self.notify(f"Image {self.item.image.id} {what}", title="Compare")

    def action_compare(self) -> None:
        """The marked image beside this one; in one series, the one kept is its winner."""
        from imagen_tui.tui.screens.duel import DuelEntry, DuelScreen

        if self.marked is None or self.marked == self.index:
            self.notify("Mark an image with m, move to another, then c", title="Compare")
            return
        items = [self.items[self.marked], self.item]
        entries = [
            DuelEntry(index, item.title, item.image, item.thumbnail)
            for index, item in zip((self.marked, self.index), items, strict=True)
        ]
        series = {item.image.series_id for item in items}
        series_id = series.pop() if len(series) == 1 else None

        def chosen(index: int | None) -> None:
            if index is None:
                return
            image = self.items[index].image
            if series_id is not None and image.series_idx is not None:
                self._workbench().pick_winner(series_id, image.series_idx)
            else:
                self.notify("Not one series: no winner to pick", title="Compare")

        self.app.push_screen(DuelScreen(entries, "Compare"), chosen)

    def _workbench(self) -> WorkbenchApp:
        from imagen_tui.tui.app import WorkbenchApp  # the app imports the screens

        assert isinstance(self.app, WorkbenchApp)
        return self.app


def open_image_file(screen: Screen[Any], image: ImageRow) -> None:
    """Open the image's file with the system viewer, off the event loop; say so when
    the file is not on this machine."""
    path = image.path
    if path is None:
        screen.notify(
            f"Not a local file: {one_line(image.storage_uri, 200)}",
            title="Open",
            severity="warning",
            markup=False,
        )
        return

    def start() -> None:
        if not path.is_file():
            message = f"Not on this machine: {one_line(str(path), 200)} (the thumbnail is all here)"
            screen.app.notify(message, title="Open", severity="warning", markup=False)
            return
        try:
            open_with_system_viewer(path)
        except OSError as error:
            screen.app.notify(
                one_line(str(error), 300), title="Open", severity="error", markup=False
            )
        else:
            screen.app.notify(f"Opened {one_line(path.name, 120)}", title="Open", markup=False)

    screen.run_worker(start, thread=True, group="open-file", exit_on_error=False)
