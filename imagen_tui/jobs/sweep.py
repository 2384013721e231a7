"""The worker's start-up sweep of its output folder: what a killed run left behind.

A render writes its image through a hidden `.part` temp file (see
`core.output`). When the process is killed, two things can stay:

- a stale temp file, never linked to a name: removed once it is older than
  STALE_TEMP_S (a live writer finishes its temp file within seconds);
- a *journal link* `.imagen-journal-<job>-<lease>-*.part`: the worker keeps
  one beside each image until the image's database row is committed. A link
  left behind means the worker died between writing the image and knowing
  whether its row was committed. The sweep asks the database: while the lease
  is still alive the link is left alone (another worker process may share the
  folder); otherwise the image is kept if the job's images row points at it,
  and removed (with its sidecar) only when the database says for certain
  that nothing refers to it. The link itself goes in both cases, and so does
  a journal-named temp file that never got a name (a kill mid-write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagen_tui.core.metadata import sidecar_path
from imagen_tui.core.output import TEMP_SUFFIX, journal_token
from imagen_tui.jobs.types import Queue, parse_journal

STALE_TEMP_S = 15 * 60


@dataclass(frozen=True)
class _Journal:
    link: Path
    job_id: int
    lease: str


@dataclass
class SweepReport:
    stale_temp_files: int = 0  # removed
    orphan_images: list[Path] = field(default_factory=list)  # removed: no row refers to them
    recorded_images: int = 0  # kept: their row was committed; only the link went
    live: int = 0  # left alone: their lease is still running

    def __bool__(self) -> bool:
        return bool(self.stale_temp_files or self.orphan_images or self.recorded_images)


def _scan(directory: Path, now: float) -> tuple[list[Path], list[_Journal]]:
    """Stale temp files and journal links under `directory`."""
    stale: list[Path] = []
    journals: list[_Journal] = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                continue
            path = Path(root, name)
            token = journal_token(name)
            parsed = parse_journal(token) if token else None
            if parsed is not None:
                journals.append(_Journal(path, *parsed))
                continue
            with contextlib.suppress(FileNotFoundError):  # its writer just finished
                if path.lstat().st_mtime < now - STALE_TEMP_S:
                    stale.append(path)
    return stale, journals


def _images_linked_to(link: Path) -> list[Path]:
    """The other names of the file `link` is a hard link to (in its own folder)."""
    try:
        info = link.lstat()
    except FileNotFoundError:
        return []
    if info.st_nlink < 2:
        return []
    found = []
    with os.scandir(link.parent) as entries:
        for entry in entries:
            if entry.name == link.name or not entry.is_file(follow_symlinks=False):
                continue
            other = entry.stat(follow_symlinks=False)
            if (other.st_ino, other.st_dev) == (info.st_ino, info.st_dev):
                found.append(Path(entry.path))
    return found


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def sweep(directory: Path, queue: Queue, log: logging.Logger) -> SweepReport:
    """Clean up after killed runs in `directory` (see the module doc); never raises
    for a file that vanished meanwhile. Database errors propagate (QueueError)."""
    report = SweepReport()
    root = directory.expanduser().resolve()  # images rows hold resolved file URIs
    if not root.is_dir():
        return report
    stale, journals = await asyncio.to_thread(_scan, root, time.time())
    await asyncio.to_thread(_unlink, *stale)
    report.stale_temp_files = len(stale)
    if journals:
        live = await queue.live_leases(sorted({j.lease for j in journals}))
        dead = [j for j in journals if j.lease not in live]
        report.live = len(journals) - len(dead)
        recorded = await queue.recorded_files(sorted({j.job_id for j in dead})) if dead else set()
        for journal in dead:
            for image in await asyncio.to_thread(_images_linked_to, journal.link):
                if image.as_uri() in recorded:
                    report.recorded_images += 1
                else:
                    await asyncio.to_thread(_unlink, image, sidecar_path(image))
                    report.orphan_images.append(image)
            await asyncio.to_thread(_unlink, journal.link)
    if report:
        log.warning(
            "output folder %s: removed %d stale temp file(s) and %d image(s) no job "
            "recorded (left by a killed run); kept %d recorded image(s)",
            root,
            report.stale_temp_files,
            len(report.orphan_images),
            report.recorded_images,
        )
    return report
