"""The database's administration: `imagen db status`, `db migrate`, `db stop`."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagen_tui.core.rows import WorkerPresence
from imagen_tui.core.workbench import Workbench
from imagen_tui.db import embedded, migrate
from imagen_tui.db.connect import connect, database_errors, locate
from imagen_tui.db.repositories import fetch, queue_counts, worker_presences
from imagen_tui.errors import InputError

WORKERS_SCHEMA = 3  # the schema version that added imagen.workers


@dataclass(frozen=True)
class DbStatus:
    display_url: str  # password hidden
    source: str  # "embedded", "$IMAGEN_DATABASE_URL", ...
    version: int
    latest: int
    counts: dict[str, int]
    psql_url: str | None  # embedded only: a URL to hand to psql
    # Announced workers, online first (empty before schema version 3).
    workers: list[WorkerPresence] = field(default_factory=list)


def db_status(workbench: Workbench) -> DbStatus:
    """The server, its schema version and the jobs per status (never migrates a
    configured server; the embedded one is brought up to date)."""
    database = locate(workbench.config)
    with database_errors(), connect(database.url, autocommit=True) as conn:
        if database.embedded:
            migrate.migrate(conn)
        version, latest = migrate.current_version(conn), migrate.latest_version()
        counts = fetch(conn, queue_counts()) if version else {}
        workers = fetch(conn, worker_presences()) if version >= WORKERS_SCHEMA else []
    return DbStatus(
        display_url=database.display_url,
        source=database.source,
        version=version,
        latest=latest,
        counts=counts,
        psql_url=database.url if database.embedded else None,
        workers=workers,
    )


def db_migrate(workbench: Workbench) -> tuple[list[str], int]:
    """Apply the schema migrations not applied yet; (their names, the version now)."""
    database = locate(workbench.config)
    with database_errors(), connect(database.url, autocommit=True) as conn:
        applied = migrate.migrate(conn)
        version = migrate.current_version(conn)
    return [f"{m.version:04d}_{m.name}" for m in applied], version


def db_stop(workbench: Workbench) -> bool:
    """Stop the embedded server; True when it was running. InputError when a URL is set."""
    if workbench.config.database.resolve()[0] is not None:
        raise InputError(
            None, "db stop: only the embedded server is started by ImaGen; none is in use"
        )
    return embedded.stop()
