"""Argument parsing pieces shared by the CLI modules: sizes and the prompt
options `generate` and `submit` share (what `imagen-tui` shares too, the
one-line parser, bounded numbers and the worker's flags, is in `cmdline`).

Only `cmdline`, `limits` (the bounds) and `text` are imported, so `imagen --help`
loads neither Pillow nor the database driver.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from imagen_tui.cmdline import bounded_int
from imagen_tui.core.sizes import parse_size
from imagen_tui.errors import InputError
from imagen_tui.limits import MAX_COUNT, MAX_SEED, MAX_STEPS, MIN_COUNT, MIN_SEED, MIN_STEPS

if TYPE_CHECKING:
    from imagen_tui.core.spec import RequestSpec


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
