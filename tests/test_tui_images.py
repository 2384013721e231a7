"""`tui.images`: the `tui.image_protocol` setting chooses textual-image's widget class."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from textual_image.widget import HalfcellImage, Image, SixelImage, TGPImage, UnicodeImage

from imagen_tui.errors import ConfigError
from imagen_tui.tui import images


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    before = images.image_class()
    yield
    images._chosen[0] = before


@pytest.mark.parametrize(
    ("protocol", "widget"),
    [
        ("auto", Image),
        ("tgp", TGPImage),
        ("sixel", SixelImage),
        ("halfcell", HalfcellImage),
        ("unicode", UnicodeImage),
    ],
)
def test_each_protocol_names_its_widget_class(protocol, widget):
    config = SimpleNamespace(tui=SimpleNamespace(image_protocol=protocol))
    assert images.configure(config) is widget
    assert images.image_class() is widget


def test_a_config_without_the_tui_block_means_auto():
    images.use_protocol("halfcell")
    assert images.configure(SimpleNamespace()) is Image
    assert images.configure(SimpleNamespace(tui=None)) is Image
    assert images.configure(SimpleNamespace(tui=SimpleNamespace())) is Image


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
    assert images.image_class() is UnicodeImage  # unchanged


def test_halfcell_pictures_are_scaled_to_their_box_before_drawing():
    from PIL import Image as PILImage

    picture = PILImage.new("RGB", (256, 128), "red")
    images.use_protocol("halfcell")
    fitted = images.fitted(picture, 20, 10)  # 20 cells wide, 10 rows of 2 pixels
    assert fitted.size == (20, 10)  # aspect kept, within 20 x 20
    assert picture.size == (256, 128)  # the original is untouched
    small = PILImage.new("RGB", (8, 8))
    assert images.fitted(small, 20, 10) is small  # nothing to gain


@pytest.mark.parametrize("protocol", ["tgp", "sixel"])
def test_pixel_protocols_get_the_picture_as_it_is(protocol):
    from PIL import Image as PILImage

    picture = PILImage.new("RGB", (256, 256))
    images.use_protocol(protocol)
    assert images.fitted(picture, 20, 10) is picture
