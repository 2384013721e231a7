"""The exceptions every layer raises, and the exit code each maps to.

Front ends catch `ImagenError`, show it on one line and exit with
`error.exit_code`. Messages say what is wrong and the fix.

An `InputError` names the *field* at fault in the request's own terms
(`style`, `size`, `seed`, ...) and keeps the message apart, so each front
end can point at the field its own way: the CLI as the flag (`--style: ...`),
the TUI on the form field, the worker as the job column (`style: ...`, which
reads naturally for a job inserted with plain SQL). `str(error)` is that
last, front-end-free form.
"""

from __future__ import annotations


class ImagenError(Exception):
    """Base of every error a user should see as one line, not a traceback."""

    exit_code = 1


class InputError(ImagenError):
    """Bad input (a field of a request, an argument): nothing was written.

    `field` is the request field or argument at fault (`prompt`, `style`,
    `size`, `steps`, `seed`, `count`, `backend`, `options`, `out`, `series`,
    `idx`, `job`, ...), or a setting such as `$IMAGEN_DATABASE_URL`; None
    when no single field is at fault.
    """

    exit_code = 2

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(InputError):
    """A config file (or built-in data file) is wrong; `where` is `file:line`.

    The message starts with the dotted key at fault (`output.naming: ...`).
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(None, message)
        self.args = (f"{where}: {message}" if where else message,)

    def __str__(self) -> str:
        return str(self.args[0])


class GenerationError(ImagenError):
    """A backend failed to produce an image.

    `transient` marks failures worth trying again later (a timeout, a rate
    limit, a server restarting, a GPU busy with another model); the worker
    then queues the job again after a backoff, or after `retry_after`
    seconds when the backend said how long to wait (HTTP `Retry-After`).
    Who retries what is written down in `imagen_tui.retry`.
    """

    exit_code = 1

    def __init__(
        self, message: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(message)


class GpuOutOfMemory(GenerationError):
    """The GPU ran out of memory (a shared card: another server holds it). Transient;
    the worker hands the job back without using up an attempt and waits for memory."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, transient=True, retry_after=retry_after)


class DatabaseError(ImagenError):
    """The database cannot be reached, started, or is at the wrong schema version."""

    exit_code = 1
