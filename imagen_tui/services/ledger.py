"""The cost ledger of `imagen generate`: `UsageLedger`, one usage row per image.

The policy lives here (which database, when to warn, never stop a generation);
the connection and the driver's errors live in `db.ledger`, imported only once
a URL is known: a generation without a database never loads the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imagen_tui.core.workbench import Workbench
from imagen_tui.db import postmaster  # no driver, no subprocess
from imagen_tui.errors import DatabaseError, ImagenError

if TYPE_CHECKING:
    from imagen_tui.core.pipeline import Outcome
    from imagen_tui.db.ledger import LedgerConnection


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
        self._conn: LedgerConnection | None = None
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

    def _connection(self) -> LedgerConnection | None:
        if self._opened:
            return self._conn
        self._opened = True
        try:
            url, _origin = self._workbench.config.database.resolve()
        except ImagenError as error:
            self._warn(f"usage not recorded: {error}")
            return None
        ours = url is None
        url = url or postmaster.running_url()
        if url is None:
            return None  # no database here: nothing to record in
        # Only now the driver: a generation without a database never loads it.
        from imagen_tui.db.ledger import LedgerConnection

        try:
            self._conn = LedgerConnection(url, ours=ours)
        except DatabaseError as error:
            self._warn(f"usage not recorded: {error}")
        return self._conn

    def record(self, outcome: Outcome) -> int | None:
        """Append the outcome's usage row; its id, or None when it was not recorded."""
        conn = self._connection()
        if conn is None:
            return None
        from imagen_tui.core.ledger import usage_entry  # who and what: only with a database

        try:
            row_id = conn.record(usage_entry(outcome, self._source))
        except DatabaseError as error:
            self._warn(f"usage not recorded: {error}")
            if conn.closed:
                self._conn = None  # the next try would fail too: none for every image
            return None
        self.recorded += 1
        return row_id
