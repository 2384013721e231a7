"""`SearchBar`: the filter over the Gallery and the Series list.

`/` opens it (`open`): what is typed there, once enter is pressed, filters
by prompt text; `b` steps through the backends (`next_backend`), `d`
through the dates (`next_date`). Each change posts `SearchBar.Changed`
with the `Search` to load (the query runs on the server, among the user's
own rows). The bar takes no room while no filter is set and it is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label

from imagen_tui.core.rows import Search
from imagen_tui.text import one_line

# (days back, label): the date filter's steps.
DATES: tuple[tuple[int | None, str], ...] = (
    (None, "any date"),
    (1, "last day"),
    (7, "last 7 days"),
    (30, "last 30 days"),
)


class SearchBar(Horizontal):
    DEFAULT_CSS = """
    SearchBar {
        height: 1;
        padding: 0 1;
        display: none;
        &.-shown { display: block; }
        & > Input { width: 1fr; max-width: 50; display: none; }
        & > Input.-open { display: block; }
        & > Label { color: $text-muted; padding: 0 1; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close search", show=False),
    ]

    class Changed(Message):
        def __init__(self, bar: SearchBar, search: Search) -> None:
            super().__init__()
            self.bar, self.search = bar, search

        @property
        def control(self) -> SearchBar:
            return self.bar

    class Closed(Message):
        """The input was left (enter or escape): the screen puts the focus back."""

        def __init__(self, bar: SearchBar) -> None:
            super().__init__()
            self.bar = bar

        @property
        def control(self) -> SearchBar:
            return self.bar

    def __init__(self, backends: Sequence[str], clock: Callable[[], datetime], *, id: str) -> None:
        super().__init__(id=id)
        self.backends = list(backends)
        self.clock = clock
        self.text = ""
        self.backend: str | None = None
        self.date = 0  # index in DATES

    def compose(self) -> ComposeResult:
        field = Input(placeholder="prompt contains… (enter)", compact=True)
        field.can_focus = False  # until opened: a screen's first focus is not here
        yield field
        yield Label("")

    @property
    def search(self) -> Search:
        days = DATES[self.date][0]
        since = None if days is None else self.clock() - timedelta(days=days)
        return Search(self.text, self.backend, since)

    def open(self) -> None:
        field = self.query_one(Input)
        field.add_class("-open")
        field.can_focus = True
        field.value = self.text
        self._show()
        field.focus()

    def next_backend(self) -> None:
        choices: list[str | None] = [None, *self.backends]
        at = choices.index(self.backend) if self.backend in choices else 0
        self.backend = choices[(at + 1) % len(choices)]
        self._changed()

    def next_date(self) -> None:
        self.date = (self.date + 1) % len(DATES)
        self._changed()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.text = event.value.strip()
        self._close_input()
        self._changed()

    def action_close(self) -> None:
        self._close_input()
        self._show()

    def _close_input(self) -> None:
        field = self.query_one(Input)
        field.remove_class("-open")
        field.can_focus = False
        self.post_message(self.Closed(self))

    def _changed(self) -> None:
        self._show()
        self.post_message(self.Changed(self, self.search))

    def _show(self) -> None:
        parts = []
        if self.text:
            parts.append(f"prompt contains {one_line(self.text, 60)!r}")
        if self.backend is not None:
            parts.append(f"backend {one_line(self.backend, 30)}")
        if DATES[self.date][0] is not None:
            parts.append(DATES[self.date][1])
        summary = " · ".join(parts) if parts else "no filter"
        self.query_one(Label).update(Text(f"{summary}  (/ text · b backend · d date)"))
        self.set_class(bool(parts) or self.query_one(Input).has_class("-open"), "-shown")
