"""`imagen generate`: make images now, in this process, and print their paths.

stdout holds only the image paths (or one JSON object per image with
`--json`); a one-line summary per image goes to stderr, and on a terminal a
progress bar that follows the backend's own progress. Ctrl-C (or SIGTERM)
stops at once, keeps the images already finished and leaves nothing partial.
Each image gets a row in the cost ledger when a database is reachable
(`services.UsageLedger`); a ledger failure is a warning, never a lost image.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING, Any

from imagen_tui.cli.args import add_prompt_options, spec_from_args
from imagen_tui.cli.console import PROG, json_line, out
from imagen_tui.money import cost_text
from imagen_tui.text import one_line

if TYPE_CHECKING:
    from rich.progress import Progress

    from imagen_tui.core.pipeline import Outcome


def _summary(outcome: Outcome) -> str:
    result, record = outcome.result, outcome.record
    cost = cost_text(result.cost_usd, unknown="cost unknown")
    steps = f", {result.steps} steps" if result.steps else ""
    seed = "no seed" if result.seed is None else f"seed {result.seed}"
    return (
        f"{outcome.plan.backend} ({result.model}) {seed}, "
        f"{record['size']}{steps}, {result.latency_ms:.0f} ms, {cost}"
    )


def _emit(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        line = {"path": str(outcome.path), "sidecar": str(outcome.written.sidecar or "")}
        json_line({**line, **outcome.record})
    else:
        out(str(outcome.path))


def _progress_bar() -> Progress:
    from rich.console import Console
    from rich.progress import Progress

    # rich would route stdout through its stderr console by default: keep paths on
    # stdout for scripts, and only merge the two when both are the same terminal
    # (so a path never garbles the live bar).
    return Progress(
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )


async def _generate_all(args: argparse.Namespace) -> int:
    from imagen_tui import services
    from imagen_tui.core.pipeline import plan_tries, run
    from imagen_tui.core.workbench import open_workbench

    workbench = open_workbench(args.config)
    plans = plan_tries(workbench, spec_from_args(args), args.count, directory=args.out)
    # Ctrl-C and SIGTERM cancel the run, which cleans up. Handled by the loop itself
    # (asyncio.run's own SIGINT handler can miss a signal landing as the loop sleeps).
    main_task = asyncio.current_task()
    if main_task is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    bar = _progress_bar() if sys.stderr.isatty() else None

    def note(line: str) -> None:  # a line for humans that does not garble the bar
        if bar is not None:
            bar.console.print(one_line(line), markup=False, highlight=False)
        else:
            print(one_line(line), file=sys.stderr, flush=True)

    ledger = services.UsageLedger(workbench, lambda warning: note(f"{PROG}: warning: {warning}"))
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("generating", total=len(plans))
        for done, planned in enumerate(plans):
            report: Any = None
            if bar is not None:

                def report(fraction: float, preview: object = None, done: int = done) -> None:
                    # Any thread; a backend's live preview is for the workbench, not the bar.
                    bar.update(task, completed=done + min(max(fraction, 0.0), 1.0))

            outcome = await run(planned, workbench.backend(planned.backend), progress=report)
            _emit(outcome, args.json)
            if bar is not None:
                bar.update(task, completed=done + 1)
            note(_summary(outcome))
            await asyncio.shield(asyncio.to_thread(ledger.record, outcome))
    finally:
        if bar is not None:
            bar.stop()
        ledger.close()
        await workbench.aclose()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_generate_all(args))
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: reported as an interrupt
        raise KeyboardInterrupt from None


def add_commands(commands: Any, config_flag: argparse.ArgumentParser) -> None:
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
