"""Snapshots of the Series screen with its image grid, the full-screen image view and
the Gallery, on fixed data: a stand-in for `services.Session` with the same method
names returning fixed rows (fixed ids, seeds, dates), tiny generated thumbnails drawn
as half cells, a fixed clock and theme, a small terminal.

Regenerate after a deliberate change with `pytest tests/test_tui_snapshots_series.py
--snapshot-update` and look at every changed SVG before committing it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.duel import DuelScreen
from imagen_tui.tui.screens.gallery import GalleryScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen
from imagen_tui.tui.screens.series import SeriesScreen
from tests.series_fixtures import WHEN, fixed_session, image_row, shown_series, try_row
from tests.tui import until
from tests.tui_fixtures import FixedSession

pytestmark = pytest.mark.usefixtures("halfcell_pictures")


@pytest.fixture
def app(home) -> WorkbenchApp:
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    app = WorkbenchApp(workbench, open_session=fixed_session, clock=lambda: WHEN)  # type: ignore[arg-type]
    app.theme = "textual-dark"
    return app


def test_series_grid(app, snap_compare):
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown_series)


def test_series_grid_wide(app, snap_compare):
    assert snap_compare(app, terminal_size=(140, 30), run_before=shown_series)


def test_full_screen_view(app, snap_compare):
    async def run_before(pilot: Any) -> None:
        await shown_series(pilot)
        await pilot.press("f")
        view = await until(
            pilot,
            lambda: isinstance(pilot.app.screen, ImageViewScreen) and pilot.app.screen,
        )
        await until(pilot, lambda: view.query("#image-view-image"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_gallery(app, snap_compare):
    async def run_before(pilot: Any) -> None:
        await until(pilot, lambda: pilot.app.session is not None)
        await pilot.press("f4")
        screen = await until(
            pilot, lambda: isinstance(pilot.app.screen, GalleryScreen) and pilot.app.screen
        )
        await until(pilot, lambda: sum(t._image is not None for t in screen.grid.tiles) == 3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize(
    ("size", "columns", "tile_width"),
    [((80, 24), 2, 25), ((200, 60), 2, 54)],
)
def test_the_grid_uses_the_room_there_is(app, size, columns, tile_width):
    """Small tiles at 80x24; on a large terminal the tiles grow until every try
    still shows without scrolling (four tries: two rows of two, 54 cells wide)."""

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            await shown_series(pilot)
            grid = pilot.app.screen.grid
            assert grid.columns == columns
            assert {tile.outer_size.width for tile in grid.tiles} == {tile_width}
            picture = grid.tiles[0]._image
            assert picture is not None
            # As wide as the tile allows, twice as wide as high (a square image).
            assert picture.size.width == min(tile_width - 2, 2 * picture.size.height)
            assert picture.size.height == (tile_width - 2) // 2

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the loop


def three_tries_session() -> FixedSession:
    """Series 7 with its third try done too (image 103), no winner yet."""
    session = fixed_session()
    session.images[103] = image_row(103, 7, 3, 44)
    detail = session.details[7]
    tries = list(detail.tries)
    tries[2] = try_row(3, "done", session.images[103])
    session.details[7] = replace(detail, tries=tuple(tries), selected_image_id=None)
    return session


async def duel(pilot: Any) -> DuelScreen:
    screen = await until(
        pilot, lambda: isinstance(pilot.app.screen, DuelScreen) and pilot.app.screen
    )
    await until(pilot, lambda: len(screen.query(".duel-image")) == 2)
    await pilot.pause()
    assert isinstance(screen, DuelScreen)
    return screen


def test_compare_view(app, snap_compare):
    """Try 1 marked, compared from try 2: side by side, the seed (what differs) under each."""

    async def run_before(pilot: Any) -> None:
        await shown_series(pilot)  # the cursor on try 2
        await pilot.press("left", "m", "right", "c")
        await duel(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_pick_by_pairs_view(home, snap_compare):
    """Three tries: the second choice, the first one's keeper (try 2) against try 3,
    whose seed differs."""
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    app = WorkbenchApp(workbench, open_session=three_tries_session, clock=lambda: WHEN)  # type: ignore[arg-type]
    app.theme = "textual-dark"

    async def run_before(pilot: Any) -> None:
        await until(pilot, lambda: pilot.app.session is not None)
        await pilot.press("f3")
        screen = await until(pilot, lambda: isinstance(app.screen, SeriesScreen) and app.screen)
        await until(pilot, lambda: sum(t._image is not None for t in screen.grid.tiles) == 3)
        screen.grid.focus()
        await pilot.press("p")
        first = await duel(pilot)
        await pilot.press("right")  # keeps try 2
        await until(pilot, lambda: first.made == 1)
        await until(pilot, lambda: len(first.query(".duel-image")) == 2)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
