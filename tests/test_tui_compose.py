"""The Compose screen against a real database: submit, field errors, the slider."""

from __future__ import annotations

import psycopg
from textual.widgets import Input, TextArea

from imagen_tui.tui.screens.compose import ComposeScreen
from imagen_tui.tui.widgets.tries_slider import TriesSlider
from tests.tui import make_app, run, until


def _counts(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        series = conn.execute("SELECT count(*) FROM imagen.series").fetchone()
        jobs = conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()
    assert series and jobs
    return series[0], jobs[0]


def test_submitting_three_tries_queues_one_series_of_three_jobs(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            screen = app.screen
            assert isinstance(screen, ComposeScreen)
            screen.query_one("#prompt", TextArea).text = "a cat in a fishbowl"
            screen.query_one("#seed", Input).value = "7"
            screen.query_one("#tries", TriesSlider).focus()
            await pilot.press("3")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: _counts(db_url) == (1, 3))

    run(scenario())
    with psycopg.connect(db_url) as conn:
        seeds = [r[0] for r in conn.execute("SELECT seed FROM imagen.jobs ORDER BY series_idx")]
    assert seeds == [7, 8, 9]
