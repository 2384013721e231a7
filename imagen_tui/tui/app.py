"""`WorkbenchApp`: the Textual app behind `imagen-tui`.

The app owns the connections and hands screens what they need:

- `session`: a `services.Session`, opened in a thread from the moment the
  app is built (the embedded server may need a second to start); screens
  call it from their own thread workers, never on the event loop.
- `jobs_signal`: fresh job rows from the `JobFeed` (LISTEN on
  `imagen_job_events`), or a reload request after a reconnect.
- `previews_signal`: preview events (a running job has a new live preview);
  the views showing that job read the picture (`tui/previews.py`).
- the header's subtitle: the database, the listener's state and the worker.
- the in-app worker: when given a `worker_keeper` (services.WorkerKeeper),
  a check in a thread at start, every poll interval and after each submit
  starts a child `imagen-tui --headless-worker` when this config's backends
  need one and no online worker serves them, restarts one that died, and
  puts the truth in the header; its workers stop on exit.

Screens (one per mode: compose, jobs, series, gallery, usage) hold their
own bindings; every binding is also a command palette entry.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Protocol, runtime_checkable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.signal import Signal
from textual.widget import AwaitMount
from textual.worker import Worker, WorkerState

from imagen_tui import services
from imagen_tui.core.events import JobEvent
from imagen_tui.core.rows import Recalled
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import DatabaseError, ImagenError, InputError
from imagen_tui.services.feed import JobFeed, Notice
from imagen_tui.text import one_line
from imagen_tui.tui.fastpaths import fell_back
from imagen_tui.tui.messages import DatabaseFailed, DatabaseReady, JobsUpdate, SeriesSubmitted
from imagen_tui.tui.pictures import decode
from imagen_tui.tui.screens.compose import ComposeScreen
from imagen_tui.tui.screens.gallery import GalleryScreen
from imagen_tui.tui.screens.jobs import JobsScreen
from imagen_tui.tui.screens.series import SeriesScreen
from imagen_tui.tui.screens.usage import UsageScreen
from imagen_tui.tui.styles import stylesheet

log = logging.getLogger("imagen.tui")
_opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagen-open-db")

# How long the event loop may hold the GIL while a thread worker waits for it.
# A worker reading the database or decoding a thumbnail gives the GIL up and
# takes it back many times; at Python's default (5 ms) each time costs a full
# interval whenever the loop is busy drawing, which made a grid's data arrive
# 150 ms late on the first visit to the Series screen.
SWITCH_INTERVAL_S = 0.001


def _styled_at_registration(app: App[Any], screen: Screen[Any]) -> bool:
    """Spare a screen's first showing Textual's two full CSS refreshes.

    Textual restyles the whole app (reparse every stylesheet, re-apply it to
    every widget of every screen: 60 ms here) when it shows a screen whose
    CSS count lags the app's, as a screen never shown does. A screen about to
    be registered gets the current stylesheet applied to each of its widgets
    as they mount, so it is up to date: mark it so. (Private in Textual 8.2:
    when the counts are not there as integers, Textual restyles as usual and
    this says so in `fastpaths`.) True when the screen was marked."""
    app_count = getattr(app, "_css_update_count", None)
    screen_count = getattr(screen, "_css_update_count", None)
    if not (isinstance(app_count, int) and isinstance(screen_count, int)):
        fell_back("restyle on first visit")
        return False
    screen._css_update_count = app_count
    return True


class WorkerChecked(Message):
    """A worker check ended: its report, or the one-line error that stopped it."""

    def __init__(self, report: services.WorkerReport | None, error: str = "") -> None:
        super().__init__()
        self.report = report
        self.error = error


@runtime_checkable
class Finishing(Protocol):
    """A worker the app can let finish on quit (`services.LocalWorker`)."""

    @property
    def worker_id(self) -> str: ...

    def alive(self) -> bool: ...

    def request_stop(self) -> None: ...

    def wait_exit(self, timeout: float) -> bool: ...


class Keeper(Protocol):
    """Keeps the app's own workers right (services.WorkerKeeper)."""

    @property
    def poll_interval(self) -> float: ...

    def check(self, abort: threading.Event) -> services.WorkerReport: ...

    def running(self) -> Sequence[Finishing]: ...

    def stop(self) -> Any: ...


def finishing_text(job_ids: Sequence[int]) -> str:
    """What a quitting app waits for: `finishing job 12 (ctrl+q again hands it back)`."""
    if len(job_ids) == 1:
        return f"finishing job {job_ids[0]} (ctrl+q again hands it back)"
    listed = ", ".join(str(job_id) for job_id in job_ids)
    return f"finishing jobs {listed} (ctrl+q again hands them back)"


def _close_session(opened: Future[services.Session]) -> None:
    if not opened.cancelled() and opened.exception() is None:
        opened.result().close()


class WorkbenchApp(App[None]):
    TITLE = "ImaGen"
    CSS_PATH: ClassVar[list[str | Any]] = [
        stylesheet("app"),
        stylesheet("compose"),
        stylesheet("jobs"),
        stylesheet("series"),
        stylesheet("gallery"),
        stylesheet("usage"),
        stylesheet("previews"),
    ]
    # The first screen is built with the app; the others are installed in
    # on_mount (see switch_mode) and built on their first visit.
    MODES: ClassVar[dict[str, Any]] = {
        "compose": ComposeScreen,
        "jobs": "jobs",
        "series": "series",
        "gallery": "gallery",
        "usage": "usage",
    }
    LATER_SCREENS: ClassVar[dict[str, type[Screen[Any]]]] = {
        "jobs": JobsScreen,
        "series": SeriesScreen,
        "gallery": GalleryScreen,
        "usage": UsageScreen,
    }
    DEFAULT_MODE = "compose"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "switch_mode('compose')", "Compose", id="go-compose"),
        Binding("f2", "switch_mode('jobs')", "Jobs", id="go-jobs"),
        Binding("f3", "switch_mode('series')", "Series", id="go-series"),
        Binding("f4", "switch_mode('gallery')", "Gallery", id="go-gallery"),
        Binding("f5", "switch_mode('usage')", "Usage", id="go-usage"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    ]

    def __init__(
        self,
        workbench: Workbench,
        *,
        open_session: Callable[[], services.Session] | None = None,
        worker_keeper: Keeper | None = None,
        clock: Callable[[], datetime] | None = None,
        state: dict[str, Any] | None = None,
        save_state: Callable[[dict[str, Any]], object] | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.workbench = workbench
        self.session: services.Session | None = None
        self.worker_keeper = worker_keeper
        self.state: dict[str, Any] = dict(state or {})
        self.clock = clock or (lambda: datetime.now(UTC))
        # The database opens while Textual starts: the embedded server may take a
        # second, and the driver's import alone is a tenth of one.
        # (`services.open_session` is looked up in the thread: its module loads the driver.)
        self._session_future: Future[services.Session] = _opener.submit(
            open_session or (lambda: services.open_session(workbench))
        )
        _opener.submit(decode.prepare_decoders)  # then, not on the first grid's clock
        self._worker_busy = False  # a check is under way (event loop only)
        self._worker_again = False  # another was asked for meanwhile
        self._worker_error = ""  # the last check error told (told once, not every poll)
        self._save_state = save_state
        self._notes = list(notes)  # warnings from before the app ran, shown once it does
        self._worker_abort = threading.Event()
        self._quit_presses = 0  # ctrl+q while this app's worker renders: 1 finish, 2 hand back
        self._gone = threading.Event()  # unmounted: thread workers must not call in any more
        self._switch_interval = sys.getswitchinterval()  # restored on unmount
        self._status = {"database": "opening the database…", "link": "", "worker": ""}
        self.database_error: str | None = None  # why the database could not be opened
        self.jobs_signal: Signal[JobsUpdate] = Signal(self, "jobs")
        # A running job has a new live preview (the event only: views read the picture).
        self.previews_signal: Signal[JobEvent] = Signal(self, "previews")
        self.log_path: str | None = None  # where `imagen.tui` logs (run_app sets it)
        self._apply_theme()

    def _apply_theme(self) -> None:
        """The theme last chosen in the app, else the config's `tui.theme`."""
        configured = self.workbench.config.tui.theme
        for theme in (self.state.get("theme"), configured):
            if isinstance(theme, str) and theme in self.available_themes:
                self.theme = theme
                break
        if configured not in self.available_themes:
            self._notes.append(
                f"tui.theme: there is no theme {configured!r}; "
                f"use one of {', '.join(sorted(self.available_themes))}"
            )

    # ----------------------------------------------------------------- start

    def on_mount(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        for mode, screen_class in self.LATER_SCREENS.items():
            self.install_screen(screen_class(), mode)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self._show_status()
        for note in self._notes:
            self.tell(note, title="Settings", severity="warning")
        self._open_database()

    @work(thread=True, exclusive=True, group="database", exit_on_error=False)
    def _open_database(self) -> None:
        try:
            session = self._session_future.result()
        except ImagenError as error:  # one line: no database, bad URL, schema too old
            self.post_message(DatabaseFailed(str(error)))
            return
        self.post_message(DatabaseReady(session))

    def on_database_ready(self, message: DatabaseReady) -> None:
        self.session = message.session
        self._set_status("database", "database open")
        self._follow_jobs()
        if self.worker_keeper is not None:
            self._set_status("worker", "worker: checking…")
            self.check_worker()
            self.set_interval(self.worker_keeper.poll_interval, self.check_worker)
        else:
            self._set_status("worker", "watching only (no worker started)")
        self.jobs_signal.publish(JobsUpdate(reload=True))
        self.call_after_refresh(self._settle_heap)

    @staticmethod
    def _settle_heap() -> None:
        """Exempt what start-up built (modules, classes, styles: ~100,000 objects that live
        as long as the app) from the garbage collector's full passes, which
        otherwise walk all of it each time: 40-75 ms pauses, measured in the
        middle of a grid's first paint."""
        gc.freeze()

    def on_database_failed(self, message: DatabaseFailed) -> None:
        """Said once, whole, in the screen (a toast would cut it): the Compose
        screen shows it above the form, and submitting says it cannot be done."""
        self.database_error = message.error
        self._set_status("database", "no database")
        if isinstance(self.screen, ComposeScreen):  # else it shows it when it comes back
            self.screen.show_database_error()

    def tell(
        self,
        text: str,
        *,
        title: str,
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        limit: int = 300,
    ) -> None:
        """A notification whose text may hold user text (a prompt, an error, a
        file name): shown on one line, literally. Safe from thread workers."""
        self.notify(
            one_line(text, limit), title=title, severity=severity, timeout=timeout, markup=False
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's end (screens forward theirs, see WorkbenchScreen): one
        that raised what it did not expect is told on one line, its traceback
        goes to the log, and the header stops claiming what it no longer does."""
        if event.state is not WorkerState.ERROR:
            return
        worker: Worker[Any] = event.worker
        error = worker.error
        what = worker.group if worker.group != "default" else worker.name
        log.error("worker %s failed", what, exc_info=error)
        if worker.group == "listener":
            self._set_status("link", "updates stopped")
        elif worker.group == "database":
            self._set_status("database", "no database")
        where = f"; details in {self.log_path}" if self.log_path else ""
        self.tell(
            f"{what} failed: {type(error).__name__}: {error}{where}",
            title="Something went wrong",
            severity="error",
            timeout=30,
        )

    def require_session(self) -> services.Session:
        """The open session (screens call this from their thread workers)."""
        if self.session is None:
            if self.database_error is not None:
                raise DatabaseError(
                    "impossible: the database could not be opened (see the reason above "
                    "the form); fix it and start imagen-tui again"
                )
            raise DatabaseError("the database is not open yet")
        return self.session

    # ----------------------------------------------------------------- live jobs

    @work(exclusive=True, group="listener", exit_on_error=False)
    async def _follow_jobs(self) -> None:
        feed = JobFeed(
            self.require_session(),
            on_update=self.jobs_signal.publish,
            on_link=self._link,
            on_notice=self._notice,
            on_preview=self.previews_signal.publish,
        )
        await feed.run()

    def _link(self, online: bool, error: str) -> None:
        if online:
            self._set_status("link", "live")
        else:
            self._set_status("link", "listener lost, reconnecting…")
            self.tell(error, title="Live updates interrupted", severity="warning", limit=200)

    def _notice(self, notice: Notice) -> None:
        self.tell(notice.message, title=notice.title, severity=notice.severity)

    # ----------------------------------------------------------------- the worker

    def check_worker(self) -> None:
        """Have the keeper check presence (in a thread; one check at a time, a
        request meanwhile runs once the current one ends)."""
        if self.worker_keeper is None or self._worker_abort.is_set():
            return
        if self._worker_busy:
            self._worker_again = True
            return
        self._worker_busy = True
        self._run_worker_check(self.worker_keeper)

    @work(thread=True, group="local-worker", exit_on_error=False)
    def _run_worker_check(self, keeper: Keeper) -> None:
        report, error = None, ""
        try:
            report = keeper.check(self._worker_abort)
        except ImagenError as failure:  # the queue cannot be read: next poll tries again
            error = failure.message if isinstance(failure, InputError) else str(failure)
        finally:
            self.post_message(WorkerChecked(report, error))

    def on_worker_checked(self, message: WorkerChecked) -> None:
        self._worker_busy = False
        if message.report is not None:
            self._worker_error = ""
            self._set_status("worker", message.report.status)
            if message.report.news:
                severity: SeverityLevel = "error" if message.report.failed else "warning"
                self.tell(message.report.news, title="Worker", severity=severity, timeout=20)
        elif message.error:
            self._set_status("worker", "worker: unknown (the queue cannot be read)")
            if message.error != self._worker_error:
                self._worker_error = message.error
                self.tell(message.error, title="Worker", severity="error")
        if self._worker_again:
            self._worker_again = False
            self.check_worker()

    async def action_quit(self) -> None:
        """Quit. While this app's workers render, say so and let them finish first;
        a second ctrl+q has them hand their jobs back at once (a third quits at once)."""
        keeper = self.worker_keeper
        workers = [w for w in keeper.running() if w.alive()] if keeper is not None else []
        if not workers or self._quit_presses >= 2:
            self.exit()
            return
        self._quit_presses += 1
        if self._quit_presses == 1:
            self._worker_abort.set()  # the keeper starts (and restarts) no worker any more
            self._set_status("worker", "worker: stopping…")
            self._finish_then_exit(workers)
            return
        for worker in workers:
            worker.request_stop()  # the second SIGTERM: cancel, hand back, exit
        self._set_status("worker", "worker: handing its jobs back…")
        self.tell("handing the jobs back to the queue", title="Quit")

    @work(thread=True, exclusive=True, group="quit", exit_on_error=False)
    def _finish_then_exit(self, workers: Sequence[Finishing]) -> None:
        """Ask the workers to stop (their jobs in flight finish), say which jobs
        they finish, and exit the app once they have."""
        held: list[int] = []
        session = self.session
        for worker in workers:
            worker.request_stop()
            if session is not None:
                try:
                    held += session.jobs_running_on(worker.worker_id)
                except ImagenError as error:
                    log.warning("cannot tell which jobs the worker finishes: %s", error)
        if held:
            text = finishing_text(sorted(held))
            self.call_from_thread(self._set_status, "worker", f"worker: {text}")
            self.tell(text, title="Quit", timeout=3600)
        for worker in workers:
            while not worker.wait_exit(0.1):
                if self._gone.is_set():  # the app quit meanwhile (a third ctrl+q)
                    return
        if not self._gone.is_set():
            self.call_from_thread(self.exit)

    def stop_local_worker(self) -> None:
        """Stop the workers this app started (safe to call twice, from any thread)."""
        self._worker_abort.set()  # a start still under way gives up
        if self.worker_keeper is not None:
            self.worker_keeper.stop()

    async def on_unmount(self) -> None:
        self._gone.set()
        await asyncio.to_thread(self.stop_local_worker)
        # The session's pool (its connections and thread) ends with the app, even
        # one still opening (it is closed as soon as it is open).
        self._session_future.add_done_callback(_close_session)
        sys.setswitchinterval(self._switch_interval)
        gc.unfreeze()  # what the app leaves behind can be collected again

    # ----------------------------------------------------------------- header

    def _set_status(self, part: str, text: str) -> None:
        self._status[part] = text
        self._show_status()

    def _show_status(self) -> None:
        self.sub_title = " · ".join(text for text in self._status.values() if text)

    # ----------------------------------------------------------------- actions

    def on_series_submitted(self, message: SeriesSubmitted) -> None:
        tries = len(message.job_ids)
        self.notify(
            f"Series {message.series_id} queued: {tries} {'try' if tries == 1 else 'tries'}",
            title="Submitted",
        )
        self.show_series(message.series_id, queued=message.submission)
        self.check_worker()  # its jobs may need a worker no one runs

    def show_series(self, series_id: int, queued: services.Submission | None = None) -> None:
        """Open the Series screen on this series. The screen starts reading it
        before it is shown: the first time, while it is being built. A series
        just `queued` from here shows its pending tries at once, while it is read."""
        screen = self.get_screen("series")
        assert isinstance(screen, SeriesScreen)
        screen.show_series(series_id, queued)
        self.switch_mode("series")

    def switch_mode(self, mode: str) -> AwaitMount:
        if mode in self.LATER_SCREENS:
            screen = self.get_screen(mode)
            if not screen.is_running:  # its first visit: about to be built
                _styled_at_registration(self, screen)
        elif mode == "compose":  # typing lands in the prompt, not in the field left last
            self.call_after_refresh(self._focus_prompt)
        return super().switch_mode(mode)

    def _focus_prompt(self) -> None:
        if isinstance(self.screen, ComposeScreen):
            self.screen.focus_prompt()

    # ----------------------------------------------------------------- the loop

    def recall(self, *, job_id: int | None = None, image_id: int | None = None) -> None:
        """Fill the Compose form with what this job (or the job of this image) asked
        for, its seed and its series' tries, and go there, the cursor in the prompt."""
        self._recall(job_id, image_id, again=False)

    def again(self, *, job_id: int | None = None, image_id: int | None = None) -> None:
        """Queue a new series with the same request as this job (or image) and its
        series' tries, with fresh seeds; then show it."""
        self._recall(job_id, image_id, again=True)

    @work(thread=True, group="recall", exit_on_error=False)
    def _recall(self, job_id: int | None, image_id: int | None, again: bool) -> None:
        title = "Again" if again else "Recall"
        try:
            session = self.require_session()
            recalled = session.recall(job_id=job_id, image_id=image_id)
            if not again:
                self.call_from_thread(self._fill_form, recalled)
                return
            spec = recalled.spec._replace(seed=None)  # fresh seeds
            submission = session.submit(self.workbench, spec, recalled.tries)
        except (DatabaseError, InputError) as error:
            message = error.message if isinstance(error, InputError) else str(error)
            self.tell(message, title=title, severity="error")
            return
        for warning in submission.warnings:
            self.tell(warning.message, title=warning.field or title, severity="warning")
        self.post_message(SeriesSubmitted(submission))

    @work(thread=True, group="pick", exit_on_error=False)
    def pick_winner(self, series_id: int, idx: int) -> None:
        """Make try `idx` the series' winner (from a view that is not the Series screen)."""
        try:
            self.require_session().pick(series_id, idx)
        except (DatabaseError, InputError) as error:
            message = error.message if isinstance(error, InputError) else str(error)
            self.tell(message, title="Pick", severity="warning")
            return
        self.notify(f"Try {idx} is series {series_id}'s winner", title="Pick")
        screen = self.get_screen("series")
        if isinstance(screen, SeriesScreen) and screen.is_mounted:
            self.call_from_thread(screen.action_reload)

    def _fill_form(self, recalled: Recalled) -> None:
        self.switch_mode("compose")
        screen = self.screen
        if not isinstance(screen, ComposeScreen):
            return
        for note in screen.fill(recalled):
            self.tell(note, title="Recall", severity="warning")
        where = f"series {recalled.series_id}" if recalled.series_id else f"job {recalled.job_id}"
        self.notify(f"The form holds {where}'s request: change one thing", title="Recall")

    def remember_form(self, values: dict[str, Any]) -> None:
        self.state["form"] = values
        self._persist()

    def _remember_theme(self, theme: Any) -> None:
        self.state["theme"] = self.theme
        self._persist()

    def _persist(self) -> None:
        if self._save_state is None:
            return
        try:
            self._save_state(self.state)
        except InputError as error:
            self._save_state = None  # say it once, not on every submit
            self.tell(error.message, title="Settings not saved", severity="warning")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's commands, then one for every binding of the app and the screen."""
        yield from super().get_system_commands(screen)
        seen = set()
        for binding in [*screen.BINDINGS, *self.BINDINGS]:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action in seen or binding.action == "quit":
                continue
            seen.add(binding.action)
            key = binding.key.split(",")[0]
            yield SystemCommand(
                binding.description,
                f"{binding.tooltip or binding.description} ({key})",
                partial(self._run_on, screen, binding.action),
            )

    def _run_on(self, screen: Screen[Any], action: str) -> None:
        self.run_worker(screen.run_action(action), exclusive=False)


def run_app(args: argparse.Namespace) -> int:
    """`imagen-tui`: open the workbench app on the configured (or embedded) database.

    `args.config`: the config file (None: the default place); `args.no_worker`:
    only submit and watch (also `tui.worker: never`), else a worker is started
    when none is online and stopped on exit.
    """
    from imagen_tui.core.workbench import open_workbench
    from imagen_tui.tui.pictures import protocol

    workbench = open_workbench(args.config)
    # The style presets (read on first use) now, not on the event loop when the
    # Compose screen lists them: the app reads them before its first frame as before.
    workbench.styles  # noqa: B018
    protocol.configure(workbench.config)  # before App.run: detection reads the terminal
    log_path = _log_to_file()
    notes: list[str] = []
    state = services.load_tui_state(warn=notes.append)

    watch_only = args.no_worker or workbench.config.tui.worker == "never"
    app = WorkbenchApp(
        workbench,
        worker_keeper=None if watch_only else services.WorkerKeeper(workbench, args.config),
        state=state,
        save_state=services.save_tui_state,
        notes=notes,
    )
    app.log_path = log_path
    try:
        app.run()
    finally:
        app.stop_local_worker()
        if app.session is not None:
            app.session.close()
    return 0


def _log_to_file() -> str | None:
    """Send the app's log (`imagen.tui`) to the file its worker logs to, never
    to the terminal the app draws on; the file's name (None: it cannot be opened,
    then the log goes nowhere). The file is made private (0600 in a 0700
    directory) and rotated by size here (services.open_worker_log); the handler
    reopens it when a worker's start rotates it."""
    path = services.worker_log_path()
    log.propagate = False
    try:
        services.open_worker_log(path).close()
        handler: logging.Handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError:
        log.addHandler(logging.NullHandler())
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return str(path)
