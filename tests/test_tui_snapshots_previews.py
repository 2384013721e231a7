"""Snapshot of a Series grid tile showing a live preview (issue 18): try 3 of the
fixed series runs, a preview event arrives, the tile reads the preview through
the session and draws it under its progress bar and step.

Regenerate after a deliberate change with `pytest tests/test_tui_snapshots_previews.py
--snapshot-update` and look at the changed SVG before committing it.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageFilter

from imagen_tui.core.events import JobEvent, PreviewNote
from imagen_tui.core.rows import PreviewRow
from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from tests.series_fixtures import WHEN, fixed_session, shown_series
from tests.tui import until
from tests.tui_fixtures import FixedSession

pytestmark = pytest.mark.usefixtures("halfcell_pictures")
RUNNING_JOB = 1003  # try 3 of series 7


def preview_jpeg() -> bytes:
    """A blurred 32x32 picture: two discs on a gradient, as a sampler's early step."""
    picture = Image.new("RGB", (32, 32))
    for x in range(32):
        for y in range(32):
            picture.putpixel((x, y), (40 + 4 * x, 60, 200 - 4 * y))
    for cx, cy, colour in ((10, 12, (250, 220, 60)), (22, 20, (240, 80, 60))):
        for x in range(32):
            for y in range(32):
                if (x - cx) ** 2 + (y - cy) ** 2 < 30:
                    picture.putpixel((x, y), colour)
    out = io.BytesIO()
    picture.filter(ImageFilter.GaussianBlur(1.5)).save(out, "JPEG", quality=90)
    return out.getvalue()


def session_with_preview() -> FixedSession:
    session = fixed_session()
    session.previews[RUNNING_JOB] = PreviewRow(RUNNING_JOB, 8, 20, 32, 32, preview_jpeg(), WHEN)
    return session


@pytest.fixture
def app(home) -> WorkbenchApp:
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    app = WorkbenchApp(workbench, open_session=session_with_preview, clock=lambda: WHEN)  # type: ignore[arg-type]
    app.theme = "textual-dark"
    return app


def test_series_tile_with_a_live_preview(app, snap_compare):
    async def run_before(pilot: Any) -> None:
        await shown_series(pilot)
        note = PreviewNote(step=8, total=20, width=32, height=32, size=900)
        app.previews_signal.publish(
            JobEvent(RUNNING_JOB, "running", series_id=7, series_idx=3, progress=0.4, preview=note)
        )
        tile = app.screen.grid.tile("3")
        await until(pilot, lambda: tile.previewing and tile._image is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
