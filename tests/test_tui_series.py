"""The Series screen's image grid, the full-screen view and the Gallery, against the
suite's real PostgreSQL: series submitted through the Session, rendered by a real
`imagen worker --once` (the mock backend), checked in SQL."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.notifications import Notify
from textual.widgets import Static

from imagen_tui.core.spec import RequestSpec
from imagen_tui.services import open_session
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens import image_view
from imagen_tui.tui.screens.gallery import GalleryScreen
from imagen_tui.tui.screens.image_view import ImageViewScreen
from imagen_tui.tui.screens.series import SeriesScreen
from imagen_tui.tui.widgets.image_grid import ImageGrid
from tests.conftest import Home
from tests.helpers import sql
from tests.tui import make_app, render_queue, run, series_grid, until, worker

SIZE = (100, 34)


pytestmark = pytest.mark.usefixtures("halfcell_pictures")


def selected(url: str, series_id: int) -> int | None:
    query = "SELECT selected_image_id FROM imagen.series WHERE id = %s"
    [(image_id,)] = sql(url, query, (series_id,))
    return image_id


def image_of(url: str, series_id: int, idx: int) -> int:
    query = "SELECT id FROM imagen.images WHERE series_id = %s AND series_idx = %s"
    [(image_id,)] = sql(url, query, (series_id, idx))
    return int(image_id)


def submit(app: WorkbenchApp, prompt: str, tries: int, seed: int = 5) -> int:
    """Queue a series through the Session, as the Compose screen does."""
    spec = RequestSpec(prompt, width=64, height=64, seed=seed)
    with_session = open_session(app.workbench)
    try:
        return with_session.submit(app.workbench, spec, tries).series_id
    finally:
        with_session.close()


def config(home: Home, delay_ms: int = 0) -> str:
    return (
        f"default_backend: mock\noutput:\n  directory: {home.root / 'out'}\n"
        f"backends:\n  mock:\n    type: mock\n    delay_ms: {delay_ms}\n"
    )


def series_screen(app: WorkbenchApp) -> SeriesScreen:
    screen = app.screen
    assert isinstance(screen, SeriesScreen)
    return screen


def plain(renderable: Any) -> str:
    """What a Rich renderable shows, as plain text."""
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def pictured(grid: ImageGrid) -> list[str]:
    return [tile.info.key for tile in grid.tiles if tile.picture is not None and tile._image]


# --------------------------------------------------------------------------- the grid


def test_grid_shows_the_thumbnails_and_picking_writes_the_winner(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, "a [bold]fox[/] in snow", 3)
    render_queue(home, db_url)
    second = image_of(db_url, series_id, 2)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f3")
            screen = series_screen(app)
            grid = screen.grid
            await until(pilot, lambda: pictured(grid) == ["1", "2", "3"])
            # The prompt is shown as written, not as markup.
            title = str(screen.query_one("#series-title").render())
            assert "a [bold]fox[/] in snow" in title
            grid.focus()
            await pilot.press("l")
            assert grid.current_key == "2"
            await pilot.press("enter")
            await until(pilot, lambda: selected(db_url, series_id) == second)
            await until(
                pilot, lambda: (tile := grid.tile("2")) is not None and tile.has_class("-winner")
            )
            assert (tile_one := grid.tile("1")) is not None and not tile_one.has_class("-winner")
            await until(pilot, lambda: "★2" in str(screen.table.get_row(str(series_id))[2]))
            # Picking the winner again clears it.
            await pilot.press("enter")
            await until(pilot, lambda: selected(db_url, series_id) is None)
            await until(
                pilot,
                lambda: (tile := grid.tile("2")) is not None and not tile.has_class("-winner"),
            )
            # space picks, u clears; h moves back
            await pilot.press("h", "space")
            first = image_of(db_url, series_id, 1)
            await until(pilot, lambda: selected(db_url, series_id) == first)
            await pilot.press("u")
            await until(pilot, lambda: selected(db_url, series_id) is None)
            await pilot.press("j", "k", "l", "l", "backspace")
            assert grid.current_key == "3"

    run(scenario())


def test_a_running_try_shows_its_progress_and_fills_in_when_done(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home, delay_ms=4000))
    series_id = submit(app, "slow heron", 1)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(series_id)
            grid = await series_grid(pilot, app)
            await until(pilot, lambda: grid.keys == ["1"])
            tile = grid.tile("1")
            assert tile is not None
            assert tile.info.status == "pending"
            process = worker(home, db_url)
            try:
                await until(
                    pilot,
                    lambda: tile.info.status == "running" and (tile.info.progress or 0) > 0,
                )
                status = str(tile.query_one(".tile-status").render())
                # "running" and the bar, or over a live preview the bar and the step
                assert ("running" in status or tile.previewing) and "%" in status
                assert tile.picture is None
                await until(pilot, lambda: pictured(grid) == ["1"], timeout=60)
                assert tile.info.status == "done"
                assert not tile.query_one(".tile-status").display
            finally:
                process.wait(timeout=60)
        assert process.returncode == 0

    run(scenario())


def test_full_screen_view_shows_the_image_and_its_metadata(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, "owl at dusk", 2, seed=11)
    render_queue(home, db_url)
    opened: list[Path] = []
    monkeypatch.setattr(image_view, "open_with_system_viewer", opened.append)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(series_id)
            grid = await series_grid(pilot, app)
            await until(pilot, lambda: pictured(grid) == ["1", "2"])
            grid.focus()
            await pilot.press("right", "f")
            view = await until(
                pilot, lambda: app.screen if isinstance(app.screen, ImageViewScreen) else None
            )
            await until(pilot, lambda: view.query("#image-view-image"))
            meta = plain(view.query_one("#image-view-metadata", Static).content)
            for expected in ("owl at dusk", "Seed", "12", "Model", "mock", "Latency"):
                assert expected in meta
            assert view.item.image.series_idx == 2
            await pilot.press("left")
            assert view.item.image.series_idx == 1
            await pilot.press("o")
            await until(pilot, lambda: opened)
            assert opened[0].is_file()
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, SeriesScreen))

    run(scenario())


# --------------------------------------------------------------------------- gallery


def test_gallery_hides_series_members_and_covers_each_series_with_its_winner(
    home, monkeypatch, db_url
):
    app = make_app(home, monkeypatch, db_url, config(home))
    picked = submit(app, "two cats", 3, seed=1)
    unpicked = submit(app, "three dogs", 2, seed=20)
    # A job of no series, inserted as plain SQL can: a solo image once rendered.
    sql(db_url, "INSERT INTO imagen.jobs (prompt, width, height) VALUES ('solo fox', 64, 64)")
    render_queue(home, db_url)
    sql(
        db_url,
        "UPDATE imagen.series SET selected_image_id = %s WHERE id = %s",
        (image_of(db_url, picked, 3), picked),
    )
    [(solo,)] = sql(db_url, "SELECT id FROM imagen.images WHERE series_id IS NULL")

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f4")
            screen = app.screen
            assert isinstance(screen, GalleryScreen)
            await until(pilot, lambda: len(pictured(screen.grid)) == 3)
            assert sorted(screen.grid.keys) == sorted([f"s{picked}", f"s{unpicked}", f"i{solo}"])
            covers = {card.series_id: card for card in screen.cards}
            assert covers[picked].image.id == image_of(db_url, picked, 3)
            assert covers[picked].winner
            assert covers[unpicked].image.id == image_of(db_url, unpicked, 1)
            assert not covers[unpicked].winner
            assert covers[None].prompt == "solo fox"
            assert (cover := screen.grid.tile(f"s{picked}")) is not None
            assert "★" in (cover.border_title or "")
            # Enter on a solo image shows it full-screen.
            screen.grid.select(f"i{solo}")
            await pilot.press("enter")
            view = await until(
                pilot, lambda: app.screen if isinstance(app.screen, ImageViewScreen) else None
            )
            assert view.item.image.id == solo
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is screen)
            # Enter on a series card opens it on the Series screen.
            screen.grid.select(f"s{unpicked}")
            await pilot.press("enter")
            await series_grid(pilot, app)
            await until(pilot, lambda: series_screen(app).series_id == unpicked)

    run(scenario())


def test_o_opens_a_local_file_and_says_so_when_the_file_is_elsewhere(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, "heron", 3)
    render_queue(home, db_url)
    paths = {
        idx: Path(uri.removeprefix("file://"))
        for idx, uri in sql(
            db_url,
            "SELECT series_idx, storage_uri FROM imagen.images WHERE series_id = %s",
            (series_id,),
        )
    }
    paths[2].unlink()  # rendered on another machine, as far as this one can tell
    query = "UPDATE imagen.images SET storage_uri = 's3://bucket/3.png' WHERE series_id = %s"
    sql(db_url, query + " AND series_idx = 3", (series_id,))
    opened: list[Path] = []
    monkeypatch.setattr(image_view, "open_with_system_viewer", opened.append)
    notes: list[str] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async def scenario() -> None:
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(series_id)
            grid = await series_grid(pilot, app)
            await until(pilot, lambda: pictured(grid) == ["1", "2", "3"])
            grid.focus()
            await pilot.press("o")
            await until(pilot, lambda: opened == [paths[1]])
            await pilot.press("l", "o")
            await until(pilot, lambda: any(n.startswith("Not on this machine") for n in notes))
            await pilot.press("l", "o")
            await until(pilot, lambda: "Not a local file: s3://bucket/3.png" in notes)
            assert opened == [paths[1]]

    run(scenario())


def test_every_action_of_the_grid_is_a_palette_entry(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            screen = await until(pilot, lambda: isinstance(app.screen, SeriesScreen) and app.screen)
            titles = {command.title for command in app.get_system_commands(screen)}
            assert {"Pick winner", "Clear winner", "Full screen", "Open file", "Gallery"} <= titles

    run(scenario())


def test_moving_in_the_series_list_shows_that_series_in_the_grid(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    older = submit(app, "first prompt", 1)
    newer = submit(app, "second prompt", 2)
    render_queue(home, db_url)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f3")
            grid = await series_grid(pilot, app)
            screen = series_screen(app)
            await until(pilot, lambda: screen.series_id == newer and pictured(grid) == ["1", "2"])
            assert screen.focused is screen.table
            await pilot.press("down")
            await until(pilot, lambda: screen.series_id == older and pictured(grid) == ["1"])
            await pilot.press("enter")
            assert screen.focused is grid
            await pilot.press("escape")
            assert screen.focused is screen.table
            await pilot.press("up")
            await until(pilot, lambda: screen.series_id == newer and pictured(grid) == ["1", "2"])

    run(scenario())


def test_opening_the_screen_on_a_series_puts_the_keys_on_its_grid(home, monkeypatch, db_url):
    """As a submit or a Gallery card does; the first time, the screen is built for it."""
    app = make_app(home, monkeypatch, db_url, config(home))
    older = submit(app, "first prompt", 1)
    newer = submit(app, "second prompt", 2)
    render_queue(home, db_url)

    def list_cursor_on(screen: SeriesScreen, series_id: int) -> bool:
        table = screen.table
        return str(series_id) in table.rows and table.cursor_row == table.get_row_index(
            str(series_id)
        )

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.show_series(older)
            grid = await series_grid(pilot, app)
            screen = series_screen(app)
            await until(pilot, lambda: screen.series_id == older and pictured(grid) == ["1"])
            assert screen.focused is grid
            await until(pilot, lambda: list_cursor_on(screen, older))
            await pilot.press("enter")
            await until(pilot, lambda: selected(db_url, older) == image_of(db_url, older, 1))

            app.switch_mode("compose")
            app.show_series(newer)  # the screen is built: the list already holds it
            await until(pilot, lambda: screen.series_id == newer and pictured(grid) == ["1", "2"])
            assert app.screen is screen and screen.focused is grid
            assert list_cursor_on(screen, newer)
            await pilot.press("l", "enter")
            await until(pilot, lambda: selected(db_url, newer) == image_of(db_url, newer, 2))

    run(scenario())
