"""The workbench: a checked configuration, its style presets and its backends.

`open_workbench` loads the config and has each owner check its part (the
framework keys and secrets in `config`, every backend block against its
adapter's options in `backends.registry`, the naming templates in `naming`,
the style presets in `prompt`), so every front end sees the same errors.
Backend instances are built on first use and closed by `aclose`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imagen_tui.backends import registry
from imagen_tui.backends.base import Backend, Request
from imagen_tui.config import Config, load_config
from imagen_tui.core.naming import check_template
from imagen_tui.core.prompt import Style, load_styles, user_styles
from imagen_tui.errors import InputError
from imagen_tui.storage import Storage, StorageSettings, check_storage_block, open_storage


class Workbench:
    """A checked configuration with the backend instances built on demand."""

    def __init__(
        self,
        config: Config,
        user_styles: dict[str, Style],  # the config's `styles:` block, checked
        backend_blocks: dict[str, dict[str, Any]],  # instance -> validated block
        storage_settings: StorageSettings | None = None,  # None: local only
    ) -> None:
        self.config = config
        self.user_styles = user_styles
        self.backend_blocks = backend_blocks
        self.storage_settings = StorageSettings() if storage_settings is None else storage_settings
        self._backends: dict[str, Backend] = {}
        self._storage: Storage | None = None
        self._styles: dict[str, Style] | None = None

    def __repr__(self) -> str:
        return f"Workbench(config={self.config.path}, backends={sorted(self.backend_blocks)})"

    @property
    def styles(self) -> dict[str, Style]:
        """The shipped presets and the user's, by name. The shipped file is read on
        first use: a command that asks for no style never parses YAML."""
        if self._styles is None:
            self._styles = load_styles(self.config, self.user_styles)
        return self._styles

    def backend_block(self, name: str | None) -> tuple[str, Mapping[str, Any]]:
        """The instance to use (`name`, else the default) and its block; InputError if none."""
        name = name or self.config.default_backend
        block = self.backend_blocks.get(name)
        if block is None:
            known = ", ".join(sorted(self.backend_blocks))
            raise InputError("backend", f"no backend named {name!r}; configured: {known}")
        return name, block

    def only(self, names: Iterable[str]) -> Workbench:
        """This workbench with only these backend instances: what a worker the app
        started for some of them announces, claims and renders (a job with no
        backend gets the default only if that is one of them)."""
        keep = set(names)
        blocks = {name: block for name, block in self.backend_blocks.items() if name in keep}
        narrowed = Workbench(self.config, self.user_styles, blocks, self.storage_settings)
        narrowed._styles = self._styles
        return narrowed

    def backend_status(self, name: str) -> str:
        """`ok`, or what to do before the instance can run (`not configured (set VAR)`)."""
        return registry.status(self.backend_blocks[name])

    def ready_backends(self) -> tuple[str, ...]:
        """The instances that can run here now (status `ok`), sorted: what a worker
        on this config claims jobs for."""
        names = sorted(self.backend_blocks)
        return tuple(name for name in names if self.backend_status(name) == "ok")

    def ready_default(self) -> str | None:
        """The default instance if it can run here (a worker's answer to a job with
        no backend), else None."""
        name = self.config.default_backend
        return name if name in self.ready_backends() else None

    def check_request(self, name: str, request: Request) -> None:
        """InputError if instance `name` can never serve `request` (a size its model lacks)."""
        registry.check_request(self.backend_blocks[name], request)

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = registry.create(name, self.backend_blocks[name])
        return self._backends[name]

    def storage(self) -> Storage:
        """Where the worker keeps its images besides the output folder (built on first use)."""
        if self._storage is None:
            self._storage = open_storage(self.storage_settings)
        return self._storage

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()
        storage, self._storage = self._storage, None
        if storage is not None:
            await storage.aclose()


def open_workbench(config_path: str | Path | None = None) -> Workbench:
    """Load the config and check every block of it; raise ConfigError on the first fault."""
    config = load_config(config_path, registry.env_keys)
    blocks = {
        name: registry.validate_block(name, block, config.where)
        for name, block in config.backends.items()
    }
    output = config.output
    check_template(output.naming, where=config.where(("output", "naming")))
    check_template(
        output.series_naming,
        field="output.series_naming",
        where=config.where(("output", "series_naming")),
    )
    return Workbench(
        config=config,
        user_styles=user_styles(config),
        backend_blocks=blocks,
        storage_settings=check_storage_block(config.storage, config.where),
    )
