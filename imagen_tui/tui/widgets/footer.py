"""`Footer`: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer recomposes every key (a widget each, restyled one by one)
whenever a screen calls `refresh_bindings`: on each focus move, screen
resume and cursor move that may enable or disable an action. That is
15-25 ms a time, and opening the Series screen asked for it ten times, most
of them for the same keys. This one compares what it would show (each
key, its label and whether it is enabled) with what it shows, and skips
the rebuild when they are the same (or a rebuild for them is on its way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Footer as TextualFooter

from imagen_tui.tui.fastpaths import fell_back

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.screen import Screen

Shown = tuple[tuple[str, str, str, bool, str], ...]


class Footer(TextualFooter):
    _shown: Shown | None = None

    def _wanted(self) -> Shown:
        return tuple(
            (binding.key, binding.description, binding.action, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
        )

    def compose(self) -> ComposeResult:
        # Textual's Footer composes no key until its `_bindings_ready` (private
        # in Textual 8.2). Without that flag as a bool, nothing is taken as shown,
        # so every change rebuilds, as Textual's own Footer does.
        ready = getattr(self, "_bindings_ready", None)
        if not isinstance(ready, bool):
            fell_back("footer bindings ready")
            ready = False
        self._shown = self._wanted() if ready else None
        composed = 0
        for widget in super().compose():
            composed += 1
            yield widget
        if not ready and composed:  # keys although the flag said not ready
            fell_back("footer bindings ready")
            self._shown = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            wanted = self._wanted()
            if wanted == self._shown:
                return  # the same keys, or a rebuild for them already asked for
            self._shown = wanted
        super().bindings_changed(screen)
