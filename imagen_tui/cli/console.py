"""Printing for the CLI: one-line errors, plain tables, JSON lines, user text made safe.

stdout carries what scripts consume (paths, ids, tables, JSON); stderr the
lines for humans. Every value a user (or another user, through the shared
database) controls goes through `imagen_tui.text` before it is printed, so
escape sequences in a prompt or a style name reach the terminal literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from imagen_tui.cmdline import error_line
from imagen_tui.errors import ImagenError, InputError
from imagen_tui.text import json_text, literal, one_line

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
    """A line for humans on stderr, prefixed with the program name (user text escaped)."""
    error_line(PROG, message)


def warn(error: InputError) -> None:
    err(f"warning: {describe(error)}")


def out(line: str) -> None:
    """A line on stdout, its user text shown literally."""
    print(literal(line), flush=True)


def json_line(value: Any) -> None:
    """One JSON document on one line of stdout (timestamps in ISO 8601)."""
    print(json_text(value, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return None  # thumbnails and other binary data have no place on a terminal
    return str(value)


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def cell(text: str | None, limit: int = 60) -> str:
    """User text squeezed into one table cell: escaped, one line, bounded."""
    return one_line(text or "", limit)


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart (plain text: fine in pipes and logs)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def table(rows: Sequence[Sequence[str]]) -> None:
    print("\n".join(columns(rows)), flush=True)
