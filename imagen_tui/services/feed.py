"""`JobFeed`: LISTEN/NOTIFY events turned into fresh job rows for the screens.

An event is a hint that a job changed; the feed re-reads the rows its events
name (one query per batch) and hands them on. Bursts coalesce: while a batch
is being read, new events queue up by job id, so a job's latest event
replaces its older queued one and a flood becomes a few reads. After the
listener reconnects, events sent while it was away are lost, so the feed
asks for one reload of everything shown.

A preview event (a running job has a new live preview) re-reads nothing: it
goes to `on_preview` as it came, for the views that show that job to read the
picture (`Session.job_preview`) if they want it. So previews never cost the
job table a query.

It also spots what deserves a notification: a job that failed and a series
whose every try has finished, each once (again after a retry).

No front end's code: what it finds goes to the callbacks it was given (the
TUI publishes the updates to its screens and shows the notices; a CLI
follower could print them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from imagen_tui.core.events import Connected, Disconnected, JobEvent
from imagen_tui.core.rows import JobRow
from imagen_tui.errors import DatabaseError, InputError
from imagen_tui.limits import FINISHED_STATUSES

if TYPE_CHECKING:
    from imagen_tui.services.sessions import Session

log = logging.getLogger("imagen.tui")


@dataclass(frozen=True)
class JobsUpdate:
    """Jobs re-read after their events. `reload`: re-read everything you show
    (the database just opened, or the listener reconnected and may have missed
    events)."""

    rows: tuple[JobRow, ...] = ()
    reload: bool = False


@dataclass(frozen=True)
class Notice:
    """Something worth telling the user (the words of Textual's severities)."""

    title: str
    message: str
    severity: Literal["information", "warning", "error"] = "information"


class JobFeed:
    """Follows `session.events()`: `on_update` gets re-read rows (or a reload
    request), `on_link` the listener's state, `on_notice` what is news."""

    def __init__(
        self,
        session: Session,
        *,
        on_update: Callable[[JobsUpdate], None],
        on_link: Callable[[bool, str], None],
        on_notice: Callable[[Notice], None],
        on_preview: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self._session = session
        self._on_update, self._on_link, self._on_notice = on_update, on_link, on_notice
        self._on_preview = on_preview
        self._pending: dict[int, JobEvent] = {}
        self._reading: asyncio.Task[None] | None = None
        self._failed_seen: set[int] = set()
        self._series_seen: set[int] = set()

    async def run(self) -> None:
        """Follow the events until cancelled (the app's worker is)."""
        async for item in self._session.events():
            if isinstance(item, JobEvent) and item.preview is not None:
                if self._on_preview is not None:
                    self._on_preview(item)
            elif isinstance(item, JobEvent):
                if item.status not in FINISHED_STATUSES:  # retried, or running: news again later
                    self._failed_seen.discard(item.id)
                    if item.series_id is not None:
                        self._series_seen.discard(item.series_id)
                self._pending[item.id] = item
                if self._reading is None:
                    self._reading = asyncio.create_task(self._read())
            elif isinstance(item, Connected):
                self._on_link(True, "")
                if not item.first:
                    self._on_update(JobsUpdate(reload=True))
            elif isinstance(item, Disconnected):
                self._on_link(False, item.error)

    async def _read(self) -> None:
        try:
            while self._pending:
                events, self._pending = self._pending, {}
                try:
                    rows = await asyncio.to_thread(self._session.jobs_by_id, list(events))
                except DatabaseError as error:
                    # The listener sees the same outage and asks for a reload when back.
                    log.info("re-reading %d jobs failed: %s", len(events), error)
                    return
                self._on_update(JobsUpdate(tuple(rows)))
                await self._notice(rows)
        finally:
            self._reading = None

    async def _notice(self, rows: list[JobRow]) -> None:
        finished_series = set()
        for row in rows:
            if row.status == "failed" and row.id not in self._failed_seen:
                self._failed_seen.add(row.id)
                self._on_notice(Notice(f"Job {row.id} failed", row.error or "", "error"))
            if row.status in FINISHED_STATUSES and row.series_id is not None:
                finished_series.add(row.series_id)
        for series_id in sorted(finished_series - self._series_seen):
            try:
                detail = await asyncio.to_thread(self._session.series_detail, series_id)
            except (DatabaseError, InputError):  # unreachable, or deleted meanwhile
                continue
            if all(t.status in FINISHED_STATUSES for t in detail.tries):
                self._series_seen.add(series_id)
                done = sum(t.status == "done" for t in detail.tries)
                self._on_notice(
                    Notice(
                        f"Series {series_id} complete",
                        f"{done} of {len(detail.tries)} tries done",
                    )
                )
