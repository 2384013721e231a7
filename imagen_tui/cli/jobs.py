"""The `imagen` commands that use the database: submit, jobs, series, worker, db.

The database modules are imported inside the handlers, so `imagen generate`
neither loads nor needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import TYPE_CHECKING, Any

from imagen_tui.cli.args import add_prompt_options, bounded_int, positive_float
from imagen_tui.cli.console import PROG, columns, err, one_line
from imagen_tui.config import Config
from imagen_tui.core.pipeline import MAX_COUNT, clean_prompt, open_workbench
from imagen_tui.core.prompt import pick_style
from imagen_tui.errors import InputError

if TYPE_CHECKING:
    import psycopg


def _connected(config: Config) -> psycopg.Connection:
    """A connection to the configured database, its schema checked (or migrated)."""
    from imagen_tui.db.connect import connect_checked

    return connect_checked(config)


# --------------------------------------------------------------------------- submit


def cmd_submit(args: argparse.Namespace) -> int:
    from imagen_tui.db.repositories import NewSeries, submit_series

    workbench = open_workbench(args.config)
    prompt = clean_prompt(args.prompt)
    # The worker applies the style with its own presets; checking here catches typos early.
    pick_style(workbench.styles, args.style)
    width, height = args.size or (None, None)
    new = NewSeries(
        prompt=prompt,
        count=args.count,
        negative_prompt=(args.negative or "").strip(),
        style=args.style,
        width=width,
        height=height,
        steps=args.steps,
        seed=args.seed,
        backend=args.backend,
    )
    with _connected(workbench.config) as conn:
        series_id, job_ids = submit_series(conn, new)
    if args.json:
        print(json.dumps({"series_id": series_id, "job_ids": job_ids}))
    else:
        print(series_id)
    tries = "1 try" if len(job_ids) == 1 else f"{len(job_ids)} tries"
    err(f"series {series_id}: {tries} queued (see `{PROG} series show {series_id}`)")
    return 0


# --------------------------------------------------------------------------- listings


def _when(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def cmd_jobs(args: argparse.Namespace) -> int:
    from imagen_tui.db.repositories import list_jobs

    with _connected(open_workbench(args.config).config) as conn:
        jobs = list_jobs(conn, args.status, args.limit)
    rows = [["ID", "STATUS", "SERIES", "SEED", "TRIES", "CREATED", "PROMPT / ERROR"]]
    for job in jobs:
        series = f"{job['series_id']}#{job['series_idx']}" if job["series_id"] else "-"
        text = job["error"] if job["status"] == "failed" and job["error"] else job["prompt"]
        rows.append(
            [
                str(job["id"]),
                job["status"],
                series,
                "" if job["seed"] is None else str(job["seed"]),
                str(job["attempts"]),
                _when(job["created_at"]),
                one_line(text),
            ]
        )
    print("\n".join(columns(rows)))
    return 0


def cmd_series_list(args: argparse.Namespace) -> int:
    from imagen_tui.db.repositories import list_series

    with _connected(open_workbench(args.config).config) as conn:
        series = list_series(conn, args.limit)
    rows = [["ID", "DONE", "FAILED", "WINNER", "CREATED", "PROMPT"]]
    for item in series:
        winner = "" if item["winner_idx"] is None else f"#{item['winner_idx']}"
        rows.append(
            [
                str(item["id"]),
                f"{item['done']}/{item['count']}",
                str(item["failed"]),
                winner,
                _when(item["created_at"]),
                one_line(item["prompt"]),
            ]
        )
    print("\n".join(columns(rows)))
    return 0


def cmd_series_show(args: argparse.Namespace) -> int:
    from imagen_tui.db.repositories import series_detail

    with _connected(open_workbench(args.config).config) as conn:
        detail = series_detail(conn, args.id)
    if args.json:
        print(json.dumps(detail, default=str, ensure_ascii=False))
        return 0
    style = f" (style {detail['style']})" if detail["style"] else ""
    print(f"series {detail['id']}: {one_line(detail['prompt'], 200)}{style}")
    rows = [["IDX", "STATUS", "SEED", "WINNER", "PATH / ERROR"]]
    for attempt in detail["tries"]:
        where = attempt["path"] or attempt["error"] or ""
        rows.append(
            [
                str(attempt["idx"]),
                attempt["status"],
                "" if attempt["seed"] is None else str(attempt["seed"]),
                "*" if attempt["winner"] else "",
                one_line(str(where), 200),
            ]
        )
    print("\n".join(columns(rows)))
    return 0


def cmd_series_pick(args: argparse.Namespace) -> int:
    from imagen_tui.db.repositories import pick_winner

    with _connected(open_workbench(args.config).config) as conn:
        image_id = pick_winner(conn, args.id, args.idx)
    err(f"series {args.id}: try {args.idx} (image {image_id}) is the winner")
    return 0


# --------------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    from imagen_tui.db.connect import open_database
    from imagen_tui.db.queue import PgQueue
    from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id, run_loop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    workbench = open_workbench(args.config)
    database = open_database(workbench.config)
    worker_id = new_worker_id()
    queue = PgQueue(database.url, worker_id, lease_s=args.lease)
    options = WorkerOptions(
        concurrency=args.concurrency, poll_interval=args.poll_interval, once=args.once
    )

    async def main() -> int:
        worker = Worker(workbench, queue, options)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        mode = "draining the queue once" if args.once else "waiting for jobs"
        logging.getLogger("imagen.worker").info(
            "worker %s on %s (%s): %s, concurrency %d, lease %g s",
            worker_id,
            database.display_url,
            database.source,
            mode,
            args.concurrency,
            args.lease,
        )
        await worker.run()
        summary = ", ".join(f"{n} {what}" for what, n in sorted(worker.stats.items()))
        logging.getLogger("imagen.worker").info("worker stopped: %s", summary or "no jobs")
        return 130 if worker.forced else 0

    return run_loop(main())


# --------------------------------------------------------------------------- db


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from imagen_tui.db import migrate
    from imagen_tui.db.connect import connect, locate

    database = locate(open_workbench(args.config).config)
    with connect(database.url, autocommit=True) as conn:
        applied = migrate.migrate(conn)
        version = migrate.current_version(conn)
    for migration in applied:
        err(f"applied {migration.version:04d}_{migration.name}")
    print(f"schema version {version} ({'migrated' if applied else 'already current'})")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from imagen_tui.db import migrate
    from imagen_tui.db.connect import connect, locate
    from imagen_tui.db.repositories import queue_counts

    database = locate(open_workbench(args.config).config)
    with connect(database.url, autocommit=True) as conn:
        if database.embedded:
            migrate.migrate(conn)
        version, latest = migrate.current_version(conn), migrate.latest_version()
        counts = queue_counts(conn) if version else {}
    print(f"server:  {database.display_url}  ({database.source})")
    state = "current" if version == latest else f"behind: run `{PROG} db migrate`"
    print(f"schema:  version {version} of {latest} ({state})")
    if counts:
        print("jobs:    " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if database.embedded:
        print(f'psql:    psql "{database.url}"')
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    from imagen_tui.db import embedded

    workbench = open_workbench(args.config)
    if workbench.config.database.resolve()[0] is not None:
        raise InputError(
            None, "db stop: only the embedded server is started by ImaGen; none is in use"
        )
    stopped = embedded.stop()
    err("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


# --------------------------------------------------------------------------- parser


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    submit = commands.add_parser(
        "submit",
        parents=[config_flag],
        help="queue a series of tries for the worker; prints the series id",
    )
    add_prompt_options(submit)
    submit.add_argument("--json", action="store_true", help="print series and job ids as JSON")
    submit.set_defaults(handler=cmd_submit)

    jobs = commands.add_parser("jobs", parents=[config_flag], help="list recent jobs")
    jobs.add_argument(
        "--status", choices=("pending", "running", "done", "failed", "canceled"), help="filter"
    )
    jobs.add_argument("--limit", type=bounded_int(1, 10_000), default=50, metavar="N")
    jobs.set_defaults(handler=cmd_jobs)

    series = commands.add_parser("series", help="list, show or pick the winner of a series")
    series_commands = series.add_subparsers(dest="series_command", metavar="ACTION")
    series_commands.required = True
    listing = series_commands.add_parser("list", parents=[config_flag], help="recent series")
    listing.add_argument("--limit", type=bounded_int(1, 10_000), default=20, metavar="N")
    listing.set_defaults(handler=cmd_series_list)
    show = series_commands.add_parser(
        "show", parents=[config_flag], help="a series' tries: status, seed, image path"
    )
    show.add_argument("id", metavar="ID", type=bounded_int(1, 2**63 - 1))
    show.add_argument("--json", action="store_true", help="print the series as JSON")
    show.set_defaults(handler=cmd_series_show)
    pick = series_commands.add_parser("pick", parents=[config_flag], help="mark the winner")
    pick.add_argument("id", metavar="ID", type=bounded_int(1, 2**63 - 1))
    pick.add_argument(
        "--idx", required=True, type=bounded_int(1, MAX_COUNT), metavar="K", help="try number"
    )
    pick.set_defaults(handler=cmd_series_pick)

    worker = commands.add_parser(
        "worker", parents=[config_flag], help="render queued jobs (SIGTERM: finish, then exit)"
    )
    worker.add_argument(
        "--concurrency", type=bounded_int(1, 64), default=1, metavar="N", help="jobs at once"
    )
    worker.add_argument("--once", action="store_true", help="drain the queue, then exit")
    worker.add_argument(
        "--poll-interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="safety poll (and rescue) period in seconds (default 5)",
    )
    worker.add_argument(
        "--lease",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="seconds before a silent worker's job is rescued (default 60)",
    )
    worker.set_defaults(handler=cmd_worker)

    db = commands.add_parser("db", help="the database: migrate, status, stop")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_commands.required = True
    for name, handler, text in (
        ("migrate", cmd_db_migrate, "apply schema migrations (idempotent)"),
        ("status", cmd_db_status, "server URL, schema version and queue counts"),
        ("stop", cmd_db_stop, "stop the embedded server"),
    ):
        sub = db_commands.add_parser(name, parents=[config_flag], help=text)
        sub.set_defaults(handler=handler)
