"""File names for generated images, built from a user's template.

A template such as `{date}/{time}_{slug}_{seed}` names each image. This module
holds the known tokens, `check_template` (rejects a bad template with a one-line
fix), `slugify` (a prompt made into a short, readable, file-safe word list) and
`render_name` (a template filled in for one image).

Safety rule: only the template's own `/` create folders. Every substituted value
is cleaned first, so nothing a prompt, model name or backend name holds can add
a folder or climb out of the output directory.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath
from string import Formatter
from typing import NoReturn

from imagen_tui.config import DEFAULT_NAMING
from imagen_tui.errors import ConfigError

TOKENS: frozenset[str] = frozenset(
    {
        "date",  # 2026-11-23
        "time",  # 153012 (HHMMSS)
        "datetime",  # 20261123-153012
        "slug",  # the prompt, slugified
        "seed",
        "backend",
        "model",
        "width",
        "height",
        "idx",  # 1-based position within a batch
        "series",  # a series id, or empty
        "style",  # a style preset name, or empty
    }
)

DEFAULT_TEMPLATE = DEFAULT_NAMING  # the config default

# Number tokens may be zero-padded: {seed:08d}, {idx:03}. Nothing else takes a spec.
_NUMBER_TOKENS = frozenset({"seed", "width", "height", "idx", "series"})
_ZERO_PAD = re.compile(r"0[1-9][0-9]?d?")

SLUG_MAX_BYTES = 120
COMPONENT_MAX_BYTES = 200

# Characters a substituted value may not carry into a file name: path
# separators, and the characters Windows forbids in names.
_UNSAFE_IN_VALUES = frozenset('/\\<>:"|?*')
_KNOWN_TOKENS_TEXT = ", ".join(f"{{{token}}}" for token in sorted(TOKENS))


def check_template(template: str, field: str = "output.naming", where: str | None = None) -> None:
    """Raise ConfigError (naming `field` and the fix) unless `template` is usable."""

    def fail(problem: str) -> NoReturn:
        raise ConfigError(f"{field}: {problem}", where)

    if not template.strip():
        fail(f"the template is empty; write one such as {DEFAULT_TEMPLATE}")
    if any(unicodedata.category(ch) == "Cc" for ch in template):
        fail("the template holds a control character (tab, newline, ...); remove it")
    if template.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", template):
        fail(f"{template!r} is an absolute path; write a path relative to the output directory")
    if "\\" in template:
        fail(f"{template!r} holds a backslash; use / to separate folders")

    try:
        pieces = list(Formatter().parse(template))
    except ValueError as error:
        fail(f"malformed braces in {template!r} ({error}); write {{{{ and }}}} for literal braces")
    for _literal, name, spec, conversion in pieces:
        if name is None:
            continue
        if name not in TOKENS:
            fail(
                f"unknown token {{{name}}}; known tokens: {_KNOWN_TOKENS_TEXT} "
                "(write {{ and }} for literal braces)"
            )
        if conversion:
            fail(f"{{{name}!{conversion}}}: conversions are not supported; write {{{name}}}")
        if spec and (name not in _NUMBER_TOKENS or not _ZERO_PAD.fullmatch(spec)):
            fail(
                f"{{{name}:{spec}}} has an unsupported format; only number tokens "
                "(seed, width, height, idx, series) take one, and only zero-padding "
                "such as {idx:03d}"
            )

    for component in template.split("/"):
        if component == "":
            fail(f"{template!r} has an empty folder name (// or a trailing /); remove the extra /")
        if component in (".", ".."):
            fail(f"{template!r} uses {component!r} as a folder; remove it")


def slugify(text: str, max_chars: int = 60) -> str:
    """Turn `text` into a readable, file-safe slug: `Café à Paris!` -> `café-à-paris`.

    Letters and digits of any script are kept (lowercased); every run of other
    characters becomes one `-`. The result has at most `max_chars` characters
    and SLUG_MAX_BYTES UTF-8 bytes; it is `untitled` when nothing is left.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    # lower() can decompose a character (e.g. "İ"), so normalise again after it.
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower())

    kept: list[str] = []
    for ch in text:
        follows_a_kept_char = bool(kept) and kept[-1] != "-"
        if ch.isalnum() or (follows_a_kept_char and _is_combining_mark(ch)):
            kept.append(ch)
        elif follows_a_kept_char:
            kept.append("-")
    slug = "".join(kept).strip("-")

    slug = _shorten(slug, max_chars)
    slug = _shorten(slug, _chars_within_bytes(slug, SLUG_MAX_BYTES))
    return slug or "untitled"


def render_name(template: str, fields: Mapping[str, object]) -> PurePosixPath:
    """Fill in `template` for one image; return a relative path without extension.

    `fields` holds `prompt` (the slug is made from it), `when` (a datetime, for
    date/time/datetime; now when missing) and the values of the other tokens.
    A missing or None value renders as an empty string. A folder left empty by
    empty values is dropped; an empty file name becomes `untitled`.
    Raises ConfigError when the template itself is bad (see check_template).
    """
    check_template(template)
    values = _token_values(fields)

    rendered: list[str] = []
    for literal, name, spec, _conversion in Formatter().parse(template):
        rendered.append(literal)  # parse() has already turned {{ and }} into { and }
        if name is not None:
            rendered.append(_format_value(values[name], spec or ""))

    *folders, file_name = [
        _truncate_to_bytes(component, COMPONENT_MAX_BYTES)
        for component in "".join(rendered).split("/")
    ]
    folders = [folder for folder in folders if not _is_blank_component(folder)]
    if _is_blank_component(file_name):
        file_name = "untitled"
    return PurePosixPath(*folders, file_name)


def _token_values(fields: Mapping[str, object]) -> dict[str, object]:
    """The value of every token, from the caller's fields."""
    when = fields.get("when")
    if when is None:
        when = datetime.now()
    if not isinstance(when, datetime):
        raise TypeError(f"fields['when'] must be a datetime, not {type(when).__name__}")
    prompt = fields.get("prompt")

    values: dict[str, object] = {
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H%M%S"),
        "datetime": when.strftime("%Y%m%d-%H%M%S"),
        "slug": slugify("" if prompt is None else str(prompt)),
    }
    for token in TOKENS - values.keys():
        value = fields.get(token)
        values[token] = "" if value is None else value
    return values


def _format_value(value: object, spec: str) -> str:
    """A token's text: a number (zero-padded per `spec`) as is, anything else cleaned."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format(value, spec)  # digits and perhaps a minus sign: always safe
    return _clean_value(str(value))


def _clean_value(value: str) -> str:
    """Make a substituted value unable to add a folder, hide a file or climb out.

    Path separators, control and format characters (NUL, newlines, bidi
    overrides...) and characters Windows forbids become `-`; dots, dashes and
    spaces at either end are removed, so the value is never `.` or `..`
    (`../..` becomes empty, `a/../b` becomes `a-..-b`).
    """
    cleaned: list[str] = []
    for ch in unicodedata.normalize("NFC", value):
        unsafe = (
            ch in _UNSAFE_IN_VALUES
            or unicodedata.category(ch).startswith("C")
            or (ch.isspace() and ch != " ")
        )
        if not unsafe:
            cleaned.append(ch)
        elif not cleaned or cleaned[-1] != "-":
            cleaned.append("-")
    return "".join(cleaned).strip(" .-")


def _is_blank_component(component: str) -> bool:
    """True for a path component that names nothing: empty, `.` or `..` (or more dots)."""
    return component.strip(". ") == ""


def _is_combining_mark(ch: str) -> bool:
    """A combining mark that belongs to the letter before it (Hindi, Thai vowel signs...).

    Variation selectors (which follow emoji) are marks too, but carry no meaning here.
    """
    is_variation_selector = "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"
    return unicodedata.category(ch) in ("Mn", "Mc") and not is_variation_selector


def _shorten(slug: str, limit: int) -> str:
    """Cut `slug` to `limit` characters, at a `-` when one is near the cut."""
    if len(slug) <= limit:
        return slug
    cut = slug[:limit]
    if slug[limit] != "-":  # the cut falls inside a word: end at the previous word
        boundary = cut.rfind("-")
        if boundary >= limit * 2 // 3:
            cut = cut[:boundary]
    return cut.strip("-")


def _chars_within_bytes(text: str, max_bytes: int) -> int:
    """How many leading characters of `text` fit in `max_bytes` bytes of UTF-8."""
    total = 0
    for index, ch in enumerate(text):
        total += len(ch.encode("utf-8"))
        if total > max_bytes:
            return index
    return len(text)


def _truncate_to_bytes(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8, never inside a character."""
    return text[: _chars_within_bytes(text, max_bytes)]
