"""Whether a ComfyUI instance sent live previews on its last run, remembered for
`imagen backends`.

A worker records, per server URL, whether the last prompt it ran there sent
preview frames (only when that changes, so not a write per job), in
`$XDG_STATE_HOME/imagen/comfyui-previews.json`. It is what this machine's
workers saw: a worker elsewhere keeps its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from imagen_tui.config.state import load_state, save_state
from imagen_tui.errors import InputError

SEEN_FILENAME = "comfyui-previews.json"
MAX_URLS = 100  # servers remembered; the oldest go first

log = logging.getLogger("imagen.worker")


@dataclass(frozen=True)
class Seen:
    previews: bool
    at: datetime


def seen_path() -> Path:
    return Path(platformdirs.user_state_dir("imagen")) / SEEN_FILENAME


def last_run(url: str, path: Path | None = None) -> Seen | None:
    """What the last run on `url` showed; None when unknown (or unreadable)."""
    entry = load_state(path or seen_path(), warn=lambda _: None).get(url.rstrip("/"))
    if not isinstance(entry, dict) or not isinstance(entry.get("previews"), bool):
        return None
    try:
        at = datetime.fromisoformat(str(entry.get("at")))
    except ValueError:
        return None
    return Seen(entry["previews"], at)


def record(url: str, previews: bool, path: Path | None = None) -> None:
    """Remember what a run on `url` showed (best effort: a failure is logged)."""
    path = path or seen_path()
    state = load_state(path, warn=lambda _: None)
    state[url.rstrip("/")] = {"previews": previews, "at": datetime.now(UTC).isoformat()}
    if len(state) > MAX_URLS:
        oldest = sorted(state, key=lambda key: str((state[key] or {}).get("at", "")))
        for key in oldest[: len(state) - MAX_URLS]:
            del state[key]
    try:
        save_state(state, path)
    except InputError as error:
        log.warning("could not remember whether %s sends previews: %s", url, error)
