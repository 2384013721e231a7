"""Printing helpers shared by the CLI modules: one-line errors, plain tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from imagen_tui.errors import ImagenError, InputError

PROG = "imagen"

# How the CLI names a request field in an error: the flag or argument that sets it.
_FIELD_NAMES = {
    "prompt": "PROMPT",
    "negative_prompt": "--negative",
    "width": "--size",
    "height": "--size",
    "series": "ID",
    "job": "ID",
}


def field_name(field: str) -> str:
    """`style` -> `--style`, `prompt` -> `PROMPT`; config keys and `$VARS` as they are."""
    if field in _FIELD_NAMES:
        return _FIELD_NAMES[field]
    if field.startswith(("$", "-")) or "." in field or field.isupper():
        return field
    return "--" + field.replace("_", "-")


def describe(error: ImagenError) -> str:
    """An error as the CLI shows it: an input error names its flag."""
    if isinstance(error, InputError) and error.field:
        return f"{field_name(error.field)}: {error.message}"
    return str(error)


def err(message: str) -> None:
    """A line for humans on stderr, prefixed with the program name."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart (plain text: fine in pipes and logs)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def one_line(text: str, limit: int = 60) -> str:
    """User text squeezed onto one table cell: no control characters, bounded length."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
