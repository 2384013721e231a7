"""The private parts of Textual and textual-image the app leans on for speed.

Each use sits behind a guard: when the private thing is missing or does not
look as it does on the pinned versions, the app takes the public path
(slower, never wrong) and calls `fell_back(name)`, which records it here
and logs it once. Tests fail when anything is recorded on the pinned
versions (tests/test_tui_fastpaths.py), so a bump that breaks a fast path
is noticed while users still get correct screens.

- `restyle on first visit` (tui/app.py): a screen's CSS count set at registration;
- `footer bindings ready` (tui/widgets/footer.py): the Footer's `_bindings_ready`;
- `cell size` (tui/pictures/protocol.py): textual-image's `_terminal.get_cell_size`.
"""

from __future__ import annotations

import logging

log = logging.getLogger("imagen.tui")
FALLBACKS: list[str] = []


def fell_back(name: str) -> None:
    """Record that the public path was taken for `name` (logged once)."""
    if name not in FALLBACKS:
        FALLBACKS.append(name)
        log.warning("fast path %r unavailable on this Textual: taking the public path", name)
