"""`imagen worker`: render queued jobs until stopped (SIGTERM: finish, then exit)."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui import services
from imagen_tui.cmdline import add_worker_options
from imagen_tui.core.workbench import open_workbench


def cmd_worker(args: argparse.Namespace) -> int:
    return services.run_worker(
        open_workbench(args.config), services.WorkerSettings.from_flags(args)
    )


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[config_flag], help="render queued jobs (SIGTERM: finish, then exit)"
    )
    add_worker_options(worker)
    worker.set_defaults(handler=cmd_worker)
