"""No orphan holds the queue (issue 16 point 3): the app's worker, its app gone,
is offline at once and hands its job back within one lease, even from inside a
generation that never ends. Real processes, real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from imagen_tui.tui.launch import orphan_grace_s
from tests.conftest import Home, running
from tests.helpers import add_job, job_row, sql
from tests.processes import wait_until

LEASE_S = 4.0

# An app that starts its worker (lease LEASE_S), says which, then waits to be killed.
APP = f"""
import sys
from imagen_tui import services
from imagen_tui.core.workbench import open_workbench
settings = services.WorkerSettings(poll_interval=0.5, lease={LEASE_S})
local = services.ensure_worker(open_workbench(sys.argv[1]), sys.argv[1], settings=settings)
print(local.pid, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def queue(home: Home, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    home.env["IMAGEN_DATABASE_URL"] = db_url
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    yield db_url


def test_orphan_grace_is_within_one_lease():
    assert 0 < orphan_grace_s(LEASE_S) < LEASE_S


@pytest.mark.parametrize("blocks", [False, True], ids=["async", "blocking-thread"])
def test_a_killed_apps_worker_stuck_in_a_generation_is_offline_and_hands_back(home, queue, blocks):
    """SIGKILL the app while its worker renders a job that would take ten minutes
    (awaiting, or blocking a thread like a GPU library call): the worker's
    presence row is gone at once, and the job is pending again, its attempt not
    counted, within one lease; then the worker exits as after a second SIGTERM."""
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n    delay_ms: 600000\n"
        f"    delay_blocks: {'true' if blocks else 'false'}\n"
    )
    job_id = add_job(queue, "forever", backend="mock")
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(path)],
        env=home.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    try:
        assert app.stdout is not None
        child = int(app.stdout.readline())
        wait_until(lambda: job_row(queue, job_id)["status"] == "running", "the claim")
        app.kill()  # no clean-up code of the app runs
        app.wait(10)
        killed = time.monotonic()

        presence = "SELECT 1 FROM imagen.workers WHERE pid = %s"
        wait_until(lambda: not sql(queue, presence, (child,)), "offline", timeout=LEASE_S)
        wait_until(
            lambda: job_row(queue, job_id)["status"] == "pending",
            "the job handed back",
            timeout=LEASE_S - (time.monotonic() - killed),
        )
        job = job_row(queue, job_id)
        assert (job["attempts"], job["worker_id"], job["lease_id"]) == (0, None, None)
        wait_until(lambda: not running(child), "the worker to exit", timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
        if child and running(child):
            subprocess.run(["kill", "-9", str(child)], check=False)
