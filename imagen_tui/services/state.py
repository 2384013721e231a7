"""What `imagen-tui` remembers between runs (last form values, theme)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from imagen_tui.config.state import load_state, save_state


def load_tui_state(warn: Callable[[str], object] | None = None) -> dict[str, Any]:
    """What `imagen-tui` remembered (last form values, theme): a JSON object, {}
    when there is none. A file that cannot be read is ignored: `warn(line)` is
    called (default: a logged warning), never an exception."""
    return load_state(warn=warn)


def save_tui_state(state: Mapping[str, Any]) -> Path:
    """Remember `state` (JSON values) atomically; InputError (one line) if it cannot."""
    return save_state(state)
