"""Snapshots of the Series screen with its image grid, the full-screen image view and
the Gallery, on fixed data: a stand-in for `services.Session` with the same method
names returning fixed rows (fixed ids, seeds, dates), tiny generated thumbnails drawn
as half cells, a fixed clock and theme, a small terminal.

Regenerate after a deliberate change with `pytest tests/test_tui_snapshots_series.py
--snapshot-update` and look at every changed SVG before committing it.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench
from imagen_tui.db.repositories import (
    GalleryCard,
    ImageRow,
    SeriesDetail,
    SeriesRow,
    TryRow,
)
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.duel import DuelScreen
from imagen_tui.tui.screens.gallery import GalleryScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen
from imagen_tui.tui.screens.series import SeriesScreen
from tests.tui import until
from tests.tui_fixtures import FixedSession

WHEN = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
COLOURS = {
    101: ((200, 60, 40), (250, 200, 60)),
    102: ((30, 90, 200), (120, 230, 250)),
    103: ((240, 240, 240), (60, 60, 60)),
    201: ((40, 150, 60), (230, 240, 120)),
    301: ((120, 40, 160), (250, 150, 200)),
}


def thumbnail(image_id: int) -> bytes:
    """A 16x16 PNG: a diagonal gradient between the image's two colours."""
    start, end = COLOURS[image_id]
    picture = Image.new("RGB", (16, 16))
    for x in range(16):
        for y in range(16):
            t = (x + y) / 30
            picture.putpixel(
                (x, y), tuple(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
            )
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def image_row(image_id: int, series_id: int | None, idx: int | None, seed: int) -> ImageRow:
    prompt = "a red [bold]fox[/] in snow" if series_id == 7 else PROMPTS[series_id]
    return ImageRow(
        id=image_id,
        job_id=image_id + 1000,
        series_id=series_id,
        series_idx=idx,
        seed=seed,
        width=512,
        height=512,
        backend="mock",
        model="mock-v1",
        storage_uri=f"https://images.example/{image_id}.png",
        thumbnail=thumbnail(image_id),
        thumbnail_mime="image/png",
        metadata={
            "prompt": prompt,
            "seed": seed,
            "size": "512x512",
            "steps": 20,
            "backend": "mock",
            "model": "mock-v1",
            "latency_ms": 1234.5,
            "cost_usd": 0.0,
            "created_at": WHEN.isoformat(timespec="seconds"),
        },
        created_at=WHEN,
    )


PROMPTS: dict[int | None, str] = {7: "a red [bold]fox[/] in snow", 5: "lighthouse", None: "moth"}


def try_row(idx: int, status: str, image: ImageRow | None, **extra: Any) -> TryRow:
    return TryRow(
        idx=idx,
        job_id=1000 + idx,
        status=status,
        progress=extra.get("progress"),
        error=extra.get("error"),
        seed=42 + idx - 1,
        image_id=None if image is None else image.id,
        storage_uri=None if image is None else image.storage_uri,
        width=None if image is None else 512,
        height=None if image is None else 512,
        model=None if image is None else "mock-v1",
        backend="mock",
        winner=image is not None and image.id == 102,
    )


def fixed_session() -> FixedSession:
    """Two series (7: two images, one running try, one failed; 5: one image)
    and a single image, for the Series screen and the Gallery."""
    images = {
        101: image_row(101, 7, 1, 42),
        102: image_row(102, 7, 2, 43),
        201: image_row(201, 5, 1, 9),
        301: image_row(301, None, None, 77),
    }
    series_7 = (
        try_row(1, "done", images[101]),
        try_row(2, "done", images[102]),
        try_row(3, "running", None, progress=0.4),
        try_row(4, "failed", None, error="mock: [red]GPU[/] out of memory"),
    )
    series_5 = (try_row(1, "done", images[201]),)
    return FixedSession(
        jobs_rows=[],
        series_rows=[
            SeriesRow(7, PROMPTS[7], None, 4, 2, 1, 2, WHEN),
            SeriesRow(5, PROMPTS[5], "photo", 1, 1, 0, None, WHEN),
        ],
        details={
            series_id: SeriesDetail(
                id=series_id,
                spec=RequestSpec(PROMPTS[series_id], seed=42),
                count=len(tries),
                selected_image_id=102 if series_id == 7 else None,
                created_at=WHEN,
                tries=tries,
            )
            for series_id, tries in ((7, series_7), (5, series_5))
        },
        images=images,
        cards=[
            GalleryCard(images[301], "moth", None, 1, 1, False),
            GalleryCard(images[201], PROMPTS[5], 5, 1, 1, False),
            GalleryCard(images[102], PROMPTS[7], 7, 4, 2, True),
        ],
    )


pytestmark = pytest.mark.usefixtures("halfcell_pictures")


@pytest.fixture
def app(home) -> WorkbenchApp:
    workbench = open_workbench(home.write_config("default_backend: mock\n"))
    app = WorkbenchApp(workbench, open_session=fixed_session, clock=lambda: WHEN)  # type: ignore[arg-type]
    app.theme = "textual-dark"
    return app


async def shown_series(pilot: Any) -> None:
    app = pilot.app
    await until(pilot, lambda: app.session is not None)
    await pilot.press("f3")
    screen = await until(pilot, lambda: isinstance(app.screen, SeriesScreen) and app.screen)
    await until(pilot, lambda: screen.series_id == 7 and len(screen.grid.keys) == 4)
    grid = screen.grid
    await until(pilot, lambda: sum(tile._image is not None for tile in grid.tiles) == 2)
    grid.focus()
    await pilot.press("right")
    await pilot.pause()


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
