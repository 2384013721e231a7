"""The loop after a series: recall, again, compare, pick by pairs, prompt history and
search, against the suite's real PostgreSQL (series queued through the Session,
rendered by a real `imagen worker --once` on the mock backend, checked in SQL)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest
from textual.notifications import Notify
from textual.widgets import Input, Static

from imagen_tui.core.spec import RequestSpec
from imagen_tui.db import repositories as q
from imagen_tui.services import open_session
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.compose import ComposeScreen
from imagen_tui.tui.screens.duel import DuelScreen
from imagen_tui.tui.screens.gallery import GalleryScreen
from imagen_tui.tui.screens.jobs import JobsScreen
from imagen_tui.tui.screens.series import SeriesScreen
from imagen_tui.tui.widgets.prompt_area import PromptArea
from imagen_tui.tui.widgets.tries_slider import TriesSlider
from tests.conftest import Home
from tests.helpers import acting, sql
from tests.tui import make_app, render_queue, run, until

SIZE = (100, 34)

pytestmark = pytest.mark.usefixtures("halfcell_pictures")


def config(home: Home) -> str:
    return (
        f"default_backend: mock\noutput:\n  directory: {home.root / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n  other:\n    type: mock\n"
        'styles:\n  sketch: "{prompt}, charcoal sketch"\n'
    )


def submit(app: WorkbenchApp, spec: RequestSpec, tries: int) -> int:
    session = open_session(app.workbench)
    try:
        return session.submit(app.workbench, spec, tries).series_id
    finally:
        session.close()


FULL = RequestSpec(
    "a [bold]heron[/] at dawn",
    negative_prompt="blurry",
    style="sketch",
    width=64,
    height=96,
    steps=7,
    seed=500,
    backend="other",
)


def form(app: WorkbenchApp) -> dict[str, Any]:
    screen = app.screen
    assert isinstance(screen, ComposeScreen)
    return screen.form_values()


def series_ids(url: str) -> list[int]:
    return [row[0] for row in sql(url, "SELECT id FROM imagen.series ORDER BY id")]


def winner_idx(url: str, series_id: int) -> int | None:
    query = """SELECT i.series_idx FROM imagen.series s
                 LEFT JOIN imagen.images i ON i.id = s.selected_image_id WHERE s.id = %s"""
    [(idx,)] = sql(url, query, (series_id,))
    return idx  # type: ignore[no-any-return]


async def series_screen(pilot: Any, app: WorkbenchApp, series_id: int, pictures: int) -> Any:
    await until(pilot, lambda: app.session is not None)
    app.show_series(series_id)
    screen = await until(pilot, lambda: isinstance(app.screen, SeriesScreen) and app.screen)
    await until(
        pilot,
        lambda: (
            screen.series_id == series_id
            and sum(t._image is not None for t in screen.grid.tiles) == pictures
        ),
    )
    screen.grid.focus()
    await pilot.pause()
    return screen


# --------------------------------------------------------------------------- recall


def test_recall_fills_every_field_from_a_tile_and_from_a_job_row(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, FULL, 3)
    render_queue(home, db_url)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await series_screen(pilot, app, series_id, 3)
            await pilot.press("l", "e")  # try 2: seed 501
            await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
            await until(pilot, lambda: form(app)["prompt"] == FULL.prompt)
            assert form(app) == {
                "prompt": FULL.prompt,
                "negative": "blurry",
                "backend": "other",
                "style": "sketch",
                "size": "64x96",
                "steps": "7",
                "seed": "501",
                "tries": 3,
            }
            assert isinstance(app.focused, PromptArea)
            # From the Jobs screen: the highlighted job (the newest: try 3).
            app.query_one("#seed", Input).value = "1"
            await pilot.press("f2")
            await until(
                pilot,
                lambda: isinstance(app.screen, JobsScreen) and app.screen.table.row_count,
            )
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
            await until(pilot, lambda: form(app)["seed"] == "502")
            assert form(app)["tries"] == 3 and form(app)["backend"] == "other"
            assert screen.series_id == series_id

    run(scenario())


def test_again_queues_the_same_request_with_fresh_seeds_and_from_the_winner(
    home, monkeypatch, db_url
):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, FULL, 2)
    render_queue(home, db_url)
    columns = "prompt, negative_prompt, style, width, height, steps, backend, count"

    def request(of: int) -> tuple[Any, ...]:
        [row] = sql(db_url, f"SELECT {columns} FROM imagen.series WHERE id = %s", (of,))
        return row

    def seeds(of: int) -> set[int]:
        rows = sql(db_url, "SELECT seed FROM imagen.jobs WHERE series_id = %s", (of,))
        return {row[0] for row in rows}

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await series_screen(pilot, app, series_id, 2)
            await pilot.press("a")
            await until(pilot, lambda: len(series_ids(db_url)) == 2)
            again = series_ids(db_url)[-1]
            assert request(again) == request(series_id)
            [(seed,)] = sql(db_url, "SELECT seed FROM imagen.series WHERE id = %s", (again,))
            assert seed is None  # fresh seeds, not 500 again
            assert seeds(again) == {None}  # each try draws its own when it renders
            # The new series is shown.
            await until(
                pilot,
                lambda: isinstance(app.screen, SeriesScreen) and app.screen.series_id == again,
            )
            # On a picked series, again starts from the winner's request: try 2's
            # job is changed behind the app's back to tell the two apart.
            sql(
                db_url,
                "UPDATE imagen.jobs SET steps = 9 WHERE series_id = %s AND series_idx = 2",
                (series_id,),
            )
            await series_screen(pilot, app, series_id, 2)
            await pilot.press("l", "enter")
            await until(pilot, lambda: winner_idx(db_url, series_id) == 2)
            await until(
                pilot,
                lambda: (
                    isinstance(app.screen, SeriesScreen)
                    and app.screen.selected_image_id is not None
                ),
            )
            await pilot.press("a")
            await until(pilot, lambda: len(series_ids(db_url)) == 3)
            third = series_ids(db_url)[-1]
            assert request(third)[5] == 9 and request(third)[0] == FULL.prompt

    run(scenario())


def test_a_submitted_series_shows_its_pending_tries_before_it_is_read(home, monkeypatch, db_url):
    """Submitting switches to the new series' tiles in the same frame: not the
    previous series' pictures until the database read comes back."""
    app = make_app(home, monkeypatch, db_url, config(home))
    shown_before = submit(app, FULL, 3)
    render_queue(home, db_url)
    reads_may_go = threading.Event()

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await series_screen(pilot, app, shown_before, 3)
            session = app.require_session()
            read = session.series_detail

            def slow_read(series_id: int) -> Any:  # the read of the new series is held back
                if series_id != shown_before:
                    reads_may_go.wait(timeout=30)
                return read(series_id)

            monkeypatch.setattr(session, "series_detail", slow_read)
            await pilot.press("f1")
            compose = await until(
                pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen
            )
            compose.query_one("#prompt", PromptArea).text = "a lighthouse at dusk"
            compose.query_one("#seed", Input).value = "40"
            compose.query_one("#tries", TriesSlider).value = 2
            await pilot.press("ctrl+s")
            await until(
                pilot,
                lambda: (
                    isinstance(app.screen, SeriesScreen) and app.screen.series_id != shown_before
                ),
            )
            await pilot.pause()
            assert not reads_may_go.is_set()  # all of this came from the submission
            [new] = [i for i in series_ids(db_url) if i != shown_before]
            assert screen.series_id == new
            tiles = screen.grid.tiles
            assert [t.info.key for t in tiles] == ["1", "2"]
            assert [t.info.status for t in tiles] == ["pending", "pending"]
            assert [t.info.caption for t in tiles] == ["seed 40", "seed 41"]
            assert all(t._image is None for t in tiles)  # none of the old pictures
            title = str(screen.query_one("#series-title", Static).render())
            assert f"Series {new}" in title and "a lighthouse at dusk" in title
            reads_may_go.set()
            await until(pilot, lambda: screen._loading == new and screen.images == {})
            job_ids = [
                row[0]
                for row in sql(
                    db_url,
                    "SELECT id FROM imagen.jobs WHERE series_id = %s ORDER BY series_idx",
                    (new,),
                )
            ]
            assert [screen.tries[idx].job_id for idx in (1, 2)] == job_ids

    try:
        run(scenario())
    finally:
        reads_may_go.set()


# --------------------------------------------------------------------------- choosing


def test_compare_and_pick_by_pairs_write_the_winner(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, RequestSpec("three owls", width=64, height=64, seed=1), 3)
    render_queue(home, db_url)

    async def duel(pilot: Any) -> DuelScreen:
        screen = await until(pilot, lambda: isinstance(app.screen, DuelScreen) and app.screen)
        assert isinstance(screen, DuelScreen)
        return screen

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await series_screen(pilot, app, series_id, 3)
            titles = {command.title for command in app.get_system_commands(screen)}
            assert {"Recall", "Again", "Mark", "Compare", "Pick by pairs", "Search"} <= titles
            # Compare: try 1 marked, then from try 3; the right one (try 3) is kept.
            await pilot.press("m", "l", "l", "c")
            compare = await duel(pilot)
            assert [entry.key for entry in compare.pair] == [1, 3]
            assert compare.choices == 1
            await pilot.press("right")
            await until(pilot, lambda: winner_idx(db_url, series_id) == 3)
            # Pick by pairs: 1 vs 2 keeps 2 (right), 2 vs 3 keeps 2 (left): 2 choices.
            await until(pilot, lambda: isinstance(app.screen, SeriesScreen))
            await pilot.press("p")
            pairs = await duel(pilot)
            assert pairs.choices == 2 and [e.key for e in pairs.pair] == [1, 2]
            await pilot.press("right")
            assert [e.key for e in pairs.pair] == [2, 3]
            assert winner_idx(db_url, series_id) == 3  # nothing written before the end
            await pilot.press("left")
            await until(pilot, lambda: winner_idx(db_url, series_id) == 2)
            # Reversible as any pick; escape leaves a duel writing nothing.
            await until(pilot, lambda: screen.selected_image_id is not None)
            await pilot.press("u")
            await until(pilot, lambda: winner_idx(db_url, series_id) is None)
            await pilot.press("p")
            await duel(pilot)
            await pilot.press("right", "escape")
            await until(pilot, lambda: isinstance(app.screen, SeriesScreen))
            await pilot.pause(0.2)
            assert winner_idx(db_url, series_id) is None

    run(scenario())


def test_enter_on_a_failed_try_says_why_with_its_error(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    series_id = submit(app, RequestSpec("two owls", width=64, height=64, seed=1), 2)
    query = """UPDATE imagen.jobs SET status = 'failed', error = 'mock: [red]GPU[/] melted'
                WHERE series_id = %s AND series_idx = 2"""
    sql(db_url, query, (series_id,))
    render_queue(home, db_url)
    notes: list[str] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async def scenario() -> None:
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            await series_screen(pilot, app, series_id, 1)
            await pilot.press("l", "enter")
            note = await until(pilot, lambda: [n for n in notes if "Try 2 failed" in n])
            assert "mock: [red]GPU[/] melted" in note[0]
            assert winner_idx(db_url, series_id) is None

    run(scenario())


# --------------------------------------------------------------------------- history


def test_prompt_history_walks_earlier_prompts_newest_first_once_each(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    for prompt in ("a red fox", "a blue whale", "a red fox", "an owl"):
        submit(app, RequestSpec(prompt), 1)

    def prompt_text() -> str:
        return str(app.query_one("#prompt", PromptArea).text)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session is not None)
            area = app.query_one("#prompt", PromptArea)
            area.text = "draft"
            area.focus()
            area.move_cursor((0, 0))
            await pilot.press("up")
            await until(pilot, lambda: prompt_text() == "an owl")
            await pilot.press("up")
            await until(pilot, lambda: prompt_text() == "a red fox")
            await pilot.press("up")
            await until(pilot, lambda: prompt_text() == "a blue whale")
            await pilot.press("up")  # the oldest: stays
            await pilot.pause(0.1)
            assert prompt_text() == "a blue whale"
            await pilot.press("down", "down", "down")
            await until(pilot, lambda: prompt_text() == "draft")
            # ctrl+f: only those containing what the prompt holds.
            area.text = "RED"
            await pilot.pause()
            await pilot.press("ctrl+f")
            await until(pilot, lambda: prompt_text() == "a red fox")
            await pilot.press("up")
            await pilot.pause(0.1)
            assert prompt_text() == "a red fox"  # the only match

    run(scenario())


# --------------------------------------------------------------------------- search


def test_search_filters_the_series_list_and_the_gallery(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url, config(home))
    fox = submit(app, RequestSpec("a red fox 100%", width=64, height=64), 1)
    whale = submit(app, RequestSpec("a blue whale", width=64, height=64, backend="other"), 1)
    render_queue(home, db_url)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await series_screen(pilot, app, whale, 1)
            await until(pilot, lambda: screen.table.row_count == 2)
            screen.table.focus()
            await pilot.press("slash")
            await pilot.press(*"FOX 100%", "enter")
            await until(pilot, lambda: list(screen.table.rows) and screen.table.row_count == 1)
            assert str(fox) in screen.table.rows
            await pilot.press("slash", "ctrl+u", *"_", "enter")  # wildcards are literal
            await until(pilot, lambda: screen.table.row_count == 0)
            await pilot.press("slash", "ctrl+u", "enter", "b")  # backend: the first, "mock"
            await until(
                pilot, lambda: screen.table.row_count == 1 and str(fox) in screen.table.rows
            )
            await pilot.press("b")  # "other"
            await until(pilot, lambda: str(whale) in screen.table.rows)
            assert screen.table.row_count == 1
            await pilot.press("f4")
            gallery = await until(
                pilot, lambda: isinstance(app.screen, GalleryScreen) and app.screen
            )
            await until(pilot, lambda: len(gallery.cards) == 2)
            await pilot.press("slash", *"whale", "enter")
            await until(pilot, lambda: [c.series_id for c in gallery.cards] == [whale])
            await pilot.press("d")  # the last day: both are from today
            await until(pilot, lambda: gallery.search.since is not None)
            await pilot.pause(0.2)
            assert [c.series_id for c in gallery.cards] == [whale]

    run(scenario())


def test_history_and_search_return_only_the_users_own_prompts(db_url, api):
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    for owner, prompt in ((alice, "alice's secret fox"), (bob, "bob's secret fox")):
        query = """WITH s AS (INSERT INTO imagen.series (prompt, count, owner_user_id)
                              VALUES (%s, 1, %s) RETURNING id)
                   INSERT INTO imagen.jobs (series_id, series_idx, prompt, owner_user_id)
                   SELECT id, 1, %s, %s FROM s"""
        sql(db_url, query, (prompt, owner, prompt, owner))
    everyone = q.prompt_history("secret")
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert len(q.fetch(admin, everyone)) == 2  # both exist
    with acting(api, alice) as conn:
        assert q.fetch(conn, q.prompt_history("secret")) == ["alice's secret fox"]
        assert q.fetch(conn, q.prompt_history()) == ["alice's secret fox"]
        rows = q.fetch(conn, q.series_page(search=q.Search("SECRET")))
        assert [row.prompt for row in rows] == ["alice's secret fox"]
    with acting(api, bob) as conn:
        assert q.fetch(conn, q.prompt_history("fox")) == ["bob's secret fox"]
    with acting(api, None, role="anon") as conn, pytest.raises(psycopg.Error):
        q.fetch(conn, q.prompt_history())


def test_a_search_pattern_takes_wildcards_literally():
    assert q.like_pattern("  ") is None
    assert q.like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"
