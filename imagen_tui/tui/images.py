"""Which textual-image widget draws pictures: the `tui.image_protocol` setting.

`auto` is `textual_image.widget.Image`, whose terminal detection (Sixel, then
the Kitty graphics protocol, else half cells; Unicode shades off a TTY) runs
when `textual_image.widget` is first imported. It must run before the app
starts, while the terminal's replies can still be read: this module imports
it at its own import, and the launcher calls `configure(workbench)` before
`App.run()`. Tests pin `halfcell` (deterministic, no escape sequences).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from imagen_tui.errors import ConfigError


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


if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual_image.widget._base import Image as ImageWidget

PROTOCOLS: dict[str, type[ImageWidget]] = {
    "auto": image_widgets.Image,
    "tgp": image_widgets.TGPImage,
    "sixel": image_widgets.SixelImage,
    "halfcell": image_widgets.HalfcellImage,
    "unicode": image_widgets.UnicodeImage,
}
DEFAULT_PROTOCOL = "auto"

_chosen: list[type[ImageWidget]] = [PROTOCOLS[DEFAULT_PROTOCOL]]


def image_class() -> type[ImageWidget]:
    """The widget class every image of the app is drawn with."""
    return _chosen[0]


def fitted(picture: Picture, width: int, height: int) -> Picture:
    """`picture` scaled down for a `width` x `height` cell box when the chosen
    widget draws one pixel per half cell: textual-image scales the whole picture
    on every render, so a thumbnail of the box's own size paints much faster.
    Other protocols draw real pixels: the picture is returned as it is."""
    if image_class() is not image_widgets.HalfcellImage:
        return picture
    box = (max(1, width), max(2, height * 2))
    if picture.width <= box[0] and picture.height <= box[1]:
        return picture
    small = picture.copy()
    small.thumbnail(box)
    return small


def use_protocol(protocol: str) -> type[ImageWidget]:
    """Draw images with `protocol` (one of PROTOCOLS); ValueError for another name."""
    try:
        chosen = PROTOCOLS[protocol]
    except KeyError:
        names = ", ".join(PROTOCOLS)
        raise ValueError(f"tui.image_protocol: {protocol!r} is not one of {names}") from None
    _chosen[0] = chosen
    return chosen


def configured_protocol(config: Any) -> str:
    """The `tui.image_protocol` of a config object (`auto` while the key is absent)."""
    tui = getattr(config, "tui", None)
    value = getattr(tui, "image_protocol", None) if tui is not None else None
    return value if isinstance(value, str) and value else DEFAULT_PROTOCOL


def configure(config: Any) -> type[ImageWidget]:
    """Choose the image widget from the workbench's config; call before `App.run()`.
    A name not in PROTOCOLS is a ConfigError (with `file:line` when the config knows it)."""
    protocol = configured_protocol(config)
    try:
        return use_protocol(protocol)
    except ValueError as error:
        where = getattr(config, "where", None)
        line = where(("tui", "image_protocol")) if callable(where) else None
        raise ConfigError(str(error), line if isinstance(line, str) else None) from None
