"""A backend's progress, forwarded to the job row at a bounded rate.

Every progress write notifies the live views (`imagen_job_events`), and each
notifying commit takes a database-wide lock, so a sampler reporting 50 steps
a second is reduced to at most one write per interval (two per second by
default), always ending on the latest value.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from imagen_tui.jobs.types import Job, Queue, QueueError
from imagen_tui.limits import PROGRESS_INTERVAL_S


class ProgressWriter:
    """Forwards a backend's progress to the job row, at most once per interval."""

    def __init__(self, queue: Queue, job: Job, interval: float = PROGRESS_INTERVAL_S) -> None:
        self._queue, self._job, self._interval = queue, job, interval
        self._loop = asyncio.get_running_loop()
        self._latest: float | None = None
        self._last_sent = 0.0
        self._task: asyncio.Task[None] | None = None

    def report(self, fraction: float) -> None:
        """The backend's callback: safe to call from any thread, returns at once."""
        self._loop.call_soon_threadsafe(self._update, fraction)

    def _update(self, fraction: float) -> None:
        self._latest = min(max(fraction, 0.0), 1.0)
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(max(0.0, self._last_sent + self._interval - time.monotonic()))
        value, self._latest, self._task = self._latest, None, None
        self._last_sent = time.monotonic()
        if value is not None:
            with contextlib.suppress(QueueError):  # progress is best effort
                await self._queue.progress(self._job, value)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
