"""The connection `imagen generate`'s usage ledger writes on, and its errors.

`services.ledger.UsageLedger` decides whether and where to record; this
module holds the driver: it opens the connection (short timeout, the
embedded server migrated on use) and turns every driver error into the one-line
`DatabaseError` the session raises too. After an error that will repeat for
every image (the connection is gone, the schema is behind) the connection is
closed, so the ledger stops trying.
"""

from __future__ import annotations

from typing import Any

import psycopg

from imagen_tui.core.ledger import UsageEntry
from imagen_tui.db import migrate
from imagen_tui.db.connect import first_line, redact
from imagen_tui.db.repositories import fetch, record_usage
from imagen_tui.errors import DatabaseError

SCHEMA_BEHIND = " (the database schema is behind: run `imagen db migrate`)"


class LedgerConnection:
    """One autocommit connection to `url` (migrated first when `ours`, the embedded
    server); DatabaseError `cannot reach <url, password hidden>: <why>` if it cannot."""

    def __init__(self, url: str, *, ours: bool) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            if ours:  # the embedded server is ours: brought up to date on use, as elsewhere
                migrate.migrate(self._conn)
        except psycopg.Error as error:
            self.close()
            raise DatabaseError(f"cannot reach {redact(url)}: {first_line(error, url)}") from None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def record(self, entry: UsageEntry) -> int:
        """Append one usage row; its id. DatabaseError (one line) if it was not
        recorded; the connection is then closed if the next try would fail too."""
        if self._conn is None:
            raise DatabaseError("the usage ledger's connection is closed")
        try:
            return fetch(self._conn, record_usage(entry))
        except psycopg.Error as error:
            hint = ""
            if isinstance(error, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable):
                hint = SCHEMA_BEHIND
            if isinstance(error, psycopg.OperationalError) or hint:
                self.close()  # do not try again for every image
            raise DatabaseError(f"{first_line(error)}{hint}") from None
