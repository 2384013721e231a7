"""The app as a whole: the in-app worker, remembered settings, the palette."""

from __future__ import annotations

import threading

from textual.widgets import Input, TextArea

from imagen_tui import services
from imagen_tui.tui.screens.compose import ComposeScreen
from imagen_tui.tui.widgets.tries_slider import TriesSlider
from tests.conftest import running
from tests.helpers import sql
from tests.tui import make_app, online_worker_pids, run, until


def keeper(app_workbench, config, poll_interval: float = 600.0) -> services.WorkerKeeper:
    """A keeper whose own poll is slow unless asked (the check after a submit is what acts)."""
    return services.WorkerKeeper(
        app_workbench, config, settings=services.WorkerSettings(poll_interval=poll_interval)
    )


def test_the_app_starts_a_worker_for_its_submit_and_stops_it_on_exit(home, monkeypatch, db_url):
    config = home.write_config("default_backend: mock\n")
    app = make_app(home, monkeypatch, db_url)
    app.worker_keeper = ours = keeper(app.workbench, config)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: "worker: none needed yet" in app.sub_title, timeout=60)
            assert online_worker_pids(db_url) == []  # an empty queue needs none
            screen = app.screen
            assert isinstance(screen, ComposeScreen)
            screen.query_one("#prompt", TextArea).text = "a cat"
            await pilot.press("ctrl+s")  # its job needs mock, which no worker serves
            await until(pilot, lambda: "worker: this app's (mock)" in app.sub_title, timeout=60)
            (local,) = ours.workers
            assert online_worker_pids(db_url) == [local.pid]
            await until(
                pilot,
                lambda: sql(db_url, "SELECT status FROM imagen.jobs") == [("done",)],
                timeout=60,
            )
            return local.pid

    pid = run(scenario())
    assert not running(pid)
    assert online_worker_pids(db_url) == []


def test_the_second_app_starts_a_worker_when_the_first_quits(home, monkeypatch, db_url):
    config = home.write_config("default_backend: mock\n")
    app = make_app(home, monkeypatch, db_url)
    app.worker_keeper = ours = keeper(app.workbench, config, poll_interval=0.3)
    # A job that needs mock for a while (due in an hour), and the first app's worker for it.
    sql(db_url, "INSERT INTO imagen.jobs (prompt, run_at) VALUES ('later', now() + interval '1 h')")
    first = services.WorkerKeeper(app.workbench, config)
    try:
        first.check(threading.Event())
        (theirs,) = first.workers

        async def scenario():
            async with app.run_test(size=(100, 34)) as pilot:
                await until(pilot, lambda: "online elsewhere (mock)" in app.sub_title, timeout=60)
                assert ours.workers == []
                first.stop()  # the first app quits, and its worker with it
                await until(pilot, lambda: "this app's (mock)" in app.sub_title, timeout=60)
                (mine,) = ours.workers
                assert online_worker_pids(db_url) == [mine.pid]
                return mine.pid

        pid = run(scenario())
        assert pid != theirs.pid and not running(pid)
    finally:
        first.stop()
    assert online_worker_pids(db_url) == []


def test_form_values_and_theme_are_remembered_for_the_next_launch(home, monkeypatch, db_url):
    saved = []
    app = make_app(home, monkeypatch, db_url, save_state=lambda state: saved.append(dict(state)))

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.screen.query_one("#prompt", TextArea).text = "a red fox"
            app.screen.query_one("#seed", Input).value = "12"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: saved)
            app.theme = "nord"
            await until(pilot, lambda: saved[-1].get("theme") == "nord")

    run(scenario())
    services.save_tui_state(saved[-1])
    again = make_app(home, monkeypatch, db_url, state=services.load_tui_state())

    async def reopened():
        async with app_run(again) as pilot:
            await until(pilot, lambda: again.session is not None)
            return (
                again.screen.query_one("#prompt", TextArea).text,
                again.screen.query_one("#seed", Input).value,
                again.theme,
            )

    assert run(reopened()) == ("a red fox", "12", "nord")


def app_run(app):
    return app.run_test(size=(100, 34))


def test_every_binding_of_the_screen_is_a_palette_command(home, monkeypatch, db_url):
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f2")
            titles = {command.title for command in app.get_system_commands(app.screen)}
            return titles

    titles = run(scenario())
    assert {"Cancel job", "Retry job", "Filter", "Compose", "Jobs", "Series", "Gallery"} <= titles


def test_a_state_file_with_values_of_the_wrong_type_is_ignored_field_by_field(
    home, monkeypatch, db_url
):
    state = {"form": {"prompt": ["not", "text"], "seed": "7", "tries": "many", "style": None}}
    app = make_app(home, monkeypatch, db_url, state=state)

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            screen = app.screen
            return (
                screen.query_one("#prompt", TextArea).text,
                screen.query_one("#seed", Input).value,
                screen.query_one("#tries", TriesSlider).value,
            )

    assert run(scenario()) == ("", "7", 1)


def test_every_screen_wears_the_theme_chosen_before_or_after_it_was_built(
    home, monkeypatch, db_url
):
    """A screen's first visit skips Textual's restyle of the app (the screen is
    styled as it is built): it still wears a theme chosen before it was built,
    and a screen built earlier follows a later change."""
    from textual.color import Color

    from imagen_tui.tui.screens.jobs import JobsScreen
    from imagen_tui.tui.screens.usage import UsageScreen

    app = make_app(home, monkeypatch, db_url)

    def background() -> Color:
        """The current theme's background, as its CSS variable says."""
        return Color.parse(app.get_css_variables()["background"])

    async def scenario():
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.session is not None)
            app.theme = "textual-dark"
            await pilot.press("f2")  # built under the dark theme
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            dark = background()
            assert app.screen.styles.background == dark
            await pilot.press("f1")
            app.theme = "textual-light"
            await pilot.pause()
            await pilot.press("f5")  # first visit, after the change
            await until(pilot, lambda: isinstance(app.screen, UsageScreen))
            assert app.screen.styles.background == background()
            await pilot.press("f2")  # built before the change
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            await pilot.pause()
            assert app.screen.styles.background == background() != dark

    run(scenario())
