"""ctrl+q while the app's own worker renders (issue 16 point 3): the app says
what it waits for, exits once the job is finished, and a second ctrl+q hands
the job back at once. Real worker processes, real PostgreSQL, Pilot."""

from __future__ import annotations

from typing import Any

from imagen_tui import services
from imagen_tui.tui.app import WorkbenchApp, finishing_text
from tests.conftest import running
from tests.helpers import add_job, job_row
from tests.tui import make_app, run, until


def app_with_worker(
    home: Any, monkeypatch: Any, db_url: str, delay_ms: int
) -> tuple[WorkbenchApp, services.WorkerKeeper]:
    config = (
        f"output:\n  directory: {home.root / 'out'}\n"
        f"backends:\n  mock:\n    type: mock\n    delay_ms: {delay_ms}\n"
    )
    app: WorkbenchApp = make_app(home, monkeypatch, db_url, config)
    # Its keeper starts a worker for the job each test queues first.
    keeper = services.WorkerKeeper(app.workbench, home.config_path)
    app.worker_keeper = keeper
    return app, keeper


def notified(app: WorkbenchApp, text: str) -> bool:
    return any(text in str(note.message) for note in app._notifications)


def test_finishing_text_names_the_jobs():
    assert finishing_text([12]) == "finishing job 12 (ctrl+q again hands it back)"
    assert finishing_text([3, 4]) == "finishing jobs 3, 4 (ctrl+q again hands them back)"


def test_ctrl_q_during_a_render_says_so_and_a_second_hands_the_job_back(home, monkeypatch, db_url):
    app, keeper = app_with_worker(home, monkeypatch, db_url, delay_ms=600_000)
    job_id = add_job(db_url, "forever", backend="mock")
    said = finishing_text([job_id])

    async def scenario() -> int:
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: job_row(db_url, job_id)["status"] == "running", 60)
            await until(pilot, lambda: "worker: this app's" in app.sub_title, 60)
            (local,) = keeper.running()
            pid = local.pid
            await pilot.press("ctrl+q")
            await until(pilot, lambda: said in app.sub_title and notified(app, said))
            assert app.return_code is None  # still there, saying what it waits for
            assert job_row(db_url, job_id)["status"] == "running"
            await pilot.press("ctrl+q")
            await until(pilot, lambda: app.return_code is not None, 30)
            return pid

    pid = run(scenario())
    job = job_row(db_url, job_id)
    assert (job["status"], job["attempts"], job["worker_id"]) == ("pending", 0, None)
    assert not running(pid)


def test_ctrl_q_once_lets_the_job_finish_then_quits(home, monkeypatch, db_url):
    app, _keeper = app_with_worker(home, monkeypatch, db_url, delay_ms=4_000)
    job_id = add_job(db_url, "soon", backend="mock")

    async def scenario() -> None:
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: job_row(db_url, job_id)["status"] == "running", 60)
            await until(pilot, lambda: "worker: this app's" in app.sub_title, 60)
            await pilot.press("ctrl+q")
            await until(pilot, lambda: "finishing job" in app.sub_title)
            await until(pilot, lambda: app.return_code is not None, 30)
            assert job_row(db_url, job_id)["status"] == "done"

    run(scenario())


def test_a_third_ctrl_q_quits_at_once(home, monkeypatch, db_url):
    """Whatever the worker is doing, ctrl+q three times leaves the app; the worker
    is stopped on the way out and its job goes back to the queue."""
    app, keeper = app_with_worker(home, monkeypatch, db_url, delay_ms=600_000)
    job_id = add_job(db_url, "forever", backend="mock")

    async def scenario() -> int:
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: job_row(db_url, job_id)["status"] == "running", 60)
            await until(pilot, lambda: "worker: this app's" in app.sub_title, 60)
            (local,) = keeper.running()
            pid = local.pid
            await pilot.press("ctrl+q", "ctrl+q", "ctrl+q")
            await until(pilot, lambda: app.return_code is not None, 5)
            return pid

    pid = run(scenario())
    assert not running(pid)
    assert job_row(db_url, job_id)["status"] == "pending"
