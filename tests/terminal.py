"""What the tests send at a terminal, and how they check that it arrived safely."""

from __future__ import annotations

# Text a user could type, paste or write into the database with plain SQL: a
# screen-clearing escape sequence, a C1 control (CSI), a bidi override, DEL and
# BEL. None of it may reach a terminal raw.
HOSTILE = "a\x1b[2Jb\x9bc\u202ed\x7fe\x07f"
SHOWN = "a\\x1b[2Jb\\x9bc\\u202ed\\x7fe\\x07f"  # how the CLI shows it: visible escapes

BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def raw_controls(text: str) -> list[str]:
    """The C0 (except newline), DEL, C1 and bidi control characters in `text`."""
    return [
        ch
        for ch in text
        if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F or ch in BIDI
    ]
