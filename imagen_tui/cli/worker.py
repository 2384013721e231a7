"""`imagen worker`: render queued jobs until stopped (SIGTERM: finish, then exit)."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui import services
from imagen_tui.cli.args import bounded_int, bounded_seconds
from imagen_tui.core.workbench import open_workbench
from imagen_tui.limits import (
    DEFAULT_LEASE_S,
    DEFAULT_POLL_S,
    MAX_CONCURRENCY,
    MAX_LEASE_S,
    MAX_POLL_S,
    MIN_LEASE_S,
    MIN_POLL_S,
)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = services.WorkerSettings(
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        lease=args.lease,
        once=args.once,
    )
    return services.run_worker(open_workbench(args.config), settings)


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The worker's flags (shared with `imagen-tui --headless-worker`)."""
    parser.add_argument(
        "--concurrency",
        type=bounded_int(1, MAX_CONCURRENCY),
        default=1,
        metavar="N",
        help="jobs at once",
    )
    parser.add_argument("--once", action="store_true", help="drain the queue, then exit")
    parser.add_argument(
        "--poll-interval",
        type=bounded_seconds(MIN_POLL_S, MAX_POLL_S),
        default=DEFAULT_POLL_S,
        metavar="S",
        help=f"safety poll (and rescue) period in seconds (default {DEFAULT_POLL_S:g})",
    )
    parser.add_argument(
        "--lease",
        type=bounded_seconds(MIN_LEASE_S, MAX_LEASE_S),
        default=DEFAULT_LEASE_S,
        metavar="S",
        help=f"seconds before a silent worker's job is rescued (default {DEFAULT_LEASE_S:g})",
    )


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[config_flag], help="render queued jobs (SIGTERM: finish, then exit)"
    )
    add_worker_options(worker)
    worker.set_defaults(handler=cmd_worker)
