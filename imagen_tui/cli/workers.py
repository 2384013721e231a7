"""`imagen workers`: which workers are online on the queue (and which died), then
which backends are served and by how many online workers."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from imagen_tui import services
from imagen_tui.cli.console import cell, err, json_line, out, table, when
from imagen_tui.core.rows import backends_served
from imagen_tui.core.workbench import open_workbench

if TYPE_CHECKING:
    from imagen_tui.core.rows import WorkerPresence


def seen_ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def state(worker: WorkerPresence) -> str:
    """`online`, `online: waiting for GPU memory: 3.1 of 16.0 GB free`, or `stale`."""
    if not worker.online:
        return "stale"
    return f"online: {worker.note}" if worker.note else "online"


def summary(workers: list[WorkerPresence]) -> str:
    """`2 online, 1 stale`, or `none online`: for `imagen db status`."""
    online = sum(1 for worker in workers if worker.online)
    stale = len(workers) - online
    text = f"{online} online" if online else "none online"
    return f"{text}, {stale} stale" if stale else text


def cmd_workers(args: argparse.Namespace) -> int:
    workers = services.workers(open_workbench(args.config))
    if args.json:
        for worker in workers:
            json_line(dataclasses.asdict(worker))
        return 0
    if not workers:
        err("no worker has announced itself on this queue (start one: `imagen worker`)")
        return 0
    rows = [["ID", "STATE", "BACKENDS", "DEFAULT", "JOBS", "STARTED", "LAST SEEN"]]
    rows += [
        [
            cell(worker.id),
            cell(state(worker)),
            cell(", ".join(worker.backends) or "-"),
            cell(worker.default_backend or "-"),
            str(worker.concurrency),
            when(worker.started_at),
            seen_ago(worker.seen_ago_s),
        ]
        for worker in workers
    ]
    table(rows)
    served = backends_served(workers)
    out("")
    if served:
        rows = [["BACKEND", "WORKERS ONLINE"]]
        rows += [[cell(name), str(count)] for name, count in served.items()]
        table(rows)
    else:
        out("no backend is served: no worker is online (jobs wait until one is)")
    return 0


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    workers = commands.add_parser(
        "workers",
        parents=[config_flag],
        help="workers on the queue: online (heartbeat within their lease) or stale",
    )
    workers.add_argument("--json", action="store_true", help="one JSON object per worker")
    workers.set_defaults(handler=cmd_workers)
