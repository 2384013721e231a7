"""Argument parsing pieces shared by the CLI modules: one-line parse errors,
bounded numbers, sizes, and the prompt options `generate` and `submit` share.

Only `limits` (the bounds) and `text` are imported, so `imagen --help` loads neither
Pillow nor the database driver.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from imagen_tui.core.sizes import parse_size
from imagen_tui.errors import InputError
from imagen_tui.limits import MAX_COUNT, MAX_SEED, MAX_STEPS, MIN_COUNT, MIN_SEED, MIN_STEPS
from imagen_tui.text import one_line

if TYPE_CHECKING:
    from imagen_tui.core.spec import RequestSpec


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage by default)."""

    def error(self, message: str) -> NoReturn:
        # The message may quote what was typed raw (`unrecognized arguments: ...`).
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
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


def size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """PROMPT and the options that shape the image(s) it makes."""
    parser.add_argument("prompt", metavar="PROMPT", help="what the image should show")
    parser.add_argument("--backend", metavar="NAME", help="backend instance (imagen backends)")
    parser.add_argument("--style", metavar="NAME", help="style preset (see `imagen styles`)")
    parser.add_argument("--size", metavar="WxH", type=size_arg, help="image size, e.g. 1024x768")
    parser.add_argument(
        "--steps", metavar="N", type=bounded_int(MIN_STEPS, MAX_STEPS), help="sampling steps"
    )
    parser.add_argument(
        "--seed", metavar="N", type=bounded_int(MIN_SEED, MAX_SEED), help="seed of the first try"
    )
    parser.add_argument("--negative", metavar="TEXT", help="what the image should not show")
    parser.add_argument(
        "--count",
        metavar="N",
        type=bounded_int(MIN_COUNT, MAX_COUNT),
        default=1,
        help=f"number of tries ({MIN_COUNT}..{MAX_COUNT}), seeds SEED, SEED+1, ... or random",
    )


def spec_from_args(args: argparse.Namespace) -> RequestSpec:
    """The request the prompt options describe."""
    from imagen_tui.core.spec import RequestSpec

    width, height = args.size or (None, None)
    return RequestSpec(
        prompt=args.prompt,
        negative_prompt=args.negative or "",
        style=args.style,
        width=width,
        height=height,
        steps=args.steps,
        seed=args.seed,
        backend=args.backend,
    )
