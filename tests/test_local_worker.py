"""The TUI's own worker (`services.ensure_worker`): started as a child process
(`imagen-tui --headless-worker`) only when no worker is online on the queue,
stopped by `LocalWorker.stop()`. Real processes, real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagen_tui import services
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import DatabaseError
from tests.conftest import Home, running
from tests.helpers import scalar, sql, status_of
from tests.processes import insert_jobs, wait_until


@pytest.fixture
def queue(home: Home, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database as this process's queue (the child inherits the variable)."""
    home.env["IMAGEN_DATABASE_URL"] = db_url
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    yield db_url


@pytest.fixture
def started() -> Iterator[list[services.LocalWorker]]:
    """Local workers a test started; killed after it if it did not stop them."""
    started: list[services.LocalWorker] = []
    yield started
    for local in started:
        if local.alive():
            local.process.kill()
            local.process.wait(10)


def config(home: Home, extra: str = "", delay_ms: int = 0) -> Path:
    return home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        f"backends:\n  mock:\n    type: mock\n    delay_ms: {delay_ms}\n{extra}"
    )


def pids_online() -> list[int]:
    return [w.pid for w in services.workers_online(open_workbench())]


def test_started_when_none_is_online_and_stopped_cleanly(home, queue, started):
    path = config(home)
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    assert local.alive()
    assert local.presence.online and local.presence.pid == local.pid
    assert local.presence.backends == ("mock",)
    assert pids_online() == [local.pid]

    # It renders the queue, as the worker it announced.
    (job_id,) = insert_jobs(queue, 1)
    wait_until(lambda: status_of(queue, job_id) == "done", "the job")
    worker_id = scalar(queue, "SELECT worker_id FROM imagen.jobs WHERE id = %s", (job_id,))
    assert worker_id == local.presence.id

    # Its log is in the data dir, not on the terminal.
    assert local.log_path == home.root / ".local" / "share" / "imagen" / "tui-worker.log"
    assert ": waiting for jobs" in local.log_path.read_text()

    assert local.stop(timeout=30) == 0
    assert not local.alive()
    assert sql(queue, "SELECT id FROM imagen.workers") == []
    assert "worker stopped: 1 done" in local.log_path.read_text()
    assert local.stop() == 0  # again: nothing to do


def test_not_started_when_a_worker_is_online(home, queue, workers):
    path = config(home)
    other = workers.start(queue, "--poll-interval", "0.5")
    wait_until(lambda: other.pid in pids_online(), "the other worker", workers=[other])
    assert services.ensure_worker(open_workbench(path), path) is None
    assert pids_online() == [other.pid]


def test_not_started_with_no_worker_or_tui_worker_never(home, queue):
    path = config(home)
    assert services.ensure_worker(open_workbench(path), path, no_worker=True) is None
    never = config(home, "tui:\n  worker: never\n")
    assert services.ensure_worker(open_workbench(never), never) is None
    assert sql(queue, "SELECT id FROM imagen.workers") == []


def test_a_child_that_dies_is_a_one_line_error_quoting_its_log(home, queue):
    path = config(home)
    workbench = open_workbench(path)
    path.write_text("output: [\n")  # broken after the app read it: the child refuses it
    with pytest.raises(services.WorkerNotStarted) as caught:
        services.ensure_worker(workbench, path)
    message = str(caught.value)
    assert message.startswith("the worker exited with 2 before it came online: imagen-tui: ")
    assert "not valid YAML" in message
    assert message.endswith(f"(log: {services.worker_log_path()})")
    assert "\n" not in message


def test_stop_kills_a_worker_that_does_not_finish_in_time(home, queue, started):
    path = config(home, delay_ms=600_000)
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    (job_id,) = insert_jobs(queue, 1)
    wait_until(lambda: status_of(queue, job_id) == "running", "the job to start")
    assert local.stop(timeout=1) == -signal.SIGKILL
    assert not local.alive()
    # Killed, it could not withdraw: its row stays, and goes stale with its lease.
    assert sql(queue, "SELECT pid FROM imagen.workers") == [(local.pid,)]


def test_abort_while_waiting_stops_the_child(home, queue):
    path = config(home)
    abort = threading.Event()
    abort.set()
    assert services.ensure_worker(open_workbench(path), path, abort=abort) is None
    assert pids_online() == []


def test_a_database_error_while_waiting_stops_the_child(home, queue, monkeypatch):
    path = config(home)
    spawned: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        spawned.append(process)
        return process

    calls = 0
    real_workers = services.DbSession.workers

    def workers_then_outage(self):
        nonlocal calls
        calls += 1
        if calls > 1:  # the first answers "none online"; then the database goes away
            raise DatabaseError("cannot connect to the queue: gone")
        return real_workers(self)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(services.DbSession, "workers", workers_then_outage)
    with pytest.raises(DatabaseError, match="gone"):
        services.ensure_worker(open_workbench(path), path)
    (child,) = spawned
    assert child.poll() is not None  # stopped, not left running


def test_a_log_that_cannot_be_written_is_a_one_line_error(home, queue):
    path = config(home)
    (home.root / ".local").write_text("a file where the data directory should be")
    with pytest.raises(services.WorkerNotStarted, match=r"cannot start a worker \(log: "):
        services.ensure_worker(open_workbench(path), path)


# An app that starts its worker, says which, then waits to be killed.
APP = """
import sys
from imagen_tui import services
from imagen_tui.core.workbench import open_workbench
local = services.ensure_worker(open_workbench(sys.argv[1]), sys.argv[1])
print(local.pid, flush=True)
sys.stdin.read()
"""


def test_the_worker_stops_by_itself_when_the_app_is_killed(home, queue):
    path = config(home)
    env = {**home.env, "IMAGEN_DATABASE_URL": queue}
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(path)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pid = 0
    try:
        assert app.stdout is not None
        child_pid = int(app.stdout.readline())
        assert child_pid in pids_online()
        app.kill()  # no clean-up code of the app runs
        app.wait(10)
        # The child saw its lifeline close and stopped as on SIGTERM: row withdrawn.
        wait_until(
            lambda: not sql(queue, "SELECT 1 FROM imagen.workers WHERE pid = %s", (child_pid,)),
            "the orphaned worker to stop",
        )
        # Its row goes first, its last log line after: wait for the process to end.
        wait_until(lambda: not running(child_pid), "the orphaned worker to exit")
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        if child_pid:  # not our child: if it outlived the test, end it by its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
    log = services.worker_log_path().read_text()
    assert "worker stopped: no jobs" in log
