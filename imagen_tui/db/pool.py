"""The session's connections: a small thread-safe pool (psycopg_pool).

A long-lived front end (the TUI) runs its reads and writes from several
threads at once. Each call checks a connection out of the pool, which first
checks that it still works (a connection the server dropped, by a restart or
a cut line, is thrown away and replaced before the statement is sent), and
returns it after; a connection that broke during the call is replaced too.
So a call is never sent twice, and no two threads share or leak a connection.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from imagen_tui.config import Config
from imagen_tui.db.connect import first_line, open_database, redact
from imagen_tui.db.repositories import Query, fetch
from imagen_tui.errors import DatabaseError

T = TypeVar("T")

# The pool tells of each failed connection attempt through this logger: into the
# app's or worker's log when one is configured, never onto a CLI's stderr.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


class Pool:
    """Up to `max_size` autocommit connections to `url` (one kept open); `close()` it."""

    def __init__(
        self, url: str, *, max_size: int = 4, timeout: float = 5.0, embedded: bool = False
    ) -> None:
        self.url = url
        self.embedded = embedded  # the private embedded server, not a shared queue
        self._timeout = timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=timeout,  # a call waits this long for a connection, then fails
            # A server that is down is tried again for this long, then on the next call.
            reconnect_timeout=timeout,
            num_workers=1,
            name="imagen-session",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self._pool.close()
            raise DatabaseError(
                f"cannot connect to {redact(url)}: no connection within {timeout:g} s"
            ) from None

    def run(self, query: Query[T]) -> T:
        """Run one statement on a checked connection; DatabaseError (one line) if it fails."""
        try:
            with self._pool.connection() as conn:
                return fetch(conn, query)
        except PoolTimeout:
            raise DatabaseError(
                f"cannot connect to {redact(self.url)}: no connection within {self._timeout:g} s"
            ) from None
        except psycopg.Error as error:
            raise DatabaseError(f"database error: {first_line(error, self.url)}") from None

    def close(self) -> None:
        """Close every connection and stop the pool's thread (safe to call twice)."""
        self._pool.close()


def open_pool(config: Config) -> Pool:
    """The configured server (the embedded one started), its schema checked, and a pool on it."""
    try:
        database = open_database(config)
    except psycopg.Error as error:
        raise DatabaseError(f"database error: {first_line(error)}") from None
    return Pool(database.url, embedded=database.embedded)
