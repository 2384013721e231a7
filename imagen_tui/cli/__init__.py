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
import gc
import importlib
import sys
from collections.abc import Sequence

from imagen_tui import __version__, services
from imagen_tui.cli.console import PROG, describe
from imagen_tui.cmdline import Parser, guarded

# The modules that add the commands, in the order `imagen --help` lists them.
GROUPS = ("generate", "catalog", "queue", "usage", "worker", "workers", "db", "config")
# Each command and the module (of GROUPS) that adds it.
COMMAND_GROUPS = {
    "generate": "generate",
    "backends": "catalog",
    "styles": "catalog",
    "submit": "queue",
    "jobs": "queue",
    "series": "queue",
    "usage": "usage",
    "worker": "worker",
    "workers": "workers",
    "db": "db",
    "config": "config",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; for an `argv` whose first word is a command, only
    the parser of that command's module. argparse hands such a command line to that
    command's parser alone, so it parses the same, and a short command does not pay
    for building (and importing) all the others."""
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
    first = argv[0] if argv else None
    groups = (COMMAND_GROUPS[first],) if first in COMMAND_GROUPS else GROUPS
    for group in groups:
        importlib.import_module(f"imagen_tui.cli.{group}").add_commands(commands, config_flag)
    return parser


def run() -> int:
    """The `imagen` console script: `main()`, then the process ends.

    Just before it does, the heap is frozen (`gc.freeze`): the interpreter's
    exit-time collections would otherwise walk every object the command
    allocated only to free memory the exit frees anyway, about 10-15 ms of a
    150 ms `imagen generate`. Exit still runs atexit handlers and flushes the
    standard streams; every file ImaGen writes is closed (and synced) before
    this point. In-process callers (tests) call `main`, which frees nothing
    early and freezes nothing."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        services.load_credentials()  # secrets from systemd's LoadCredential=, before all else
        words = sys.argv[1:] if argv is None else argv
        args = build_parser(words).parse_args(words)
        code: int = args.handler(args)
        return code

    return guarded(PROG, body, describe)


if __name__ == "__main__":
    sys.exit(run())
