"""The `imagen` command line: argument parsing and printing, nothing else.

Each command group lives in its own module (generate, catalog, config, queue,
usage, worker, workers, db) and calls `imagen_tui.services` or the core pipeline; none
writes SQL or checks a request itself. stdout carries only what scripts
consume (image paths, ids, JSON with --json); everything for humans
(summaries, progress, errors) goes to stderr. Exit codes: 0 success, 1 a
generation or the database failed, 2 bad input or config (nothing written),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imagen_tui import __version__, services
from imagen_tui.cli import catalog, config, db, generate, queue, usage, worker, workers
from imagen_tui.cli.console import PROG, describe
from imagen_tui.cmdline import Parser, guarded


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="ImaGen: generate images with any backend.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config_flag = Parser(add_help=False)
    config_flag.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $IMAGEN_CONFIG or $XDG_CONFIG_HOME/imagen.yaml)",
    )
    parser.add_argument("--config", metavar="PATH", default=None, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for group in (generate, catalog, queue, usage, worker, workers, db, config):
        group.add_commands(commands, config_flag)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        services.load_credentials()  # secrets from systemd's LoadCredential=, before all else
        args = build_parser().parse_args(argv)
        code: int = args.handler(args)
        return code

    return guarded(PROG, body, describe)


if __name__ == "__main__":
    sys.exit(main())
