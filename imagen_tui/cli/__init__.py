"""The `imagen` command line: argument parsing and printing, nothing else.

stdout carries only what scripts consume (image paths, or JSON with --json);
everything for humans (summaries, progress, errors) goes to stderr. Exit
codes: 0 success, 1 a generation failed, 2 bad input or config (nothing
written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagen_tui import __version__
from imagen_tui.backends import registry
from imagen_tui.cli import jobs as cli_jobs
from imagen_tui.cli.args import Parser, add_prompt_options
from imagen_tui.cli.console import PROG, columns, describe, err
from imagen_tui.config import BUILTIN, Config, resolve_config_path, write_sample
from imagen_tui.core.pipeline import Outcome, Spec, open_workbench, plan_tries, run
from imagen_tui.errors import ImagenError

# --------------------------------------------------------------------------- generate


def _summary(outcome: Outcome) -> str:
    result, request = outcome.result, outcome.plan.request
    cost = "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    steps = f", {result.steps} steps" if result.steps else ""
    return (
        f"{outcome.plan.backend} ({result.model}) seed {result.seed}, "
        f"{request.width}x{request.height}{steps}, {result.latency_ms:.0f} ms, {cost}"
    )


def _emit(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        line = {"path": str(outcome.path), "sidecar": str(outcome.written.sidecar or "")}
        print(json.dumps({**line, **outcome.record}, ensure_ascii=False), flush=True)
    else:
        print(outcome.path, flush=True)


async def _generate_all(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    spec = Spec(
        prompt=args.prompt,
        negative=args.negative or "",
        style=args.style,
        size=args.size,
        steps=args.steps,
        seed=args.seed,
        backend=args.backend,
    )
    out = Path(args.out) if args.out else None
    plans = plan_tries(workbench, spec, args.count, directory=out)  # every input check
    show_progress = len(plans) > 1 and sys.stderr.isatty()
    progress = None
    if show_progress:
        from rich.console import Console
        from rich.progress import Progress

        # rich would route stdout through its stderr console by default: keep paths on
        # stdout for scripts, and only merge the two when both are the same terminal
        # (so a path never garbles the live bar).
        progress = Progress(
            console=Console(stderr=True),
            transient=True,
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )
        progress.start()
        task = progress.add_task("generating", total=len(plans))
    try:
        for plan in plans:
            outcome = await run(plan, workbench.backend(plan.backend))
            _emit(outcome, args.json)
            if progress is not None:
                progress.console.print(_summary(outcome), markup=False, highlight=False)
                progress.advance(task)
            else:
                print(_summary(outcome), file=sys.stderr, flush=True)
    finally:
        if progress is not None:
            progress.stop()
        await workbench.aclose()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    return asyncio.run(_generate_all(args))


# --------------------------------------------------------------------------- listings


def cmd_backends(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    rows = [["NAME", "TYPE", "MODEL", "DEFAULT", "STATUS"]]
    for name, block in sorted(workbench.backend_blocks.items()):
        default = "*" if name == workbench.config.default_backend else ""
        rows.append(
            [name, block["type"], registry.model_of(block), default, registry.status(block)]
        )
    print("\n".join(columns(rows)))
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    for style in workbench.styles.values():
        size = f"{style.size[0]}x{style.size[1]}" if style.size else "any size"
        origin = "" if style.origin == "shipped" else f"  [from {style.origin}]"
        print(f"{style.name}  ({size}){origin}")
        if style.description:
            print(f"  {style.description}")
        print(f"  prompt:   {style.template}")
        if style.negative:
            print(f"  negative: {style.negative}")
        if style.steps:
            print(f"  steps:    {style.steps}")
        print()
    return 0


# --------------------------------------------------------------------------- config


def cmd_config_init(args: argparse.Namespace) -> int:
    path, _named = resolve_config_path(args.config)
    write_sample(path, force=args.force)
    print(path)
    err(f"wrote a sample config; check it with `{PROG} config check`")
    return 0


def _effective_rows(
    config: Config, blocks: dict[str, dict[str, Any]]
) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = [
        ("default_backend", config.default_backend, config.source(("default_backend",))),
        ("output.directory", config.output.directory, config.source(("output", "directory"))),
        ("output.naming", config.output.naming, config.source(("output", "naming"))),
        (
            "output.write_metadata_json",
            config.output.write_metadata_json,
            config.source(("output", "write_metadata_json")),
        ),
    ]
    from imagen_tui.db.connect import redact  # the database modules load only when needed
    from imagen_tui.db.embedded import data_directory as embedded_data_directory

    url, origin = config.database.resolve()
    if url is None:
        rows.append(("database", f"embedded ({embedded_data_directory()})", BUILTIN))
    else:
        where = config.where(("database", "url")) if origin == "database.url" else origin
        rows.append(("database", redact(url), where or origin))
    for name, block in sorted(blocks.items()):
        for key, value in block.items():
            path = ("backends", name, key)
            source = config.where(path) or (
                "built-in default" if key == "type" else f"default of type {block['type']}"
            )
            rows.append((".".join(path), value, source))
    for name, style in config.styles.items():
        items = style.items() if isinstance(style, dict) else [("prompt", style)]
        for key, value in items:
            path = ("styles", name, key)
            rows.append((".".join(path), value, config.source(path)))
    return rows


def cmd_config_show(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    config = workbench.config
    print(f"# config file: {config.path or 'none (built-in defaults)'}")
    rows = _effective_rows(config, workbench.backend_blocks)
    width = max(len(f"{key} = {_yaml_scalar(value)}") for key, value, _ in rows)
    for key, value, source in rows:
        print(f"{key} = {_yaml_scalar(value)}".ljust(width) + f"  # {source}")
    return 0


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_config_check(args: argparse.Namespace) -> int:
    workbench = open_workbench(args.config)
    config = workbench.config
    config.database.resolve()  # a url_env naming an unset variable
    where = config.path or f"no config file ({resolve_config_path(args.config)[0]} is absent)"
    print(
        f"ok: {where}: {len(workbench.backend_blocks)} backend(s), "
        f"{len(workbench.styles)} style preset(s), images go to {config.output.directory}"
    )
    for name, block in sorted(workbench.backend_blocks.items()):
        status = registry.status(block)
        if status != "ok":
            err(f"warning: backend {name} is {status}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
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

    gen = commands.add_parser(
        "generate",
        parents=[config_flag],
        help="make images from a prompt; prints their paths",
        description="Make images from a prompt. Prints each image's path on stdout.",
    )
    add_prompt_options(gen)
    gen.add_argument("--out", metavar="DIR", help="output directory (default: output.directory)")
    gen.add_argument("--json", action="store_true", help="print one JSON object per image")
    gen.set_defaults(handler=cmd_generate)

    listing = commands.add_parser(
        "backends", parents=[config_flag], help="list the configured backend instances"
    )
    listing.set_defaults(handler=cmd_backends)
    styles = commands.add_parser("styles", parents=[config_flag], help="list the style presets")
    styles.set_defaults(handler=cmd_styles)

    cli_jobs.add_commands(commands, config_flag)

    config = commands.add_parser("config", help="write, show or check the config file")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_commands.required = True
    init = config_commands.add_parser(
        "init", parents=[config_flag], help="write a commented sample config"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=cmd_config_init)
    show = config_commands.add_parser(
        "show", parents=[config_flag], help="the effective config and where each value came from"
    )
    show.set_defaults(handler=cmd_config_show)
    check = config_commands.add_parser("check", parents=[config_flag], help="check the config")
    check.set_defaults(handler=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ImagenError as error:
        err(describe(error))
        return error.exit_code
    except KeyboardInterrupt:
        err("interrupted; nothing partial was written")
        return 130
    except BrokenPipeError:  # `imagen ... | head`: the reader left; not an error
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        psycopg = sys.modules.get("psycopg")  # loaded only by the database commands
        if psycopg is not None and isinstance(error, psycopg.Error):
            from imagen_tui.db.connect import describe as describe_db

            err(describe_db(error))
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
