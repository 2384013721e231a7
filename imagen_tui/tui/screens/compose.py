"""The Compose screen: the prompt form and the N-tries slider.

ctrl+s (or ctrl+enter where the terminal tells it apart, or the Submit
button) checks the form through the same service `imagen submit` uses and
queues one series of N tries in one transaction. A bad field is marked
where it is, with the CLI's words, and nothing is queued. The values are
kept in the app's state for the next launch.

Up on the prompt's first line walks back through this user's earlier
prompts (from the database, newest first, each once), down comes forward
again; ctrl+f walks only those containing what the prompt holds. A recall
(`e` on a tile, a card, the full-screen view or a job row) fills every field
from that image's request (`fill`), with the cursor in the prompt.
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
from imagen_tui.tui.widgets.prompt_area import PromptArea
from imagen_tui.tui.widgets.tries_slider import TriesSlider

if TYPE_CHECKING:
    from imagen_tui.core.rows import Recalled

HISTORY_SIZE = 200  # earlier prompts read for up/down

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
        Binding("ctrl+f", "find_prompt", "Find prompt", id="find-prompt"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._history: list[str] | None = None  # earlier prompts, newest first
        self._history_search = ""  # what they contain (ctrl+f), "" for all
        self._history_at = -1  # the one shown; -1: the user's own text
        self._draft = ""  # the user's own text, while an earlier prompt is shown
        self._placed: str | None = None  # the text the screen put in the prompt itself

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
        yield Static("", id="database-error", markup=False)
        with VerticalScroll(id="compose-form"):
            yield FieldRow(
                "Prompt",
                PromptArea(saved.get("prompt", ""), id="prompt", soft_wrap=True, compact=True),
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
        self.show_database_error()
        self.focus_prompt()

    def on_screen_resume(self) -> None:
        self.show_database_error()

    def show_database_error(self) -> None:
        """Why the database could not be opened, whole, above the form (if it could not)."""
        error = self.workbench_app.database_error
        banner = self.query_one("#database-error", Static)
        banner.display = error is not None
        if error is not None:
            banner.update(
                "The database could not be opened, so nothing can be queued: "
                f"{one_line(error)}\n"
                "Fix it (`imagen db status` says more) and start imagen-tui again."
            )

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
            "prompt": self.query_one("#prompt", PromptArea).text,
            "negative": self.query_one("#negative", Input).value,
            "backend": backend if isinstance(backend, str) else None,
            "style": style if isinstance(style, str) else None,
            "size": self.query_one("#size", Input).value,
            "steps": self.query_one("#steps", Input).value,
            "seed": self.query_one("#seed", Input).value,
            "tries": self.query_one("#tries", TriesSlider).value,
        }

    def action_reset_form(self) -> None:
        self._set_prompt("")
        for name in ("negative", "size", "steps", "seed"):
            self.query_one(f"#{name}", Input).value = ""
        self.query_one("#style", Select).value = Select.NULL
        self._clear_errors()
        self.focus_prompt()

    def focus_prompt(self) -> None:
        """The cursor in the prompt (where typing should land on arrival)."""
        self.query_one("#prompt", PromptArea).focus()

    def fill(self, recalled: Recalled) -> list[str]:
        """Every field from a recalled request (its seed, its series' tries), the
        cursor in the prompt; what could not be set, as notes for the user."""
        spec, notes = recalled.spec, []
        workbench = self.workbench_app.workbench
        self._set_prompt(spec.prompt)
        self.query_one("#negative", Input).value = spec.negative_prompt
        backend = spec.backend or workbench.config.default_backend
        if backend in workbench.backend_blocks:
            self.query_one("#backend", Select).value = backend
        else:
            notes.append(f"backend {backend!r} is not in this config; kept the form's")
        style = self.query_one("#style", Select)
        if spec.style is None:
            style.value = Select.NULL
        elif spec.style in workbench.styles:
            style.value = spec.style
        else:
            style.value = Select.NULL
            notes.append(f"style {spec.style!r} is not in this config; no style set")
        self.query_one("#size", Input).value = format_size(*spec.size) if spec.size else ""
        self.query_one("#steps", Input).value = "" if spec.steps is None else str(spec.steps)
        self.query_one("#seed", Input).value = "" if spec.seed is None else str(spec.seed)
        self.query_one("#tries", TriesSlider).value = recalled.tries
        self._clear_errors()
        self.focus_prompt()
        return notes

    # ----------------------------------------------------------------- history

    def _set_prompt(self, text: str) -> None:
        self._place(text)
        self._forget_history()

    def _forget_history(self) -> None:
        self._history, self._history_at, self._history_search = None, -1, ""
        self.query_one("#prompt", PromptArea).browsing = False

    def _place(self, text: str) -> None:
        prompt = self.query_one("#prompt", PromptArea)
        self._placed = text
        prompt.text = text
        prompt.move_cursor((0, 0))

    @on(TextArea.Changed, "#prompt")
    def _typed(self, event: TextArea.Changed) -> None:
        # (Changed arrives after the fact: a text other than the one placed is the user's.)
        if event.text_area.text != self._placed:  # walking starts again from the user's text
            self._placed = None
            self._forget_history()

    @on(PromptArea.HistoryStep)
    def _history_step(self, event: PromptArea.HistoryStep) -> None:
        if self._history is None:
            if event.older:
                self._draft = self.query_one("#prompt", PromptArea).text
                self._load_history(self._history_search)
            return
        self._walk(older=event.older)

    def action_find_prompt(self) -> None:
        """Walk only the earlier prompts that contain what the prompt holds."""
        text = self.query_one("#prompt", PromptArea).text if self._history_at < 0 else self._draft
        self._draft = text
        self._history_search = text.strip()
        self._load_history(self._history_search)

    @work(thread=True, exclusive=True, group="prompt-history", exit_on_error=False)
    def _load_history(self, search: str) -> None:
        app = self.workbench_app
        try:
            prompts = app.require_session().prompt_history(search, HISTORY_SIZE)
        except DatabaseError as error:
            app.tell(str(error), title="Prompt history", severity="error")
            return
        app.call_from_thread(self._history_loaded, search, prompts)

    def _history_loaded(self, search: str, prompts: list[str]) -> None:
        self._history = [p for p in prompts if p != self._draft]
        self._history_search, self._history_at = search, -1
        self.query_one("#prompt", PromptArea).browsing = True
        if not self._history:
            found = f" containing {one_line(search, 60)!r}" if search else ""
            self.notify(f"No earlier prompt{found}", title="Prompt history", markup=False)
            return
        self._walk(older=True)

    def _walk(self, older: bool) -> None:
        history = self._history or []
        at = self._history_at + (1 if older else -1)
        if at >= len(history):
            self.notify("No older prompt", title="Prompt history")
            return
        self._history_at = max(-1, at)
        text = self._draft if self._history_at < 0 else history[self._history_at]
        self._place(text)
        self.query_one("#prompt", PromptArea).browsing = self._history_at >= 0

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
        self.app.call_from_thread(self._forget_history)  # the new prompt is history now
        self.post_message(SeriesSubmitted(submission))

    def _clear_errors(self) -> None:
        for row in self.query(FieldRow):
            row.remove_class("-invalid")

    def _show_error(self, error: InputError) -> None:
        name = FIELD_OF_ERROR.get(error.field or "", "prompt")
        row = self.query_one(f"#{name}-row", FieldRow)
        row.add_class("-invalid")
        self.query_one(f"#{name}-error", Static).update(one_line(error.message, 300))
        self.query_one(f"#{name}").focus()
