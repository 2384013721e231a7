"""`tui.images`: the `tui.image_protocol` setting chooses how pictures are drawn."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from PIL import Image as PILImage
from textual_image import renderable
from textual_image._terminal import CellSize
from textual_image.widget import SixelImage, TGPImage

from imagen_tui.errors import ConfigError
from imagen_tui.tui import images
from imagen_tui.tui.widgets.cell_picture import CellPicture


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    before = images.protocol()
    yield
    images.use_protocol(before)


def square() -> PILImage.Image:
    return PILImage.new("RGB", (64, 64), "red")


@pytest.mark.parametrize(("protocol", "widget"), [("tgp", TGPImage), ("sixel", SixelImage)])
def test_graphics_protocols_draw_with_textual_image(protocol, widget):
    config = SimpleNamespace(tui=SimpleNamespace(image_protocol=protocol))
    assert images.configure(config) == protocol
    assert type(images.new_picture(square())) is widget


@pytest.mark.parametrize("protocol", ["halfcell", "unicode"])
def test_text_protocols_draw_with_the_cell_picture(protocol):
    config = SimpleNamespace(tui=SimpleNamespace(image_protocol=protocol))
    assert images.configure(config) == protocol
    widget = images.new_picture(square(), id="p")
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
    assert images.use_protocol("auto") == protocol
    assert images.protocol() == protocol


def test_a_config_without_the_tui_block_means_auto(monkeypatch):
    monkeypatch.setattr(renderable, "Image", renderable.TGPImage)
    images.use_protocol("halfcell")
    assert images.configure(SimpleNamespace()) == "tgp"
    images.use_protocol("halfcell")
    assert images.configure(SimpleNamespace(tui=None)) == "tgp"
    images.use_protocol("halfcell")
    assert images.configure(SimpleNamespace(tui=SimpleNamespace())) == "tgp"


def test_an_unknown_protocol_is_a_config_error_naming_the_key_and_line():
    images.use_protocol("unicode")
    config = SimpleNamespace(
        tui=SimpleNamespace(image_protocol="kitty"),
        where=lambda path: "imagen.yaml:7" if path == ("tui", "image_protocol") else None,
    )
    with pytest.raises(ConfigError) as raised:
        images.configure(config)
    assert str(raised.value) == (
        "imagen.yaml:7: tui.image_protocol: 'kitty' is not one of "
        "auto, tgp, sixel, halfcell, unicode"
    )
    assert images.protocol() == "unicode"  # unchanged


def test_a_picture_box_keeps_the_picture_shape_in_cells_twice_as_high_as_wide():
    images.use_protocol("halfcell")
    assert images.cell_box((64, 64), 40, 40) == (40, 20)
    assert images.cell_box((1600, 900), 40, 40) == (40, 11)  # 16:9 stays wide
    assert images.cell_box((900, 1600), 40, 40) == (40, 36)
    assert images.cell_box((900, 1600), 40, 10) == (11, 10)


def test_with_a_graphics_protocol_the_terminal_cell_shape_counts(monkeypatch):
    monkeypatch.setattr(images, "get_cell_size", lambda: CellSize(10, 25))
    images.use_protocol("tgp")
    assert images.cell_box((64, 64), 40, 40) == (40, 16)
