"""`imagen generate`: make images now, in this process, and print their paths.

stdout holds only the image paths (or one JSON object per image with
`--json`); a one-line summary per image goes to stderr, and on a terminal a
progress bar that follows the backend's own progress. Ctrl-C (or SIGTERM)
stops at once, keeps the images already finished and leaves nothing partial.
Each image gets a row in the cost ledger when a database is reachable
(`services.UsageLedger`); a ledger failure is a warning, never a lost image.

When every backend asked for renders in this thread (the mock: `RendersHere`),
the run needs no event loop and never imports asyncio, which is a third of a
one-shot command's start-up; otherwise the tries run on one.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from imagen_tui.backends.base import Backend, Preview, RendersHere
from imagen_tui.backends.base import Progress as StepReport
from imagen_tui.cli.args import add_prompt_options, spec_from_args
from imagen_tui.cli.console import PROG, json_line, out
from imagen_tui.money import cost_text
from imagen_tui.text import one_line

if TYPE_CHECKING:
    from rich.progress import Progress

    from imagen_tui.core.pipeline import Outcome, Plan
    from imagen_tui.core.workbench import Workbench

STOPS = (signal.SIGINT, signal.SIGTERM)  # each stops the run as Ctrl-C does


def _summary(outcome: Outcome) -> str:
    result, record = outcome.result, outcome.record
    cost = cost_text(result.cost_usd, unknown="cost unknown")
    steps = f", {result.steps} steps" if result.steps else ""
    seed = "no seed" if result.seed is None else f"seed {result.seed}"
    return (
        f"{outcome.plan.backend} ({result.model}) {seed}, "
        f"{record['size']}{steps}, {result.latency_ms:.0f} ms, {cost}"
    )


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


class _Report:
    """What the tries of one `imagen generate` share, however they are run: the
    progress bar (on a terminal), the lines printed, and the usage ledger."""

    def __init__(self, args: argparse.Namespace, workbench: Workbench, tries: int) -> None:
        from imagen_tui import services

        self._json = args.json
        self._bar = _progress_bar() if sys.stderr.isatty() else None
        self._task: Any = None
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("generating", total=tries)
        self.ledger = services.UsageLedger(
            workbench, lambda warning: self.note(f"{PROG}: warning: {warning}")
        )

    def note(self, line: str) -> None:
        """A line for humans (stderr) that does not garble the bar."""
        if self._bar is not None:
            self._bar.console.print(one_line(line), markup=False, highlight=False)
        else:
            print(one_line(line), file=sys.stderr, flush=True)

    def progress(self, done: int) -> StepReport | None:
        """The backend's progress callback for try number `done` (from 0), if a bar shows it."""
        bar, task = self._bar, self._task
        if bar is None:
            return None

        def report(fraction: float, preview: Preview | None = None) -> None:  # any thread
            # A backend's live preview is for the workbench, not for the bar.
            bar.update(task, completed=done + min(max(fraction, 0.0), 1.0))

        return report

    def made(self, done: int, outcome: Outcome) -> None:
        """Try `done` is written: its path (stdout) and summary. The ledger row is
        the caller's next step (`ledger.record`), blocking."""
        if self._json:
            line = {"path": str(outcome.path), "sidecar": str(outcome.written.sidecar or "")}
            json_line({**line, **outcome.record})
        else:
            out(str(outcome.path))
        if self._bar is not None:
            self._bar.update(self._task, completed=done + 1)
        self.note(_summary(outcome))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self.ledger.close()


def cmd_generate(args: argparse.Namespace) -> int:
    from imagen_tui.core.pipeline import plan_tries
    from imagen_tui.core.workbench import open_workbench

    workbench = open_workbench(args.config)
    plans = plan_tries(workbench, spec_from_args(args), args.count, directory=args.out)
    backends = {plan.backend: workbench.backend(plan.backend) for plan in plans}
    here = {
        name: backend
        for name, backend in backends.items()
        if isinstance(backend, RendersHere) and backend.renders_here
    }
    if len(here) == len(backends):
        return _generate_here(args, workbench, plans, here)
    import asyncio

    try:
        return asyncio.run(_generate_on_loop(args, workbench, plans, backends))
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: reported as an interrupt
        raise KeyboardInterrupt from None


def _generate_here(
    args: argparse.Namespace,
    workbench: Workbench,
    plans: Sequence[Plan],
    backends: Mapping[str, RendersHere],
) -> int:
    """Every try in this thread, no event loop. SIGTERM stops it as Ctrl-C does,
    and neither cuts a finished image's line and ledger row short."""
    from imagen_tui.core.pipeline import render_here

    stops = _Stops()
    previous = {signum: signal.signal(signum, stops) for signum in STOPS}
    report = _Report(args, workbench, len(plans))
    try:
        for done, planned in enumerate(plans):
            outcome = render_here(
                planned, backends[planned.backend], progress=report.progress(done)
            )
            with stops.held():
                report.made(done, outcome)
                report.ledger.record(outcome)
    finally:
        report.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    return 0


class _Stops:
    """The handler of SIGINT and SIGTERM on the loop-free path: KeyboardInterrupt,
    except while `held()`, when a signal is noted and raised as the block ends.
    (Python runs signal handlers in the main thread whichever thread the signal
    reached, so this holds with the progress bar's thread running too.)"""

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            raise KeyboardInterrupt


async def _generate_on_loop(
    args: argparse.Namespace,
    workbench: Workbench,
    plans: Sequence[Plan],
    backends: Mapping[str, Backend],
) -> int:
    import asyncio

    from imagen_tui.core.pipeline import run

    # Ctrl-C and SIGTERM cancel the run, which cleans up. Handled by the loop itself
    # (asyncio.run's own SIGINT handler can miss a signal landing as the loop sleeps).
    main_task = asyncio.current_task()
    if main_task is not None:
        for signum in STOPS:
            asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    report = _Report(args, workbench, len(plans))
    try:
        for done, planned in enumerate(plans):
            backend = backends[planned.backend]
            outcome = await run(planned, backend, progress=report.progress(done))
            report.made(done, outcome)
            await asyncio.shield(asyncio.to_thread(report.ledger.record, outcome))
    finally:
        report.close()
        await workbench.aclose()
    return 0


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
