"""The commented sample config `imagen config init` writes."""

from __future__ import annotations

import os
from pathlib import Path

from imagen_tui.errors import ConfigError

SAMPLE_CONFIG = """\
# ImaGen configuration. Every key is optional: delete what you do not need.
# Reference: docs/config.md. Check this file with `imagen config check`.

# The backend instance `imagen generate` uses when --backend is not given.
default_backend: mock

output:
  # Where images go (~ and $VARS are expanded; relative paths are relative
  # to this file). Default: your pictures directory + /imagen.
  # directory: ~/Pictures/imagen
  # File name template, no extension. Tokens: {date} {time} {datetime}
  # {slug} {seed} {backend} {model} {width} {height} {idx} {series} {style}.
  # A "/" makes subdirectories. Existing files are never overwritten.
  naming: "{date}/{time}_{slug}_{seed}"
  # The tries of one queued series share a folder of their own; here {date}
  # and {time} are when the series was submitted.
  series_naming: "{date}/series-{series}_{slug}/{idx:02d}_{seed}"
  # Write <image>.json beside each image with the full parameters.
  write_metadata_json: true

# Your own style presets; they extend (or, by name, override) the shipped
# ones listed by `imagen styles`. {prompt} marks where your prompt goes.
styles:
  my-poster:
    description: Bold flat poster
    prompt: "{prompt}, bold flat vector poster, limited palette, strong shapes"
    negative: "photo, gradients, text"
    size: 768x1024

# Backend instances: name -> {type, ...options of that type}.
# Secrets never go in this file: name the environment variable that holds
# them with a *_env key (e.g. api_token_env: REPLICATE_API_TOKEN).
backends:
  mock:
    type: mock
    model: mock-v1
    # Simulated GPU time per image, in milliseconds.
    delay_ms: 0
"""


def write_sample(path: Path, *, force: bool = False) -> None:
    """Write SAMPLE_CONFIG to `path`; refuse to replace a file unless `force`."""
    if path.exists() and not force:
        raise ConfigError("already exists; pass --force to overwrite it", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(SAMPLE_CONFIG, encoding="utf-8")
    os.replace(tmp, path)
