"""Open an image with the system's viewer (xdg-open, open, or the Windows shell).

`open_with_system_viewer` starts the viewer and returns at once: it never
waits for the viewer to exit (the viewer's process is detached into its own
session, its output discarded). Callers on an event loop still call it from
a thread: starting a process is a blocking call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def viewer_command(path: Path, platform: str = sys.platform) -> list[str] | None:
    """The command that opens `path`, or None when this system has no opener."""
    if platform == "darwin":
        return ["open", str(path)]
    opener = shutil.which("xdg-open")
    return None if opener is None else [opener, str(path)]


def open_with_system_viewer(path: Path) -> None:
    """Show `path` in the system's viewer; OSError when it cannot be started or is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file on this machine")
    if sys.platform == "win32":  # pragma: no cover - not a supported platform for the TUI
        os.startfile(path)  # type: ignore[attr-defined]
        return
    command = viewer_command(path)
    if command is None:
        raise OSError("no system viewer found (install xdg-utils for xdg-open)")
    subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
