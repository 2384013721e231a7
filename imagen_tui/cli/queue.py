"""The queue commands: `imagen submit`, `imagen jobs [list | cancel | retry | follow]` and
`imagen series list | show | pick`.

They talk to the database through `services.session`, which starts the
embedded server when no database is configured; `imagen generate` never
loads any of it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from imagen_tui import services
from imagen_tui.cli.args import add_prompt_options, spec_from_args
from imagen_tui.cli.console import PROG, cell, err, json_line, out, table, warn, when
from imagen_tui.cmdline import Parser, bounded_int
from imagen_tui.core.workbench import open_workbench
from imagen_tui.limits import JOB_STATUSES, MAX_COUNT, MAX_ID, MAX_LIST_LIMIT

if TYPE_CHECKING:
    from imagen_tui.core.rows import JobChange, JobRow, TryRow
    from imagen_tui.services.follow import FollowEvent

_ID = bounded_int(1, MAX_ID)


# --------------------------------------------------------------------------- submit


def cmd_submit(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        submitted = db.submit(workbench, spec_from_args(args), args.count)
    for warning in submitted.warnings:
        warn(warning)
    if args.json:
        json_line({"series_id": submitted.series_id, "job_ids": list(submitted.job_ids)})
    else:
        out(str(submitted.series_id))
    n = len(submitted.job_ids)
    tries = "1 try" if n == 1 else f"{n} tries"
    series_id = submitted.series_id
    err(f"series {series_id}: {tries} queued (see `{PROG} series show {series_id}`)")
    return 0


# --------------------------------------------------------------------------- jobs


def _row_json(row: JobRow | TryRow) -> dict[str, Any]:
    """A job or try as JSON, with the local file its storage URI names."""
    return {**dataclasses.asdict(row), "path": str(row.path) if row.path else None}


def cmd_jobs(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        jobs = db.jobs(args.status, args.limit)
    if args.json:
        for job in jobs:
            json_line(_row_json(job))
        return 0
    rows = [["ID", "STATUS", "SERIES", "BACKEND", "SEED", "TRIES", "CREATED", "PROMPT / ERROR"]]
    for job in jobs:
        series = f"{job.series_id}#{job.series_idx}" if job.series_id else "-"
        text = job.error if job.status == "failed" and job.error else job.prompt
        text = job.waiting or text  # pending, and no online worker can take it: why
        rows.append(
            [
                str(job.id),
                job.status,
                series,
                cell(job.backend or "-"),
                "" if job.seed is None else str(job.seed),
                str(job.attempts),
                when(job.created_at),
                cell(text),
            ]
        )
    table(rows)
    return 0


def cmd_jobs_change(args: argparse.Namespace) -> int:
    """`imagen jobs cancel|retry ID...`: one line (or JSON object) per job changed."""
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        change = db.cancel if args.jobs_command == "cancel" else db.retry
        changes: list[JobChange] = change(args.ids)
    for job in changes:
        if args.json:
            json_line(dataclasses.asdict(job))
        else:
            out(f"{job.id} {job.status} (was {job.was})")
    return 0


def _follow_line(event: FollowEvent) -> str:
    job = f"job {event.job_id}:"
    if event.kind == "link":
        if event.error:
            return f"live updates lost, reconnecting: {cell(event.error, 200)}"
        return "live updates back"
    if event.kind == "status":
        return f"{job} {event.status}"
    if event.kind == "progress":
        percent = f"{round((event.progress or 0.0) * 100)}%"
        if event.step is not None and event.total is not None:
            return f"{job} progress {event.step}/{event.total} ({percent})"
        return f"{job} progress {percent}"
    if event.kind == "preview":
        size = f"{(event.size or 0) / 1024:.1f} KB"
        line = f"{job} preview {event.width}x{event.height} ({size})"
        if event.step is not None and event.total is not None:
            line += f" step {event.step}/{event.total}"
        return line
    if event.kind == "done":
        return f"{job} done {event.path or ''}".rstrip()
    if event.kind == "failed":
        return f"{job} failed: {cell(event.error or '', 500)}"
    return f"{job} {event.kind}"


def cmd_jobs_follow(args: argparse.Namespace) -> int:
    """`imagen jobs follow ID...`: one line (or JSON object) per event until the jobs
    end; 0 when all are done, 1 when one failed or was canceled."""
    from imagen_tui.services.follow import follow_jobs

    workbench = open_workbench(args.config)
    ended: dict[int, str] = {}

    async def follow(db: services.Session) -> None:
        async for event in follow_jobs(db, args.ids):
            if event.kind in ("done", "failed", "canceled") and event.job_id is not None:
                ended[event.job_id] = event.kind
            if args.json:
                json_line(
                    {
                        "event": event.kind,
                        **{
                            k: (str(v) if k == "path" and v is not None else v)
                            for k, v in dataclasses.asdict(event).items()
                            if k != "kind"
                        },
                    }
                )
            else:
                out(_follow_line(event))

    with services.session(workbench) as db:
        asyncio.run(follow(db))
    return 0 if all(kind == "done" for kind in ended.values()) else 1


# --------------------------------------------------------------------------- series


def cmd_series_list(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        series = db.series(args.limit)
    if args.json:
        for item in series:
            json_line(dataclasses.asdict(item))
        return 0
    rows = [["ID", "DONE", "FAILED", "WINNER", "CREATED", "PROMPT"]]
    for item in series:
        rows.append(
            [
                str(item.id),
                f"{item.done}/{item.count}",
                str(item.failed),
                "" if item.winner_idx is None else f"#{item.winner_idx}",
                when(item.created_at),
                cell(item.prompt),
            ]
        )
    table(rows)
    return 0


def cmd_series_show(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        detail = db.series_detail(args.id)
    if args.json:
        json_line(
            {
                "id": detail.id,
                **detail.spec.to_row(),
                "options": dict(detail.spec.options),
                "count": detail.count,
                "selected_image_id": detail.selected_image_id,
                "created_at": detail.created_at,
                "tries": [_row_json(attempt) for attempt in detail.tries],
            }
        )
        return 0
    style = f" (style {cell(detail.spec.style, 40)})" if detail.spec.style else ""
    out(f"series {detail.id}: {cell(detail.spec.prompt, 200)}{style}")
    rows = [["IDX", "STATUS", "SEED", "WINNER", "PATH / ERROR"]]
    for attempt in detail.tries:
        where = str(attempt.path) if attempt.path else attempt.waiting or attempt.error or ""
        rows.append(
            [
                str(attempt.idx),
                attempt.status,
                "" if attempt.seed is None else str(attempt.seed),
                "*" if attempt.winner else "",
                cell(where, 200),
            ]
        )
    table(rows)
    return 0


def cmd_series_pick(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        image_id = db.pick(args.id, None if args.none else args.idx)
    if image_id is None:
        err(f"series {args.id}: no winner")
    else:
        err(f"series {args.id}: try {args.idx} (image {image_id}) is the winner")
    return 0


# --------------------------------------------------------------------------- parser


def _listing_options(parser: argparse.ArgumentParser, default_limit: int) -> None:
    parser.add_argument(
        "--limit", type=bounded_int(1, MAX_LIST_LIMIT), default=default_limit, metavar="N"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    submit = commands.add_parser(
        "submit",
        parents=[config_flag],
        help="queue a series of tries for the worker; prints the series id",
    )
    add_prompt_options(submit)
    submit.add_argument("--json", action="store_true", help="print series and job ids as JSON")
    submit.set_defaults(handler=cmd_submit)

    listing_flags = Parser(add_help=False, parents=[config_flag])
    listing_flags.add_argument("--status", choices=JOB_STATUSES, help="only jobs in this status")
    _listing_options(listing_flags, 50)
    jobs = commands.add_parser(
        "jobs", parents=[listing_flags], help="list recent jobs; cancel or retry jobs"
    )
    jobs.set_defaults(handler=cmd_jobs)
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    actions.add_parser("list", parents=[listing_flags], help="recent jobs (the default)")
    for name, text in (
        ("cancel", "cancel pending or running jobs (running ones stop at once)"),
        ("retry", "queue failed or canceled jobs again, with the same seed"),
    ):
        action = actions.add_parser(name, parents=[config_flag], help=text)
        action.add_argument("ids", metavar="ID", type=_ID, nargs="+", help="job id")
        action.add_argument("--json", action="store_true", help="print one JSON object per job")
        action.set_defaults(handler=cmd_jobs_change)

    follow = actions.add_parser(
        "follow",
        parents=[config_flag],
        help="print each event of jobs (status, progress, previews, the result) until they "
        "end; exit 0 when all are done, 1 when one failed or was canceled",
    )
    follow.add_argument("ids", metavar="ID", type=_ID, nargs="+", help="job id")
    follow.add_argument("--json", action="store_true", help="print one JSON object per event")
    follow.set_defaults(handler=cmd_jobs_follow)

    series_flags = Parser(add_help=False, parents=[config_flag])
    _listing_options(series_flags, 20)
    series = commands.add_parser(
        "series", parents=[series_flags], help="list, show or pick the winner of a series"
    )
    series.set_defaults(handler=cmd_series_list)  # no action: list, as `imagen jobs` does
    series_actions = series.add_subparsers(dest="series_command", metavar="ACTION")
    listing = series_actions.add_parser(
        "list", parents=[series_flags], help="recent series (the default)"
    )
    listing.set_defaults(handler=cmd_series_list)
    show = series_actions.add_parser(
        "show", parents=[config_flag], help="a series' tries: status, seed, image path"
    )
    show.add_argument("id", metavar="ID", type=_ID)
    show.add_argument("--json", action="store_true", help="print the series as JSON")
    show.set_defaults(handler=cmd_series_show)
    pick = series_actions.add_parser("pick", parents=[config_flag], help="mark the winner")
    pick.add_argument("id", metavar="ID", type=_ID)
    which = pick.add_mutually_exclusive_group(required=True)
    which.add_argument("--idx", type=bounded_int(1, MAX_COUNT), metavar="K", help="try number")
    which.add_argument("--none", action="store_true", help="clear the pick")
    pick.set_defaults(handler=cmd_series_pick)
