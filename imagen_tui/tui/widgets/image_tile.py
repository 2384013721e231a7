"""`ImageTile`: one picture of a grid, or where it will be while it renders.

A tile shows what `TileInfo` says: a title in its border (`#2 ★` for the
series' winner), the picture once there is one (a pre-scaled PIL image,
decoded off the event loop by whoever hands it over), else the job's status
and progress, and one caption line. User text arrives as plain strings and
is shown literally (Rich `Text`, never markup).

The picture widget is the class `tui.images` chose (halfcell in tests); the
grid gives it a fixed width and height in cells, so its layout does not
depend on the terminal's cell size in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from imagen_tui.tui import cells, images

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual_image.widget._base import Image as ImageWidget


@dataclass(frozen=True)
class TileInfo:
    """What a tile shows besides its picture."""

    key: str  # unique in its grid
    title: str  # plain text for the border: `#2`, `series 12`
    caption: str  # user text allowed: shown literally
    status: str = "done"  # a job status
    progress: float | None = None
    error: str | None = None
    winner: bool = False
    has_image: bool = True  # False: the picture will never come (failed, pending, ...)


class ImageTile(Vertical):
    """A bordered tile: picture (or status) over a caption line."""

    DEFAULT_CSS = """
    ImageTile {
        border: round $panel-lighten-2;
        height: 1fr;
        width: 1fr;
        border-title-color: $text-muted;
        &.-winner {
            border: round $success;
            border-title-color: $success;
            border-title-style: bold;
        }
        &.-current {
            border: double $accent;
            border-title-color: $accent;
        }
        & > .tile-body {
            height: 1fr;
            width: 1fr;
            align: center middle;
        }
        & > .tile-body > .tile-status {
            width: 1fr;
            height: auto;
            text-align: center;
        }
        & > .tile-caption {
            height: 1;
            width: 1fr;
            color: $text-muted;
            text-wrap: nowrap;
            text-overflow: ellipsis;
        }
    }
    """

    def __init__(self, info: TileInfo, picture: Picture | None = None) -> None:
        super().__init__(classes="image-tile")
        self.info = info
        self.picture = picture
        self._picture_size = (20, 10)
        self._image: ImageWidget | None = None
        self._shown: Picture | None = None  # the picture the image widget was given

    def compose(self) -> ComposeResult:
        with Vertical(classes="tile-body"):
            yield Static(self._status_text(), classes="tile-status")
            if self.picture is not None and self.info.has_image:
                # Known already: composed with the tile, not mounted after it.
                yield self._new_image(self.picture)
        yield Static(self._caption_text(), classes="tile-caption")

    def _new_image(self, picture: Picture) -> ImageWidget:
        fitted = images.fitted(picture, *self._picture_size)
        self._image = images.image_class()(fitted, classes="tile-picture")
        self._image.styles.width, self._image.styles.height = self._picture_size
        self._shown = picture
        return self._image

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

    def set_picture_size(self, width: int, height: int) -> None:
        """The picture's size in cells (the grid's layout decides it)."""
        size = (max(1, width), max(1, height))
        if size == self._picture_size:
            return
        self._picture_size = size
        if self._image is not None and self.picture is not None:
            self._image.styles.width, self._image.styles.height = size
            self._image.image = images.fitted(self.picture, *size)

    def _apply(self) -> None:
        info = self.info
        self.border_title = f"{info.title} ★" if info.winner else info.title
        self.set_class(info.winner, "-winner")
        self.query_one(".tile-caption", Static).update(self._caption_text())
        status = self.query_one(".tile-status", Static)
        status.update(self._status_text())
        showing = self.picture is not None and info.has_image
        status.display = not showing
        if showing and self.picture is not None and self._shown is not self.picture:
            if self._image is None:
                self.query_one(".tile-body", Vertical).mount(self._new_image(self.picture))
            else:
                self._image.image = images.fitted(self.picture, *self._picture_size)
                self._shown = self.picture
        elif not showing and self._image is not None:
            self._image.remove()
            self._image = None
            self._shown = None

    def _status_text(self) -> Text:
        info = self.info
        text = Text()
        text.append_text(cells.status(info.status))
        if info.status in ("pending", "running"):
            text.append("\n")
            text.append_text(cells.progress_bar(info.progress, info.status))
        elif info.status == "done":
            text.append("\nloading…" if info.has_image else "\nno preview", style="dim")
        if info.error:
            text.append("\n")
            text.append_text(cells.user_text(info.error, 120))
        return text

    def _caption_text(self) -> Text:
        return cells.user_text(self.info.caption, 200)
