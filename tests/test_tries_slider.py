"""The N-tries slider: keys, mouse, bounds and its Changed messages."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from imagen_tui.tui.widgets.tries_slider import TriesSlider
from tests.tui import run


class SliderApp(App[None]):
    def __init__(self, value: int = 3) -> None:
        super().__init__()
        self.initial = value
        self.changes: list[int] = []

    def compose(self) -> ComposeResult:
        yield TriesSlider(self.initial, id="tries")

    def on_tries_slider_changed(self, event: TriesSlider.Changed) -> None:
        assert event.control is self.query_one(TriesSlider)
        self.changes.append(event.value)


def drive(*keys: str, value: int = 3) -> tuple[int, list[int]]:
    app = SliderApp(value)

    async def scenario():
        async with app.run_test(size=(40, 3)) as pilot:
            app.query_one(TriesSlider).focus()
            await pilot.press(*keys)
            await pilot.pause()
            return app.query_one(TriesSlider).value

    return run(scenario()), app.changes


@pytest.mark.parametrize(
    ("keys", "value"),
    [
        (("right",), 4),
        (("l", "l"), 5),
        (("plus",), 4),
        (("left",), 2),
        (("h",), 2),
        (("minus",), 2),
        (("end",), 10),
        (("home",), 1),
        (("7",), 7),
        (("0",), 10),
        (("1",), 1),
        (("end", "right", "right"), 10),  # clamped at the top
        (("home", "left"), 1),  # and at the bottom
    ],
)
def test_keys_set_the_value(keys, value):
    assert drive(*keys)[0] == value


def test_changed_is_posted_for_each_change_but_never_for_the_initial_value():
    value, changes = drive("right", "right", "left")
    assert value == 4
    assert changes == [4, 5, 4]
    assert drive()[1] == []  # just mounting: nothing


def test_a_value_outside_the_range_is_clamped_at_creation():
    assert drive(value=42)[0] == 10
    assert drive(value=-3)[0] == 1


def test_click_and_drag_on_the_track_set_the_value():
    app = SliderApp(5)

    async def scenario():
        async with app.run_test(size=(40, 3)) as pilot:
            slider = app.query_one(TriesSlider)
            await pilot.click(TriesSlider, offset=(0, 0))
            at_left = slider.value
            track_end = slider.content_size.width - 4  # the value label takes the last 3 cells
            await pilot.click(TriesSlider, offset=(track_end, 0))
            at_right = slider.value
            await pilot.mouse_down(TriesSlider, offset=(track_end, 0))
            await pilot.hover(TriesSlider, offset=(track_end // 2, 0))
            dragged = slider.value
            await pilot.mouse_up(TriesSlider, offset=(track_end // 2, 0))
            return at_left, at_right, dragged, slider.has_focus

    at_left, at_right, dragged, focused = run(scenario())
    assert (at_left, at_right) == (1, 10)
    assert 4 <= dragged <= 6
    assert focused


def test_the_value_is_drawn_beside_the_track():
    app = SliderApp(7)

    async def scenario():
        async with app.run_test(size=(40, 3)):
            return app.query_one(TriesSlider).render().plain

    drawn = run(scenario())
    assert drawn.rstrip().endswith(" 7")
    assert "●" in drawn
