"""What `imagen-tui` remembers between launches: the last form values and the
chosen theme, as one JSON object in `$XDG_STATE_HOME/imagen/tui-state.json`
(default `~/.local/state/imagen/tui-state.json`).

Written atomically (a private temporary file beside it, fsynced, then a
rename), so a crash leaves the old state or the new one, never half of each.
A file that cannot be read or is not a JSON object is ignored with a warning:
losing remembered form values must never stop the app from starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import platformdirs

from imagen_tui.errors import InputError

STATE_FILENAME = "tui-state.json"

log = logging.getLogger("imagen.tui")


def state_path() -> Path:
    return Path(platformdirs.user_state_dir("imagen")) / STATE_FILENAME


def load_state(
    path: Path | None = None, warn: Callable[[str], object] | None = None
) -> dict[str, Any]:
    """The remembered state; {} when there is none or it cannot be read (then
    `warn` is called with one line saying why; by default it is logged)."""
    path = path or state_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        return _ignored(path, f"cannot read it ({type(error).__name__}: {error})", warn)
    try:
        data = json.loads(text)
    except ValueError as error:
        return _ignored(path, f"not valid JSON ({error})", warn)
    if not isinstance(data, dict):
        return _ignored(path, "not a JSON object", warn)
    return data


def _ignored(path: Path, why: str, warn: Callable[[str], object] | None) -> dict[str, Any]:
    message = f"{path}: {why}; ignored (starting with defaults)"
    if warn is None:
        log.warning("%s", message)
    else:
        warn(message)
    return {}


def save_state(state: Mapping[str, Any], path: Path | None = None) -> Path:
    """Replace the remembered state with `state` (JSON values only); the file written.

    InputError (one line) when it cannot be written or holds a non-JSON value.
    """
    path = path or state_path()
    try:
        text = json.dumps(dict(state), indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InputError(None, f"cannot save the app's state: {error}") from None
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=".tui-state-", suffix=".tmp"
        )  # mode 0600: the form holds prompts
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(None, f"cannot save the app's state in {path}: {reason}") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    return path
