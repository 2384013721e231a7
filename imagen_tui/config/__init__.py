"""The user's config file (`imagen.yaml`): finding, parsing and checking it.

One concern per module: `loading` (finding the file, parsing YAML with line
numbers, building `Config`), `secrets` (no secret may be written in the
file), `sample` (the sample `imagen config init` writes). Import from here.
"""

from imagen_tui.config.loading import (
    BUILTIN,
    DEFAULT_NAMING,
    Config,
    DatabaseConfig,
    KeyPath,
    Locate,
    OutputConfig,
    TuiConfig,
    load_config,
    load_yaml,
    locator,
    resolve_config_path,
)
from imagen_tui.config.sample import SAMPLE_CONFIG, write_sample
from imagen_tui.config.secrets import DATABASE_URL_ENV

__all__ = [
    "BUILTIN",
    "DATABASE_URL_ENV",
    "DEFAULT_NAMING",
    "SAMPLE_CONFIG",
    "Config",
    "DatabaseConfig",
    "KeyPath",
    "Locate",
    "OutputConfig",
    "TuiConfig",
    "load_config",
    "load_yaml",
    "locator",
    "resolve_config_path",
    "write_sample",
]
