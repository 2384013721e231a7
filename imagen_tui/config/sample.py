"""The commented sample config `imagen config init` writes."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from imagen_tui.config.loading import CONFIG_FILENAME
from imagen_tui.errors import InputError

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
# Secrets never go in this file: a backend that needs one names the
# environment variable holding it with a *_env key (mock needs none).
backends:
  mock:
    type: mock
    model: mock-v1
    # Simulated GPU time per image, in milliseconds.
    delay_ms: 0
  # FLUX on a local ComfyUI (docs/backends.md: which model files go where).
  # flux:
  #   type: comfyui
  #   url: http://127.0.0.1:8188
  #   workflow: flux-schnell      # flux-schnell | flux-dev | path/to/workflow_api.json
  #   layout: split               # split (UNET + CLIP-L + T5 + VAE) | checkpoint
  # Cloud backends (docs/backends.md: costs, sizes, what each records):
  # flux-cloud:
  #   type: replicate
  #   model: black-forest-labs/flux-schnell   # or owner/name:version
  #   api_token_env: REPLICATE_API_TOKEN
  # gpt:
  #   type: openai
  #   model: gpt-image-2                      # required: OpenAI retires models
  #   api_key_env: OPENAI_API_KEY

# Where workers keep images besides output.directory (default: nowhere else).
# storage:
#   type: supabase
#   url: https://PROJECT-REF.supabase.co
#   bucket: imagen
#   key_env: SUPABASE_SECRET_KEY

# The terminal workbench (imagen-tui).
tui:
  # auto: start a worker when jobs need a backend here no online worker serves
  # (stopped on exit);
  # never: only submit and watch (same as imagen-tui --no-worker).
  worker: auto
  # How images are drawn: auto, tgp (kitty graphics), sixel, halfcell, unicode.
  image_protocol: auto
  # A Textual theme; the one you pick in the app is remembered over this.
  theme: textual-dark
"""


def write_sample(path: Path, *, force: bool = False, field: str | None = None) -> None:
    """Write SAMPLE_CONFIG to `path`, making its missing directories.

    Refuses to replace a file unless `force`, and never replaces a directory.
    The file appears whole or not at all (a temporary file beside it, then a
    rename); on any failure the temporary file and the directories made here
    are removed again. `field` is what named the path (`config` for the
    `--config` flag, `$IMAGEN_CONFIG`), for the error; None for the default.
    """
    created: list[Path] = []
    temporary: str | None = None
    try:
        if path.is_dir():
            example = path / CONFIG_FILENAME
            raise InputError(field, f"{path} is a directory; name a file, e.g. {example}")
        if path.exists() and not force:
            raise InputError(field, f"{path} already exists; pass --force to overwrite it")
        mode = _mode_for(path)
        _make_directories(path.parent, created)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=".imagen-init-", suffix=".tmp"
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(SAMPLE_CONFIG)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
        temporary = None
    except BaseException as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()
        if isinstance(error, OSError):
            raise InputError(field, _cannot_write(path, error, field)) from None
        raise


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, else what the umask gives a new file."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _make_directories(directory: Path, created: list[Path]) -> None:
    """Make `directory` and its missing parents, recording each one made in `created`."""
    missing: list[Path] = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for each in reversed(missing):
        try:
            each.mkdir()
        except FileExistsError:
            if not each.is_dir():
                raise
            continue  # made by someone else meanwhile: not ours to remove
        created.append(each)


def _cannot_write(path: Path, error: OSError, field: str | None) -> str:
    """One line for an OSError met while writing `path`: what went wrong and the fix."""
    elsewhere = "choose another path" if field else "pass --config PATH to write it elsewhere"
    if isinstance(error, PermissionError):
        fix = "choose a directory" if field else "pass --config PATH in a directory"
        return f"cannot write {path}: permission denied; {fix} you can write to"
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"cannot write {path}: {blocker} is not a directory; {elsewhere}"
    reason = error.strerror or type(error).__name__
    return f"cannot write {path}: {reason[:1].lower()}{reason[1:]}; {elsewhere}"
