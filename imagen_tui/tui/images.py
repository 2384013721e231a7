"""How pictures are drawn: the `tui.image_protocol` setting.

- `tgp` (the Kitty graphics protocol) and `sixel` send real pixels, with
  textual-image's widgets;
- `halfcell` (two coloured pixels a cell) and `unicode` (shade characters)
  draw with text, with the project's own `CellPicture`: it draws a picture
  once for its size, where textual-image's text renderables go through a
  Rich console on every repaint, ten times slower;
- `auto` is what textual-image detected: Sixel, then the Kitty protocol,
  else half cells on a terminal, shades off one. The detection runs when
  `textual_image.widget` is first imported, and must run before the app
  starts, while the terminal's replies can still be read: this module
  imports it at its own import, and the launcher calls `configure(config)`
  before `App.run()`.

Tests pin `halfcell` (deterministic, no escape sequences).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from imagen_tui.errors import ConfigError
from imagen_tui.tui import cell_drawing
from imagen_tui.tui.widgets.cell_picture import CellPicture


def _import_widgets() -> ModuleType:
    """`textual_image.widget`, whose import measures the terminal's cells."""
    try:
        from textual_image import widget
    except ZeroDivisionError:
        # textual-image 0.12 divides by the column count the terminal reports,
        # and a terminal that never set its window size (a bare pty, some serial
        # consoles) reports 0. Give it the cell size it falls back to anyway.
        from textual_image import _terminal

        _terminal.get_cell_size._result = _terminal.CellSize(10, 20)  # type: ignore[attr-defined]
        from textual_image import widget
    return widget


image_widgets = _import_widgets()
from textual_image import renderable as renderables  # noqa: E402 (detected by the import above)
from textual_image._terminal import get_cell_size  # noqa: E402

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual_image.widget._base import Image as ImageWidget

    PictureWidget = CellPicture | ImageWidget

PROTOCOLS = ("auto", "tgp", "sixel", "halfcell", "unicode")
DEFAULT_PROTOCOL = "auto"
_PIXEL_WIDGETS: dict[str, type[ImageWidget]] = {
    "tgp": image_widgets.TGPImage,
    "sixel": image_widgets.SixelImage,
}


def detected_protocol() -> str:
    """What `auto` means on this terminal: what textual-image detected."""
    chosen = renderables.Image
    if chosen is renderables.SixelImage:
        return "sixel"
    if chosen is renderables.TGPImage:
        return "tgp"
    return "halfcell" if chosen is renderables.HalfcellImage else "unicode"


_chosen: list[str] = [detected_protocol()]


def protocol() -> str:
    """How every picture of the app is drawn: tgp, sixel, halfcell or unicode."""
    return _chosen[0]


def new_picture(
    picture: Picture | None, *, id: str | None = None, classes: str | None = None
) -> PictureWidget:
    """A widget drawing `picture` the chosen way; set its `image` to change it."""
    chosen = protocol()
    for mode in cell_drawing.MODES:
        if chosen == mode:
            return CellPicture(picture, mode=mode, id=id, classes=classes)
    return _PIXEL_WIDGETS[chosen](picture, id=id, classes=classes)


def cell_box(picture_size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The largest box in cells, within `width` x `height`, that shows a picture
    of `picture_size` pixels with its own shape, drawn the chosen way (with a
    graphics protocol, the terminal's real cell shape counts)."""
    cell_aspect = cell_drawing.CELL_ASPECT
    if protocol() in _PIXEL_WIDGETS:
        cell = get_cell_size()
        cell_aspect = cell.height / cell.width if cell.width and cell.height else cell_aspect
    return cell_drawing.fit(picture_size, width, height, cell_aspect)


def use_protocol(name: str) -> str:
    """Draw pictures the `name` way (one of PROTOCOLS; `auto`: as detected) and
    return the way it means; ValueError for another name."""
    if name not in PROTOCOLS:
        names = ", ".join(PROTOCOLS)
        raise ValueError(f"tui.image_protocol: {name!r} is not one of {names}")
    _chosen[0] = detected_protocol() if name == "auto" else name
    return _chosen[0]


def configured_protocol(config: Any) -> str:
    """The `tui.image_protocol` of a config object (`auto` while the key is absent)."""
    tui = getattr(config, "tui", None)
    value = getattr(tui, "image_protocol", None) if tui is not None else None
    return value if isinstance(value, str) and value else DEFAULT_PROTOCOL


def configure(config: Any) -> str:
    """Choose how pictures are drawn from the workbench's config; call before
    `App.run()`. Returns the way chosen (`auto` resolved). A name not in
    PROTOCOLS is a ConfigError (with `file:line` when the config knows it)."""
    try:
        return use_protocol(configured_protocol(config))
    except ValueError as error:
        where = getattr(config, "where", None)
        line = where(("tui", "image_protocol")) if callable(where) else None
        raise ConfigError(str(error), line if isinstance(line, str) else None) from None
