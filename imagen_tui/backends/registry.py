"""The registry from a config `type:` to the adapter that builds it.

Each adapter declares its config block as a tuple of `Option`s; the registry
validates a block against them (unknown keys, types, bounds, env-var names)
so adapters receive clean values and users get errors that name the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imagen_tui.backends.base import Backend
from imagen_tui.config import Locate
from imagen_tui.errors import ConfigError

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Option:
    """One key of an adapter's config block."""

    name: str
    kind: type  # str, int, float or bool
    default: Any = None
    help: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    env: bool = False  # the value names an environment variable (secrets come this way only)


@dataclass(frozen=True)
class BackendType:
    """An adapter: its `type:` name, its config keys and its constructor."""

    name: str
    summary: str
    options: tuple[Option, ...]
    # (instance name, validated block) -> Backend
    factory: Callable[[str, Mapping[str, Any]], Backend]
    default_model: str


_TYPES: dict[str, BackendType] = {}


def register(backend_type: BackendType) -> None:
    _TYPES[backend_type.name] = backend_type


def known_types() -> list[str]:
    return sorted(_TYPES)


def get_type(name: str) -> BackendType | None:
    return _TYPES.get(name)


def _no_location(_path: tuple[str, ...]) -> str | None:
    return None


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}[kind]


def _check_value(option: Option, value: Any, key: str, where: str | None) -> Any:
    kind = option.kind
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"{key}: expected {_kind_name(kind)}, got {value!r}; fix the value", where
        )
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(f"{key}: {value} is below the minimum {option.minimum:g}", where)
    if option.maximum is not None and value > option.maximum:
        raise ConfigError(f"{key}: {value} is above the maximum {option.maximum:g}", where)
    if option.env and not ENV_NAME_RE.match(value):
        raise ConfigError(
            f"{key}: {value!r} is not an environment variable name; "
            "name the variable that holds the secret, e.g. REPLICATE_API_TOKEN",
            where,
        )
    return value


def validate_block(
    instance: str, block: Mapping[str, Any], locate: Locate = _no_location
) -> dict[str, Any]:
    """Check one `backends.<instance>` block; return it with defaults filled in."""
    prefix = ("backends", instance)
    type_name = block.get("type")
    backend_type = _TYPES.get(str(type_name))
    if backend_type is None:
        raise ConfigError(
            f"backends.{instance}.type: unknown backend type {type_name!r}; "
            f"known types: {', '.join(known_types())}",
            locate((*prefix, "type")),
        )
    options = {option.name: option for option in backend_type.options}
    clean: dict[str, Any] = {"type": backend_type.name}
    for key, value in block.items():
        if key == "type":
            continue
        dotted = f"backends.{instance}.{key}"
        option = options.get(key)
        if option is None:
            raise ConfigError(
                f"{dotted}: unknown key for a {backend_type.name} backend; "
                f"known keys: {', '.join(sorted(options)) or '(none)'}",
                locate((*prefix, key)),
            )
        clean[key] = _check_value(option, value, dotted, locate((*prefix, key)))
    for option in backend_type.options:
        if option.name not in clean:
            if option.required:
                raise ConfigError(
                    f"backends.{instance}.{option.name}: required for a {backend_type.name} "
                    f"backend ({option.help})",
                    locate(prefix),
                )
            clean[option.name] = option.default
    return clean


def missing_env(block: Mapping[str, Any]) -> list[str]:
    """The environment variables a validated block names that are not set."""
    backend_type = _TYPES[block["type"]]
    return [
        block[option.name]
        for option in backend_type.options
        if option.env and block.get(option.name) and not os.environ.get(block[option.name])
    ]


def status(block: Mapping[str, Any]) -> str:
    """`ok`, or what to do before this instance can run."""
    missing = missing_env(block)
    if missing:
        return f"not configured (set {', '.join(missing)})"
    return "ok"


def model_of(block: Mapping[str, Any]) -> str:
    return str(block.get("model") or _TYPES[block["type"]].default_model)


def create(instance: str, block: Mapping[str, Any]) -> Backend:
    """Build a backend from a validated block."""
    return _TYPES[block["type"]].factory(instance, block)
