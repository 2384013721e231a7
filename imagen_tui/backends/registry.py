"""The registry from a config `type:` to the adapter that builds it.

Each adapter declares its config block as a tuple of `Option`s; the registry
validates a block against them (unknown keys, types, bounds, env-var names)
so adapters receive clean values and users get errors that name the key.

Built-in adapters are listed by module path and imported on first use, so a
command that only ever uses the mock never imports an HTTP or WebSocket
client. `register` adds a type at run time (a plugin, a test, a benchmark)
and `unregister` removes it again.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from imagen_tui.backends.base import Backend, Request
from imagen_tui.config import Locate
from imagen_tui.config.secrets import url_userinfo_problem
from imagen_tui.errors import ConfigError, InputError
from imagen_tui.limits import ENV_NAME, MAX_BODY_BYTES, MAX_DOWNLOAD_MB, MIN_DOWNLOAD_MB
from imagen_tui.text import one_line

ENV_NAME_RE = re.compile(ENV_NAME)

# type name -> "module:attribute" of its BackendType
BUILTIN_TYPES: dict[str, str] = {
    "mock": "imagen_tui.backends.mock:MOCK_TYPE",
    "comfyui": "imagen_tui.backends.comfyui:COMFYUI_TYPE",
    "openai": "imagen_tui.backends.openai:OPENAI_TYPE",
    "replicate": "imagen_tui.backends.replicate:REPLICATE_TYPE",
}


class Option(NamedTuple):
    """One key of an adapter's config block."""

    name: str
    kind: type  # str, int, float or bool
    default: Any = None
    help: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    env: bool = False  # the value names an environment variable (secrets come this way only)
    choices: tuple[Any, ...] = ()  # when set, the value must be one of these
    # Other names the key may be written as (kept in the validated block as written,
    # so messages and `imagen config show` name the key the user's file uses).
    aliases: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


# The byte cap on what a remote backend downloads (backends/http.py): one key,
# the same on every adapter that fetches images.
MAX_DOWNLOAD_OPTION = Option(
    "max_download_mb",
    int,
    default=MAX_BODY_BYTES // 2**20,
    minimum=MIN_DOWNLOAD_MB,
    maximum=MAX_DOWNLOAD_MB,
    help="refuse an output image (or any answer) larger than this many MiB",
)


class Check(NamedTuple):
    """What a live check of an instance found (`imagen backends --check`).

    `summary` is one line ("token works", "token rejected: ..."); `details`
    are further lines an adapter wants shown (versions, queue sizes, ...).
    """

    ok: bool
    summary: str
    details: tuple[str, ...] = ()


class Probe(NamedTuple):
    """What an adapter's probe found (`imagen backends`): facts, one short line
    each, and `problem`, a short status that replaces `ok` when the instance
    cannot run as configured (`missing models`, `unreachable`)."""

    lines: tuple[str, ...] = ()
    problem: str | None = None


class RequestOption(NamedTuple):
    """One key of a request's `options` that a job may set (an adapter's allowlist).

    Options are job input: whoever may insert a job may set them, so each is
    typed and bounded here. Keys the adapter sets itself (seed, size, count,
    format, streaming, ...) are never listed, so a job cannot override them.
    """

    name: str
    kind: type  # str, int, float or bool
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()  # when set, the value must be one of these
    help: str = ""


class BackendType(NamedTuple):
    """An adapter: its `type:` name, its config keys and its constructor.

    Two optional hooks: `check` makes one cheap live call (an authenticated
    lookup, a probe) and says whether the instance works; `check_request`
    refuses, at plan time, a request the adapter can never serve (a size the
    model does not offer), raising `InputError` naming the field.
    """

    name: str
    summary: str
    options: tuple[Option, ...]
    # (instance name, validated block) -> Backend
    factory: Callable[[str, Mapping[str, Any]], Backend]
    default_model: str
    # (instance name, validated block) -> Check; called only when status() is ok
    check: Callable[[str, Mapping[str, Any]], Awaitable[Check]] | None = None
    # (validated block, request) -> None, or InputError
    check_request: Callable[[Mapping[str, Any], Request], None] | None = None
    # (validated block) -> extra facts for `imagen backends` (reachable, version,
    # missing files, ...) and any problem they show; None: nothing to add.
    probe: Callable[[Mapping[str, Any]], Probe] | None = None
    # (validated block) -> the model it runs, when it depends on more than `model`
    # (ComfyUI: the workflow); None: `model` or `default_model`.
    model_for: Callable[[Mapping[str, Any]], str] | None = None
    # The keys of a request's `options` a job may set, typed and bounded; a request
    # with any other key, or a value out of bounds, is refused when submitted and
    # when planned (a queued job fails naming the key). Never silently ignored.
    request_options: tuple[RequestOption, ...] = ()


_TYPES: dict[str, BackendType] = {}  # registered or already imported


def register(backend_type: BackendType) -> None:
    """Add (or replace) a backend type for this process."""
    _TYPES[backend_type.name] = backend_type


def unregister(name: str) -> None:
    """Remove a type added with `register`; a built-in one is imported again on next use."""
    _TYPES.pop(name, None)


def known_types() -> list[str]:
    return sorted(set(_TYPES) | set(BUILTIN_TYPES))


def get_type(name: str) -> BackendType | None:
    """The type named `name`, importing a built-in adapter on first use; None if unknown."""
    backend_type = _TYPES.get(name)
    if backend_type is None and name in BUILTIN_TYPES:
        module, attribute = BUILTIN_TYPES[name].split(":")
        backend_type = getattr(importlib.import_module(module), attribute)
        assert isinstance(backend_type, BackendType)
        _TYPES[name] = backend_type
    return backend_type


def _type_of(block: Mapping[str, Any]) -> BackendType:
    """The type of a validated block (validate_block made sure it exists)."""
    backend_type = get_type(str(block["type"]))
    if backend_type is None:
        raise ConfigError(f"unknown backend type {block['type']!r}")
    return backend_type


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
    if option.choices and value not in option.choices:
        allowed = ", ".join(str(choice) for choice in option.choices)
        raise ConfigError(f"{key}: {value!r} is not one of {allowed}", where)
    if option.env and not ENV_NAME_RE.fullmatch(value):
        raise ConfigError(
            # Never echo the value: it may be the secret itself, pasted in by mistake.
            f"{key}: not an environment variable name; name the variable that holds "
            "the secret (letters, digits and _), e.g. REPLICATE_API_TOKEN",
            where,
        )
    return value


def validate_block(
    instance: str, block: Mapping[str, Any], locate: Locate = _no_location
) -> dict[str, Any]:
    """Check one `backends.<instance>` block; return it with defaults filled in."""
    prefix = ("backends", instance)
    type_name = block.get("type")
    backend_type = get_type(str(type_name))
    if backend_type is None:
        raise ConfigError(
            f"backends.{instance}.type: unknown backend type {type_name!r}; "
            f"known types: {', '.join(known_types())}",
            locate((*prefix, "type")),
        )
    options = {name: option for option in backend_type.options for name in option.spellings}
    clean: dict[str, Any] = {"type": backend_type.name}
    for key, value in block.items():
        if key == "type":
            continue
        dotted = f"backends.{instance}.{key}"
        option = options.get(key)
        if option is None:
            known = sorted(option.name for option in backend_type.options)
            raise ConfigError(
                f"{dotted}: unknown key for a {backend_type.name} backend; "
                f"known keys: {', '.join(known) or '(none)'}",
                locate((*prefix, key)),
            )
        twin = next((name for name in option.spellings if name in clean), None)
        if twin is not None:
            raise ConfigError(
                f"{dotted}: the same setting as {twin} (another name for it); keep one of the two",
                locate((*prefix, key)),
            )
        clean[key] = _check_value(option, value, dotted, locate((*prefix, key)))
        if key.endswith("url") and isinstance(value, str):
            problem = url_userinfo_problem(dotted, value)
            if problem is not None:
                raise ConfigError(problem, locate((*prefix, key)))
    for option in backend_type.options:
        if not any(name in clean for name in option.spellings):
            if option.required:
                raise ConfigError(
                    f"backends.{instance}.{option.name}: required for a {backend_type.name} "
                    f"backend ({option.help})",
                    locate(prefix),
                )
            clean[option.name] = option.default
    return clean


def env_keys(type_name: str) -> tuple[str, ...] | None:
    """The keys of a `type_name` block that name a secret's variable; None: no such type."""
    backend_type = get_type(type_name)
    if backend_type is None:
        return None
    return tuple(option.name for option in backend_type.options if option.env)


def setting(block: Mapping[str, Any], option: Option) -> Any:
    """The value of `option` in a validated block, under whichever name it was written."""
    for name in option.spellings:
        if name in block:
            return block[name]
    return None


def missing_env(block: Mapping[str, Any]) -> list[str]:
    """The environment variables a validated block names that are not set."""
    backend_type = _type_of(block)
    names = [setting(block, option) for option in backend_type.options if option.env]
    return [name for name in names if name and not os.environ.get(name)]


def status(block: Mapping[str, Any]) -> str:
    """`ok`, or what to do before this instance can run."""
    missing = missing_env(block)
    if missing:
        return f"not configured (set {', '.join(missing)})"
    return "ok"


async def check(instance: str, block: Mapping[str, Any]) -> Check | None:
    """A live check of a configured instance; None when its adapter has none.

    An instance that is not configured is reported as such without a call.
    """
    backend_type = _type_of(block)
    if backend_type.check is None:
        return None
    state = status(block)
    if state != "ok":
        return Check(False, state)
    return await backend_type.check(instance, block)


def _check_request_value(option: RequestOption, value: Any) -> None:
    where = f"{one_line(option.name, 60)}"
    kind = option.kind
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise InputError(
            "options", f"{where}: expected {_kind_name(kind)}, got {one_line(repr(value), 60)}"
        )
    if option.choices and value not in option.choices:
        allowed = ", ".join(str(choice) for choice in option.choices)
        raise InputError("options", f"{where}: {one_line(repr(value), 60)} is not one of {allowed}")
    if option.minimum is not None and value < option.minimum:
        raise InputError("options", f"{where}: {value} is below the minimum {option.minimum:g}")
    if option.maximum is not None and value > option.maximum:
        raise InputError("options", f"{where}: {value} is above the maximum {option.maximum:g}")


def check_options(block: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Raise InputError naming the first key of `options` a job may not set on this
    instance (not in its adapter's allowlist), or whose value is out of bounds."""
    backend_type = _type_of(block)
    allowed = {option.name: option for option in backend_type.request_options}
    unknown = [str(key) for key in options if key not in allowed]
    if unknown:
        takes = f"a job may set {', '.join(sorted(allowed))}" if allowed else "it takes none"
        names = ", ".join(one_line(key, 60) for key in unknown[:5])
        raise InputError(
            "options",
            f"{names}: not an option a job may set on a {backend_type.name} backend; {takes}",
        )
    for key, value in options.items():
        _check_request_value(allowed[key], value)


def check_request(block: Mapping[str, Any], request: Request) -> None:
    """Raise InputError if the instance can never serve `request` (see BackendType):
    options a job may not set, or whatever the adapter's own hook refuses."""
    check_options(block, request.options)
    hook = _type_of(block).check_request
    if hook is not None:
        hook(block, request)


def details(block: Mapping[str, Any]) -> Probe:
    """What the adapter's probe says about this instance (it may ask the server).
    A probe that fails says so in one line instead of failing the listing."""
    probe = _type_of(block).probe
    if probe is None:
        return Probe()
    try:
        return probe(block)
    except Exception as error:  # a probe bug must not hide the other backends
        return Probe((one_line(f"probe failed: {type(error).__name__}: {error}", 200),))


def model_of(block: Mapping[str, Any]) -> str:
    backend_type = _type_of(block)
    if block.get("model"):
        return str(block["model"])
    if backend_type.model_for is not None:
        return backend_type.model_for(block)
    return backend_type.default_model


def create(instance: str, block: Mapping[str, Any]) -> Backend:
    """Build a backend from a validated block."""
    return _type_of(block).factory(instance, block)
