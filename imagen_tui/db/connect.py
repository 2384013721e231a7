"""Connecting: which server (configured URL or the embedded one) and in what
state its schema must be before a command may use it.

The embedded server is ours, so it is migrated on first use. A configured
server is migrated only by `imagen db migrate`; other commands refuse a
schema that is behind and say which command to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from imagen_tui.config import Config
from imagen_tui.db import embedded, migrate
from imagen_tui.errors import DatabaseError, InputError


@dataclass(frozen=True)
class Database:
    url: str
    source: str  # "embedded", "$IMAGEN_DATABASE_URL", "database.url", ...

    @property
    def embedded(self) -> bool:
        return self.source == "embedded"

    @property
    def display_url(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL with every password replaced by `***`, safe to print or log.

    Parsed as libpq parses it (URI user info, `?password=`, `password=` pairs,
    quoted or escaped values, percent-encoding); a string libpq cannot parse
    is not shown at all, and nothing is shown if a password would still appear.
    """
    from imagen_tui.config.secrets import redact_url

    return redact_url(url)


def locate(config: Config) -> Database:
    """The server to use, starting the embedded one when no URL is configured."""
    url, source = config.database.resolve()
    if url is None:
        return Database(url=embedded.server_url(), source="embedded")
    return Database(url=url, source=source)


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    try:
        return psycopg.connect(url, **kwargs)  # type: ignore[arg-type]
    except (psycopg.ProgrammingError, UnicodeEncodeError):  # encode: undecodable $VAR bytes
        # Not a connection string at all. The driver's text quotes pieces of it
        # (`invalid percent-encoded token: "<password>"`): never show it.
        from imagen_tui.config.secrets import NOT_A_URL

        raise InputError(None, f"the database URL is {NOT_A_URL}") from None
    except psycopg.OperationalError as error:
        raise DatabaseError(f"cannot connect to {redact(url)}: {first_line(error, url)}") from None


def describe(error: psycopg.Error) -> str:
    """One line for a database error a command did not expect."""
    return f"database error: {first_line(error)}"


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn any driver error raised inside into a one-line DatabaseError."""
    try:
        yield
    except psycopg.Error as error:
        raise DatabaseError(describe(error)) from None


def first_line(error: Exception, url: str | None = None) -> str:
    """The first line of a driver's message, with anything that may be a secret
    (`password=...`, any piece of `url`'s password) masked."""
    from imagen_tui.config.secrets import scrub

    text = str(error).strip()
    return scrub(text.splitlines()[0], url) if text else type(error).__name__


def _check_schema(conn: psycopg.Connection, database: Database) -> None:
    if database.embedded:
        migrate.migrate(conn)
    else:
        migrate.require_current(conn)


def open_database(config: Config) -> Database:
    """Locate the server and make sure its schema is current (migrating the embedded one)."""
    database = locate(config)
    with connect(database.url, autocommit=True) as conn:
        _check_schema(conn, database)
    return database


def connect_checked(config: Config) -> tuple[Database, psycopg.Connection]:
    """`open_database` and a connection to it in one: the connection that checked the
    schema is the one returned (autocommit; use `conn.transaction()` for atomic work)."""
    database = locate(config)
    conn = connect(database.url, autocommit=True)
    try:
        _check_schema(conn, database)
    except BaseException:
        conn.close()
        raise
    return database, conn
