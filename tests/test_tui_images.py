"""`tui.pictures.protocol`: the `tui.image_protocol` setting chooses how pictures are drawn."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from PIL import Image as PILImage
from textual_image import renderable
from textual_image.widget import SixelImage, TGPImage

from imagen_tui.limits import IMAGE_PROTOCOLS
from imagen_tui.tui import fastpaths
from imagen_tui.tui.pictures import protocol as chooser
from imagen_tui.tui.pictures.widget import CellPicture


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    before = chooser.protocol()
    yield
    chooser.use_protocol(before)


def square() -> PILImage.Image:
    return PILImage.new("RGB", (64, 64), "red")


@pytest.mark.parametrize(("protocol", "widget"), [("tgp", TGPImage), ("sixel", SixelImage)])
def test_graphics_protocols_draw_with_textual_image(protocol, widget):
    config = SimpleNamespace(tui=SimpleNamespace(image_protocol=protocol))
    assert chooser.configure(config) == protocol
    assert type(chooser.new_picture(square())) is widget


@pytest.mark.parametrize("protocol", ["halfcell", "unicode"])
def test_text_protocols_draw_with_the_cell_picture(protocol):
    config = SimpleNamespace(tui=SimpleNamespace(image_protocol=protocol))
    assert chooser.configure(config) == protocol
    widget = chooser.new_picture(square(), id="p")
    assert isinstance(widget, CellPicture)
    assert widget.mode == protocol
    assert widget.id == "p"


@pytest.mark.parametrize(
    ("detected", "protocol"),
    [
        (renderable.SixelImage, "sixel"),
        (renderable.TGPImage, "tgp"),
        (renderable.HalfcellImage, "halfcell"),
        (renderable.UnicodeImage, "unicode"),
    ],
)
def test_auto_is_what_textual_image_detected(monkeypatch, detected, protocol):
    monkeypatch.setattr(renderable, "Image", detected)
    assert chooser.use_protocol("auto") == protocol
    assert chooser.protocol() == protocol


def test_a_config_without_the_tui_block_means_auto(monkeypatch):
    monkeypatch.setattr(renderable, "Image", renderable.TGPImage)
    chooser.use_protocol("halfcell")
    assert chooser.configure(SimpleNamespace()) == "tgp"
    chooser.use_protocol("halfcell")
    assert chooser.configure(SimpleNamespace(tui=None)) == "tgp"
    chooser.use_protocol("halfcell")
    assert chooser.configure(SimpleNamespace(tui=SimpleNamespace())) == "tgp"


def test_the_protocol_names_are_declared_once_and_the_config_loader_uses_them():
    from imagen_tui.config import loading

    assert chooser.PROTOCOLS is IMAGE_PROTOCOLS
    assert loading.IMAGE_PROTOCOLS is IMAGE_PROTOCOLS
    chooser.use_protocol("unicode")
    with pytest.raises(ValueError, match="'kitty' is not one of auto, tgp"):
        chooser.use_protocol("kitty")
    assert chooser.protocol() == "unicode"  # unchanged


def test_textual_images_private_cell_size_is_used_on_the_pinned_version(monkeypatch):
    """The guards around textual-image's private `_terminal` take the fast path
    here: a bump that breaks it fails this test (users still get pictures)."""
    from textual_image import _terminal

    monkeypatch.setattr(fastpaths, "FALLBACKS", [])
    # restored afterwards (removed if it was not there)
    monkeypatch.setattr(_terminal.get_cell_size, "_result", _terminal.CellSize(1, 1), raising=False)
    assert chooser._pin_cell_size(12, 24)
    assert chooser.cell_size() == (12, 24)
    assert fastpaths.FALLBACKS == []


def test_without_textual_images_private_cell_size_the_public_fallback_answers(monkeypatch):
    monkeypatch.setattr(fastpaths, "FALLBACKS", [])
    monkeypatch.setattr(chooser, "_private_cell_size", lambda: None)
    monkeypatch.setenv("TEXTUAL_CELL_WIDTH", "9")
    monkeypatch.setenv("TEXTUAL_CELL_HEIGHT", "21")
    assert not chooser._pin_cell_size(10, 20)
    assert chooser.cell_size() == (9, 21)
    monkeypatch.delenv("TEXTUAL_CELL_WIDTH")
    assert chooser.cell_size() == chooser.DEFAULT_CELL_SIZE
    assert fastpaths.FALLBACKS == ["cell size"]


def test_a_picture_box_keeps_the_picture_shape_in_cells_twice_as_high_as_wide():
    chooser.use_protocol("halfcell")
    assert chooser.cell_box((64, 64), 40, 40) == (40, 20)
    assert chooser.cell_box((1600, 900), 40, 40) == (40, 11)  # 16:9 stays wide
    assert chooser.cell_box((900, 1600), 40, 40) == (40, 36)
    assert chooser.cell_box((900, 1600), 40, 10) == (11, 10)


def test_with_a_graphics_protocol_the_terminal_cell_shape_counts(monkeypatch):
    monkeypatch.setattr(chooser, "cell_size", lambda: (10, 25))
    chooser.use_protocol("tgp")
    assert chooser.cell_box((64, 64), 40, 40) == (40, 16)
