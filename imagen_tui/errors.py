"""The exceptions every layer raises, and the exit code each maps to.

Front ends catch `ImagenError`, print `str(error)` on one line and exit with
`error.exit_code`. Messages name the field at fault and the fix.
"""

from __future__ import annotations


class ImagenError(Exception):
    """Base of every error a user should see as one line, not a traceback."""

    exit_code = 1


class InputError(ImagenError):
    """Bad input from the user (a flag, an argument): nothing was written."""

    exit_code = 2


class ConfigError(InputError):
    """A config file (or built-in data file) is wrong; `where` is `file:line`."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class GenerationError(ImagenError):
    """A backend failed to produce an image.

    `transient` marks failures worth retrying later (timeouts, rate limits,
    a server restarting); the worker uses it to decide between retry and fail.
    """

    exit_code = 1

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class DatabaseError(ImagenError):
    """The database cannot be reached, started, or is at the wrong schema version."""

    exit_code = 1
