"""The Compose screen against a real database: submit, field errors, the slider."""

from __future__ import annotations

import psycopg
import pytest
from textual.widgets import Input, Static, TextArea

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


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("steps", "0", "--steps"),
        ("steps", "many", "--steps"),
        ("seed", "-5", "--seed"),
        ("size", "12x", "--size"),
        ("size", "4096x4096", "--size"),
    ],
)
def test_a_bad_field_is_marked_with_the_clis_words_and_nothing_is_queued(
    home, monkeypatch, db_url, field, value, flag
):
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            screen = app.screen
            screen.query_one("#prompt", TextArea).text = "a cat"
            screen.query_one(f"#{field}", Input).value = value
            await pilot.press("ctrl+s")
            row = screen.query_one(f"#{field}-row")
            await until(pilot, lambda: row.has_class("-invalid"))
            return str(screen.query_one(f"#{field}-error", Static).render()), app.focused

    shown, focused = run(scenario())
    assert _counts(db_url) == (0, 0)
    assert focused is not None and focused.id == field
    cli = home.imagen("submit", "a cat", f"{flag}={value}")
    assert cli.returncode != 0
    assert shown in cli.stderr, (shown, cli.stderr)


def test_an_empty_prompt_is_refused_where_it_is_typed(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("ctrl+s")
            row = app.screen.query_one("#prompt-row")
            await until(pilot, lambda: row.has_class("-invalid"))
            return str(app.screen.query_one("#prompt-error", Static).render())

    assert "prompt is empty" in run(scenario())
    assert _counts(db_url) == (0, 0)
