"""Command-line plumbing both front ends share (`imagen`, `imagen-tui`).

One-line argument errors, bounded numbers, the worker's flags (so `imagen
worker` and `imagen-tui --headless-worker` accept exactly the same ones) and
the guard around a `main` that turns an `ImagenError` into one line on stderr
and its exit code. A leaf: it imports only the other leaves, so parsing
arguments loads neither the database driver, Pillow, Rich nor Textual.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from imagen_tui.errors import ImagenError
from imagen_tui.limits import (
    DEFAULT_LEASE_S,
    DEFAULT_POLL_S,
    MAX_CONCURRENCY,
    MAX_LEASE_S,
    MAX_POLL_S,
    MIN_LEASE_S,
    MIN_POLL_S,
)
from imagen_tui.text import one_line


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage by default)."""

    def error(self, message: str) -> NoReturn:
        # The message may quote what was typed raw (`unrecognized arguments: ...`).
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def whole_number(text: str) -> int:
    """A whole number as a person types it: ASCII digits, an optional sign,
    spaces around. Python's int() also takes `1_000` and non-ASCII digits;
    ImaGen does not. ValueError says what was typed."""
    stripped = text.strip()
    if not _WHOLE_NUMBER.fullmatch(stripped):
        raise ValueError(f"{stripped!r} is not a whole number")
    return int(stripped)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = whole_number(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {low} to {high}")
        return value

    return parse


def bounded_seconds(low: float, high: float) -> Callable[[str], float]:
    """A finite number of seconds within [low, high] (nan, inf and 1e308 are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use {low:g} to {high:g}")
        return value

    return parse


# The worker's flags, by name: `imagen-tui` refuses them without --headless-worker.
WORKER_FLAGS = ("--concurrency", "--once", "--poll-interval", "--lease")


def worker_argv(*, concurrency: int, poll_interval: float, lease: float, once: bool) -> list[str]:
    """The flags that give a worker process these settings (what the app passes
    to the worker it starts); `add_worker_options` parses them back."""
    argv = ["--concurrency", str(concurrency), "--poll-interval", repr(poll_interval)]
    argv += ["--lease", repr(lease)]
    return [*argv, "--once"] if once else argv


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The worker's flags: `imagen worker` and `imagen-tui --headless-worker` share them."""
    parser.add_argument(
        "--concurrency",
        type=bounded_int(1, MAX_CONCURRENCY),
        default=1,
        metavar="N",
        help="jobs at once",
    )
    parser.add_argument("--once", action="store_true", help="drain the queue, then exit")
    parser.add_argument(
        "--poll-interval",
        type=bounded_seconds(MIN_POLL_S, MAX_POLL_S),
        default=DEFAULT_POLL_S,
        metavar="S",
        help=f"safety poll (and rescue) period in seconds (default {DEFAULT_POLL_S:g})",
    )
    parser.add_argument(
        "--lease",
        type=bounded_seconds(MIN_LEASE_S, MAX_LEASE_S),
        default=DEFAULT_LEASE_S,
        metavar="S",
        help=f"seconds before a silent worker's job is rescued (default {DEFAULT_LEASE_S:g})",
    )


def error_line(prog: str, message: str) -> None:
    """A line for humans on stderr, prefixed with the program name (user text escaped)."""
    print(f"{prog}: {one_line(message)}", file=sys.stderr, flush=True)


def guarded(
    prog: str, body: Callable[[], int], describe: Callable[[ImagenError], str] = str
) -> int:
    """Run a front end's `main` body: an ImagenError is one line and its exit code,
    Ctrl-C exits 130, a reader that left a pipe is not an error."""
    try:
        return body()
    except ImagenError as error:
        error_line(prog, describe(error))
        return error.exit_code
    except KeyboardInterrupt:
        error_line(prog, "interrupted; nothing partial was written")
        return 130
    except BrokenPipeError:  # `imagen ... | head`: the reader left; not an error
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
