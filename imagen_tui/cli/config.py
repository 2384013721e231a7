"""`imagen config init | show | check`: write, show and check the config file."""

from __future__ import annotations

import argparse
from typing import Any

from imagen_tui import services
from imagen_tui.cli.console import PROG, err, out
from imagen_tui.core.workbench import open_workbench


def cmd_config_init(args: argparse.Namespace) -> int:
    path = services.write_sample_config(args.config, force=args.force)
    out(str(path))
    err(f"wrote a sample config; check it with `{PROG} config check`")
    return 0


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_config_show(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    rows = services.config_rows(workbench)  # first: a bad database URL prints nothing
    out(f"# config file: {workbench.config.path or 'none (built-in defaults)'}")
    lines = [(f"{row.key} = {_yaml_scalar(row.value)}", row.source) for row in rows]
    width = max(len(setting) for setting, _ in lines)
    for setting, source in lines:
        out(setting.ljust(width) + f"  # {source}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    check = services.check_config(open_workbench(args.config), args.config)
    where = check.path or f"no config file ({check.default_path} is absent)"
    out(
        f"ok: {where}: {check.backends} backend(s), {check.styles} style preset(s), "
        f"images go to {check.directory}"
    )
    for warning in check.warnings:
        err(f"warning: {warning}")
    return 0


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", help="write, show or check the config file")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    init = actions.add_parser("init", parents=[config_flag], help="write a commented sample config")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=cmd_config_init)
    show = actions.add_parser(
        "show", parents=[config_flag], help="the effective config and where each value came from"
    )
    show.set_defaults(handler=cmd_config_show)
    check = actions.add_parser("check", parents=[config_flag], help="check the config")
    check.set_defaults(handler=cmd_config_check)
