"""Loading and checking the user's config file (`imagen.yaml`).

Where the file is: `--config PATH`, else `$IMAGEN_CONFIG`, else
`$XDG_CONFIG_HOME/imagen.yaml` (default `~/.config/imagen.yaml`). No file at
the default place is fine: built-in defaults give a `mock` backend and an
output directory, so a fresh machine works with no config at all.

This module finds and parses the file (keeping the line of every key, for
errors) and checks the framework's own keys; `secrets` refuses inline
secrets, `sample` writes the sample file. The owners of the other blocks
check theirs with the line numbers kept here (`Config.where`): backend
adapters (`backends.registry`), style presets (`prompt`), the naming
template (`naming`). `pipeline.open_workbench` runs them all, so every
front end sees the same errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import platformdirs

from imagen_tui.config.secrets import (
    DATABASE_URL_ENV,
    EnvKeys,
    database_url_problem,
    has_password,
    scan_secrets,
)
from imagen_tui.errors import ConfigError, InputError
from imagen_tui.limits import ENV_NAME, IMAGE_PROTOCOLS

if TYPE_CHECKING:
    import yaml

CONFIG_FILENAME = "imagen.yaml"
BUILTIN = "built-in default"
DEFAULT_NAMING = "{date}/{time}_{slug}_{seed}"
# The tries of one series share a folder; {date} and {time} are the series' creation.
DEFAULT_SERIES_NAMING = "{date}/series-{series}_{slug}/{idx:02d}_{seed}"
DEFAULT_BACKENDS: dict[str, dict[str, Any]] = {"mock": {"type": "mock"}}

TOP_LEVEL_KEYS = ("default_backend", "output", "styles", "backends", "database", "storage", "tui")
OUTPUT_KEYS = ("directory", "naming", "series_naming", "write_metadata_json")
DATABASE_KEYS = ("url", "url_env")
TUI_KEYS = ("worker", "image_protocol", "theme")
TUI_WORKER_MODES = ("auto", "never")
DEFAULT_THEME = "textual-dark"

KeyPath = tuple[str, ...]
Locate = Callable[[KeyPath], str | None]  # key path -> `file:line` for error messages


# --------------------------------------------------------------------------- YAML


# PyYAML is imported by the first file read: with no config file and no style
# asked for, a command never loads it (it is most of a bare `imagen generate`'s
# start-up otherwise).


def _check_duplicates(node: yaml.Node, source: str) -> None:
    """Refuse duplicate keys (YAML itself would silently keep the last one)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ConfigError(
                    f"{key}: appears twice in the same block; keep one",
                    f"{source}:{key_node.start_mark.line + 1}",
                )
            seen.add(key)
            _check_duplicates(value_node, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, source)


def _collect_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    """The line of every mapping key. A key inside a list item has no index in its
    path: the first such key gets the line (enough to point an error at it)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines.setdefault(path, key_node.start_mark.line + 1)
            _collect_lines(value_node, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _collect_lines(item, prefix, lines)


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file; return its data and the line of every mapping key."""
    import yaml

    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found; create it with `imagen config init`", source) from None
    except OSError as error:  # the reason without "[Errno N]" and the path again
        raise ConfigError(f"cannot read the file ({error.strerror or error})", source) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"cannot read the file ({error})", source) from None
    # libyaml's parser where PyYAML was built with it (the wheels are): the same
    # safe constructor and marks, about ten times faster than the pure-Python one.
    safe_loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = safe_loader(text)
    try:
        # Parsed once: the node tree gives the lines, the same tree the data.
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"not valid YAML: {error.problem}; fix the syntax", where) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}", source) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _check_duplicates(node, source)
        _collect_lines(node, (), lines)
    return data, lines


# --------------------------------------------------------------------------- Config


class OutputConfig(NamedTuple):
    directory: Path
    naming: str = DEFAULT_NAMING  # solo images (`imagen generate`, jobs without a series)
    series_naming: str = DEFAULT_SERIES_NAMING  # the tries of a queued series
    write_metadata_json: bool = True


class DatabaseConfig(NamedTuple):
    """Which PostgreSQL to use; neither set means the embedded server."""

    url: str | None = None  # a URL without a password
    url_env: str | None = None  # the variable holding the URL (may carry a password)
    url_env_where: str | None = None  # file:line of url_env, for its error

    def resolve(self) -> tuple[str | None, str]:
        """The URL to connect to (None: embedded) and where it came from.

        A URL from a variable that libpq cannot read as written is bad input
        naming the variable (never echoing its value, which may hold a password),
        so every command refuses it before trying to connect.
        """
        if os.environ.get(DATABASE_URL_ENV):
            return _checked_variable(DATABASE_URL_ENV), f"${DATABASE_URL_ENV}"
        if self.url_env:
            if not os.environ.get(self.url_env):
                raise ConfigError(
                    f"database.url_env: the variable {self.url_env} is not set; export it "
                    "or remove database.url_env to use the embedded server",
                    self.url_env_where,
                )
            return _checked_variable(self.url_env), f"${self.url_env}"
        if self.url:
            return self.url, "database.url"
        return None, "embedded"


def _checked_variable(name: str) -> str:
    """The database URL held by the environment variable `name`, checked."""
    url = os.environ[name]
    problem = database_url_problem(url)
    if problem:
        raise InputError(f"${name}", problem)
    return url


class TuiConfig(NamedTuple):
    """The `tui:` block: settings of the terminal workbench only."""

    # auto: start a worker (`imagen-tui --headless-worker`) when jobs need a backend
    # of this config that no online worker serves;
    # never: only submit and watch (what --no-worker does).
    worker: str = "auto"
    # How images are drawn: auto-detected, or the kitty graphics protocol (tgp),
    # sixel, half-cell blocks or unicode characters.
    image_protocol: str = "auto"
    theme: str = DEFAULT_THEME  # a Textual theme name; the app checks it exists


class Config(NamedTuple):
    """The effective configuration: the file's values over the built-in defaults."""

    path: Path | None  # the file read, None when only built-in defaults apply
    default_backend: str
    output: OutputConfig
    styles: Mapping[str, Any]  # user presets, checked by `prompt`
    backends: Mapping[str, Mapping[str, Any]]  # instance -> raw block, checked by the registry
    database: DatabaseConfig = DatabaseConfig()
    lines: Mapping[KeyPath, int] = MappingProxyType({})
    tui: TuiConfig = TuiConfig()
    storage: Mapping[str, Any] = MappingProxyType({})  # raw, checked by `storage`

    def where(self, path: KeyPath) -> str | None:
        """`file:line` of a key set in the file, or None for a built-in value."""
        line = self.lines.get(path)
        if self.path is None or line is None:
            return None
        return f"{self.path}:{line}"

    def source(self, path: KeyPath) -> str:
        """Where a value came from, for `imagen config show`."""
        return self.where(path) or BUILTIN


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / CONFIG_FILENAME


def default_output_directory() -> Path:
    return Path(platformdirs.user_pictures_dir()) / "imagen"


def resolve_config_path(explicit: str | Path | None = None) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (so it must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    from_env = os.environ.get("IMAGEN_CONFIG")
    if from_env:
        return Path(from_env).expanduser(), True
    return default_config_path(), False


def load_config(explicit: str | Path | None = None, env_keys: EnvKeys | None = None) -> Config:
    """Read the config file (if any) and check the framework's keys. `env_keys`
    (from the backend registry) lets an inline secret's error name the right key."""
    path, named = resolve_config_path(explicit)
    if not named and not path.exists():
        return _build(None, {}, {})
    if path.is_dir():
        origin = "--config" if explicit else "$IMAGEN_CONFIG" if named else "the default path"
        raise ConfigError(
            f"{origin} names a directory; name the config file, e.g. {path / CONFIG_FILENAME}",
            str(path),
        )
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping of keys (default_backend, output, styles, backends)",
            f"{path}:1",
        )
    return _build(path, data, lines, env_keys)


def locator(path: Path | None, lines: Mapping[KeyPath, int]) -> Locate:
    """Where a key of a YAML file is, for errors: `file:line`, the file when the key
    has no line of its own, None when there is no file (built-in values)."""

    def locate(key: KeyPath) -> str | None:
        if path is None:
            return None
        line = lines.get(key)
        return f"{path}:{line}" if line else str(path)

    return locate


# `$NAME` or `${NAME}`; a `$` followed by anything else is kept as it is.
_VARIABLE_RE = re.compile(rf"\$(?:(?P<name>{ENV_NAME})|(?P<braced>\{{[^}}]*\}})|(?P<open>\{{))")


def expand_variables(text: str, key: KeyPath, locate: Locate) -> str:
    """`text` with every `$NAME` and `${NAME}` replaced by the variable's value.

    Strict, unlike `os.path.expandvars`: a variable that is unset or empty is an
    error naming it (kept literally, `$UNSET/x` would become a directory named
    `$UNSET`; empty, `$EMPTY/x` would become `/x`), and so is a `${` that does
    not enclose a variable name.
    """
    dotted = ".".join(key)

    def value_of(match: re.Match[str]) -> str:
        if match["open"]:
            problem = '"${" has no closing "}"'
            raise ConfigError(f"{dotted}: {problem}; write $NAME or ${{NAME}}", locate(key))
        name = match["name"] or match["braced"][1:-1]
        if not re.fullmatch(ENV_NAME, name):
            problem = f"{match[0]} is not a variable name"
            raise ConfigError(f"{dotted}: {problem}; write $NAME or ${{NAME}}", locate(key))
        value = os.environ.get(name)
        if value is None:
            problem = f"${name} is not set; export it, or write the path without it"
            raise ConfigError(f"{dotted}: {problem}", locate(key))
        if not value:
            problem = f"${name} is empty; give it a value, or write the path without it"
            raise ConfigError(f"{dotted}: {problem}", locate(key))
        return value

    return _VARIABLE_RE.sub(value_of, text)


def _unknown_keys(
    block: Mapping[str, Any], allowed: tuple[str, ...], prefix: KeyPath, locate: Locate
) -> None:
    for key in block:
        if key not in allowed:
            dotted = ".".join((*prefix, str(key)))
            raise ConfigError(
                f"{dotted}: unknown key; known keys here: {', '.join(allowed)}",
                locate((*prefix, str(key))),
            )


def _check_name(name: Any, prefix: KeyPath, what: str, locate: Locate) -> None:
    """A style or backend instance name is shown in menus and tables: no markup
    brackets, no control or other unprintable characters, not blank."""
    text = str(name)
    if not text.strip() or not text.isprintable() or "[" in text or "]" in text:
        shown = text.encode("unicode_escape").decode("ascii")[:60]
        raise ConfigError(
            f"{'.'.join(prefix)}: {shown!r} is not {what} name: names may not be blank or "
            "hold '[', ']' or control characters; rename it",
            locate((*prefix, text)),
        )


def _expect(value: Any, kind: type, key: KeyPath, what: str, locate: Locate) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{'.'.join(key)}: expected {what}, got {value!r}", locate(key))


def _build(
    path: Path | None,
    data: dict[str, Any],
    lines: dict[KeyPath, int],
    env_keys: EnvKeys | None = None,
) -> Config:
    locate = locator(path, lines)
    scan_secrets(data, (), locate, env_keys)
    _unknown_keys(data, TOP_LEVEL_KEYS, (), locate)

    output_block = data.get("output") or {}
    _expect(output_block, dict, ("output",), "a mapping (directory, naming, ...)", locate)
    _unknown_keys(output_block, OUTPUT_KEYS, ("output",), locate)

    directory = default_output_directory()
    if "directory" in output_block:
        raw = output_block["directory"]
        _expect(raw, str, ("output", "directory"), "a directory path", locate)
        directory = Path(expand_variables(raw, ("output", "directory"), locate)).expanduser()
        if not directory.is_absolute() and path is not None:
            directory = path.parent / directory  # relative to the config file
    naming = output_block.get("naming", DEFAULT_NAMING)
    _expect(naming, str, ("output", "naming"), "a naming template string", locate)
    series_naming = output_block.get("series_naming", DEFAULT_SERIES_NAMING)
    _expect(series_naming, str, ("output", "series_naming"), "a naming template string", locate)
    write_json = output_block.get("write_metadata_json", True)
    _expect(write_json, bool, ("output", "write_metadata_json"), "true or false", locate)

    styles = data.get("styles") or {}
    _expect(styles, dict, ("styles",), "a mapping of preset name -> preset", locate)
    for name in styles:
        _check_name(name, ("styles",), "a style", locate)

    user_backends = data.get("backends") or {}
    _expect(user_backends, dict, ("backends",), "a mapping of instance name -> block", locate)
    for name, block in user_backends.items():
        _check_name(name, ("backends",), "a backend instance", locate)
        key = ("backends", str(name))
        _expect(block, dict, key, "a mapping with at least `type:`", locate)
        if "type" not in block:
            known = "e.g. type: mock"
            raise ConfigError(f"backends.{name}: missing `type:` ({known})", locate(key))
        _expect(block["type"], str, (*key, "type"), "a backend type name", locate)
    backends = {**DEFAULT_BACKENDS, **{str(k): v for k, v in user_backends.items()}}

    storage = data.get("storage") or {}
    _expect(storage, dict, ("storage",), "a mapping (type, url, bucket, key_env)", locate)

    default_backend = data.get("default_backend", "mock")
    _expect(default_backend, str, ("default_backend",), "a backend instance name", locate)
    if default_backend not in backends:
        raise ConfigError(
            f"default_backend: {default_backend!r} names no backend instance; "
            f"use one of: {', '.join(sorted(backends))}",
            locate(("default_backend",)),
        )

    return Config(
        path=path,
        default_backend=default_backend,
        output=OutputConfig(
            directory=directory,
            naming=naming,
            series_naming=series_naming,
            write_metadata_json=write_json,
        ),
        styles=styles,
        backends=backends,
        database=_database_block(data.get("database") or {}, locate),
        lines=lines,
        tui=_tui_block(data.get("tui") or {}, locate),
        storage=storage,
    )


def _tui_block(block: Any, locate: Locate) -> TuiConfig:
    _expect(block, dict, ("tui",), "a mapping (worker, image_protocol, theme)", locate)
    _unknown_keys(block, TUI_KEYS, ("tui",), locate)
    worker = _choice(block, "worker", TUI_WORKER_MODES, ("tui",), locate)
    protocol = _choice(block, "image_protocol", IMAGE_PROTOCOLS, ("tui",), locate)
    theme = block.get("theme", DEFAULT_THEME)
    if not isinstance(theme, str) or not theme.strip():
        raise ConfigError(
            f"tui.theme: expected a theme name, e.g. {DEFAULT_THEME}, got {theme!r}",
            locate(("tui", "theme")),
        )
    return TuiConfig(worker=worker, image_protocol=protocol, theme=theme)


def _choice(
    block: Mapping[str, Any], key: str, allowed: tuple[str, ...], prefix: KeyPath, locate: Locate
) -> str:
    """The value of `key` (the first of `allowed` when absent), one of `allowed`."""
    value = block.get(key, allowed[0])
    if not isinstance(value, str) or value not in allowed:
        dotted = ".".join((*prefix, key))
        raise ConfigError(
            f"{dotted}: expected one of {', '.join(allowed)}, got {value!r}",
            locate((*prefix, key)),
        )
    return value


def _database_block(block: Any, locate: Locate) -> DatabaseConfig:
    _expect(block, dict, ("database",), "a mapping (url or url_env)", locate)
    _unknown_keys(block, DATABASE_KEYS, ("database",), locate)
    url, url_env = block.get("url"), block.get("url_env")
    # Neither value is ever echoed: a URL may hold a password, and a url_env set by
    # mistake to the URL itself (or to the password) would show it.
    if url is not None:
        where = locate(("database", "url"))
        if not isinstance(url, str):
            raise ConfigError(
                f"database.url: expected a PostgreSQL URL, got {_kind_of(url)}", where
            )
        if has_password(url):
            raise ConfigError(
                "database.url: the URL holds a password; secrets must not be written in the "
                f"config file: put the URL in ${DATABASE_URL_ENV}, or in another variable "
                "named by database.url_env",
                where,
            )
        problem = database_url_problem(url)
        if problem:
            raise ConfigError(f"database.url: {problem}", where)
    if url_env is not None and (
        not isinstance(url_env, str) or not re.fullmatch(ENV_NAME, url_env)
    ):
        raise ConfigError(
            "database.url_env: not an environment variable name; name the variable that "
            "holds the URL, e.g. url_env: IMAGEN_QUEUE_URL",
            locate(("database", "url_env")),
        )
    where = locate(("database", "url_env")) if url_env else None
    return DatabaseConfig(url=url, url_env=url_env, url_env_where=where)


def _kind_of(value: Any) -> str:
    """What a YAML value is, in words, for errors that must not echo it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string" if isinstance(value, str) else type(value).__name__
