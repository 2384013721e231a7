"""The Compose screen: the prompt form and the N-tries slider.

ctrl+s (or ctrl+enter where the terminal tells it apart, or the Submit
button) checks the form through the same service `imagen submit` uses and
queues one series of N tries in one transaction. A bad field is marked
where it is, with the CLI's words, and nothing is queued. The values are
kept in the app's state for the next launch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Header, Input, Label, Select, Static, TextArea

from imagen_tui import services
from imagen_tui.core.sizes import format_size
from imagen_tui.errors import DatabaseError, InputError
from imagen_tui.text import one_line
from imagen_tui.tui.cells import user_text
from imagen_tui.tui.messages import SeriesSubmitted
from imagen_tui.tui.screens.base import WorkbenchScreen
from imagen_tui.tui.widgets.footer import Footer
from imagen_tui.tui.widgets.tries_slider import TriesSlider

if TYPE_CHECKING:
    pass

SIZE_SUGGESTIONS = ["512x512", "768x768", "1024x1024", "1024x768", "768x1024", "1536x640"]

# An InputError's field -> the form field that shows it.
FIELD_OF_ERROR = {
    "prompt": "prompt",
    "negative_prompt": "negative",
    "backend": "backend",
    "style": "style",
    "size": "size",
    "width": "size",
    "height": "size",
    "steps": "steps",
    "seed": "seed",
    "count": "tries",
}
FORM_FIELDS = ("prompt", "negative", "backend", "style", "size", "steps", "seed", "tries")


def saved_form(state: dict[str, Any]) -> dict[str, Any]:
    """The form values remembered in the app's state, those of the right type only
    (the state file is the user's to edit, or to break)."""
    form = state.get("form")
    if not isinstance(form, dict):
        return {}
    kept: dict[str, Any] = {
        name: value
        for name in ("prompt", "negative", "backend", "style", "size", "steps", "seed")
        if isinstance(value := form.get(name), str)
    }
    tries = form.get("tries")
    if isinstance(tries, int) and not isinstance(tries, bool):
        kept["tries"] = tries
    return kept


class FieldRow(Vertical):
    """A label, a field and the line where its error appears."""

    DEFAULT_CSS = """
    FieldRow { height: auto; margin-bottom: 1; }
    FieldRow > .field-error { display: none; color: $text-error; }
    FieldRow.-invalid > .field-error { display: block; }
    """

    def __init__(self, label: str, field: Widget, name: str) -> None:
        super().__init__(id=f"{name}-row", classes="field-row")
        self._label, self._field, self._name = label, field, name

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="field-label")
        yield self._field
        yield Static("", id=f"{self._name}-error", classes="field-error", markup=False)


class ComposeScreen(WorkbenchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s,ctrl+enter", "submit", "Submit", id="submit", priority=True),
        Binding("ctrl+r", "reset_form", "Clear form", id="reset-form"),
    ]

    def compose(self) -> ComposeResult:
        app = self.workbench_app
        workbench = app.workbench
        saved = saved_form(app.state)
        backends = [(self._backend_label(name), name) for name in sorted(workbench.backend_blocks)]
        # Names are shown literally, never read as markup (a `[@click=...]` in a name).
        styles = [(user_text(name, 60), name) for name in sorted(workbench.styles)]
        default_backend = workbench.config.default_backend
        backend = saved.get("backend")
        style = saved.get("style")
        yield Header()
        with VerticalScroll(id="compose-form"):
            yield FieldRow(
                "Prompt",
                TextArea(saved.get("prompt", ""), id="prompt", soft_wrap=True, compact=True),
                "prompt",
            )
            yield FieldRow(
                "Negative prompt",
                Input(
                    saved.get("negative", ""),
                    id="negative",
                    placeholder="optional",
                    compact=True,
                ),
                "negative",
            )
            with Horizontal(classes="field-line"):
                yield FieldRow(
                    "Backend",
                    Select(
                        backends,
                        value=backend if backend in workbench.backend_blocks else default_backend,
                        allow_blank=False,
                        id="backend",
                        compact=True,
                    ),
                    "backend",
                )
                yield FieldRow(
                    "Style",
                    Select(
                        styles,
                        value=style if style in workbench.styles else Select.NULL,
                        prompt="none",
                        id="style",
                        compact=True,
                    ),
                    "style",
                )
            yield Static("", id="style-hint", markup=False)
            with Horizontal(classes="field-line"):
                yield FieldRow(
                    "Size",
                    Input(
                        saved.get("size", ""),
                        id="size",
                        placeholder="style's or 1024x1024",
                        suggester=SuggestFromList(SIZE_SUGGESTIONS, case_sensitive=False),
                        compact=True,
                    ),
                    "size",
                )
                yield FieldRow(
                    "Steps",
                    Input(saved.get("steps", ""), id="steps", placeholder="default", compact=True),
                    "steps",
                )
                yield FieldRow(
                    "Seed",
                    Input(saved.get("seed", ""), id="seed", placeholder="random", compact=True),
                    "seed",
                )
            yield FieldRow("Tries", TriesSlider(int(saved.get("tries", 1)), id="tries"), "tries")
            with Horizontal(id="submit-line"):
                yield Button("Submit", id="submit", variant="primary", compact=True)
                yield Static("ctrl+s  ·  ←/→ or 1-9, 0 on the slider", id="submit-hint")
        yield Footer()

    def _backend_label(self, name: str) -> Text:
        status = self.workbench_app.workbench.backend_status(name)
        return user_text(name if status == "ok" else f"{name} ({status})", 60)

    def on_mount(self) -> None:
        if self.app.is_headless:  # deterministic screenshots: no blinking cursors
            for widget in self.query("Input, TextArea"):
                widget.cursor_blink = False  # type: ignore[attr-defined]
        self._show_style_hint()
        self.query_one("#prompt", TextArea).focus()

    @on(Select.Changed, "#style")
    def _show_style_hint(self) -> None:
        name = self.query_one("#style", Select).value
        style = self.workbench_app.workbench.styles.get(name) if isinstance(name, str) else None
        hint = self.query_one("#style-hint", Static)
        if style is None:
            hint.update("no style: the prompt is sent as written")
        else:
            size = f" · {format_size(*style.size)}" if style.size else ""
            hint.update(one_line(f"{style.template}{size}", 300))

    # ----------------------------------------------------------------- values

    def form_values(self) -> dict[str, Any]:
        """What the form holds, as text (the slider as a number)."""
        backend = self.query_one("#backend", Select).value
        style = self.query_one("#style", Select).value
        return {
            "prompt": self.query_one("#prompt", TextArea).text,
            "negative": self.query_one("#negative", Input).value,
            "backend": backend if isinstance(backend, str) else None,
            "style": style if isinstance(style, str) else None,
            "size": self.query_one("#size", Input).value,
            "steps": self.query_one("#steps", Input).value,
            "seed": self.query_one("#seed", Input).value,
            "tries": self.query_one("#tries", TriesSlider).value,
        }

    def action_reset_form(self) -> None:
        self.query_one("#prompt", TextArea).text = ""
        for name in ("negative", "size", "steps", "seed"):
            self.query_one(f"#{name}", Input).value = ""
        self.query_one("#style", Select).value = Select.NULL
        self._clear_errors()

    # ----------------------------------------------------------------- submit

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        values = self.form_values()
        self.workbench_app.remember_form(values)
        self._clear_errors()
        self._submit(values)

    @work(thread=True, exclusive=True, group="submit", exit_on_error=False)
    def _submit(self, values: dict[str, Any]) -> None:
        app = self.workbench_app
        try:
            spec = services.spec_from_form(
                prompt=values["prompt"],
                negative=values["negative"],
                backend=values["backend"],
                style=values["style"],
                size=values["size"],
                steps=values["steps"],
                seed=values["seed"],
            )
            submission = app.require_session().submit(app.workbench, spec, values["tries"])
        except InputError as error:
            self.app.call_from_thread(self._show_error, error)
            return
        except DatabaseError as error:
            app.tell(str(error), title="Not queued", severity="error")
            return
        for warning in submission.warnings:
            app.tell(warning.message, title=f"{warning.field}", severity="warning")
        self.post_message(SeriesSubmitted(submission.series_id, submission.job_ids))

    def _clear_errors(self) -> None:
        for row in self.query(FieldRow):
            row.remove_class("-invalid")

    def _show_error(self, error: InputError) -> None:
        name = FIELD_OF_ERROR.get(error.field or "", "prompt")
        row = self.query_one(f"#{name}-row", FieldRow)
        row.add_class("-invalid")
        self.query_one(f"#{name}-error", Static).update(one_line(error.message, 300))
        self.query_one(f"#{name}").focus()
