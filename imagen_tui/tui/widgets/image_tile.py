"""`ImageTile`: one picture of a grid, or where it will be while it renders.

A tile shows what `TileInfo` says: a title in its top border (`#2 ★` for
the series' winner), a caption in its bottom border, and inside the picture
once there is one (a PIL image decoded off the event loop by whoever hands
it over), else the job's status and progress. While the job runs, the
latest live preview (`set_preview`) is shown under a one-line progress bar
with the step, until the final picture replaces it; a preview is forgotten
as soon as the job is no longer running. User text arrives as plain strings and
is shown literally (Rich `Text`, never markup).

The picture widget is the one `tui.images` makes (halfcell in tests). The
grid gives the tile a box in cells for it, and the picture gets the largest
part of that box with its own shape (`protocol.cell_box`), so a wide picture
stays wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Static

from imagen_tui.tui import cells
from imagen_tui.tui.pictures import protocol

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

    from imagen_tui.tui.pictures.protocol import PictureWidget


@dataclass(frozen=True)
class TileInfo:
    """What a tile shows besides its picture."""

    key: str  # unique in its grid
    title: str  # plain text for the border: `#2`, `series 12`
    caption: str  # user text allowed: shown literally
    status: str = "done"  # a job status
    progress: float | None = None
    error: str | None = None
    waiting: str | None = None  # "waiting for a worker with X": no online worker serves it
    winner: bool = False
    has_image: bool = True  # False: the picture will never come (failed, pending, ...)


class ImageTile(Container):
    """A bordered tile: the picture (or the status) inside, the title and the
    caption in the border."""

    DEFAULT_CSS = """
    ImageTile {
        border: round $panel-lighten-2;
        height: 1fr;
        width: 1fr;
        align: center middle;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        border-subtitle-align: left;
        &.-winner {
            border: round $success;
            border-title-color: $success;
            border-title-style: bold;
        }
        &.-current {
            border: double $accent;
            border-title-color: $accent;
        }
        & > .tile-status {
            width: 1fr;
            height: auto;
            text-align: center;
        }
    }
    """

    def __init__(self, info: TileInfo, picture: Picture | None = None) -> None:
        super().__init__(classes="image-tile")
        self.info = info
        self.picture = picture
        self._picture_size = (20, 10)
        self._image: PictureWidget | None = None
        self._shown: Picture | None = None  # the picture the image widget was given
        self.preview: Picture | None = None  # the running job's latest live preview
        self._preview_step: tuple[int | None, int | None] = (None, None)
        self._status_shape: tuple[bool, int, int] | None = None  # see _apply

    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), classes="tile-status")
        if self.picture is not None and self.info.has_image:
            # Known already: composed with the tile, not mounted after it.
            yield self._new_image(self.picture)

    @property
    def previewing(self) -> bool:
        """Showing a live preview (the job runs, no final picture yet)."""
        final = self.picture is not None and self.info.has_image
        return not final and self.preview is not None and self.info.status == "running"

    def _new_image(self, picture: Picture) -> PictureWidget:
        self._image = protocol.new_picture(picture, classes="tile-picture")
        self._shown = picture
        self._size_image()
        return self._image

    def _size_image(self) -> None:
        if self._image is not None and self._shown is not None:
            width, height = self._picture_size
            if self.previewing:
                height = max(1, height - 1)  # the progress line above it
            box = protocol.cell_box(self._shown.size, width, height)
            self._image.styles.width, self._image.styles.height = box

    def on_mount(self) -> None:
        self._apply()

    # ----------------------------------------------------------------- updates

    def update_info(self, info: TileInfo) -> None:
        self.info = info
        if self.is_mounted:
            self._apply()

    def set_picture(self, picture: Picture | None) -> None:
        self.picture = picture
        if self.is_mounted:
            self._apply()

    def set_preview(
        self, picture: Picture | None, step: int | None = None, total: int | None = None
    ) -> None:
        """The running job's latest live preview (ignored once it stopped running)."""
        self.preview = picture if self.info.status == "running" else None
        self._preview_step = (step, total)
        if self.is_mounted:
            self._apply()

    def set_picture_size(self, width: int, height: int) -> None:
        """The picture's size in cells (the grid's layout decides it)."""
        size = (max(1, width), max(1, height))
        if size == self._picture_size:
            return
        self._picture_size = size
        self._size_image()

    def _apply(self) -> None:
        info = self.info
        self.border_title = f"{info.title} ★" if info.winner else info.title
        self.set_class(info.winner, "-winner")
        self.border_subtitle = cells.user_text(info.caption, 200)
        if info.status != "running":
            self.preview = None
        status = self.query_one(".tile-status", Static)
        text = self._status_text()
        final = self.picture is not None and info.has_image
        shown = self.picture if final else self.preview if self.previewing else None
        display = shown is None or self.previewing
        # The same lines of the same widths (a new step, a new percentage): no layout.
        shape = (display, text.plain.count("\n"), text.cell_len)
        status.update(text, layout=shape != self._status_shape)
        self._status_shape = shape
        status.display = display
        if shown is not None and self._shown is not shown:
            if self._image is None:
                self.mount(self._new_image(shown))
            else:
                self._image.image = shown
                self._shown = shown
                self._size_image()
        elif shown is None and self._image is not None:
            self._image.remove()
            self._image = None
            self._shown = None
        else:
            self._size_image()

    def _status_text(self) -> Text:
        info = self.info
        if self.previewing:  # one line above the preview: the bar and the step
            text = cells.progress_bar(info.progress, info.status)
            step, total = self._preview_step
            if step is not None and total is not None:
                text.append(f" {step}/{total}", style="dim")
            return text
        text = Text()
        text.append_text(cells.status(info.status))
        if info.status in ("pending", "running"):
            text.append("\n")
            text.append_text(cells.progress_bar(info.progress, info.status))
            if info.waiting:
                text.append("\n")
                text.append_text(cells.user_text(info.waiting, 120))
        elif info.status == "done":
            text.append("\nloading…" if info.has_image else "\nno preview", style="dim")
        if info.error:
            text.append("\n")
            text.append_text(cells.user_text(info.error, 120))
        return text
