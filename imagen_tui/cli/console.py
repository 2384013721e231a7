"""Printing helpers shared by the CLI modules: one-line errors, plain tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence

PROG = "imagen"


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
