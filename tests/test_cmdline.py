"""What both front ends parse: whole numbers and the worker's flags."""

from __future__ import annotations

import argparse

import pytest

from imagen_tui import services
from imagen_tui.cmdline import add_worker_options, whole_number, worker_argv
from imagen_tui.errors import InputError


@pytest.mark.parametrize(("text", "value"), [("42", 42), (" 7 ", 7), ("-3", -3), ("+5", 5)])
def test_a_whole_number_is_ascii_digits_with_an_optional_sign(text: str, value: int) -> None:
    assert whole_number(text) == value


@pytest.mark.parametrize("text", ["1_000", "\u0663", "4.0", "", "0x10", "1e3"])
def test_what_int_would_take_but_a_person_would_not_type_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number"):
        whole_number(text)


def test_the_form_and_the_command_line_refuse_the_same_numbers() -> None:
    with pytest.raises(InputError) as caught:
        services.spec_from_form(prompt="a fox", seed="1_000")
    assert caught.value.field == "seed"
    assert "'1_000' is not a whole number" in caught.value.message
    assert services.spec_from_form(prompt="a fox", steps=" 12 ").steps == 12


def test_the_app_passes_its_worker_the_settings_it_was_given() -> None:
    parser = argparse.ArgumentParser()
    add_worker_options(parser)
    for once in (False, True):
        argv = worker_argv(concurrency=3, poll_interval=0.25, lease=45.5, once=once)
        args = parser.parse_args(argv)
        assert (args.concurrency, args.poll_interval, args.lease, args.once) == (
            3,
            0.25,
            45.5,
            once,
        )
