"""`WorkbenchScreen`: what every screen of the app shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from imagen_tui.tui.app import WorkbenchApp


class WorkbenchScreen(Screen[None]):
    @property
    def workbench_app(self) -> WorkbenchApp:
        """The app, with its session, signals and settings."""
        from imagen_tui.tui.app import WorkbenchApp  # the app imports the screens

        assert isinstance(self.app, WorkbenchApp)
        return self.app

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_state(self, event)


def forward_worker_state(screen: Screen[Any], event: Worker.StateChanged) -> None:
    """Hand a screen worker's state to the app, which handles every worker's
    failure in one place (Textual posts it to the screen only)."""
    screen.app.post_message(Worker.StateChanged(event.worker, event.state))
