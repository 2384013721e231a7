"""`imagen db migrate | status | stop`: the database's schema and the embedded server."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui import services
from imagen_tui.cli.console import PROG, err, out
from imagen_tui.cli.workers import summary
from imagen_tui.core.workbench import open_workbench


def cmd_db_migrate(args: argparse.Namespace) -> int:
    applied, version = services.db_migrate(open_workbench(args.config))
    for name in applied:
        err(f"applied {name}")
    out(f"schema version {version} ({'migrated' if applied else 'already current'})")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    status = services.db_status(open_workbench(args.config))
    out(f"server:  {status.display_url}  ({status.source})")
    state = "current" if status.version == status.latest else f"behind: run `{PROG} db migrate`"
    out(f"schema:  version {status.version} of {status.latest} ({state})")
    if status.counts:
        out("jobs:    " + ", ".join(f"{n} {what}" for what, n in status.counts.items()))
    if status.version >= services.WORKERS_SCHEMA:
        out(f"workers: {summary(status.workers)} (see `{PROG} workers`)")
    if status.psql_url:
        out(f'psql:    psql "{status.psql_url}"')
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    stopped = services.db_stop(open_workbench(args.config))
    err("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", help="the database: migrate, status, stop")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION")
    actions.required = True
    for name, handler, text in (
        ("migrate", cmd_db_migrate, "apply schema migrations (idempotent)"),
        ("status", cmd_db_status, "server URL, schema version, queue counts, workers online"),
        ("stop", cmd_db_stop, "stop the embedded server"),
    ):
        action = actions.add_parser(name, parents=[config_flag], help=text)
        action.set_defaults(handler=handler)
