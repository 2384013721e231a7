"""Secrets passed by systemd's `LoadCredential=` instead of the environment.

The worker's unit has `LoadCredential=imagen.env:/etc/imagen/worker.env`:
systemd reads that root-only file before dropping privileges and exposes a
copy at `$CREDENTIALS_DIRECTORY/imagen.env`, readable only by the service.
`load_credentials()` (called first thing by `imagen`) sets each variable of
that file in the process environment, unless it is already set there, so
the rest of ImaGen keeps reading secrets from environment variables.

The syntax is the common subset of a POSIX shell and systemd's
`EnvironmentFile=`, so the same file also works with `set -a; . FILE`:

    # a comment
    NAME=value              only letters, digits and _ @ % + = : , . / ? # -
    NAME='value'            taken literally
    NAME="value"            \\" \\\\ \\$ \\` are escapes; a bare $ or ` is refused

Anything else is refused with the file and line number; an error never
shows a value, since values are secrets. Standard library only: this runs
before every command.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from imagen_tui.errors import ConfigError
from imagen_tui.limits import ENV_NAME

CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
CREDENTIAL_NAME = "imagen.env"

_ASSIGNMENT_RE = re.compile(rf"[ \t]*({ENV_NAME})=(.*)")
# Characters a shell and systemd both take literally in an unquoted value.
_UNQUOTED_RE = re.compile(r"[A-Za-z0-9_@%+=:,./?#-]*")
_SINGLE_QUOTED_RE = re.compile(r"'([^']*)'[ \t]*")
_DOUBLE_QUOTED_RE = re.compile(r'"((?:[^"\\$`]|\\.)*)"[ \t]*')
_DOUBLE_QUOTE_ESCAPE_RE = re.compile(r'\\([\\"$`])')

_SYNTAX = "expected NAME=value, NAME='value' or NAME=\"value\" (no spaces around =)"


def load_credentials(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set the variables of `$CREDENTIALS_DIRECTORY/imagen.env` that are not set yet.

    A variable already in the environment wins, even if empty. Does nothing
    when `$CREDENTIALS_DIRECTORY` is unset or holds no `imagen.env`. Returns
    the names it set; raises ConfigError on an unreadable file or a bad line.
    """
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        return []
    path = Path(directory) / CREDENTIAL_NAME
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []  # this service was given other credentials, not ours
    except OSError as error:
        raise ConfigError(f"cannot read the file ({error.strerror})", str(path)) from None
    names = []
    for name, value in parse_env(data, str(path)).items():
        if name not in env:
            env[name] = value
            names.append(name)
    return names


def parse_env(data: bytes, source: str) -> dict[str, str]:
    """The variables a `NAME=value` file sets (a later line wins over an earlier one).

    `source` names the file in errors, as `source:line`.
    """
    variables: dict[str, str] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        where = f"{source}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("not valid UTF-8; save the file as UTF-8", where) from None
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, value = _parse_line(line, where)
        variables[name] = value
    return variables


def _parse_line(line: str, where: str) -> tuple[str, str]:
    assignment = _ASSIGNMENT_RE.fullmatch(line)
    if assignment is None:
        raise ConfigError(_SYNTAX, where)
    name, rest = assignment.groups()
    # Every message below names the variable, never its value.
    if rest.startswith("'"):
        quoted = _SINGLE_QUOTED_RE.fullmatch(rest)
        if quoted is None:
            raise ConfigError(
                f"{name}: the single-quoted value must close on the same line, with "
                "nothing after it (a value cannot contain ')",
                where,
            )
        return name, quoted.group(1)
    if rest.startswith('"'):
        quoted = _DOUBLE_QUOTED_RE.fullmatch(rest)
        if quoted is None:
            raise ConfigError(
                f"{name}: the double-quoted value must close on the same line, with nothing "
                'after it, and write $ ` " \\ as \\$ \\` \\" \\\\ (or use single quotes)',
                where,
            )
        return name, _DOUBLE_QUOTE_ESCAPE_RE.sub(r"\1", quoted.group(1))
    value = rest.rstrip()
    if _UNQUOTED_RE.fullmatch(value) is None:
        raise ConfigError(
            f"{name}: an unquoted value may hold only letters, digits and _ @ % + = : , . / ? # -;"
            " put the value in single quotes",
            where,
        )
    return name, value
