"""`WorkbenchScreen`: what every screen of the app shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from imagen_tui.tui.app import WorkbenchApp


class WorkbenchScreen(Screen[None]):
    @property
    def workbench_app(self) -> WorkbenchApp:
        """The app, with its session, signals and settings."""
        from imagen_tui.tui.app import WorkbenchApp  # the app imports the screens

        assert isinstance(self.app, WorkbenchApp)
        return self.app
