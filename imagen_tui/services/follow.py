"""`follow_jobs`: what happens to some jobs, event by event, until they end.

What `imagen jobs follow` prints (and any script waiting for a series): it
LISTENs on the job events (no polling), reads the jobs once when listening
starts (so nothing that happened before is missed), then re-reads a job
only when an event names it, and says what changed: its status, its
progress, a new live preview (from the event alone: the picture is not
read), and at the end the image's path or the error. After the listener
reconnects, every job is read again. The stream ends when every job has
finished (done, failed or canceled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from imagen_tui.core.events import Connected, Disconnected
from imagen_tui.core.rows import JobRow
from imagen_tui.errors import InputError
from imagen_tui.limits import FINISHED_STATUSES

if TYPE_CHECKING:
    from imagen_tui.services.sessions import Session

Kind = Literal["status", "progress", "preview", "done", "failed", "canceled", "link"]


@dataclass(frozen=True)
class FollowEvent:
    """One thing that happened to a followed job (`link`: the listener's state)."""

    kind: Kind
    job_id: int | None
    status: str | None = None
    progress: float | None = None
    step: int | None = None
    total: int | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None  # bytes of a preview
    path: Path | None = None
    error: str | None = None


def _progress(row: JobRow) -> FollowEvent:
    fraction = row.progress or 0.0
    step = total = None
    if row.steps:
        step, total = round(fraction * row.steps), row.steps
    return FollowEvent("progress", row.id, row.status, fraction, step, total)


def _end(row: JobRow) -> FollowEvent:
    if row.status == "done":
        return FollowEvent("done", row.id, row.status, path=row.path)
    if row.status == "failed":
        return FollowEvent("failed", row.id, row.status, error=row.error or "")
    return FollowEvent("canceled", row.id, row.status)


async def follow_jobs(session: Session, job_ids: Sequence[int]) -> AsyncIterator[FollowEvent]:
    """Events of `job_ids` until all have finished; InputError if one does not exist."""
    wanted = list(dict.fromkeys(job_ids))
    known: dict[int, JobRow] = {}
    events = session.events()

    def changes(row: JobRow) -> list[FollowEvent]:
        old = known.get(row.id)
        known[row.id] = row
        found: list[FollowEvent] = []
        if old is None or old.status != row.status:
            if row.status in FINISHED_STATUSES:
                found.append(_end(row))
            else:
                found.append(FollowEvent("status", row.id, row.status))
        if (
            row.status == "running"
            and row.progress is not None
            and (old is None or old.progress != row.progress)
        ):
            found.append(_progress(row))
        return found

    async def read(ids: list[int]) -> list[JobRow]:
        return await asyncio.to_thread(session.jobs_by_id, ids)

    def all_finished() -> bool:
        return all(known[i].status in FINISHED_STATUSES for i in wanted)

    try:
        async for item in events:
            if isinstance(item, Connected):
                if not item.first:
                    yield FollowEvent("link", None, "live")
                rows = await read(wanted)
                if item.first:
                    missing = sorted(set(wanted) - {row.id for row in rows})
                    if missing:
                        names = ", ".join(map(str, missing))
                        raise InputError("ID", f"no job {names} (see `imagen jobs`)")
                for row in sorted(rows, key=lambda r: wanted.index(r.id)):
                    for event in changes(row):
                        yield event
            elif isinstance(item, Disconnected):
                yield FollowEvent("link", None, "reconnecting", error=item.error)
                continue
            elif item.id not in known:
                continue  # another job's, or before the first read
            elif item.preview is not None:
                if known[item.id].status == "running":
                    note = item.preview
                    yield FollowEvent(
                        "preview",
                        item.id,
                        "running",
                        step=note.step,
                        total=note.total,
                        width=note.width,
                        height=note.height,
                        size=note.size,
                    )
                continue
            else:
                for row in await read([item.id]):
                    for event in changes(row):
                        yield event
            if known and all_finished():
                return
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
