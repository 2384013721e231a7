"""A backend's progress, forwarded to the job row at a bounded rate.

Every progress write notifies the live views (`imagen_job_events`), and each
notifying commit takes a database-wide lock, so a sampler reporting 50 steps
a second is reduced to at most one write per interval (two per second by
default), always ending on the latest value.

Previews (a backend's picture of the generation so far) go to the job's
preview row, at most one per `preview_interval` per job: a preview that comes
sooner, or while the previous one is still being shrunk or written, is
dropped on the spot, never queued, so a backend sending one per step never
waits for the database and nothing piles up. The shrinking (decode, at most
256 px, JPEG) runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from imagen_tui.backends.base import Preview
from imagen_tui.backends.blocking import run_blocking
from imagen_tui.core.thumbnails import shrink_preview
from imagen_tui.jobs.types import Job, PreviewImage, Queue, QueueError
from imagen_tui.limits import (
    PREVIEW_INTERVAL_S,
    PREVIEW_JPEG_QUALITY,
    PREVIEW_MAX_BYTES,
    PREVIEW_MAX_SIDE,
    PROGRESS_INTERVAL_S,
)

log = logging.getLogger("imagen.worker")
PREVIEW_CLOSE_WAIT_S = 2.0  # a job's end waits this long at most for its last preview write


class ProgressWriter:
    """Forwards a backend's progress to the job row, at most once per interval."""

    def __init__(
        self,
        queue: Queue,
        job: Job,
        interval: float = PROGRESS_INTERVAL_S,
        preview_interval: float = PREVIEW_INTERVAL_S,
    ) -> None:
        self._queue, self._job, self._interval = queue, job, interval
        self._loop = asyncio.get_running_loop()
        self._latest: float | None = None
        self._last_sent = 0.0
        self._task: asyncio.Task[None] | None = None
        self._preview_interval = preview_interval
        self._preview_lock = threading.Lock()
        self._preview_busy = False
        self._preview_at = -preview_interval  # when the last preview was taken (monotonic)
        self._preview_task: asyncio.Task[None] | None = None
        self._closed = False
        self.previews_taken = 0
        self.previews_dropped = 0
        self.previews_written = 0

    def report(self, fraction: float, preview: Preview | None = None) -> None:
        """The backend's callback: safe to call from any thread, returns at once."""
        self._loop.call_soon_threadsafe(self._update, fraction)
        if preview is None:
            return
        with self._preview_lock:
            now = time.monotonic()
            if self._closed:
                return  # the job's run is over: its preview row is gone for good
            if self._preview_busy or now - self._preview_at < self._preview_interval:
                self.previews_dropped += 1
                return
            self._preview_busy, self._preview_at = True, now
            self.previews_taken += 1
        self._loop.call_soon_threadsafe(self._start_preview, preview)

    def _start_preview(self, preview: Preview) -> None:
        self._preview_task = asyncio.create_task(self._keep_preview(preview))

    async def _keep_preview(self, preview: Preview) -> None:
        try:
            shrunk = await run_blocking(
                shrink_preview, preview.image, PREVIEW_MAX_SIDE, PREVIEW_JPEG_QUALITY
            )
            if shrunk is None or len(shrunk[0]) > PREVIEW_MAX_BYTES:
                log.debug("job %d: preview dropped (not a small readable image)", self._job.id)
                return
            jpeg, width, height = shrunk
            image = PreviewImage(jpeg, width, height, preview.step, preview.total)
            with contextlib.suppress(QueueError):  # previews are best effort
                if await self._queue.preview(self._job, image):
                    self.previews_written += 1
        finally:
            with self._preview_lock:
                self._preview_busy = False

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
        with self._preview_lock:
            self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        preview = self._preview_task
        if preview is not None and not preview.done():
            # A preview being written lands before the job's result (whose status
            # change deletes it); one stuck on a dead database is given up.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(preview, PREVIEW_CLOSE_WAIT_S)
