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
from typing import TYPE_CHECKING, Any

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


def scan_secrets(value: Any, prefix: KeyPath, locate: Locate) -> None:
    """Refuse any key that holds a secret inline, anywhere in the file."""
    if not isinstance(value, dict):
        return
    for key, inner in value.items():
        path = (*prefix, str(key))
        if _SECRET_KEY_RE.match(str(key)) and inner not in (None, ""):
            # Never echo the value: it is a secret.
            if path[0] == "backends":
                fix = f"put the value in an environment variable and set {key}_env: VARIABLE_NAME"
            elif path[0] == "database":
                fix = f"put the whole URL in ${DATABASE_URL_ENV} (or a variable named by url_env)"
            else:
                fix = "remove it and keep the secret in an environment variable"
            raise ConfigError(
                f"{'.'.join(path)}: secrets must not be written in the config file; {fix}",
                locate(path),
            )
        scan_secrets(inner, path, locate)


def has_password(url: str) -> bool:
    import psycopg  # only needed when a URL is configured

    try:
        return bool(psycopg.conninfo.conninfo_to_dict(url).get("password"))
    except psycopg.ProgrammingError:  # unparsable: reported properly at connect time
        return False
