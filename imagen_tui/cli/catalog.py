"""`imagen backends` and `imagen styles`: what this config offers."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui.cli.console import cell, columns, out
from imagen_tui.core.workbench import open_workbench


def cmd_backends(args: argparse.Namespace) -> int:
    """The instances and their status; with --check, a live call each (exit 1 if one fails)."""
    from imagen_tui import services

    found = services.backend_rows(open_workbench(args.config), check=args.check)
    rows = [["NAME", "TYPE", "MODEL", "DEFAULT", "STATUS"]]
    for row in found:
        status = row.status
        if args.check and row.check is not None and row.status == "ok":
            status = f"{'ok' if row.check_ok else 'failed'}: {row.check}"
        rows.append(
            [
                cell(row.name),
                row.type,
                cell(row.model),
                "*" if row.default else "",
                cell(status, 200),
            ]
        )
    lines = columns(rows)
    out(lines[0])
    for line, row in zip(lines[1:], found, strict=True):
        out(line)
        for detail in row.details:  # the adapter's facts: one indented line each
            out(f"    {cell(detail, 300)}")
    return 1 if args.check and any(row.check_ok is False for row in found) else 0


def cmd_styles(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    for style in workbench.styles.values():
        size = f"{style.size[0]}x{style.size[1]}" if style.size else "any size"
        origin = "" if style.origin == "shipped" else f"  [from {style.origin}]"
        out(f"{style.name}  ({size}){origin}")
        if style.description:
            out(f"  {cell(style.description, 200)}")
        out(f"  prompt:   {cell(style.template, 400)}")
        if style.negative:
            out(f"  negative: {cell(style.negative, 400)}")
        if style.steps:
            out(f"  steps:    {style.steps}")
        out("")
    return 0


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "backends", parents=[config_flag], help="list the configured backend instances"
    )
    listing.add_argument(
        "--check",
        action="store_true",
        help="make one cheap authenticated call per cloud backend: does its token work?",
    )
    listing.set_defaults(handler=cmd_backends)
    styles = commands.add_parser("styles", parents=[config_flag], help="list the style presets")
    styles.set_defaults(handler=cmd_styles)
