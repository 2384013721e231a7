"""Schema migrations: the ordered `.sql` files in `migrations/`, each applied
in one transaction and recorded in `imagen.schema_migrations`.

Applying is idempotent and safe to race: an advisory lock lets one process
migrate while the others wait and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from imagen_tui.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x1A6E_0001  # pg_advisory_lock key reserved for migrations

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS imagen;
CREATE TABLE IF NOT EXISTS imagen.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available() -> list[Migration]:
    migrations = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), match.group(2), path))
    return migrations


def latest_version() -> int:
    return max((m.version for m in available()), default=0)


def current_version(conn: psycopg.Connection) -> int:
    """The newest applied migration, 0 for a database ImaGen never touched."""
    exists = conn.execute("SELECT to_regclass('imagen.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM imagen.schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply every migration not applied yet, each in its own transaction.

    `conn` must be in autocommit mode: the advisory lock and each migration's
    transaction must not sit inside an outer transaction.
    """
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection")
    applied_now: list[Migration] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute(_BOOKKEEPING)
        done = {row[0] for row in conn.execute("SELECT version FROM imagen.schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO imagen.schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied_now.append(migration)
        if applied_now:
            conn.execute("ANALYZE imagen.jobs")  # claims plan badly on a table without stats
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def require_current(conn: psycopg.Connection) -> None:
    """Refuse a schema that is behind (or ahead of) this version of ImaGen."""
    current, latest = current_version(conn), latest_version()
    if current < latest:
        raise DatabaseError(
            f"the database schema is at version {current}, this ImaGen needs {latest}; "
            "run `imagen db migrate`"
        )
    if current > latest:
        raise DatabaseError(
            f"the database schema is at version {current}, newer than this ImaGen knows "
            f"({latest}); upgrade ImaGen"
        )
