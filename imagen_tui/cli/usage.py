"""`imagen usage`: what the generations cost, from the ledger (`imagen.usage`).

    imagen usage [--since DATE] [--until DATE] [--by backend|model|caller|day]
                 [--raw] [--json]

Grouped totals (images, total and mean cost, mean latency) and a grand
total; `--raw` lists the rows themselves (the prompt is never stored, only
its SHA-256). Costs are estimates, summed exactly; totals are shown to the
cent (half up), means to a hundredth of a cent. DATEs are local: `--since`
from the start of that day, `--until` to the end of it.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from imagen_tui import services
from imagen_tui.cli.console import cell, json_line, table, when
from imagen_tui.core.workbench import open_workbench
from imagen_tui.limits import USAGE_GROUPS
from imagen_tui.money import cost_text, total_cost_text

if TYPE_CHECKING:
    pass


def _moment(text: str, *, end: bool) -> datetime:
    """A local date (the start of that day; with `end`, of the next) or an ISO date-time."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM"
            ) from None
        return moment if moment.tzinfo else moment.astimezone()
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time()).astimezone()


def since_arg(text: str) -> datetime:
    return _moment(text, end=False)


def until_arg(text: str) -> datetime:
    return _moment(text, end=True)


def cmd_usage(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    with services.session(workbench) as db:
        if args.raw:
            rows = db.usage_rows(args.since, args.until)
        else:
            totals = db.usage_totals(args.by, args.since, args.until)
    if args.raw:
        if args.json:
            for row in rows:
                json_line({"id": row.id, "created_at": row.created_at, **dataclasses.asdict(row)})
            return 0
        lines = [["WHEN", "BACKEND", "MODEL", "SEED", "SIZE", "LATENCY", "COST", "CALLER", "FROM"]]
        for row in rows:
            lines.append(
                [
                    when(row.created_at),
                    cell(row.backend),
                    cell(row.model),
                    "-" if row.seed is None else str(row.seed),
                    f"{row.width}x{row.height}",
                    f"{row.latency_ms:.0f} ms",
                    cost_text(row.cost_usd),
                    cell(row.caller),
                    row.source,
                ]
            )
        table(lines)
        return 0
    if args.json:
        for total in totals:
            line: dict[str, Any] = {
                args.by: total.key,
                "total": total.key is None,
                "count": total.count,
                "priced": total.priced,
                "total_cost_usd": str(total.total_cost),
                "mean_cost_usd": None if total.mean_cost is None else str(total.mean_cost),
                "mean_latency_ms": round(total.mean_latency_ms, 1),
            }
            json_line(line)
        return 0
    lines = [[args.by.upper(), "IMAGES", "TOTAL COST", "MEAN COST", "MEAN LATENCY"]]
    for total in totals:
        lines.append(
            [
                "TOTAL" if total.key is None else cell(total.key),
                str(total.count),
                total_cost_text(total.total_cost, total.count, total.priced),
                cost_text(total.mean_cost),
                f"{total.mean_latency_ms:.0f} ms",
            ]
        )
    table(lines)
    return 0


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    usage = commands.add_parser(
        "usage",
        parents=[config_flag],
        help="what the generations cost: totals from the ledger",
        description="Totals of the cost ledger (one row per generated image).",
    )
    usage.add_argument("--since", metavar="DATE", type=since_arg, help="from this day on")
    usage.add_argument("--until", metavar="DATE", type=until_arg, help="up to this day, included")
    usage.add_argument(
        "--by", choices=USAGE_GROUPS, default="backend", help="group the totals (default: backend)"
    )
    usage.add_argument("--raw", action="store_true", help="list the rows, not totals")
    usage.add_argument("--json", action="store_true", help="one JSON object per line")
    usage.set_defaults(handler=cmd_usage)
