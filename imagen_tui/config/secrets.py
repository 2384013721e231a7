"""Secrets in the config: none may be written in it.

Secrets reach ImaGen only through environment variables: a backend names
the variable with a `*_env` key, the database URL (which may carry a
password) comes from `$IMAGEN_DATABASE_URL` or the variable named by
`database.url_env`. This module refuses a secret written inline anywhere in
the file, and a `database.url` that holds a password. Its errors never echo
the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from imagen_tui.errors import ConfigError

if TYPE_CHECKING:
    from imagen_tui.config.loading import KeyPath, Locate

DATABASE_URL_ENV = "IMAGEN_DATABASE_URL"

# Keys that would hold a secret inline. Secrets come only through `*_env`
# keys naming an environment variable, so they never sit in a file.
_SECRET_KEY_RE = re.compile(
    r"^(api_?token|api_?key|token|secret|password|passwd|access_token|auth_token|bearer"
    r"|.*_(token|key|secret|password))$",
    re.IGNORECASE,
)


# A backend type -> the keys of its config block that name a secret's variable
# (None: the type is not known); given by the backend registry.
EnvKeys = Callable[[str], "tuple[str, ...] | None"]


def scan_secrets(
    value: Any, prefix: KeyPath, locate: Locate, env_keys: EnvKeys | None = None
) -> None:
    """Refuse any key that holds a secret inline, anywhere in the file (inside lists
    too), whatever the value's type: a number, true/false, a list or a mapping.
    `env_keys` lets the fix name the key the backend's type really takes."""
    if isinstance(value, list):
        for item in value:
            scan_secrets(item, prefix, locate, env_keys)
        return
    if not isinstance(value, dict):
        return
    for key, inner in value.items():
        path = (*prefix, str(key))
        if _SECRET_KEY_RE.match(str(key)) and inner not in (None, ""):
            # Never echo the value: it is a secret.
            if path[0] == "backends" and len(path) == 3:  # a key of a backend's block
                fix = _backend_fix(str(key), value.get("type"), env_keys)
            elif path[0] == "backends":
                fix = f"put the value in an environment variable and set {key}_env: VARIABLE_NAME"
            elif path[0] == "database":
                fix = f"put the whole URL in ${DATABASE_URL_ENV} (or a variable named by url_env)"
            else:
                fix = "remove it and keep the secret in an environment variable"
            raise ConfigError(
                f"{'.'.join(path)}: secrets must not be written in the config file; {fix}",
                locate(path),
            )
        scan_secrets(inner, path, locate, env_keys)


def _backend_fix(key: str, type_name: Any, env_keys: EnvKeys | None) -> str:
    """How to give a backend the secret written inline under `key`."""
    known = env_keys(type_name) if env_keys and isinstance(type_name, str) else None
    if known is None:  # no registry at hand, or a type it does not know
        return f"put the value in an environment variable and set {key}_env: VARIABLE_NAME"
    if not known:
        return f"remove it: a {type_name} backend takes no secret"
    return f"put the value in an environment variable and set {known[0]}: VARIABLE_NAME"


# --------------------------------------------------------------------------- database URLs
#
# A database URL is a libpq connection string, either a URI
# (`postgresql://user:password@host:port/dbname?key=value&...`) or key/value
# pairs (`host=... password='...'`). libpq (through psycopg) decides what it
# means; the code below only finds where in the text the secrets sit, so they
# can be hidden, and never shows any part of a string libpq cannot parse.

SECRET_PARAMETERS = ("password", "sslpassword")
URL_EXAMPLE = "postgresql://USER@HOST:PORT/DBNAME"
NOT_A_URL = f"not a PostgreSQL URL; write {URL_EXAMPLE}"
AMBIGUOUS_USERINFO = (
    'its user name or password holds a "/" or "@"; percent-encode it ("/" is %2F, "@" is %40)'
)
SHOWN_UNPARSABLE = "(not a valid PostgreSQL URL)"
SHOWN_HIDDEN = "(a PostgreSQL URL holding a password; not shown)"

_URI_PREFIXES = ("postgresql://", "postgres://")
_SPACE = " \t\n\r\f\v"  # C isspace(), as libpq splits key/value pairs
# How a password may look in text libpq cannot parse: such a `database.url` is
# refused as holding one, so the fix the user is given is the right one.
_LOOKS_LIKE_PASSWORD_RE = re.compile(
    r"(?i)password\s*=|^postgres(?:ql)?://[^@/?]*:[^@]+@", re.MULTILINE
)
# `password=...` in a driver's message: masked.
_PASSWORD_ASSIGNMENT_RE = re.compile(r"(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)")


class _Layout(NamedTuple):
    """Where the secrets of a connection string libpq parsed sit in its text."""

    spans: tuple[tuple[int, int], ...]  # [start, end) of each secret value
    ambiguous: bool  # a URI whose user name or password holds an unencoded "/" or "@"


def _parse(url: str) -> dict[str, str] | None:
    """libpq's reading of `url`, None when it cannot read it (never its error text)."""
    if "\0" in url:  # libpq would stop reading there and ignore the rest
        return None
    import psycopg  # only needed when a URL is configured
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except (psycopg.Error, ValueError):  # ValueError: not encodable (undecodable $VAR bytes)
        return None


def _layout(url: str) -> _Layout | None:
    """Where the secrets are in a string libpq parsed; None if this reading disagrees."""
    for prefix in _URI_PREFIXES:
        if url.startswith(prefix):
            return _uri_layout(url, len(prefix))
    return _keyword_layout(url)


def _uri_layout(url: str, start: int) -> _Layout:
    spans: list[tuple[int, int]] = []
    # libpq: the user info runs to the first "@" met before any "/".
    userinfo_end: int | None = None
    for index in range(start, len(url)):
        if url[index] in "@/":
            userinfo_end = index if url[index] == "@" else None
            break
    host_start = start if userinfo_end is None else userinfo_end + 1
    query = url.find("?", host_start)
    head_end = len(url) if query < 0 else query
    # Another "@" before the query: a "/" or "@" in the password (or user name)
    # made libpq read part of it as host, port or dbname. Hide up to the last "@".
    last_at = url.rfind("@", host_start, head_end)
    ambiguous = last_at >= 0
    if ambiguous:
        userinfo_end = last_at
    if userinfo_end is not None:
        colon = url.find(":", start, userinfo_end)
        if 0 <= colon < userinfo_end - 1:
            spans.append((colon + 1, userinfo_end))
    if query >= 0:
        position = query + 1
        for parameter in url[query + 1 :].split("&"):
            key, equals, value = parameter.partition("=")
            value_start = position + len(key) + len(equals)
            position += len(parameter) + 1
            if value and _is_secret(unquote(key), unquote(value)):
                spans.append((value_start, value_start + len(value)))
    return _Layout(tuple(spans), ambiguous)


def _keyword_layout(url: str) -> _Layout | None:
    """Split `key = value` pairs exactly as libpq's conninfo_parse does."""
    spans: list[tuple[int, int]] = []
    index, end = 0, len(url)
    while index < end:
        if url[index] in _SPACE:
            index += 1
            continue
        key_start = index
        while index < end and url[index] != "=" and url[index] not in _SPACE:
            index += 1
        key = url[key_start:index]
        while index < end and url[index] in _SPACE:
            index += 1
        if index >= end or url[index] != "=":
            return None
        index += 1
        while index < end and url[index] in _SPACE:
            index += 1
        value_start, chars = index, []
        if index < end and url[index] == "'":  # quoted: up to the next unescaped quote
            index += 1
            while True:
                if index >= end:
                    return None  # unterminated quoted string
                char = url[index]
                index += 1
                if char == "'":
                    break
                if char == "\\" and index < end:
                    char = url[index]
                    index += 1
                chars.append(char)
        else:  # unquoted: up to the next white space; a backslash escapes one character
            while index < end and url[index] not in _SPACE:
                char = url[index]
                index += 1
                if char == "\\":
                    if index >= end:
                        break
                    char = url[index]
                    index += 1
                chars.append(char)
        if _is_secret(key, "".join(chars)):
            spans.append((value_start, index))
    return _Layout(tuple(spans), False)


def _is_secret(key: str, value: str) -> bool:
    """A parameter whose value must not be shown: a password, or a dbname that is
    itself a connection string holding one (psql and other libpq tools expand those)."""
    if key in SECRET_PARAMETERS:
        return bool(value)
    if key == "dbname" and (value.startswith(_URI_PREFIXES) or "=" in value):
        return has_password(value)
    return False


def _secret_texts(url: str, params: dict[str, str], layout: _Layout) -> set[str]:
    """Every text that must never be shown: the secrets as libpq read them, and as
    they are written in `url` (raw and percent-decoded)."""
    texts = {params[key] for key in SECRET_PARAMETERS if params.get(key)}
    for start, end in layout.spans:
        raw = url[start:end]
        texts |= {raw, unquote(raw), raw.strip("'")}
    return {text for text in texts if text}


def has_password(url: str) -> bool:
    """Whether `url` holds a password in any form, or, when libpq cannot parse it,
    seems to (`password=`, `scheme://user:...@`)."""
    params = _parse(url)
    if params is None:
        return bool(_LOOKS_LIKE_PASSWORD_RE.search(url))
    layout = _layout(url)
    return any(params.get(key) for key in SECRET_PARAMETERS) or bool(layout and layout.spans)


def database_url_problem(url: str) -> str | None:
    """What is wrong with `url` as a connection string, without quoting any of it;
    None when libpq reads it as written."""
    if _parse(url) is None:
        return NOT_A_URL
    layout = _layout(url)
    if layout is not None and layout.ambiguous:
        return AMBIGUOUS_USERINFO
    return None


# A backend's or storage's URL (http, https, ws, wss): userinfo is its only secret.
_WEB_URL_RE = re.compile(r"(?i)^(?:https?|wss?)://")
USERINFO_REFUSED = (
    "the URL holds a user name or password (user:password@); secrets must not be "
    "written in the config: remove it and give the token by the `*_env` key"
)


def url_userinfo(url: str) -> bool:
    """Whether a web URL (or a database URL) carries credentials: `user[:password]@`
    before its host. The one check behind `database.url`, every backend URL and
    `storage.url` (config load)."""
    if not _WEB_URL_RE.match(url):
        return has_password(url)
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority


def url_userinfo_problem(key: str, url: str) -> str | None:
    """The one-line error for `key` when `url` carries credentials (never echoing it)."""
    return f"{key}: {USERINFO_REFUSED}" if url_userinfo(url) else None


def _redact_web_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found >= 0:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    text = f"{scheme}://{authority}{tail}"
    return "".join(char if char.isprintable() else "?" for char in text)


def redact_text(text: str, url: str) -> str:
    """`text` (an error message, a log line) with `url`'s credentials masked:
    the URL itself, and its userinfo however it was quoted."""
    if not url_userinfo(url) or not _WEB_URL_RE.match(url):
        return text
    text = text.replace(url, _redact_web_url(url))
    userinfo = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    for secret in sorted(
        {userinfo, *userinfo.split(":"), unquote(userinfo)}, key=len, reverse=True
    ):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """`url` with every secret replaced by `***`, safe to print or log.

    A web URL (a backend's, storage's) shows `***@` for any userinfo. A database
    URL is parsed by libpq, never by a pattern alone: a string libpq cannot parse
    is not shown at all. As a last guard, if any secret text still appears,
    nothing of the URL is shown.
    """
    if _WEB_URL_RE.match(url):
        return _redact_web_url(url)
    params = _parse(url)
    if params is None:
        return SHOWN_UNPARSABLE
    layout = _layout(url)
    if layout is None:
        return SHOWN_HIDDEN
    shown, last = [], 0
    for start, end in sorted(layout.spans):
        shown += [url[last:start], "***"]
        last = end
    shown.append(url[last:])
    text = "".join(shown)
    text = "".join(char if char.isprintable() else " " if char in _SPACE else "?" for char in text)
    if any(secret in text for secret in _secret_texts(url, params, layout)):
        return SHOWN_HIDDEN
    return text


def scrub(text: str, url: str | None = None) -> str:
    """A driver's message with anything that may be a secret masked: `password=...`
    pairs, and every secret of `url` (whole, and each piece of a password that libpq
    may have read as host, port or dbname)."""
    text = _PASSWORD_ASSIGNMENT_RE.sub(r"\1***", text)
    if url is None:
        return text
    params = _parse(url)
    layout = _layout(url) if params is not None else None
    if params is None or layout is None:
        return text
    secrets = _secret_texts(url, params, layout)
    for secret in list(secrets):
        secrets |= {piece for piece in re.split(r"[/@:?]", secret) if piece}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
