"""User text made safe for a terminal, a log line or a JSON line.

Prompts, style names, errors and file names can hold anything another user
or a plain-SQL client wrote, including escape sequences that would repaint
or hijack a terminal. Everything user-controlled that ImaGen prints goes
through one of these functions, so it reaches the screen literally:

- `literal(text)`: control and invisible formatting characters (ESC, C1
  controls, DEL, bidi overrides, ...) become visible escapes such as `\\x1b`
  or `\\u202e`; newlines and tabs are kept unless `one_line` is asked for.
- `one_line(text, limit)`: the same on one line (whitespace runs folded to
  one space), cut to `limit` characters with an ellipsis.
- `json_text(value)`: JSON with non-ASCII letters kept readable but every
  control or formatting character escaped as `\\uXXXX`.

Rich markup is the TUI's own concern (it escapes `[...]` on top of this).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

_KEPT_WHITESPACE = frozenset("\n\t")


def _is_unsafe(ch: str) -> bool:
    """A character that must not reach a terminal raw: controls (C0, DEL, C1) and
    invisible format characters (bidi overrides, zero-width joiners, ...)."""
    return unicodedata.category(ch) in ("Cc", "Cf")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def literal(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every unsafe character shown as an escape (`\\x1b`, `\\u202e`)."""
    if text.isprintable():  # the common case: nothing to do
        return text
    keep = _KEPT_WHITESPACE if keep_newlines else frozenset()
    return "".join(_escape(ch) if _is_unsafe(ch) and ch not in keep else ch for ch in text)


def one_line(text: str, limit: int | None = None) -> str:
    """`text` on one line: whitespace runs become one space, unsafe characters
    are escaped, and the result is cut to `limit` characters (ending in `…`)."""
    flat = " ".join(text.split())
    flat = literal(flat, keep_newlines=False)
    if limit is not None and len(flat) > limit:
        return flat[: max(0, limit - 1)] + "…"
    return flat


def json_text(value: Any, **kwargs: Any) -> str:
    """`json.dumps(value)` that keeps non-ASCII letters but escapes every control
    and formatting character (json.dumps leaves DEL, C1 controls and bidi
    overrides raw when `ensure_ascii=False`)."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    if text.isprintable():
        return text
    # Inside JSON strings these characters may be written as \\uXXXX; outside
    # strings json.dumps only ever emits ASCII, so replacing them is safe.
    return "".join(
        f"\\u{ord(ch):04x}" if _is_unsafe(ch) and ch not in _KEPT_WHITESPACE else ch for ch in text
    )
