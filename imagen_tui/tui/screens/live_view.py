"""The full-screen view of a try still rendering: its latest live preview.

Opened with `f` on a running (or pending) tile. It shows the job's latest
preview as large as the screen allows, with the progress bar and the step,
each new one read on its preview event (`tui/previews.py`); when the job
finishes with an image, the full-screen image view replaces it, so the
final image takes the preview's place. A job that fails or is canceled says
so here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from imagen_tui.errors import DatabaseError, InputError
from imagen_tui.limits import FINISHED_STATUSES
from imagen_tui.text import one_line
from imagen_tui.tui import cells
from imagen_tui.tui.pictures import decode, protocol
from imagen_tui.tui.previews import LivePreviews
from imagen_tui.tui.screens.base import WorkbenchScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen, ViewItem
from imagen_tui.tui.widgets.footer import Footer

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual.events import Resize

    from imagen_tui.core.events import JobEvent
    from imagen_tui.core.rows import ImageRow
    from imagen_tui.tui.messages import JobsUpdate
    from imagen_tui.tui.pictures.protocol import PictureWidget


class LiveViewScreen(WorkbenchScreen):
    """A running try, full screen: its live preview until its image comes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f,q", "close", "Close", id="close-live-view"),
    ]

    def __init__(
        self,
        job_id: int,
        series_id: int,
        title: str,
        status: str,
        progress: float | None,
    ) -> None:
        super().__init__(classes="live-view")
        self.job_id, self.series_id, self.title_text = job_id, series_id, title
        self.status, self.progress = status, progress
        self.preview: Picture | None = None
        self._step: tuple[int | None, int | None] = (None, None)
        self._image: PictureWidget | None = None
        self._previews = LivePreviews(
            self, lambda: self.workbench_app.require_session(), self._show_preview
        )

    def compose(self) -> ComposeResult:
        yield Static(Text(one_line(self.title_text, 200)), id="live-view-title")
        with Vertical(id="live-view-picture"):
            yield Static(self._status_text(), id="live-view-status")
        yield Footer()

    def on_mount(self) -> None:
        app = self.workbench_app
        app.previews_signal.subscribe(self, self._on_preview)
        app.jobs_signal.subscribe(self, self._on_jobs)
        self._previews.want(self.job_id)  # the one it has now, if any

    def on_resize(self, event: Resize) -> None:
        self._size_picture()

    # ----------------------------------------------------------------- live

    def _on_preview(self, event: JobEvent) -> None:
        if event.id == self.job_id:
            if event.progress is not None:
                self.progress = event.progress
            self._previews.want(self.job_id)

    def _on_jobs(self, update: JobsUpdate) -> None:
        row = next((r for r in update.rows if r.id == self.job_id), None)
        if row is None:
            return
        self.status, self.progress = row.status, row.progress
        if row.status != "running":
            self.preview = None
        if row.status == "done" and row.image_id is not None:
            self._final(self.series_id, row.image_id)
        self._refresh()

    def _show_preview(
        self, job_id: int, picture: Picture | None, step: int | None, total: int | None
    ) -> None:
        if job_id != self.job_id or self.status in FINISHED_STATUSES:
            return
        self.status = "running"
        self.preview, self._step = picture, (step, total)
        self._refresh()

    @work(thread=True, exclusive=True, group="live-view-final", exit_on_error=False)
    def _final(self, series_id: int, image_id: int) -> None:
        try:
            rows = self.workbench_app.require_session().series_images(series_id)
        except (DatabaseError, InputError):
            return
        image = next((row for row in rows if row.id == image_id), None)
        if image is not None:
            thumbnail = decode.decode_thumbnail(image.thumbnail)
            self.app.call_from_thread(self._replace, image, thumbnail)

    def _replace(self, image: ImageRow, thumbnail: Picture | None) -> None:
        """The final image takes the preview's place: the image view, in this one's."""
        if self.is_current:
            self.app.switch_screen(ImageViewScreen([ViewItem(self.title_text, image, thumbnail)]))

    # ----------------------------------------------------------------- drawing

    def _status_text(self) -> Text:
        text = Text()
        text.append_text(cells.status(self.status))
        text.append("  ")
        text.append_text(cells.progress_bar(self.progress, self.status, width=20))
        step, total = self._step
        if step is not None and total is not None:
            text.append(f"  step {step}/{total}", style="dim")
        if self.preview is None and self.status in ("pending", "running"):
            text.append("\nno preview yet", style="dim")
        return text

    def _refresh(self) -> None:
        self.query_one("#live-view-status", Static).update(self._status_text())
        picture = self.preview
        if picture is None:
            if self._image is not None:
                self._image.remove()
                self._image = None
            return
        if self._image is None:
            self._image = protocol.new_picture(picture, id="live-view-image")
            self.query_one("#live-view-picture", Vertical).mount(self._image)
        else:
            self._image.image = picture
        self._size_picture()

    def _size_picture(self) -> None:
        if self._image is None or self.preview is None:
            return
        region = self.query_one("#live-view-picture", Vertical).content_region
        box = protocol.cell_box(self.preview.size, max(4, region.width), max(2, region.height - 2))
        self._image.styles.width, self._image.styles.height = box

    def action_close(self) -> None:
        self.dismiss(None)
