"""`TriesSlider`: how many tries a series gets, 1..10, by keyboard or mouse.

Textual has no slider (and textual-slider is GPL), so this is ImaGen's own:
left/right/h/l/-/+ step, home/end jump, digits 1-9 and 0 (for 10) set the
value directly, a click or a drag on the track sets it too. The value is
drawn beside the track. `Changed` is posted for every change a user makes,
never for the initial value.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from imagen_tui.limits import MAX_COUNT, MIN_COUNT


class TriesSlider(Widget, can_focus=True):
    """A horizontal slider over whole numbers `minimum..maximum`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h,minus", "step(-1)", "Fewer", show=False),
        Binding("right,l,plus,equals_sign", "step(1)", "More", show=False),
        Binding("home", "jump('min')", "Fewest", show=False),
        Binding("end", "jump('max')", "Most", show=False),
    ]

    DEFAULT_CSS = """
    TriesSlider {
        height: 1;
        width: 1fr;
        min-width: 16;
        color: $foreground-muted;
    }
    TriesSlider:focus {
        color: $accent;
        text-style: bold;
    }
    """

    value: reactive[int] = reactive(MIN_COUNT)

    class Changed(Message):
        """The user moved the slider."""

        def __init__(self, slider: TriesSlider, value: int) -> None:
            super().__init__()
            self.slider, self.value = slider, value

        @property
        def control(self) -> TriesSlider:
            return self.slider

    def __init__(
        self,
        value: int = MIN_COUNT,
        *,
        minimum: int = MIN_COUNT,
        maximum: int = MAX_COUNT,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.minimum, self.maximum = minimum, maximum
        self.set_reactive(TriesSlider.value, self._clamp(value))  # no Changed for this one

    def _clamp(self, value: int) -> int:
        return max(self.minimum, min(self.maximum, value))

    def validate_value(self, value: int) -> int:
        return self._clamp(value)

    def watch_value(self, value: int) -> None:
        self.post_message(self.Changed(self, value))

    def action_step(self, delta: int) -> None:
        self.value += delta

    def action_jump(self, where: str) -> None:
        self.value = self.minimum if where == "min" else self.maximum

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character.isdigit():
            digit = int(event.character)
            self.value = 10 if digit == 0 else digit
            event.stop()
            event.prevent_default()

    # ----------------------------------------------------------------- the mouse

    def _track_width(self) -> int:
        return max(2, self.content_size.width - len(self._label()) - 1)

    def _value_at(self, x: int) -> int:
        span = self.maximum - self.minimum
        fraction = min(max(x, 0), self._track_width() - 1) / (self._track_width() - 1)
        return self.minimum + round(fraction * span)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self.capture_mouse()
        self.focus()
        self.value = self._value_at(event.x)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self.app.mouse_captured is self:
            self.value = self._value_at(event.x)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self.release_mouse()

    # ----------------------------------------------------------------- drawing

    def _label(self) -> str:
        return f"{self.value:>{len(str(self.maximum))}}"

    def render(self) -> Text:
        width = self._track_width()
        span = self.maximum - self.minimum
        knob = round((self.value - self.minimum) / span * (width - 1)) if span else 0
        track = Text()
        track.append("━" * knob, style="bold")
        track.append("●", style="bold")
        track.append("─" * (width - knob - 1), style="dim")
        track.append(" " + self._label(), style="bold")
        return track
