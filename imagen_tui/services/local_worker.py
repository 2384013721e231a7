"""The TUI's own worker: `imagen-tui --headless-worker` started as a child,
only when this config serves a backend that pending jobs need and no online
worker serves, and only for such backends (see docs/worker.md, "The
workbench's own worker").

- `worker_need(db, workbench)`: the decision, from the presence rows and the
  pending jobs.
- `ensure_worker(...)`: decide, and start one under the start locks
  (db.locks: two apps never start two workers for the same backends), with
  an environment allowlist (`worker_env`) and its output in the rotated,
  private log (`open_worker_log`). Returns a `LocalWorker` (`stop()`).
- `WorkerKeeper`: what the app holds: `check()` (from a thread, every poll
  interval and after a submit) restarts a worker that died, starts one
  when the last worker for its backends went away, and says in one line
  what the header should show.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import platformdirs

from imagen_tui.cmdline import worker_argv
from imagen_tui.config import Config
from imagen_tui.core.rows import WorkerPresence
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import ImagenError
from imagen_tui.services.configuration import config_env_names
from imagen_tui.services.sessions import DbSession, open_session, session
from imagen_tui.services.worker import WorkerSettings

# --------------------------------------------------------------------------- the TUI's worker

WORKER_LOG_FILENAME = "tui-worker.log"
LOG_MAX_BYTES = 5 * 1024 * 1024  # past this size, the log becomes <name>.1 (one old file kept)
# The worker's lifeline: the number of an inherited fd, a pipe's read end whose
# write end only the app holds (imagen_tui.tui.launch.watch_parent reads it).
PARENT_PIPE_ENV = "IMAGEN_TUI_PARENT_PIPE"
# The backends the app's worker serves (comma-separated): a subset of its config's;
# imagen_tui.tui.launch.run_headless_worker keeps only those (Workbench.only).
BACKENDS_ENV = "IMAGEN_TUI_WORKER_BACKENDS"

# What the child inherits of the app's environment: these names, names starting
# with these prefixes, and the variables its config names (`*_env` keys).
ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "TMPDIR",
        "USER",
        "LOGNAME",
        # how a worker reaches cloud APIs from behind a proxy or a private CA (httpx reads them)
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    }
)
ENV_PREFIXES = ("LC_", "XDG_", "IMAGEN_")  # IMAGEN_ holds IMAGEN_DATABASE_URL and IMAGEN_CONFIG


class WorkerNotStarted(ImagenError):
    """The TUI's worker exited, or did not come online, after it was started."""


def worker_log_path() -> Path:
    """Where the TUI's worker and the app log (never the terminal, which the app
    owns): `$XDG_STATE_HOME/imagen/log/tui-worker.log`, in a directory of its own."""
    return Path(platformdirs.user_log_dir("imagen")) / WORKER_LOG_FILENAME


def open_worker_log(path: Path | None = None, max_bytes: int = LOG_MAX_BYTES) -> BinaryIO:
    """The log opened for appending: its directory 0700, the file 0600 (prompts
    and errors are nobody else's business). A file of `max_bytes` or more is
    first renamed `<name>.1` (replacing the previous one). OSError when it
    cannot be made."""
    path = path or worker_log_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # made earlier, or under a looser umask
    try:
        if path.stat().st_size >= max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def worker_env(config: Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the app's worker gets: the allowlist (ENV_NAMES,
    ENV_PREFIXES) and the variables `config` names with `*_env` keys; not the
    rest of the shell's (cloud keys, tokens of other tools)."""
    environ = os.environ if environ is None else environ
    named = set(config_env_names(config))
    return {
        name: value
        for name, value in environ.items()
        if name in ENV_NAMES or name in named or name.startswith(ENV_PREFIXES)
    }


def own_backends(workbench: Workbench) -> tuple[str, ...]:
    """The instances a worker on this config can render (as `run_worker` announces them)."""
    return tuple(
        name for name in sorted(workbench.backend_blocks) if workbench.backend_status(name) == "ok"
    )


@dataclass(frozen=True)
class WorkerNeed:
    """What the presence rows and the pending jobs say about this config's backends."""

    mine: tuple[str, ...]  # the backends this config serves
    served: tuple[str, ...]  # of those, the ones an online worker serves
    needed: tuple[str, ...]  # of those, the ones pending jobs need and no online worker serves
    start: tuple[str, ...]  # the backends to start a worker for (empty: start none)
    # What online workers say they are doing ("waiting for GPU memory: ...").
    notes: tuple[str, ...] = ()


def worker_need(db: DbSession, workbench: Workbench, ignore: Iterable[str] = ()) -> WorkerNeed:
    """Whether the app must start a worker, and for which backends.

    A pending job needs its backend; one naming none (inserted by SQL) needs
    this config's default when no online worker has a default (one that has
    renders it with its own). A worker starts when one of this config's
    backends is needed and no online worker serves it; on a shared
    (non-embedded) queue it serves only the backends of this config no online
    worker serves, on the embedded one all of them. `ignore`: presence ids
    to count as gone (a worker of ours that died and whose row is not stale yet).
    """
    skip = set(ignore)
    mine = own_backends(workbench)
    online = [w for w in db.workers_online() if w.id not in skip]
    served = {name for worker in online for name in worker.backends}
    wanted: set[str] = set()
    for backend in db.pending_backends():
        if backend is not None:
            wanted.add(backend)
        elif not any(worker.default_backend for worker in online):
            wanted.add(workbench.config.default_backend)
    needed = tuple(name for name in mine if name in wanted and name not in served)
    if not needed:
        start: tuple[str, ...] = ()
    elif db.embedded:
        start = mine
    else:
        start = tuple(name for name in mine if name not in served)
    notes = tuple(dict.fromkeys(worker.note for worker in online if worker.note))
    return WorkerNeed(mine, tuple(n for n in mine if n in served), needed, start, notes)


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
    log_offset: int = 0  # where its output starts in the log

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def backends(self) -> tuple[str, ...]:
        return self.presence.backends

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_words(self) -> str:
        """The last line it logged."""
        return _last_line(self.log_path, self.log_offset)

    @property
    def worker_id(self) -> str:
        """Its id in imagen.workers and jobs.worker_id."""
        return self.presence.id

    def request_stop(self) -> None:
        """SIGTERM without waiting: the first one lets its jobs in flight finish, a
        second hands them back at once (then it exits within its grace period)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for it to exit; whether it has."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

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
    db: DbSession | None = None,
    ignore: Iterable[str] = (),
) -> LocalWorker | None:
    """Start a worker for the TUI when `worker_need` says one is needed.

    None when the app must not start one (`no_worker`, i.e. `--no-worker`, or
    `tui.worker: never`) or none is needed. Otherwise, holding the start lock
    of each backend it would serve (so an app deciding at the same moment
    waits, then finds this worker online), decides again and spawns
    `python -m imagen_tui.tui --headless-worker [--config PATH] [flags]` with
    the allowlisted environment and its output appended to the log, and
    returns once its presence row appears. Blocking (up to `timeout` seconds;
    polls the database every 0.1 s): call it from a thread. Setting `abort`
    stops the child and returns None. WorkerNotStarted (one line quoting the
    last line of its log) when the child exits first or does not come online
    in time (it is then stopped). `db`: a session to use (else one is opened
    and closed); `ignore`: see `worker_need`.
    """
    if no_worker or workbench.config.tui.worker == "never":
        return None
    if db is None:
        with session(workbench) as opened:
            return _ensure(opened, workbench, config_path, settings, timeout, abort, ignore)
    return _ensure(db, workbench, config_path, settings, timeout, abort, ignore)


def _ensure(
    db: DbSession,
    workbench: Workbench,
    config_path: str | Path | None,
    settings: WorkerSettings | None,
    timeout: float,
    abort: threading.Event | None,
    ignore: Iterable[str],
) -> LocalWorker | None:
    ignore = tuple(ignore)
    first = worker_need(db, workbench, ignore)
    if not first.start:
        return None
    with db.start_locks(first.start, abort) as held:
        if not held:
            return None
        # Again, holding the locks: an app that held them before may have started one.
        need = worker_need(db, workbench, ignore)
        backends = tuple(name for name in need.start if name in first.start)
        if not backends:
            return None
        return _spawn(db, workbench, config_path, settings, timeout, abort, backends)


def _spawn(
    db: DbSession,
    workbench: Workbench,
    config_path: str | Path | None,
    settings: WorkerSettings | None,
    timeout: float,
    abort: threading.Event | None,
    backends: tuple[str, ...],
) -> LocalWorker | None:
    settings = settings or WorkerSettings()
    argv = [sys.executable, "-m", "imagen_tui.tui", "--headless-worker"]
    if config_path:
        argv += ["--config", str(config_path)]
    argv += worker_argv(
        concurrency=settings.concurrency,
        poll_interval=settings.poll_interval,
        lease=settings.lease,
        once=settings.once,
    )
    log_path = worker_log_path()
    env = worker_env(workbench.config)
    env[BACKENDS_ENV] = ",".join(backends)
    # The child's lifeline: it stops when the write end (ours alone: pipe ends
    # are not inherited unless passed) closes, however this process ends.
    watched, lifeline = os.pipe()
    env[PARENT_PIPE_ENV] = str(watched)
    try:
        with open_worker_log(log_path) as log:
            offset = log.tell()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the app's terminal is the app's
                pass_fds=(watched,),
                env=env,
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
    db: DbSession,
    process: subprocess.Popen[bytes],
    log_path: Path,
    offset: int,
    timeout: float,
    abort: threading.Event | None,
) -> LocalWorker | None:
    """Poll until the child's presence row appears (see `ensure_worker`)."""
    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    while True:
        mine = [w for w in db.workers() if w.host == host and w.pid == process.pid]
        if mine:
            return LocalWorker(process, log_path, mine[0], log_offset=offset)
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


# --------------------------------------------------------------------------- the app's keeper

RETRY_AFTER_FAILURE_S = 60.0  # after a worker failed to start, the next try waits this long


@dataclass(frozen=True)
class WorkerReport:
    """What a `WorkerKeeper.check` found: the header's words, and news to tell once."""

    status: str  # "worker: this app's (mock)", "worker: online elsewhere (comfy)", ...
    news: str | None = None  # one line: its worker died and was restarted, a start failed
    failed: bool = False  # the news is an error (a worker could not be started)


@dataclass
class WorkerKeeper:
    """The app's workers, kept right while it runs: `check()` from a thread
    every poll interval and after each submit; `stop()` on quit. Thread-safe
    (one check at a time); opens its own session on first use."""

    workbench: Workbench
    config_path: str | Path | None = None
    settings: WorkerSettings = field(default_factory=WorkerSettings)
    timeout: float = 60.0
    workers: list[LocalWorker] = field(default_factory=list, init=False)
    _db: DbSession | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopped: bool = field(default=False, init=False)
    _retry_at: float = field(default=0.0, init=False)
    # Presence ids of our workers that died: their rows may look online for a
    # lease (a SIGKILL leaves them), but they serve nothing.
    _dead: set[str] = field(default_factory=set, init=False)

    @property
    def poll_interval(self) -> float:
        return self.settings.poll_interval

    def check(self, abort: threading.Event) -> WorkerReport:
        """Restart a worker of ours that died, start one when a backend of this
        config is needed and no online worker serves it, and report. Blocking
        (a start waits for the child's presence row); DatabaseError, one line,
        when the queue cannot be read."""
        with self._lock:
            if self._stopped or abort.is_set():
                return WorkerReport("worker: stopping")
            db = self._db = self._db or open_session(self.workbench)
            news: list[str] = []
            gone: list[str] = []
            for local in [w for w in self.workers if not w.alive()]:
                code = local.stop()
                self.workers.remove(local)
                gone.append(local.presence.id)
                self._dead.add(local.presence.id)
                news.append(
                    f"this app's worker (pid {local.pid}) exited with {code}: {local.last_words()}"
                )
            failed = False
            now = time.monotonic()
            if now >= self._retry_at or gone:
                try:
                    started = ensure_worker(
                        self.workbench,
                        self.config_path,
                        settings=self.settings,
                        timeout=self.timeout,
                        abort=abort,
                        db=db,
                        ignore=self._dead,
                    )
                except WorkerNotStarted as error:
                    self._retry_at = now + RETRY_AFTER_FAILURE_S
                    news.append(str(error))
                    failed = True
                else:
                    if started is not None:
                        self.workers.append(started)
                        if gone:
                            news.append(f"a new worker (pid {started.pid}) took its place")
            status = self._status(worker_need(db, self.workbench, self._dead), failed)
            return WorkerReport(status, "; ".join(news) or None, failed)

    def running(self) -> list[LocalWorker]:
        """The workers it started that still run (a snapshot, from any thread)."""
        return [local for local in list(self.workers) if local.alive()]

    def _status(self, need: WorkerNeed, failed: bool) -> str:
        ours = sorted({name for local in self.workers for name in local.backends})
        elsewhere = [name for name in need.served if name not in ours]
        parts = []
        if ours:
            parts.append(f"this app's ({', '.join(ours)})")
        if elsewhere:
            parts.append(f"online elsewhere ({', '.join(elsewhere)})")
        if need.needed:
            failure = " (failed to start)" if failed else ""
            parts.append(f"none for {', '.join(need.needed)}{failure}")
        if not parts:
            parts.append("none needed yet (one starts when a job needs it)")
        return "worker: " + "; ".join([*parts, *need.notes])

    def stop(self) -> None:
        """Stop the workers this app started and close the session (safe to call
        twice, from any thread; a check under way finishes first)."""
        with self._lock:
            self._stopped = True
            workers, self.workers = self.workers, []
            db, self._db = self._db, None
        for local in workers:
            local.stop()
        if db is not None:
            db.close()
