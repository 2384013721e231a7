"""The cost ledger of `imagen generate`: `UsageLedger`, one usage row per image.

The generate path must not load the database driver when there is no
database, so the driver-side modules are imported only once a URL is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imagen_tui.core.workbench import Workbench

if TYPE_CHECKING:
    import psycopg

    from imagen_tui.core.pipeline import Outcome


class UsageLedger:
    """The usage rows of `imagen generate`: one per image, when a database is reachable.

    The configured database (database.url, $IMAGEN_DATABASE_URL) is used when
    there is one; otherwise the embedded server, only if it is already running
    (a generation never waits for a server to start). No database: nothing is
    recorded, quietly. A database that fails: `warn` is told (once per kind of
    failure) and the images are kept; the ledger never stops a generation.
    Use as a context manager; `record` blocks (call it off the event loop).
    """

    def __init__(
        self, workbench: Workbench, warn: Callable[[str], None], source: str = "cli"
    ) -> None:
        self._workbench = workbench
        self._warn = warn
        self._source = source
        self._conn: psycopg.Connection[Any] | None = None
        self._opened = False
        self.recorded = 0

    def __enter__(self) -> UsageLedger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._opened:
            return self._conn
        self._opened = True
        from imagen_tui.db import embedded  # no driver: a generation without a database
        from imagen_tui.errors import ImagenError  # never loads psycopg

        try:
            url, _origin = self._workbench.config.database.resolve()
        except ImagenError as error:
            self._warn(f"usage not recorded: {error}")
            return None
        ours = url is None
        url = url or embedded.running_url()
        if url is None:
            return None  # no database here: nothing to record in
        import psycopg

        from imagen_tui.db import migrate
        from imagen_tui.db.connect import first_line, redact

        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            if ours:  # the embedded server is ours: brought up to date on use, as elsewhere
                migrate.migrate(self._conn)
        except psycopg.Error as error:
            self._warn(f"usage not recorded: cannot reach {redact(url)}: {first_line(error, url)}")
            self.close()
        return self._conn

    def record(self, outcome: Outcome) -> int | None:
        """Append the outcome's usage row; its id, or None when it was not recorded."""
        conn = self._connection()
        if conn is None:
            return None
        import psycopg

        from imagen_tui.core.ledger import usage_entry
        from imagen_tui.db.connect import first_line
        from imagen_tui.db.repositories import fetch, record_usage

        try:
            row_id = fetch(conn, record_usage(usage_entry(outcome, self._source)))
        except psycopg.Error as error:
            hint = ""
            if isinstance(error, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable):
                hint = " (the database schema is behind: run `imagen db migrate`)"
            self._warn(f"usage not recorded: {first_line(error)}{hint}")
            if isinstance(error, psycopg.OperationalError) or hint:
                self.close()  # do not try again for every image
            return None
        self.recorded += 1
        return row_id
