"""Helpers for the TUI's tests: an app on a test database, waiting on a condition,
the workers online, a real `imagen worker --once`, jobs queued and the Jobs screen."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.jobs import JobsScreen
from imagen_tui.tui.screens.series import SeriesScreen
from imagen_tui.tui.widgets.image_grid import ImageGrid
from imagen_tui.tui.widgets.job_table import JobTable
from tests.conftest import IMAGEN, Home
from tests.helpers import sql


def make_app(
    home: Any, monkeypatch: Any, db_url: str, config: str = "", **kwargs: Any
) -> WorkbenchApp:
    """The workbench app on `db_url` with the mock backend (no worker unless asked)."""
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    path = home.write_config(config or "default_backend: mock\n")
    return WorkbenchApp(open_workbench(path), **kwargs)


async def until(pilot: Pilot[Any], condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Let the app run until `condition()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.02)


def run(scenario: Any) -> Any:
    return asyncio.run(scenario)


def online_worker_pids(db_url: str) -> list[int]:
    """The pids of the workers whose presence row is fresh."""
    query = "SELECT pid FROM imagen.workers WHERE last_seen >= now() - lease_s * interval '1 s'"
    return [row[0] for row in sql(db_url, query)]


def render_queue(home: Any, db_url: str) -> None:
    """A real `imagen worker --once` on the test database: renders what is pending."""
    done = subprocess.run(
        [str(IMAGEN), "worker", "--once"],
        env={**home.env, "IMAGEN_DATABASE_URL": db_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def enqueue(db_url: str, prompt: str = "a cat", count: int = 1) -> list[int]:
    """`count` jobs for this prompt, inserted with plain SQL; their ids."""
    return [
        row[0]
        for row in sql(
            db_url,
            "INSERT INTO imagen.jobs (prompt, seed) SELECT %s, g FROM generate_series(1, %s) g "
            "RETURNING id",
            (prompt, count),
        )
    ]


async def open_jobs(
    app: WorkbenchApp, pilot: Pilot[Any], showing: list[int] | None = None
) -> JobTable:
    """The Jobs screen's table (once it shows these jobs, if given)."""
    await until(pilot, lambda: app.session is not None)
    await pilot.press("f2")
    await until(pilot, lambda: isinstance(app.screen, JobsScreen))
    table = app.screen.query_one(JobTable)
    if showing is not None:
        await until(pilot, lambda: all(str(job) in table.rows for job in showing))
    return table


def worker(home: Home, db_url: str) -> subprocess.Popen[str]:
    """A real `imagen worker --once` on the test database (renders what is pending, exits)."""
    return subprocess.Popen(
        [str(IMAGEN), "worker", "--once", "--poll-interval", "0.5"],
        env={**home.env, "IMAGEN_DATABASE_URL": db_url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def series_grid(pilot: Any, app: WorkbenchApp) -> ImageGrid:
    """The Series screen's grid, once the screen is shown."""
    grids = await until(
        pilot, lambda: isinstance(app.screen, SeriesScreen) and app.screen.query("#series-grid")
    )
    grid = grids.first()
    assert isinstance(grid, ImageGrid)
    return grid
