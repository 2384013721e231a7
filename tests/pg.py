"""A real PostgreSQL for the tests: the same embedded server the product uses,
in a private data directory, with a migrated template database that each test
clones (CREATE DATABASE ... TEMPLATE is a file copy: fast and isolated)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from imagen_tui.db import embedded, migrate

TEMPLATE = "imagen_template"


def with_database(url: str, name: str) -> str:
    return make_conninfo(url, dbname=name)


@dataclass
class PgServer:
    pgdata: Path
    admin_url: str  # the `postgres` database, for CREATE/DROP DATABASE

    @classmethod
    def start(cls, pgdata: Path) -> PgServer:
        template_url = embedded.server_url(pgdata, database=TEMPLATE)
        with psycopg.connect(template_url, autocommit=True) as conn:
            migrate.migrate(conn)
        return cls(pgdata=pgdata, admin_url=with_database(template_url, "postgres"))

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)
                )
            )
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown: connected clients are disconnected)."""
        embedded.stop(self.pgdata, mode="fast")

    def start_again(self) -> None:
        """Start it again after `stop`, with the same socket and data."""
        embedded.server_url(self.pgdata, database=TEMPLATE)

    def shutdown(self) -> None:
        embedded.stop(self.pgdata)
