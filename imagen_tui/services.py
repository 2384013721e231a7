"""What the front ends (the `imagen` CLI, the TUI) call.

A front end parses what the user typed, calls one of these, and shows the
result its own way. It never writes SQL, opens a database connection or
checks a request itself: the checks live in `core` (raising `InputError`
naming the field), the statements in `db.repositories`, and this module puts
them together. Database failures arrive as one-line `DatabaseError`s.

- Requests: `check_submission` (the same checks `imagen submit` and the
  TUI's form run, with field-tagged warnings for names only the worker's
  config can settle).
- The database: `session(workbench)` gives a `Session` whose methods submit a
  series, list and show jobs and series, pick a winner, cancel and retry
  jobs; `db_status`, `db_migrate`, `db_stop`.
- Configuration: `config_rows`, `check_config`, `write_sample_config`,
  `backend_rows`.
- The TUI's remembered state: `load_tui_state`, `save_tui_state`.
- The worker: `run_worker`; the TUI's own worker: `ensure_worker` ->
  `LocalWorker` (`stop()`); who is online: `workers`, `workers_online`.
- The cost ledger: `UsageLedger` (the usage rows of `imagen generate`) and
  the `Session.usage_totals` / `Session.usage_rows` reports.

Live views also use `db.events.job_events` directly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imagen_tui.backends import registry
from imagen_tui.config import BUILTIN, resolve_config_path, write_sample

# Front ends call this first: secrets from systemd's LoadCredential= (re-exported).
from imagen_tui.config.credentials import load_credentials as load_credentials
from imagen_tui.core.prompt import pick_style
from imagen_tui.core.spec import RequestSpec, try_seeds
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import DatabaseError, ImagenError, InputError
from imagen_tui.limits import DEFAULT_LEASE_S, DEFAULT_POLL_S

if TYPE_CHECKING:
    import subprocess

    import psycopg

    from imagen_tui.core.events import Connected, Disconnected, JobEvent
    from imagen_tui.core.pipeline import Outcome
    from imagen_tui.db.repositories import (
        GalleryCard,
        ImageRow,
        JobChange,
        JobRow,
        Query,
        SeriesDetail,
        SeriesRow,
        Submitted,
        UsageRow,
        UsageTotal,
        WorkerPresence,
    )

T = TypeVar("T")

WORKERS_SCHEMA = 3  # the schema version that added imagen.workers

log = logging.getLogger("imagen.worker")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Submission:
    """A series queued: its id, its jobs, and what the local config could not vouch for."""

    series_id: int
    job_ids: tuple[int, ...]
    warnings: tuple[InputError, ...] = ()


def check_submission(
    workbench: Workbench, spec: RequestSpec, count: int
) -> tuple[RequestSpec, list[InputError]]:
    """The checked spec and the warnings for a series of `count` tries; InputError if bad.

    The worker that renders the series applies its own config, which may know
    styles and backends this machine does not. So a style or backend this
    config lacks is a *warning* (the series is queued; the job fails on the
    worker if it lacks them too), for both the same way. Everything else is
    checked here and refused.
    """
    spec = spec.checked()
    try_seeds(spec.seed, count)
    warnings: list[InputError] = []
    try:
        pick_style(workbench.styles, spec.style)
    except InputError as error:
        warnings.append(_worker_decides(error))
    try:
        name, _block = workbench.backend_block(spec.backend)
        status = workbench.backend_status(name)
        if status != "ok":
            warnings.append(_worker_decides(InputError("backend", f"{name} is {status} here")))
    except InputError as error:
        warnings.append(_worker_decides(error))
    return spec, warnings


def spec_from_form(
    *,
    prompt: str,
    negative: str = "",
    backend: str | None = None,
    style: str | None = None,
    size: str = "",
    steps: str = "",
    seed: str = "",
) -> RequestSpec:
    """The request a form's text fields describe (blank: the default), checked;
    InputError naming the first bad field, in the CLI's words."""
    from imagen_tui.core.sizes import parse_size

    width, height = parse_size(size) if size.strip() else (None, None)
    return RequestSpec(
        prompt=prompt,
        negative_prompt=negative,
        style=style or None,
        width=width,
        height=height,
        steps=_whole_number("steps", steps),
        seed=_whole_number("seed", seed),
        backend=backend or None,
    ).checked()


def _whole_number(field_name: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(field_name, f"{text!r} is not a whole number") from None


def _worker_decides(error: InputError) -> InputError:
    return InputError(
        error.field,
        f"{error.message} (queued anyway: the worker's config decides, and the job fails "
        "there if it lacks it too)",
    )


# --------------------------------------------------------------------------- the database


class Session:
    """A connection to the configured database (its schema checked) and what
    front ends do with it. Use as a context manager; see `session()`.

    A connection the server dropped is opened again on the next call, so a
    long-lived front end (the TUI) outlives a database restart; the call
    that found it broken fails with a DatabaseError.
    """

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._conn, self._url = conn, url

    def close(self) -> None:
        self._conn.close()

    def run(self, query: Query[T], *, idempotent: bool = False) -> T:
        """Run one statement; a database error becomes a one-line DatabaseError.

        `idempotent` (reads, setting a winner): if the connection turns out
        to be dead (the server restarted since the last call), run it once
        more on a new one. Other statements are not re-sent: their commit
        may have landed before the connection died.
        """
        from imagen_tui.db.connect import connect, database_errors
        from imagen_tui.db.repositories import fetch

        for attempt in (1, 2):
            if self._conn.closed or self._conn.broken:
                self._conn = connect(self._url, autocommit=True)
            try:
                with database_errors():
                    return fetch(self._conn, query)
            except DatabaseError:
                if attempt == 2 or not idempotent or not self._conn.broken:
                    raise
        raise AssertionError("unreachable")

    def events(self) -> AsyncIterator[Connected | Disconnected | JobEvent]:
        """Job events, forever, on a connection of their own (it reconnects by itself)."""
        from imagen_tui.db.events import job_events

        return job_events(self._url)

    def submit(self, workbench: Workbench, spec: RequestSpec, count: int) -> Submission:
        """Queue one series of `count` tries (one transaction)."""
        from imagen_tui.db.repositories import submit_series

        spec, warnings = check_submission(workbench, spec, count)
        submitted: Submitted = self.run(submit_series(spec, count))
        return Submission(submitted.series_id, submitted.job_ids, tuple(warnings))

    def jobs(self, status: str | None = None, limit: int = 50) -> list[JobRow]:
        from imagen_tui.db.repositories import jobs_page

        return self.run(jobs_page(status, limit), idempotent=True)

    def jobs_by_id(self, job_ids: Sequence[int]) -> list[JobRow]:
        """These jobs as they are now (a live view re-reading what its events named)."""
        from imagen_tui.db.repositories import jobs_by_id

        return self.run(jobs_by_id(job_ids), idempotent=True)

    def series(self, limit: int = 20) -> list[SeriesRow]:
        from imagen_tui.db.repositories import series_page

        return self.run(series_page(limit), idempotent=True)

    def series_detail(self, series_id: int) -> SeriesDetail:
        from imagen_tui.db.repositories import series_detail

        return self.run(series_detail(series_id), idempotent=True)

    def series_images(self, series_id: int) -> list[ImageRow]:
        """The images of a series with their thumbnails and metadata, in try order."""
        from imagen_tui.db.repositories import series_images

        return self.run(series_images(series_id), idempotent=True)

    def gallery(self, limit: int = 100, before_id: int | None = None) -> list[GalleryCard]:
        """Solo images and one card per series (its winner, else its first image)."""
        from imagen_tui.db.repositories import gallery

        return self.run(gallery(limit, before_id), idempotent=True)

    def pick(self, series_id: int, idx: int | None) -> int | None:
        """Mark try `idx` the series' winner (None: no winner); the image id."""
        from imagen_tui.db.repositories import pick_winner

        return self.run(pick_winner(series_id, idx), idempotent=True)

    def cancel(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Cancel pending or running jobs, all or none (InputError names the first at fault)."""
        from imagen_tui.db.repositories import cancel_jobs

        return self.run(cancel_jobs(job_ids))

    def retry(self, job_ids: Sequence[int]) -> list[JobChange]:
        """Queue failed or canceled jobs again (same seed), all or none."""
        from imagen_tui.db.repositories import retry_jobs

        return self.run(retry_jobs(job_ids))

    def workers(self) -> list[WorkerPresence]:
        """Every announced worker (online first); stale ones have `online` False."""
        from imagen_tui.db.repositories import worker_presences

        return self.run(worker_presences(), idempotent=True)

    def workers_online(self) -> list[WorkerPresence]:
        return [worker for worker in self.workers() if worker.online]

    def usage_totals(
        self,
        by: str = "backend",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageTotal]:
        """The ledger's totals per `by` (backend, model, caller or day), then the
        grand total (key None); `until` is exclusive, days are local."""
        from imagen_tui.db.repositories import usage_totals

        offset = datetime.now().astimezone().utcoffset() or timedelta(0)
        return self.run(usage_totals(by, since, until, offset), idempotent=True)

    def usage_rows(
        self, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[UsageRow]:
        """The ledger's raw rows in the window (never a prompt, only its hash)."""
        from imagen_tui.db.repositories import usage_rows

        return self.run(usage_rows(since, until, limit), idempotent=True)


@contextmanager
def session(workbench: Workbench) -> Iterator[Session]:
    """A `Session` on the configured database (the embedded one is started and migrated)."""
    opened = open_session(workbench)
    try:
        yield opened
    finally:
        opened.close()


def open_session(workbench: Workbench) -> Session:
    """A `Session` the caller closes (a front end that keeps one for its lifetime)."""
    from imagen_tui.db.connect import connect_checked, database_errors

    with database_errors():
        database, conn = connect_checked(workbench.config)
    return Session(conn, database.url)


def workers(workbench: Workbench) -> list[WorkerPresence]:
    """Every worker that announced itself on the configured queue, online ones
    first; a stale one (`online` False) died without withdrawing its row."""
    with session(workbench) as db:
        return db.workers()


def workers_online(workbench: Workbench) -> list[WorkerPresence]:
    """The workers online on the configured queue (renewed their row within their lease)."""
    with session(workbench) as db:
        return db.workers_online()


class UsageLedger:
    """The usage rows of `imagen generate`: one per image, when a database is reachable.

    The configured database (database.url, $IMAGEN_DATABASE_URL) is used when
    there is one; otherwise the embedded server, only if it is already running
    (a generation never waits for a server to start). No database: nothing is
    recorded, quietly. A database that fails: `warn` is told (once per kind of
    failure) and the images are kept; the ledger never stops a generation.
    Use as a context manager; `record` blocks (call it off the event loop).
    """

    def __init__(
        self, workbench: Workbench, warn: Callable[[str], None], source: str = "cli"
    ) -> None:
        self._workbench = workbench
        self._warn = warn
        self._source = source
        self._conn: psycopg.Connection[Any] | None = None
        self._opened = False
        self.recorded = 0

    def __enter__(self) -> UsageLedger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._opened:
            return self._conn
        self._opened = True
        from imagen_tui.db import embedded  # no driver: a generation without a database
        from imagen_tui.errors import ImagenError  # never loads psycopg

        try:
            url, _origin = self._workbench.config.database.resolve()
        except ImagenError as error:
            self._warn(f"usage not recorded: {error}")
            return None
        ours = url is None
        url = url or embedded.running_url()
        if url is None:
            return None  # no database here: nothing to record in
        import psycopg

        from imagen_tui.db import migrate
        from imagen_tui.db.connect import first_line, redact

        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            if ours:  # the embedded server is ours: brought up to date on use, as elsewhere
                migrate.migrate(self._conn)
        except psycopg.Error as error:
            self._warn(f"usage not recorded: cannot reach {redact(url)}: {first_line(error, url)}")
            self.close()
        return self._conn

    def record(self, outcome: Outcome) -> int | None:
        """Append the outcome's usage row; its id, or None when it was not recorded."""
        conn = self._connection()
        if conn is None:
            return None
        import psycopg

        from imagen_tui.core.ledger import usage_entry
        from imagen_tui.db.connect import first_line
        from imagen_tui.db.repositories import fetch, record_usage

        try:
            row_id = fetch(conn, record_usage(usage_entry(outcome, self._source)))
        except psycopg.Error as error:
            hint = ""
            if isinstance(error, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable):
                hint = " (the database schema is behind: run `imagen db migrate`)"
            self._warn(f"usage not recorded: {first_line(error)}{hint}")
            if isinstance(error, psycopg.OperationalError) or hint:
                self.close()  # do not try again for every image
            return None
        self.recorded += 1
        return row_id


@dataclass(frozen=True)
class DbStatus:
    display_url: str  # password hidden
    source: str  # "embedded", "$IMAGEN_DATABASE_URL", ...
    version: int
    latest: int
    counts: dict[str, int]
    psql_url: str | None  # embedded only: a URL to hand to psql
    # Announced workers, online first (empty before schema version 3).
    workers: list[WorkerPresence] = field(default_factory=list)


def db_status(workbench: Workbench) -> DbStatus:
    """The server, its schema version and the jobs per status (never migrates a
    configured server; the embedded one is brought up to date)."""
    from imagen_tui.db import migrate
    from imagen_tui.db.connect import connect, database_errors, locate
    from imagen_tui.db.repositories import fetch, queue_counts, worker_presences

    database = locate(workbench.config)
    with database_errors(), connect(database.url, autocommit=True) as conn:
        if database.embedded:
            migrate.migrate(conn)
        version, latest = migrate.current_version(conn), migrate.latest_version()
        counts = fetch(conn, queue_counts()) if version else {}
        workers = fetch(conn, worker_presences()) if version >= WORKERS_SCHEMA else []
    return DbStatus(
        display_url=database.display_url,
        source=database.source,
        version=version,
        latest=latest,
        counts=counts,
        psql_url=database.url if database.embedded else None,
        workers=workers,
    )


def db_migrate(workbench: Workbench) -> tuple[list[str], int]:
    """Apply the schema migrations not applied yet; (their names, the version now)."""
    from imagen_tui.db import migrate
    from imagen_tui.db.connect import connect, database_errors, locate

    database = locate(workbench.config)
    with database_errors(), connect(database.url, autocommit=True) as conn:
        applied = migrate.migrate(conn)
        version = migrate.current_version(conn)
    return [f"{m.version:04d}_{m.name}" for m in applied], version


def db_stop(workbench: Workbench) -> bool:
    """Stop the embedded server; True when it was running. InputError when a URL is set."""
    from imagen_tui.db import embedded

    if workbench.config.database.resolve()[0] is not None:
        raise InputError(
            None, "db stop: only the embedded server is started by ImaGen; none is in use"
        )
    return embedded.stop()


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ConfigRow:
    key: str  # dotted
    value: Any
    source: str  # file:line, "built-in default", "$VAR", ...


def config_rows(workbench: Workbench) -> list[ConfigRow]:
    """Every effective setting and where it came from (for `imagen config show`)."""
    from imagen_tui.db.connect import redact
    from imagen_tui.db.embedded import data_directory

    config = workbench.config
    rows = [
        ConfigRow(key, value, config.source(path))
        for key, value, path in (
            ("default_backend", config.default_backend, ("default_backend",)),
            ("output.directory", config.output.directory, ("output", "directory")),
            ("output.naming", config.output.naming, ("output", "naming")),
            ("output.series_naming", config.output.series_naming, ("output", "series_naming")),
            (
                "output.write_metadata_json",
                config.output.write_metadata_json,
                ("output", "write_metadata_json"),
            ),
        )
    ]
    url, origin = config.database.resolve()
    if url is None:
        rows.append(ConfigRow("database", f"embedded ({data_directory()})", BUILTIN))
    else:
        where = config.where(("database", "url")) if origin == "database.url" else origin
        rows.append(ConfigRow("database", redact(url), where or origin))
    for name, block in sorted(workbench.backend_blocks.items()):
        for key, value in block.items():
            path = ("backends", name, key)
            source = config.where(path) or (
                BUILTIN if key == "type" else f"default of type {block['type']}"
            )
            rows.append(ConfigRow(".".join(path), value, source))
    for name, style in config.styles.items():
        items = style.items() if isinstance(style, dict) else [("prompt", style)]
        for key, value in items:
            path = ("styles", name, key)
            rows.append(ConfigRow(".".join(path), value, config.source(path)))
    for setting in ("worker", "image_protocol", "theme"):
        key_path = ("tui", setting)
        value = getattr(config.tui, setting)
        rows.append(ConfigRow(f"tui.{setting}", value, config.source(key_path)))
    return rows


@dataclass(frozen=True)
class ConfigCheck:
    path: Path | None  # the file read; None: built-in defaults only
    default_path: Path  # where the file would be
    backends: int
    styles: int
    directory: Path
    warnings: list[str] = field(default_factory=list)


def check_config(workbench: Workbench, config_path: str | Path | None = None) -> ConfigCheck:
    """What `imagen config check` reports (loading the workbench checked the file)."""
    config = workbench.config
    config.database.resolve()  # a url_env naming an unset variable
    warnings = [
        f"backend {name} is {status}"
        for name in sorted(workbench.backend_blocks)
        if (status := workbench.backend_status(name)) != "ok"
    ]
    if (status := workbench.storage_settings.status) != "ok":
        warnings.append(f"{workbench.storage_settings.type} storage is {status}")
    return ConfigCheck(
        path=config.path,
        default_path=resolve_config_path(config_path)[0],
        backends=len(workbench.backend_blocks),
        styles=len(workbench.styles),
        directory=config.output.directory,
        warnings=warnings,
    )


def write_sample_config(config_path: str | Path | None, *, force: bool = False) -> Path:
    """Write the commented sample config where the config is looked for; its path."""
    path, _named = resolve_config_path(config_path)
    # What named the path, for an error: the flag, the variable, or neither (the default).
    field = None
    if config_path:
        field = "config"
    elif os.environ.get("IMAGEN_CONFIG"):
        field = "$IMAGEN_CONFIG"
    write_sample(path, force=force, field=field)
    return path


@dataclass(frozen=True)
class BackendRow:
    name: str
    type: str
    model: str
    default: bool
    status: str  # `ok`, `not configured (set VAR)`, or the probe's problem (`missing models`)
    # With `check`: what one live call found (None: the adapter has no check)
    check: str | None = None
    check_ok: bool | None = None
    # Further facts, one short line each: the adapter's probe (ComfyUI: reachable,
    # version, GPU and free VRAM, missing model files, ignored request fields),
    # then what a check reported.
    details: tuple[str, ...] = ()


def backend_rows(
    workbench: Workbench, *, check: bool = False, probe: bool = True
) -> list[BackendRow]:
    """Each configured instance and its status. `probe` asks each adapter for
    its extra facts (a local server, e.g. ComfyUI, may be asked); with `check`,
    each adapter that can makes one cheap live call (all at once) to say
    whether its credentials really work."""
    blocks = sorted(workbench.backend_blocks.items())
    checks: list[registry.Check | None] = [None] * len(blocks)
    if check:
        import asyncio

        async def check_all() -> list[registry.Check | None]:
            return list(
                await asyncio.gather(*(registry.check(name, block) for name, block in blocks))
            )

        checks = asyncio.run(check_all())
    probes = [registry.details(block) if probe else registry.Probe() for _, block in blocks]
    return [
        BackendRow(
            name=name,
            type=str(block["type"]),
            model=registry.model_of(block),
            default=name == workbench.config.default_backend,
            # a problem the probe found (missing models) replaces `ok`
            status=_status(workbench.backend_status(name), probed.problem),
            check=found.summary if found else None,
            check_ok=found.ok if found else None,
            details=(*probed.lines, *(found.details if found else ())),
        )
        for (name, block), found, probed in zip(blocks, checks, probes, strict=True)
    ]


def _status(configured: str, problem: str | None) -> str:
    return problem if configured == "ok" and problem else configured


# --------------------------------------------------------------------------- the TUI's state


def load_tui_state(warn: Callable[[str], object] | None = None) -> dict[str, Any]:
    """What `imagen-tui` remembered (last form values, theme): a JSON object, {}
    when there is none. A file that cannot be read is ignored: `warn(line)` is
    called (default: a logged warning), never an exception."""
    from imagen_tui.config.state import load_state

    return load_state(warn=warn)


def save_tui_state(state: Mapping[str, Any]) -> Path:
    """Remember `state` (JSON values) atomically; InputError (one line) if it cannot."""
    from imagen_tui.config.state import save_state

    return save_state(state)


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 1
    poll_interval: float = DEFAULT_POLL_S
    lease: float = DEFAULT_LEASE_S
    once: bool = False

    @classmethod
    def from_flags(cls, flags: Any) -> WorkerSettings:
        """From the parsed worker flags (`cmdline.add_worker_options`)."""
        return cls(flags.concurrency, flags.poll_interval, flags.lease, flags.once)


def run_worker(workbench: Workbench, settings: WorkerSettings) -> int:
    """Run the job worker until it is stopped (or, `once`, the queue is empty).

    The exit code: 0 after a clean stop, 130 after a forced one (a second
    SIGTERM/SIGINT). A crashed worker raises WorkerCrashed (exit 1, already
    logged); a database that cannot be reached at start raises DatabaseError.
    Logs go to stderr, one line per job, for journald or a terminal.
    """
    import asyncio
    import socket

    from imagen_tui.db.connect import open_database
    from imagen_tui.db.queue import PgQueue, Presence
    from imagen_tui.jobs.worker import (
        Worker,
        WorkerOptions,
        install_stop_signals,
        new_worker_id,
        run_loop,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO; signed download URLs carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    database = open_database(workbench.config)
    worker_id = new_worker_id()
    presence = Presence(
        worker_id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        backends=tuple(
            name
            for name in sorted(workbench.backend_blocks)
            if workbench.backend_status(name) == "ok"
        ),
        concurrency=settings.concurrency,
    )
    queue = PgQueue(database.url, worker_id, lease_s=settings.lease, presence=presence)
    options = WorkerOptions(
        concurrency=settings.concurrency, poll_interval=settings.poll_interval, once=settings.once
    )

    async def main() -> int:
        worker = Worker(workbench, queue, options)
        install_stop_signals(worker, asyncio.get_running_loop())
        mode = "draining the queue once" if settings.once else "waiting for jobs"
        log.info(
            "worker %s on %s (%s): %s, concurrency %d, lease %g s",
            worker_id,
            database.display_url,
            database.source,
            mode,
            settings.concurrency,
            settings.lease,
        )
        await worker.run()
        summary = ", ".join(f"{n} {what}" for what, n in sorted(worker.stats.items()))
        log.info("worker stopped: %s", summary or "no jobs")
        return 130 if worker.forced else 0

    return run_loop(main())


# --------------------------------------------------------------------------- the TUI's worker

WORKER_LOG_FILENAME = "tui-worker.log"
# The worker's lifeline: the number of an inherited fd, a pipe's read end whose
# write end only the app holds (imagen_tui.tui.launch.watch_parent reads it).
PARENT_PIPE_ENV = "IMAGEN_TUI_PARENT_PIPE"


class WorkerNotStarted(ImagenError):
    """The TUI's worker exited, or did not come online, after it was started."""


def worker_log_path() -> Path:
    """Where the TUI's worker logs (never the terminal, which the app owns)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("imagen")) / WORKER_LOG_FILENAME


@dataclass
class LocalWorker:
    """A worker the TUI started as its child: `imagen-tui --headless-worker`, the
    very code path systemd runs, logging to `log_path`."""

    process: subprocess.Popen[bytes]
    log_path: Path
    presence: WorkerPresence  # its row in imagen.workers when it came online
    # The write end of the pipe the child watches: closed (by stop(), or by the
    # kernel when this process dies), the child stops as on SIGTERM.
    lifeline: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the in-flight job finishes, the presence row is withdrawn), wait
        up to `timeout` seconds, then SIGKILL (its job is rescued after its lease).
        The exit code (negative: the signal that ended it). Safe to call twice."""
        code = _stop(self.process, timeout)
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        return code


def _stop(process: subprocess.Popen[bytes], timeout: float) -> int:
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def ensure_worker(
    workbench: Workbench,
    config_path: str | Path | None = None,
    *,
    no_worker: bool = False,
    settings: WorkerSettings | None = None,
    timeout: float = 60.0,
    abort: threading.Event | None = None,
) -> LocalWorker | None:
    """Start a worker for the TUI unless one is online on its queue.

    None when the app must not start one (`no_worker`, i.e. `--no-worker`, or
    `tui.worker: never`) or a worker is online already. Otherwise spawns
    `python -m imagen_tui.tui --headless-worker [--config PATH] [flags]` with
    its output appended to `worker_log_path()`, and returns once its presence
    row appears. Blocking (up to `timeout` seconds; polls the database every
    0.1 s): call it from a thread. Setting `abort` stops the child and returns
    None. WorkerNotStarted (one line quoting the last line of its log) when
    the child exits first or does not come online in time (it is then stopped).

    Two apps starting at the same moment may both start one: harmless, two
    workers share the queue.
    """
    import subprocess
    import sys

    if no_worker or workbench.config.tui.worker == "never":
        return None
    settings = settings or WorkerSettings()
    with session(workbench) as db:
        if db.workers_online():
            return None
        argv = [sys.executable, "-m", "imagen_tui.tui", "--headless-worker"]
        if config_path:
            argv += ["--config", str(config_path)]
        argv += [
            "--concurrency",
            str(settings.concurrency),
            "--poll-interval",
            repr(settings.poll_interval),
            "--lease",
            repr(settings.lease),
        ]
        if settings.once:
            argv.append("--once")
        log_path = worker_log_path()
        # The child's lifeline: it stops when the write end (ours alone: pipe ends
        # are not inherited unless passed) closes, however this process ends.
        watched, lifeline = os.pipe()
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as log:
                offset = log.tell()
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the app's terminal is the app's
                    pass_fds=(watched,),
                    env={**os.environ, PARENT_PIPE_ENV: str(watched)},
                )
        except OSError as error:
            os.close(lifeline)
            reason = error.strerror or type(error).__name__
            raise WorkerNotStarted(f"cannot start a worker (log: {log_path}): {reason}") from None
        finally:
            os.close(watched)
        try:
            local = _wait_online(db, process, log_path, offset, timeout, abort)
        except BaseException:
            _stop(process, 5.0)  # never leave a child the app does not know about
            os.close(lifeline)
            raise
        if local is None:
            os.close(lifeline)
            return None
        local.lifeline = lifeline
        return local


def _wait_online(
    db: Session,
    process: subprocess.Popen[bytes],
    log_path: Path,
    offset: int,
    timeout: float,
    abort: threading.Event | None,
) -> LocalWorker | None:
    """Poll until the child's presence row appears (see `ensure_worker`)."""
    import socket
    import time

    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    while True:
        mine = [w for w in db.workers() if w.host == host and w.pid == process.pid]
        if mine:
            return LocalWorker(process, log_path, mine[0])
        code = process.poll()
        if code is not None:
            raise WorkerNotStarted(
                f"the worker exited with {code} before it came online: "
                f"{_last_line(log_path, offset)} (log: {log_path})"
            )
        if abort is not None and abort.is_set():
            _stop(process, 5.0)
            return None
        if time.monotonic() > deadline:
            _stop(process, 5.0)
            raise WorkerNotStarted(
                f"the worker did not come online within {timeout:g} s; it was stopped: "
                f"{_last_line(log_path, offset)} (log: {log_path})"
            )
        time.sleep(0.1)


def _last_line(path: Path, offset: int) -> str:
    """The last non-empty line written to `path` after `offset`."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            text = file.read().decode("utf-8", "replace")
    except OSError as error:
        return f"(its log cannot be read: {error.strerror or error})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(it logged nothing)"
