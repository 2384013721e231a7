"""Helpers for the TUI's Pilot tests: an app on a test database, and waiting on a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp


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
