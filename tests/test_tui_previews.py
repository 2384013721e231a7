"""Live previews in the Series screen's tiles, end to end: a real `imagen worker
--once` renders on the mock (its blurred-then-sharp previews) or on the fake
ComfyUI (type 1 and type 4 preview frames, one per step), the previews go
through the real PostgreSQL (imagen.previews, a job event), and the tile shows
the latest one until the final image replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imagen_tui.core.spec import RequestSpec
from imagen_tui.services import open_session
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.widgets.image_grid import ImageGrid
from tests.comfyui_fake import FakeComfy
from tests.conftest import Home
from tests.helpers import sql
from tests.tui import make_app, run, series_grid, until, worker

SIZE = (100, 34)
pytestmark = pytest.mark.usefixtures("halfcell_pictures")


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    server = FakeComfy().start()
    yield server
    server.stop()


def submit(app: WorkbenchApp, backend: str, steps: int) -> int:
    spec = RequestSpec("a heron at dawn", width=256, height=256, seed=7, steps=steps,
                       backend=backend)  # fmt: skip
    session = open_session(app.workbench)
    try:
        return session.submit(app.workbench, spec, 1).series_id
    finally:
        session.close()


def shows_preview(grid: ImageGrid) -> Any:
    tile = grid.tile("1")
    return tile is not None and tile.previewing and tile._image is not None and tile


def preview_then_final(home: Home, monkeypatch: Any, db_url: str, app: WorkbenchApp,
                       series_id: int) -> list[str]:  # fmt: skip
    """Run the worker while the tile is watched; what the tile showed, in order."""
    shown: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(series_id)
            grid = await series_grid(pilot, app)
            await until(pilot, lambda: grid.keys == ["1"])
            process = worker(home, db_url)
            try:
                tile = await until(pilot, lambda: shows_preview(grid), timeout=60)
                shown.append("preview")
                assert tile._shown is tile.preview and tile.picture is None
                status = str(tile.query_one(".tile-status").render())
                assert "%" in status and "/" in status  # the bar and the step
                assert sql(db_url, "SELECT count(*) FROM imagen.previews") == [(1,)]
                await until(pilot, lambda: tile.picture is not None and tile._image, timeout=60)
                shown.append("final")
                assert tile._shown is tile.picture and tile.preview is None
                assert not tile.previewing and not tile.query_one(".tile-status").display
            finally:
                _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
        assert sql(db_url, "SELECT count(*) FROM imagen.previews") == [(0,)]

    run(scenario())
    return shown


def test_a_tile_shows_the_mocks_previews_then_its_image(home, monkeypatch, db_url):
    app = make_app(
        home,
        monkeypatch,
        db_url,
        f"default_backend: mock\noutput:\n  directory: {home.root / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n    delay_ms: 3000\n",
    )
    series_id = submit(app, "mock", 10)
    assert preview_then_final(home, monkeypatch, db_url, app, series_id) == ["preview", "final"]


@pytest.mark.parametrize("metadata", [True, False], ids=["type4", "type1"])
def test_a_tile_shows_comfyuis_previews_then_its_image(home, monkeypatch, db_url, fake, metadata):
    fake.scenario, fake.step_delay, fake.preview_method = "progress", 0.3, "auto"
    fake.supports_metadata = metadata
    app = make_app(
        home,
        monkeypatch,
        db_url,
        f"default_backend: flux\noutput:\n  directory: {home.root / 'out'}\n"
        f"backends:\n  flux:\n    type: comfyui\n    url: {fake.url}\n",
    )
    series_id = submit(app, "flux", 8)
    assert preview_then_final(home, monkeypatch, db_url, app, series_id) == ["preview", "final"]
    assert fake.previews_sent == 8


def test_full_screen_shows_the_live_preview_until_the_image_replaces_it(home, monkeypatch, db_url):
    from imagen_tui.tui.screens.image_view import ImageViewScreen
    from imagen_tui.tui.screens.live_view import LiveViewScreen

    app = make_app(
        home,
        monkeypatch,
        db_url,
        f"default_backend: mock\noutput:\n  directory: {home.root / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n    delay_ms: 3000\n",
    )
    series_id = submit(app, "mock", 10)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(series_id)
            grid = await series_grid(pilot, app)
            await until(pilot, lambda: grid.keys == ["1"])
            grid.focus()
            process = worker(home, db_url)
            try:
                await until(pilot, lambda: shows_preview(grid), timeout=60)
                await pilot.press("f")
                view = await until(
                    pilot, lambda: isinstance(app.screen, LiveViewScreen) and app.screen
                )
                await until(pilot, lambda: view.preview is not None and view._image, timeout=30)
                status = str(view.query_one("#live-view-status").render())
                assert "step " in status and "/10" in status
                final = await until(
                    pilot,
                    lambda: isinstance(app.screen, ImageViewScreen) and app.screen,
                    timeout=60,
                )
                await until(pilot, lambda: final.query("#image-view-image"))
                assert final.item.image.series_id == series_id
            finally:
                _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr

    run(scenario())
