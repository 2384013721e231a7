"""The Jobs screen: the live job table, a status filter, cancel and retry.

Rows arrive through the app's `jobs` signal (re-read after each event); a
reload signal (database opened, listener back after a drop) re-reads the
page shown. Cancel and retry go through the same services as
`imagen jobs cancel|retry`. Enter opens the job's series; `e` recalls the
job's request into the Compose form, `a` queues it again with fresh seeds
(its series' tries). The table has the focus from the start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Header, Label, Select

from imagen_tui.errors import DatabaseError, InputError
from imagen_tui.limits import CANCELABLE_STATUSES, JOB_STATUSES, RETRYABLE_STATUSES
from imagen_tui.tui.messages import JobsUpdate
from imagen_tui.tui.screens.base import WorkbenchScreen
from imagen_tui.tui.widgets.footer import Footer
from imagen_tui.tui.widgets.job_table import JobTable

if TYPE_CHECKING:
    from imagen_tui.core.rows import JobRow

PAGE = 1000  # jobs loaded on a (re)load; newer ones arrive live on top


class JobsScreen(WorkbenchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_job", "Cancel job", id="cancel-job"),
        Binding("r", "retry_job", "Retry job", id="retry-job"),
        Binding("s", "next_filter", "Filter", id="filter-jobs"),
        Binding("enter", "open_series", "Open series", id="open-series"),
        Binding("e", "recall", "Recall", id="recall-job", tooltip="Fill the form with this job"),
        Binding("a", "again", "Again", id="again-job", tooltip="This request again, fresh seeds"),
    ]
    AUTO_FOCUS = "#jobs"  # the table, not the status filter (its arrows open a list)

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="jobs-bar"):
            yield Label("Status", classes="field-label")
            yield Select(
                [(status, status) for status in JOB_STATUSES],
                prompt="all",
                id="status-filter",
                compact=True,
            )
            yield Label("", id="jobs-count")
        yield JobTable(self.workbench_app.clock, id="jobs")
        yield Footer()

    def on_mount(self) -> None:
        app = self.workbench_app
        app.jobs_signal.subscribe(self, self._on_jobs)
        self.set_interval(1.0, self.table.tick)
        if app.session is not None:
            self._load()

    def _on_jobs(self, update: JobsUpdate) -> None:
        if update.reload:
            self._load()
        else:
            self.table.upsert(update.rows)
        self._count()
        self.refresh_bindings()  # the highlighted job may have changed status

    def _count(self) -> None:
        self.query_one("#jobs-count", Label).update(f"{self.table.row_count} shown")

    @work(thread=True, exclusive=True, group="jobs-load", exit_on_error=False)
    def _load(self) -> None:
        app = self.workbench_app
        try:
            rows = app.require_session().jobs(self.table.status_filter, PAGE)
        except DatabaseError as error:
            app.tell(str(error), title="Jobs", severity="error")
            return
        app.call_from_thread(self._show, rows)

    def _show(self, rows: list[JobRow]) -> None:
        self.table.show(rows)
        self._count()
        self.refresh_bindings()

    # ----------------------------------------------------------------- filter

    @on(Select.Changed, "#status-filter")
    def _filter(self, event: Select.Changed) -> None:
        self.table.status_filter = event.value if isinstance(event.value, str) else None
        self._load()

    def action_next_filter(self) -> None:
        choices: list[str | None] = [None, *JOB_STATUSES]
        now = choices.index(self.table.status_filter)
        chosen = choices[(now + 1) % len(choices)]
        self.query_one("#status-filter", Select).value = Select.NULL if chosen is None else chosen

    # ----------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.table.current_job if self.is_mounted else None
        if action == "cancel_job":
            return (job is not None and job.status in CANCELABLE_STATUSES) or None
        if action == "retry_job":
            return (job is not None and job.status in RETRYABLE_STATUSES) or None
        if action == "open_series":
            return (job is not None and job.series_id is not None) or None
        if action in ("recall", "again"):
            return job is not None or None
        return True

    @on(JobTable.RowHighlighted)
    def _refresh_bindings(self) -> None:
        self.refresh_bindings()

    def action_cancel_job(self) -> None:
        if (job := self.table.current_job) is not None:
            self._change(job.id, "cancel")

    def action_retry_job(self) -> None:
        if (job := self.table.current_job) is not None:
            self._change(job.id, "retry")

    @work(thread=True, group="job-change", exit_on_error=False)
    def _change(self, job_id: int, what: str) -> None:
        app = self.workbench_app
        session = app.require_session()
        try:
            changes = session.cancel([job_id]) if what == "cancel" else session.retry([job_id])
            rows = session.jobs_by_id([job_id])
        except (InputError, DatabaseError) as error:
            message = error.message if isinstance(error, InputError) else str(error)
            app.tell(message, title=f"Job {job_id}", severity="warning")
            return
        verb = "canceled" if what == "cancel" else "queued again"
        if changes:
            app.notify(f"Job {job_id} {verb}", title="Jobs")
        app.call_from_thread(self.table.upsert, rows)

    def action_recall(self) -> None:
        if (job := self.table.current_job) is not None:
            self.workbench_app.recall(job_id=job.id)

    def action_again(self) -> None:
        if (job := self.table.current_job) is not None:
            self.workbench_app.again(job_id=job.id)

    def action_open_series(self) -> None:
        job = self.table.current_job
        if job is not None and job.series_id is not None:
            self.workbench_app.show_series(job.series_id)
