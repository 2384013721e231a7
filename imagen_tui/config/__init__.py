"""The user's config file (`imagen.yaml`): finding, parsing and checking it."""

from imagen_tui.config.loading import (
    BUILTIN,
    DATABASE_URL_ENV,
    DEFAULT_NAMING,
    SAMPLE_CONFIG,
    Config,
    DatabaseConfig,
    KeyPath,
    Locate,
    OutputConfig,
    load_config,
    load_yaml,
    locator,
    resolve_config_path,
    write_sample,
)

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
    "load_config",
    "load_yaml",
    "locator",
    "resolve_config_path",
    "write_sample",
]
