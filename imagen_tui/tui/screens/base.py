"""`WorkbenchScreen`: what every screen of the app shares; `SearchingScreen`:
one whose list a `SearchBar` filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker

from imagen_tui.core.rows import Search
from imagen_tui.tui.widgets.search_bar import SearchBar

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


class SearchingScreen(WorkbenchScreen):
    """A screen whose list its one `SearchBar` filters: `/` opens it, `b` and `d`
    step the backend and date filters (the screen binds the keys). A change
    re-reads the list (`search_changed`); closing the bar hands the focus back
    (`search_closed`)."""

    def __init__(self) -> None:
        super().__init__()
        self.search = Search()

    @property
    def search_bar(self) -> SearchBar:
        return self.query_one(SearchBar)

    def action_search(self) -> None:
        self.search_bar.open()

    def action_filter_backend(self) -> None:
        self.search_bar.next_backend()

    def action_filter_date(self) -> None:
        self.search_bar.next_date()

    def on_search_bar_changed(self, event: SearchBar.Changed) -> None:
        self.search = event.search
        self.search_changed()

    def on_search_bar_closed(self, _event: SearchBar.Closed) -> None:
        self.search_closed()

    def search_changed(self) -> None:
        """Read the list again with `self.search`."""
        raise NotImplementedError

    def search_closed(self) -> None:
        """Put the focus back where the list is."""
        raise NotImplementedError


def forward_worker_state(screen: Screen[Any], event: Worker.StateChanged) -> None:
    """Hand a screen worker's state to the app, which handles every worker's
    failure in one place (Textual posts it to the screen only)."""
    screen.app.post_message(Worker.StateChanged(event.worker, event.state))
