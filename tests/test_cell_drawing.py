"""`tui.cell_drawing` and `CellPicture`: pictures drawn with text cells."""

from __future__ import annotations

import pytest
from PIL import Image
from rich.color import Color
from textual.app import App, ComposeResult

from imagen_tui.tui.pictures import cells
from imagen_tui.tui.pictures.cells import draw, fit
from imagen_tui.tui.pictures.widget import CellPicture
from tests.tui import run


def two_rows(top: str, bottom: str, width: int = 2) -> Image.Image:
    picture = Image.new("RGB", (width, 2), bottom)
    for x in range(width):
        colour = Image.new("RGB", (1, 1), top).getpixel((0, 0))
        assert isinstance(colour, tuple)
        picture.putpixel((x, 0), colour)
    return picture


def test_a_halfcell_is_the_top_pixel_over_the_bottom_one():
    (line,) = draw(two_rows("red", "blue"), 2, 1, "halfcell")
    (segment,) = list(line)  # two cells of one colour pair: one segment
    assert segment.text == "▀▀"
    assert segment.style is not None
    assert segment.style.color == Color.from_rgb(255, 0, 0)
    assert segment.style.bgcolor == Color.from_rgb(0, 0, 255)


def test_cells_of_another_colour_are_another_segment():
    picture = Image.new("RGB", (3, 2), "white")
    picture.putpixel((2, 0), (0, 0, 0))
    (line,) = draw(picture, 3, 1, "halfcell")
    assert [segment.text for segment in line] == ["▀▀", "▀"]
    assert line.cell_length == 3


@pytest.mark.parametrize(
    ("grey", "shade"), [(255, "█"), (200, "▓"), (128, "▒"), (60, "░"), (0, " ")]
)
def test_unicode_draws_one_shade_a_pixel_bright_to_dark(grey, shade):
    picture = Image.new("L", (4, 4), grey)  # 4 x 2 cells: a cell is two pixels high
    lines = draw(picture, 4, 2, "unicode")
    assert [line.text for line in lines] == [shade * 4, shade * 4]


@pytest.mark.parametrize("mode", cells.MODES)
def test_a_picture_keeps_its_shape_within_the_box(mode):
    wide = Image.new("RGB", (256, 128), "green")
    lines = draw(wide, 20, 10, mode)
    assert (len(lines), {line.cell_length for line in lines}) == (5, {20})
    tall = Image.new("RGB", (128, 256), "green")
    lines = draw(tall, 20, 10, mode)
    assert (len(lines), {line.cell_length for line in lines}) == (10, {10})


def test_fit_never_leaves_the_box_and_never_draws_nothing():
    assert fit((5000, 10), 20, 10) == (20, 1)
    assert fit((10, 5000), 20, 10) == (1, 10)
    assert fit((0, 0), 20, 10) == (20, 10)
    for size in [(1, 1), (7, 3), (640, 480), (1920, 1080)]:
        for box in [(1, 1), (3, 9), (80, 24), (200, 60)]:
            width, height = fit(size, *box)
            assert 1 <= width <= box[0] and 1 <= height <= box[1]


class PictureApp(App[None]):
    def __init__(self, picture: Image.Image) -> None:
        super().__init__()
        self.picture = picture

    def compose(self) -> ComposeResult:
        yield CellPicture(self.picture, mode="halfcell")


def test_the_picture_is_centred_in_its_box_and_redrawn_only_when_it_changes(monkeypatch):
    drawn: list[tuple[int, int]] = []

    def counting(picture, width, height, mode):
        drawn.append((width, height))
        return draw(picture, width, height, mode)

    monkeypatch.setattr("imagen_tui.tui.pictures.widget.draw", counting)
    wide = Image.new("RGB", (40, 20), "red")  # 10 x 5 cells in a 20 x 9 box
    app = PictureApp(wide)

    async def scenario() -> None:
        async with app.run_test(size=(20, 9)) as pilot:
            widget = app.query_one(CellPicture)
            rows = [widget.render_line(y).text for y in range(9)]
            assert rows == [" " * 20] * 2 + ["▀" * 20] * 5 + [" " * 20] * 2
            widget.refresh()
            await pilot.pause()
            assert drawn == [(20, 9)]  # a repaint reuses the lines

            widget.image = Image.new("RGB", (20, 20), "blue")  # square: 18 x 9 cells
            rows = [widget.render_line(y).text for y in range(9)]
            assert rows == [" " + "▀" * 18 + " "] * 9
            assert drawn == [(20, 9), (20, 9)]

            await pilot.resize_terminal(30, 9)
            await pilot.pause()
            widget.render_line(0)
            assert drawn[-1] == (30, 9)

            widget.image = None
            assert {widget.render_line(y).text for y in range(9)} == {" " * 30}

    run(scenario())
