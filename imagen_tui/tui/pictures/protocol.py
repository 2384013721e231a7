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

import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from imagen_tui.limits import IMAGE_PROTOCOLS
from imagen_tui.tui.fastpaths import fell_back
from imagen_tui.tui.pictures import cells
from imagen_tui.tui.pictures.widget import CellPicture

DEFAULT_CELL_SIZE = (10, 20)  # pixels: what textual-image assumes when it cannot ask


def _private_cell_size() -> Callable[[], Any] | None:
    """textual-image's `_terminal.get_cell_size` (private in 0.12: it caches its
    answer on itself, as `_result`); None when that is not there."""
    try:
        from textual_image import _terminal
    except ImportError:
        return None
    function = getattr(_terminal, "get_cell_size", None)
    if not callable(function) or not hasattr(_terminal, "CellSize"):
        return None
    return cast("Callable[[], Any]", function)


def _pin_cell_size(width: int, height: int) -> bool:
    """Make textual-image use this cell size without asking the terminal;
    False when its private cache is not what 0.12 has."""
    function = _private_cell_size()
    if function is None:
        return False
    from textual_image import _terminal

    function._result = _terminal.CellSize(width, height)  # type: ignore[attr-defined]
    try:
        measured = function()
    except ZeroDivisionError:  # the cache was not read: it asked the terminal again
        return False
    return (getattr(measured, "width", None), getattr(measured, "height", None)) == (
        width,
        height,
    )


def cell_size() -> tuple[int, int]:
    """The terminal's cell size in pixels, as textual-image measured it; else
    TEXTUAL_CELL_WIDTH/HEIGHT (textual-serve sets them), else 10x20."""
    function = _private_cell_size()
    if function is not None:
        measured = function()
        width, height = getattr(measured, "width", None), getattr(measured, "height", None)
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    fell_back("cell size")
    try:
        return int(os.environ["TEXTUAL_CELL_WIDTH"]), int(os.environ["TEXTUAL_CELL_HEIGHT"])
    except (KeyError, ValueError):
        return DEFAULT_CELL_SIZE


def _import_widgets() -> ModuleType | None:
    """`textual_image.widget`, whose import measures the terminal's cells; None
    when it cannot be imported (then only the text protocols draw)."""
    try:
        from textual_image import widget
    except ZeroDivisionError:
        # textual-image 0.12 divides by the column count the terminal reports,
        # and a terminal that never set its window size (a bare pty, some serial
        # consoles) reports 0. Give it the cell size it falls back to anyway.
        if not _pin_cell_size(*DEFAULT_CELL_SIZE):
            fell_back("cell size on a terminal without a window size")
            return None
        from textual_image import widget
    return widget


image_widgets = _import_widgets()
from textual_image import renderable as renderables  # noqa: E402 (detected by the import above)

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual_image.widget._base import Image as ImageWidget

    PictureWidget = CellPicture | ImageWidget

PROTOCOLS = IMAGE_PROTOCOLS
DEFAULT_PROTOCOL = "auto"
_PIXEL_WIDGETS: dict[str, type[ImageWidget]] = (
    {"tgp": image_widgets.TGPImage, "sixel": image_widgets.SixelImage}
    if image_widgets is not None
    else {}
)


def detected_protocol() -> str:
    """What `auto` means on this terminal: what textual-image detected."""
    chosen = renderables.Image
    if not _PIXEL_WIDGETS:  # textual-image's widgets could not be imported
        return "halfcell" if chosen is not renderables.UnicodeImage else "unicode"
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
    for mode in cells.MODES:
        if chosen == mode:
            return CellPicture(picture, mode=mode, id=id, classes=classes)
    if chosen not in _PIXEL_WIDGETS:  # chosen by name while textual-image's widgets are missing
        return CellPicture(picture, mode="halfcell", id=id, classes=classes)
    return _PIXEL_WIDGETS[chosen](picture, id=id, classes=classes)


def cell_box(picture_size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The largest box in cells, within `width` x `height`, that shows a picture
    of `picture_size` pixels with its own shape, drawn the chosen way (with a
    graphics protocol, the terminal's real cell shape counts)."""
    cell_aspect = cells.CELL_ASPECT
    if protocol() in _PIXEL_WIDGETS:
        cell_width, cell_height = cell_size()
        cell_aspect = cell_height / cell_width if cell_width and cell_height else cell_aspect
    return cells.fit(picture_size, width, height, cell_aspect)


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
    """Choose how pictures are drawn from the workbench's config (the loader
    checked the name); call before `App.run()`. Returns the way chosen (`auto`
    resolved)."""
    return use_protocol(configured_protocol(config))
