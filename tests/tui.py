"""Helpers for the TUI's tests: an app on a test database, waiting on a condition,
plain SQL, the workers online, and a real `imagen worker --once`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
from textual.pilot import Pilot

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from tests.conftest import IMAGEN


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


def sql(db_url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit (as another client would); its rows."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


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
