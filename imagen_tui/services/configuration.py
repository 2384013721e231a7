"""Configuration reports: `imagen config show|check|init` and `imagen backends`.

`config_rows` names the database (the driver-side `redact` is imported only
there: `config check` and `backends` never load the database driver).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagen_tui.backends import registry
from imagen_tui.config import BUILTIN, Config, resolve_config_path, write_sample
from imagen_tui.config.secrets import redact_url
from imagen_tui.core.workbench import Workbench


@dataclass(frozen=True)
class ConfigRow:
    key: str  # dotted
    value: Any
    source: str  # file:line, "built-in default", "$VAR", ...


def config_rows(workbench: Workbench) -> list[ConfigRow]:
    """Every effective setting and where it came from (for `imagen config show`)."""
    from imagen_tui.db.connect import redact
    from imagen_tui.db.embedded import data_directory

    config = workbench.config
    rows = [
        ConfigRow(key, value, config.source(path))
        for key, value, path in (
            ("default_backend", config.default_backend, ("default_backend",)),
            ("output.directory", config.output.directory, ("output", "directory")),
            ("output.naming", config.output.naming, ("output", "naming")),
            ("output.series_naming", config.output.series_naming, ("output", "series_naming")),
            (
                "output.write_metadata_json",
                config.output.write_metadata_json,
                ("output", "write_metadata_json"),
            ),
        )
    ]
    url, origin = config.database.resolve()
    if url is None:
        rows.append(ConfigRow("database", f"embedded ({data_directory()})", BUILTIN))
    else:
        where = config.where(("database", "url")) if origin == "database.url" else origin
        rows.append(ConfigRow("database", redact(url), where or origin))
    for name, block in sorted(workbench.backend_blocks.items()):
        for key, value in block.items():
            path = ("backends", name, key)
            source = config.where(path) or (
                BUILTIN if key == "type" else f"default of type {block['type']}"
            )
            if key.endswith("url") and isinstance(value, str):
                value = redact_url(value)
            rows.append(ConfigRow(".".join(path), value, source))
    for name, style in config.styles.items():
        items = style.items() if isinstance(style, dict) else [("prompt", style)]
        for key, value in items:
            path = ("styles", name, key)
            rows.append(ConfigRow(".".join(path), value, config.source(path)))
    for setting in ("worker", "image_protocol", "theme"):
        key_path = ("tui", setting)
        value = getattr(config.tui, setting)
        rows.append(ConfigRow(f"tui.{setting}", value, config.source(key_path)))
    return rows


@dataclass(frozen=True)
class ConfigCheck:
    path: Path | None  # the file read; None: built-in defaults only
    default_path: Path  # where the file would be
    backends: int
    styles: int
    directory: Path
    warnings: list[str] = field(default_factory=list)


def check_config(workbench: Workbench, config_path: str | Path | None = None) -> ConfigCheck:
    """What `imagen config check` reports (loading the workbench checked the file)."""
    config = workbench.config
    config.database.resolve()  # a url_env naming an unset variable
    warnings = [
        f"backend {name} is {status}"
        for name in sorted(workbench.backend_blocks)
        if (status := workbench.backend_status(name)) != "ok"
    ]
    if (status := workbench.storage_settings.status) != "ok":
        warnings.append(f"{workbench.storage_settings.type} storage is {status}")
    return ConfigCheck(
        path=config.path,
        default_path=resolve_config_path(config_path)[0],
        backends=len(workbench.backend_blocks),
        styles=len(workbench.styles),
        directory=config.output.directory,
        warnings=warnings,
    )


def write_sample_config(config_path: str | Path | None, *, force: bool = False) -> Path:
    """Write the commented sample config where the config is looked for; its path."""
    path, _named = resolve_config_path(config_path)
    # What named the path, for an error: the flag, the variable, or neither (the default).
    field = None
    if config_path:
        field = "config"
    elif os.environ.get("IMAGEN_CONFIG"):
        field = "$IMAGEN_CONFIG"
    write_sample(path, force=force, field=field)
    return path


@dataclass(frozen=True)
class BackendRow:
    name: str
    type: str
    model: str
    default: bool
    status: str  # `ok`, `not configured (set VAR)`, or the probe's problem (`missing models`)
    # With `check`: what one live call found (None: the adapter has no check)
    check: str | None = None
    check_ok: bool | None = None
    # Further facts, one short line each: the adapter's probe (ComfyUI: reachable,
    # version, GPU and free VRAM, missing model files, ignored request fields),
    # then what a check reported.
    details: tuple[str, ...] = ()


def backend_rows(
    workbench: Workbench, *, check: bool = False, probe: bool = True
) -> list[BackendRow]:
    """Each configured instance and its status. `probe` asks each adapter for
    its extra facts (a local server, e.g. ComfyUI, may be asked); with `check`,
    each adapter that can makes one cheap live call (all at once) to say
    whether its credentials really work."""
    blocks = sorted(workbench.backend_blocks.items())
    checks: list[registry.Check | None] = [None] * len(blocks)
    if check:

        async def check_all() -> list[registry.Check | None]:
            return list(
                await asyncio.gather(*(registry.check(name, block) for name, block in blocks))
            )

        checks = asyncio.run(check_all())
    probes = [registry.details(block) if probe else registry.Probe() for _, block in blocks]
    return [
        BackendRow(
            name=name,
            type=str(block["type"]),
            model=registry.model_of(block),
            default=name == workbench.config.default_backend,
            # a problem the probe found (missing models) replaces `ok`
            status=_status(workbench.backend_status(name), probed.problem),
            check=found.summary if found else None,
            check_ok=found.ok if found else None,
            details=(*probed.lines, *(found.details if found else ())),
        )
        for (name, block), found, probed in zip(blocks, checks, probes, strict=True)
    ]


def _status(configured: str, problem: str | None) -> str:
    return problem if configured == "ok" and problem else configured


def config_env_names(config: Config) -> list[str]:
    """The environment variables the config names with `*_env` keys (a backend's
    api_token_env, api_key_env, auth_env..., the storage's key_env,
    database.url_env), sorted: what a worker run on this config may need from
    the environment beyond the basics (see services.local_worker.worker_env)."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(item, str):
                    names.add(item)
                else:
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(config.backends)
    walk(config.storage)
    if config.database.url_env:
        names.add(config.database.url_env)
    return sorted(name for name in names if name)
