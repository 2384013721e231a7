"""The TUI's own worker: `ensure_worker` starts `imagen-tui --headless-worker`
as a child unless one is online, and returns a `LocalWorker` (`stop()`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from imagen_tui.cmdline import worker_argv
from imagen_tui.core.rows import WorkerPresence
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import ImagenError
from imagen_tui.services.sessions import Session, session
from imagen_tui.services.worker import WorkerSettings

# --------------------------------------------------------------------------- the TUI's worker

WORKER_LOG_FILENAME = "tui-worker.log"
# The worker's lifeline: the number of an inherited fd, a pipe's read end whose
# write end only the app holds (imagen_tui.tui.launch.watch_parent reads it).
PARENT_PIPE_ENV = "IMAGEN_TUI_PARENT_PIPE"


class WorkerNotStarted(ImagenError):
    """The TUI's worker exited, or did not come online, after it was started."""


def worker_log_path() -> Path:
    """Where the TUI's worker logs (never the terminal, which the app owns)."""
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
    if no_worker or workbench.config.tui.worker == "never":
        return None
    settings = settings or WorkerSettings()
    with session(workbench) as db:
        if db.workers_online():
            return None
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
