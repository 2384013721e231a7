"""The fixed data of the Series screen's snapshots: two series (7: two images, one
running try, one failed; 5: one image) and a single image, with tiny generated
thumbnails and a fixed date, served by a `FixedSession`; and `shown_series`,
which opens the Series screen on series 7 with its pictures drawn."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from imagen_tui.core.rows import GalleryCard, ImageRow, SeriesDetail, SeriesRow, TryRow
from imagen_tui.core.spec import RequestSpec
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
