"""The app's fast paths through private Textual and textual-image parts are
taken on the pinned versions: a bump that breaks one fails here (the app
itself falls back to the public path: see imagen_tui/tui/fastpaths.py)."""

from __future__ import annotations

from functools import partial

import pytest

from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui import fastpaths
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.widgets.footer import Footer
from tests.tui import run, until
from tests.tui_fixtures import FixedSession, clock


@pytest.fixture
def recorded(monkeypatch) -> list[str]:
    fallbacks: list[str] = []
    monkeypatch.setattr(fastpaths, "FALLBACKS", fallbacks)
    return fallbacks


def test_every_screen_and_its_footer_take_the_fast_paths(home, recorded):
    app = WorkbenchApp(
        open_workbench(home.write_config("default_backend: mock\n")),
        open_session=FixedSession,
        clock=clock,
    )

    async def scenario():
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.session is not None)
            for key, mode in [("f2", "jobs"), ("f3", "series"), ("f4", "gallery"), ("f5", "usage")]:
                await pilot.press(key)
                await until(pilot, partial(lambda mode: app.current_mode == mode, mode))
                await until(pilot, lambda: app.screen.query_one(Footer).children)

    run(scenario())
    assert recorded == []


def test_a_screen_is_marked_styled_on_its_first_visit(home, recorded):
    from imagen_tui.tui.app import _styled_at_registration

    app = WorkbenchApp(
        open_workbench(home.write_config("default_backend: mock\n")),
        open_session=FixedSession,
        clock=clock,
    )

    async def scenario():
        async with app.run_test(size=(100, 30)):
            screen = app.get_screen("usage")
            return _styled_at_registration(app, screen)

    assert run(scenario()) is True
    assert recorded == []


def test_without_the_private_counts_textual_restyles_as_usual(recorded):
    from types import SimpleNamespace

    from imagen_tui.tui.app import _styled_at_registration

    assert _styled_at_registration(SimpleNamespace(), SimpleNamespace()) is False  # type: ignore[arg-type]
    assert recorded == ["restyle on first visit"]
