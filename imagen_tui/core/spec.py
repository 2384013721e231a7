"""The request: what a user asks for, declared once.

`RequestSpec`'s fields are the request columns that `imagen.series` and
`imagen.jobs` share, under the same names: the database layer builds its
column lists from `REQUEST_FIELDS`, the submit path inserts a spec, and the
worker reads a job's spec back with `RequestSpec.from_row`. A new request
parameter is one new field here plus one migration (tests/test_spec.py
checks that both tables carry every field).

Every field may be left to the defaults (None / empty): the style's size or
1024x1024, the style's or backend's steps, a random seed, the configured
default backend. `checked()` validates what needs no configuration; the
pipeline's `plan` then checks the rest (style and backend names) against
the workbench.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from imagen_tui.core.sizes import check_size
from imagen_tui.errors import InputError
from imagen_tui.limits import MAX_COUNT, MAX_SEED, MAX_STEPS, MIN_COUNT, MIN_SEED, MIN_STEPS


class RequestSpec(NamedTuple):
    """What the user asked for, as typed (nothing resolved yet)."""

    prompt: str
    negative_prompt: str = ""
    style: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    backend: str | None = None  # None: the configured default backend
    options: Mapping[str, Any] = MappingProxyType({})  # backend-specific extras

    @property
    def size(self) -> tuple[int, int] | None:
        if self.width is None or self.height is None:
            return None
        return self.width, self.height

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RequestSpec:
        """The spec stored in a series or jobs row (any mapping with the request columns)."""
        values = {name: row[name] for name in REQUEST_FIELDS}
        if values["options"] is None:
            values["options"] = {}
        if values["negative_prompt"] is None:
            values["negative_prompt"] = ""
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        """The request columns, for an INSERT."""
        return {name: getattr(self, name) for name in REQUEST_FIELDS}

    def checked(self) -> RequestSpec:
        """This spec with its text trimmed, or InputError naming the first bad field.

        It checks what needs no configuration: a prompt, the size, steps,
        seed and options. Names (style, backend) are checked by `plan`.
        """
        if not isinstance(self.options, Mapping):
            kind = type(self.options).__name__
            raise InputError(
                "options",
                f"must be a JSON object (names to values), not a {kind}; use {{}} for none",
            )
        for name in ("width", "height", "steps", "seed"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InputError(name, f"{value!r} is not a whole number")
        if (self.width is None) != (self.height is None):
            raise InputError("size", "give both width and height, or neither")
        if self.width is not None and self.height is not None:
            check_size(self.width, self.height)
        if self.steps is not None and not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise InputError(
                "steps", f"{self.steps} is out of range; use {MIN_STEPS} to {MAX_STEPS}"
            )
        if self.seed is not None and not MIN_SEED <= self.seed <= MAX_SEED:
            raise InputError("seed", f"{self.seed} is out of range; use {MIN_SEED} to {MAX_SEED}")
        return self._replace(
            prompt=clean_prompt(self.prompt),
            negative_prompt=(self.negative_prompt or "").strip(),
            style=_name_or_none(self.style),
            backend=_name_or_none(self.backend),
        )


REQUEST_FIELDS: tuple[str, ...] = RequestSpec._fields


def _name_or_none(name: str | None) -> str | None:
    """A style or backend name without blanks; None for none (an empty name included)."""
    return (name or "").strip() or None


def clean_prompt(prompt: str) -> str:
    """The prompt without surrounding blanks; InputError when nothing is left."""
    prompt = prompt.strip()
    if not prompt:
        raise InputError("prompt", "the prompt is empty; say what the image should show")
    return prompt


def check_count(count: int) -> None:
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise InputError("count", f"{count} is out of range; use {MIN_COUNT} to {MAX_COUNT}")


def try_seeds(seed: int | None, count: int) -> list[int | None]:
    """The seeds of `count` tries: seed, seed + 1, ... or all None (each try random).

    InputError when the last one would pass MAX_SEED, naming the largest seed
    that leaves room for every try.
    """
    check_count(count)
    if seed is None:
        return [None] * count
    last = seed + count - 1
    if last > MAX_SEED:
        raise InputError(
            "seed",
            f"{seed} leaves no room for {count} tries (the last would be {last}); "
            f"use a seed of at most {MAX_SEED - count + 1}",
        )
    return [seed + i for i in range(count)]
