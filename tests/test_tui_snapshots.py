"""Screenshots of the Compose, Jobs and Usage screens (pytest-textual-snapshot).

Fixed content (tests/tui_fixtures.py), a fixed clock and theme, no blinking
cursor. Run `pytest --snapshot-update tests/test_tui_snapshots.py` after a
deliberate change and look at the SVGs before committing them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from tests.tui_fixtures import FixedSession, clock

SAVED_FORM = {
    "prompt": "a cat in a fishbowl, morning light",
    "negative": "blurry",
    "backend": "mock",
    "style": "photo",
    "size": "",
    "steps": "",
    "seed": "42",
    "tries": 4,
}


def snapshot_app(home, state=None) -> WorkbenchApp:
    path: Path = home.write_config("default_backend: mock\n")
    app = WorkbenchApp(
        open_workbench(path),
        open_session=FixedSession,
        clock=clock,
        state={"theme": "textual-dark", **(state or {})},
    )
    return app


def test_compose_screen(home, snap_compare):
    app = snapshot_app(home, {"form": SAVED_FORM})
    assert snap_compare(app, terminal_size=(100, 34))


def test_compose_screen_at_80x24(home, snap_compare):
    app = snapshot_app(home, {"form": SAVED_FORM})
    assert snap_compare(app, terminal_size=(80, 24))


def test_compose_screen_marks_a_bad_field(home, snap_compare):
    app = snapshot_app(home, {"form": {**SAVED_FORM, "steps": "0"}})
    assert snap_compare(app, press=["ctrl+s"], terminal_size=(100, 34))


def test_jobs_screen(home, snap_compare):
    app = snapshot_app(home)
    assert snap_compare(app, press=["f2"], terminal_size=(130, 20))


@pytest.fixture
def utc_days() -> Iterator[None]:
    """Local days are UTC days (the Usage chart counts local days), then as before."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_usage_screen(home, snap_compare, utc_days):
    app = snapshot_app(home)
    assert snap_compare(app, press=["f5"], terminal_size=(100, 30))
