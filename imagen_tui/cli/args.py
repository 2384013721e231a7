"""Argument parsing pieces shared by the CLI modules: one-line parse errors,
bounded numbers, sizes, and the prompt options `generate` and `submit` share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from imagen_tui.backends.base import MAX_SEED
from imagen_tui.core.pipeline import MAX_COUNT, MAX_STEPS
from imagen_tui.core.sizes import parse_size
from imagen_tui.errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage by default)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be above 0")
    return value


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
        "--steps", metavar="N", type=bounded_int(1, MAX_STEPS), help="sampling steps"
    )
    parser.add_argument("--seed", metavar="N", type=bounded_int(0, MAX_SEED), help="seed")
    parser.add_argument("--negative", metavar="TEXT", help="what the image should not show")
    parser.add_argument(
        "--count",
        metavar="N",
        type=bounded_int(1, MAX_COUNT),
        default=1,
        help=f"number of tries (1..{MAX_COUNT}), seeds SEED, SEED+1, ... or random",
    )
