"""Where the workbench's `.tcss` stylesheets are (styles/tui/, shipped in the wheel)."""

from __future__ import annotations

from pathlib import Path

from imagen_tui.core.resources import styles_dir


def stylesheet(name: str) -> Path:
    """The path of `styles/tui/<name>.tcss`."""
    return styles_dir() / "tui" / f"{name}.tcss"
