"""`imagen backends` and `imagen styles`: what this config offers."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui.cli.console import cell, out, table
from imagen_tui.core.workbench import open_workbench


def cmd_backends(args: argparse.Namespace) -> int:
    from imagen_tui import services

    rows = [["NAME", "TYPE", "MODEL", "DEFAULT", "STATUS"]]
    for row in services.backend_rows(open_workbench(args.config)):
        rows.append(
            [cell(row.name), row.type, cell(row.model), "*" if row.default else "", row.status]
        )
    table(rows)
    return 0


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
    listing.set_defaults(handler=cmd_backends)
    styles = commands.add_parser("styles", parents=[config_flag], help="list the style presets")
    styles.set_defaults(handler=cmd_styles)
