"""The TUI's own worker (`services.ensure_worker`, `services.WorkerKeeper`):
started as a child process (`imagen-tui --headless-worker`) only when pending
jobs need one of its config's backends and no online worker serves it, for
those backends only, one at a time across apps, with an allowlisted
environment and a private, rotated log; stopped by `LocalWorker.stop()`.
Real processes, real PostgreSQL; a worker "on another machine" is its
presence row, inserted as that worker would."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagen_tui import services
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import DatabaseError
from tests.conftest import Home, running
from tests.helpers import add_job, job_row, scalar, sql, status_of
from tests.processes import insert_jobs, wait_until
from tests.tui import online_worker_pids


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


def worker_elsewhere(
    url: str, *backends: str, pid: int = 4242, default: str | None = None, note: str | None = None
) -> str:
    """The presence row of an online worker on another machine serving `backends`
    (with `default` for jobs naming none, when given)."""
    worker_id = f"gpu-box:{pid}:t"
    sql(
        url,
        """INSERT INTO imagen.workers
                  (id, host, pid, backends, default_backend, concurrency, lease_s, note)
           VALUES (%s, 'gpu-box', %s, %s, %s, 1, 60, %s)""",
        (worker_id, pid, list(backends), default, note),
    )
    return worker_id


def job_later(url: str, backend: str | None = None) -> int:
    """A pending job that stays pending (due in an hour): a need that lasts."""
    (job_id,) = insert_jobs(url, 1)
    sql(
        url,
        "UPDATE imagen.jobs SET run_at = now() + interval '1 hour', backend = %s WHERE id = %s",
        (backend, job_id),
    )
    return job_id


def two_mocks(home: Home) -> Path:
    return config(home, "  mock2:\n    type: mock\n")


def test_started_when_a_pending_job_needs_it_and_stopped_cleanly(home, queue, started):
    path = config(home)
    assert services.ensure_worker(open_workbench(path), path) is None  # nothing needs one
    (job_id,) = insert_jobs(queue, 1)  # no backend named: the default, mock
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    assert local.alive()
    assert local.presence.online and local.presence.pid == local.pid
    assert local.presence.backends == ("mock",)
    assert pids_online() == [local.pid]

    # It renders the queue, as the worker it announced.
    wait_until(lambda: status_of(queue, job_id) == "done", "the job")
    worker_id = scalar(queue, "SELECT worker_id FROM imagen.jobs WHERE id = %s", (job_id,))
    assert worker_id == local.presence.id

    # Its log is in the state dir, not on the terminal.
    assert local.log_path == home.root / ".local" / "state" / "imagen" / "log" / "tui-worker.log"
    assert ": waiting for jobs" in local.log_path.read_text()

    assert local.stop(timeout=30) == 0
    assert not local.alive()
    assert sql(queue, "SELECT id FROM imagen.workers") == []
    assert "worker stopped: 1 done" in local.log_path.read_text()
    assert local.stop() == 0  # again: nothing to do


def test_not_started_when_a_worker_is_online(home, queue, workers):
    path = config(home)
    job_later(queue)
    other = workers.start(queue, "--poll-interval", "0.5")
    wait_until(lambda: other.pid in pids_online(), "the other worker", workers=[other])
    assert services.ensure_worker(open_workbench(path), path) is None
    assert pids_online() == [other.pid]


def test_not_started_with_no_worker_or_tui_worker_never(home, queue):
    path = config(home)
    insert_jobs(queue, 1)
    assert services.ensure_worker(open_workbench(path), path, no_worker=True) is None
    never = config(home, "tui:\n  worker: never\n")
    assert services.ensure_worker(open_workbench(never), never) is None
    assert sql(queue, "SELECT id FROM imagen.workers") == []


def test_a_child_that_dies_is_a_one_line_error_quoting_its_log(home, queue):
    path = config(home)
    workbench = open_workbench(path)
    insert_jobs(queue, 1)
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
    (job_id,) = insert_jobs(queue, 1)
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    wait_until(lambda: status_of(queue, job_id) == "running", "the job to start")
    assert local.stop(timeout=1) == -signal.SIGKILL
    assert not local.alive()
    # Its row went with the SIGTERM (a stopping worker is offline at once), though
    # it was killed before its job finished; the job is rescued after its lease.
    assert sql(queue, "SELECT pid FROM imagen.workers") == []
    assert status_of(queue, job_id) == "running"


def test_abort_while_waiting_stops_the_child(home, queue):
    path = config(home)
    insert_jobs(queue, 1)
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
        if calls > 2:  # "none online" before and under the lock; then the database goes away
            raise DatabaseError("cannot connect to the queue: gone")
        return real_workers(self)

    insert_jobs(queue, 1)
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(services.DbSession, "workers", workers_then_outage)
    with pytest.raises(DatabaseError, match="gone"):
        services.ensure_worker(open_workbench(path), path)
    (child,) = spawned
    assert child.poll() is not None  # stopped, not left running


def test_a_log_that_cannot_be_written_is_a_one_line_error(home, queue):
    path = config(home)
    insert_jobs(queue, 1)
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
    job_later(queue)
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


# --------------------------------------------------------------------------- when to start one


def test_a_mock_only_workbench_leaves_a_comfy_job_alone(home, queue):
    path = config(home)
    job_id = add_job(queue, backend="comfy-gpu")  # due now, for a backend this config lacks
    keeper = services.WorkerKeeper(open_workbench(path), path)
    try:
        report = keeper.check(threading.Event())
        assert keeper.workers == []
        assert report.status == "worker: none needed yet (one starts when a job needs it)"
        assert services.ensure_worker(open_workbench(path), path) is None
    finally:
        keeper.stop()
    assert sql(queue, "SELECT id FROM imagen.workers") == []
    assert job_row(queue, job_id)["status"] == "pending"
    assert job_row(queue, job_id)["attempts"] == 0


def test_a_job_naming_none_needs_the_default_only_when_no_online_worker_has_one(home, queue):
    workbench = open_workbench(two_mocks(home))
    job_later(queue)
    with services.session(workbench) as db:
        assert services.worker_need(db, workbench).needed == ("mock",)
        worker_elsewhere(queue, "flux")  # no default: it leaves such jobs to others
        assert services.worker_need(db, workbench).needed == ("mock",)
        worker_elsewhere(queue, "comfy-gpu", pid=4343, default="comfy-gpu")  # renders it
        assert services.worker_need(db, workbench).needed == ()


def test_the_header_says_what_a_worker_elsewhere_waits_for(home, queue):
    path = config(home)
    note = "waiting for GPU memory: 3.1 of 16.0 GB free"
    worker_elsewhere(queue, "mock", note=note)
    keeper = services.WorkerKeeper(open_workbench(path), path)
    try:
        report = keeper.check(threading.Event())
    finally:
        keeper.stop()
    assert report.status == f"worker: online elsewhere (mock); {note}"


def test_on_a_shared_queue_it_serves_only_the_backends_no_online_worker_serves(
    home, queue, started
):
    path = two_mocks(home)
    elsewhere = worker_elsewhere(queue, "mock")
    job_later(queue, "mock")
    assert services.ensure_worker(open_workbench(path), path) is None  # mock is served
    job_later(queue, "mock2")
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    assert local.backends == ("mock2",)  # not mock: the other machine's
    pids = sql(queue, "SELECT pid, backends FROM imagen.workers WHERE id <> %s", (elsewhere,))
    assert pids == [(local.pid, ["mock2"])]
    assert local.stop() == 0


def test_on_the_embedded_server_it_serves_all_its_backends(home, queue):
    workbench = open_workbench(two_mocks(home))
    job_later(queue, "mock2")
    worker_elsewhere(queue, "mock")
    with services.session(workbench) as db:
        db._pool.embedded = True  # as the private server's session says
        assert services.worker_need(db, workbench).start == ("mock", "mock2")
        db._pool.embedded = False
        assert services.worker_need(db, workbench).start == ("mock2",)


def test_two_apps_deciding_at_the_same_moment_start_one_worker(home, queue, started):
    path = config(home)
    job_later(queue)
    barrier = threading.Barrier(2)
    results: list[services.LocalWorker | None] = []

    def app() -> None:
        workbench = open_workbench(path)
        barrier.wait()
        results.append(services.ensure_worker(workbench, path))

    threads = [threading.Thread(target=app) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    started.extend(local for local in results if local is not None)
    assert len(results) == 2
    assert len(started) == 1, [local.pid for local in started]
    assert pids_online() == [started[0].pid]


def test_the_second_app_starts_a_worker_after_the_first_quits(home, queue):
    path = config(home)
    job_later(queue)
    first = services.WorkerKeeper(open_workbench(path), path)
    second = services.WorkerKeeper(open_workbench(path), path)
    abort = threading.Event()
    try:
        assert first.check(abort).status == "worker: this app's (mock)"
        (theirs,) = first.workers
        assert second.check(abort).status == "worker: online elsewhere (mock)"
        assert second.workers == []
        first.stop()  # the first app quits: its worker withdraws its row
        assert not theirs.alive()
        report = second.check(abort)
        assert report.status == "worker: this app's (mock)"
        (mine,) = second.workers
        assert pids_online() == [mine.pid]
    finally:
        first.stop()
        second.stop()
    assert pids_online() == []


def test_its_own_worker_that_died_is_restarted(home, queue):
    path = config(home)
    job_later(queue)
    keeper = services.WorkerKeeper(open_workbench(path), path)
    abort = threading.Event()
    try:
        keeper.check(abort)
        (dead,) = keeper.workers
        dead.process.kill()  # its row stays and looks online for a lease
        dead.process.wait(10)
        report = keeper.check(abort)
        (fresh,) = keeper.workers
        assert fresh.pid != dead.pid and fresh.alive()
        assert report.status == "worker: this app's (mock)"
        assert report.news is not None
        assert report.news.startswith(f"this app's worker (pid {dead.pid}) exited with -9: ")
        assert report.news.endswith(f"a new worker (pid {fresh.pid}) took its place")
        assert fresh.pid in pids_online()
    finally:
        keeper.stop()


def test_a_worker_that_cannot_start_is_told_once_and_retried_later(home, queue):
    path = config(home)
    job_later(queue)
    workbench = open_workbench(path)
    path.write_text("output: [\n")  # the child refuses it
    keeper = services.WorkerKeeper(workbench, path)
    try:
        report = keeper.check(threading.Event())
        assert report.failed and report.news is not None
        assert report.news.startswith("the worker exited with 2 before it came online")
        assert report.status == "worker: none for mock (failed to start)"
        again = keeper.check(threading.Event())  # within the minute: no new attempt
        assert again.news is None and not again.failed
    finally:
        keeper.stop()


def test_a_start_lock_held_elsewhere_makes_it_wait_then_give_up_on_abort(home, queue):
    from imagen_tui.db.locks import start_locks

    path = config(home)
    job_later(queue)
    abort = threading.Event()
    with start_locks(queue, ["mock"]) as held:
        assert held
        threading.Timer(0.5, abort.set).start()
        began = time.monotonic()
        assert services.ensure_worker(open_workbench(path), path, abort=abort) is None
        assert time.monotonic() - began < 20  # the abort, not the lock's 120 s timeout
    assert sql(queue, "SELECT id FROM imagen.workers") == []


# --------------------------------------------------------------------------- environment and log


def test_the_child_gets_the_allowlist_and_its_configs_token_not_other_secrets(
    home, queue, started, monkeypatch
):
    path = config(home, "  flux:\n    type: replicate\n    api_token_env: TEST_FLUX_TOKEN\n")
    monkeypatch.setenv("TEST_FLUX_TOKEN", "r8_token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("LC_TIME", "C")
    job_later(queue)
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    raw = Path(f"/proc/{local.pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    assert env["TEST_FLUX_TOKEN"] == "r8_token"
    assert env["IMAGEN_DATABASE_URL"] == queue
    assert env["HOME"] == str(home.root) and env["LC_TIME"] == "C"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "GITHUB_TOKEN" not in env
    local.stop()


def test_worker_env_keeps_only_the_allowlist_and_the_configs_names(home):
    path = config(
        home,
        "  gpt:\n    type: openai\n    model: gpt-image-2\n    api_key_env: OPENAI_TEST\n"
        "database:\n  url_env: QUEUE_URL\n",
    )
    environ = {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "XDG_DATA_HOME": "/d",
        "IMAGEN_CONFIG": "/c",
        "TZ": "UTC",
        "OPENAI_TEST": "k",
        "QUEUE_URL": "postgresql://q",
        "OPENAI_API_KEY": "someone else's",
        "AWS_ACCESS_KEY_ID": "a",
        "SSH_AUTH_SOCK": "/s",
    }
    from imagen_tui.config import load_config

    config_ = load_config(path)
    assert services.config_env_names(config_) == ["OPENAI_TEST", "QUEUE_URL"]
    assert services.worker_env(config_, environ) == {
        name: environ[name]
        for name in (
            "PATH",
            "LANG",
            "XDG_DATA_HOME",
            "IMAGEN_CONFIG",
            "TZ",
            "OPENAI_TEST",
            "QUEUE_URL",
        )
    }


def test_the_log_is_private_and_rotated_by_size(home, queue, started):
    log_path = services.worker_log_path()
    log_path.parent.mkdir(parents=True)
    log_path.parent.chmod(0o755)
    log_path.write_bytes(b"x" * 100)
    log_path.chmod(0o644)
    with services.open_worker_log(log_path, max_bytes=1000) as log:
        log.write(b"more\n")
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert log_path.read_bytes() == b"x" * 100 + b"more\n"  # under the size: appended
    with services.open_worker_log(log_path, max_bytes=100) as log:
        log.write(b"fresh\n")
    old = log_path.with_name("tui-worker.log.1")
    assert old.read_bytes() == b"x" * 100 + b"more\n"
    assert log_path.read_bytes() == b"fresh\n"
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    with services.open_worker_log(log_path, max_bytes=5) as log:
        pass
    assert old.read_bytes() == b"fresh\n"  # one old file kept
    assert log_path.read_bytes() == b""

    # The worker's own output lands in it, with these modes.
    log_path.unlink()
    path = config(home)
    job_later(queue)
    local = services.ensure_worker(open_workbench(path), path)
    assert local is not None
    started.append(local)
    assert local.log_path == log_path
    wait_until(lambda: ": waiting for jobs" in log_path.read_text(), "the worker's log")
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    local.stop()


def test_its_dead_workers_row_never_counts_as_a_worker_elsewhere(home, queue):
    path = config(home)
    job_later(queue)
    keeper = services.WorkerKeeper(open_workbench(path), path)
    abort = threading.Event()
    try:
        keeper.check(abort)
        (dead,) = keeper.workers
        path.write_text("output: [\n")  # its replacement cannot start
        dead.process.kill()  # its row stays and looks online for a lease
        dead.process.wait(10)
        report = keeper.check(abort)
        assert report.failed and keeper.workers == []
        assert online_worker_pids(queue) == [dead.pid]  # its row: stale only after a lease
        # Later checks (no new attempt within the minute) still know that row is ours, dead.
        assert keeper.check(abort).status == "worker: none for mock"
    finally:
        keeper.stop()
