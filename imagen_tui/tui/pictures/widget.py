"""`CellPicture`: a picture drawn with text cells, centred in its box.

The widget for the `halfcell` and `unicode` image protocols (terminals
without a graphics protocol, and every test). It draws its picture once
for its size with `cells.draw` and hands Textual the lines (the
Line API), so a repaint, a restyle of its tile or a scroll costs nothing
more. Setting `image` (the same attribute textual-image's widgets have)
draws the new picture on the next paint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.strip import Strip
from textual.widget import Widget

from imagen_tui.tui.pictures.cells import Mode, draw

if TYPE_CHECKING:
    from PIL.Image import Image as Picture


class CellPicture(Widget):
    """A picture in `halfcell` or `unicode` cells; blank without one."""

    DEFAULT_CSS = """
    CellPicture {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(
        self,
        picture: Picture | None = None,
        *,
        mode: Mode,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.mode: Mode = mode
        self._picture = picture
        self._lines: list[Strip] = []
        self._drawn_for: tuple[int, int] | None = None  # the size `_lines` were drawn for

    @property
    def image(self) -> Picture | None:
        return self._picture

    @image.setter
    def image(self, picture: Picture | None) -> None:
        self._picture = picture
        self._drawn_for = None
        self.refresh()

    def _drawn(self, width: int, height: int) -> list[Strip]:
        if self._drawn_for != (width, height):
            picture = self._picture
            self._lines = []
            if picture is not None and width > 0 and height > 0:
                self._lines = draw(picture, width, height, self.mode)
            self._drawn_for = (width, height)
        return self._lines

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        lines = self._drawn(width, height)
        index = y - (height - len(lines)) // 2
        style = self.rich_style
        if not 0 <= index < len(lines):
            return Strip.blank(width, style)
        line = lines[index]
        left = (width - line.cell_length) // 2
        right = width - left - line.cell_length
        return Strip.join(
            [Strip.blank(left, style), line.apply_style(style), Strip.blank(right, style)]
        )
