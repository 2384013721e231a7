"""`LivePreviews`: the pictures of preview events, read and decoded off the loop.

A preview event (the app's `previews_signal`) only says a running job has a
new preview; a view that shows the job asks `LivePreviews.want(job_id)`. It
reads the picture through the session (`job_preview`, a small JPEG) and
decodes it in a thread worker, then hands it to the view's `show` on the
event loop. One read per job at a time: events that come while a read runs
make one more read after it, never a queue of them, so a slow database
drops previews instead of falling behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imagen_tui.errors import DatabaseError
from imagen_tui.tui.pictures import decode

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual.dom import DOMNode

    from imagen_tui.services import Session

# show(job_id, picture, step, total), on the event loop; picture None: none (any more)
Show = Callable[[int, "Picture | None", "int | None", "int | None"], None]


class LivePreviews:
    def __init__(self, node: DOMNode, session: Callable[[], Session], show: Show) -> None:
        self._node, self._session, self._show = node, session, show
        self._reading: set[int] = set()
        self._again: set[int] = set()

    def want(self, job_id: int) -> None:
        """Read job `job_id`'s latest preview (soon, once)."""
        if job_id in self._reading:
            self._again.add(job_id)
            return
        self._reading.add(job_id)
        self._node.run_worker(
            lambda: self._read(job_id),
            thread=True,
            group=f"preview-{job_id}",
            exit_on_error=False,
        )

    def _read(self, job_id: int) -> None:  # in a thread
        picture = step = total = None
        try:
            row = self._session().job_preview(job_id)
        except DatabaseError:
            row = None  # the listener sees the outage too; the final image comes anyway
        if row is not None:
            picture = decode.decode_thumbnail(row.jpeg)
            step, total = row.step, row.total
        self._node.app.call_from_thread(self._done, job_id, picture, step, total)

    def _done(
        self, job_id: int, picture: Picture | None, step: int | None, total: int | None
    ) -> None:
        self._reading.discard(job_id)
        if picture is not None:
            self._show(job_id, picture, step, total)
        if job_id in self._again:
            self._again.discard(job_id)
            self.want(job_id)
