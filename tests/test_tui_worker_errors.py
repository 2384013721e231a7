"""A thread worker that fails unexpectedly: told on one line, logged with its
traceback, and the header stops saying "live" when it was the job feed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from textual.notifications import Notify

from imagen_tui.core.events import Connected
from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp
from imagen_tui.tui.screens.jobs import JobsScreen
from tests.tui import run, until
from tests.tui_fixtures import FixedSession, clock


class FeedDies(FixedSession):
    async def events(self) -> AsyncIterator[Any]:
        yield Connected(first=True)
        raise RuntimeError("[bold]feed[/] \x1b]0;gone\x07 broke")


class JobsFail(FixedSession):
    def jobs(self, status: str | None = None, limit: int = 50) -> list[Any]:
        raise KeyError("jobs [red]x[/]")


def app_with(home, session: type[FixedSession]) -> WorkbenchApp:
    path = home.write_config("default_backend: mock\n")
    return WorkbenchApp(open_workbench(path), open_session=session, clock=clock)


def errors(seen: list[Any]) -> list[Any]:
    return [
        m.notification for m in seen if isinstance(m, Notify) and m.notification.severity == "error"
    ]


def test_a_dead_job_feed_is_told_logged_and_the_header_stops_saying_live(home, caplog):
    app = app_with(home, FeedDies)
    seen: list[Any] = []

    async def scenario():
        async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
            await until(pilot, lambda: errors(seen))
            await until(pilot, lambda: "updates stopped" in app.sub_title)
            return app.sub_title

    with caplog.at_level(logging.ERROR, logger="imagen.tui"):
        sub_title = run(scenario())
    assert "live" not in sub_title
    (told,) = errors(seen)
    assert told.message == "listener failed: RuntimeError: [bold]feed[/] \\x1b]0;gone\\x07 broke"
    assert told.markup is False  # shown literally
    (record,) = [r for r in caplog.records if r.name == "imagen.tui"]
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


def test_a_screen_worker_that_fails_is_told_and_logged(home, caplog):
    app = app_with(home, JobsFail)
    seen: list[Any] = []

    async def scenario():
        async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            await until(pilot, lambda: errors(seen))
            return app.sub_title

    with caplog.at_level(logging.ERROR, logger="imagen.tui"):
        sub_title = run(scenario())
    assert "live" in sub_title  # the feed is fine
    (told,) = errors(seen)
    assert told.message == "jobs-load failed: KeyError: 'jobs [red]x[/]'"
    (record,) = [r for r in caplog.records if r.name == "imagen.tui"]
    assert record.exc_info and isinstance(record.exc_info[1], KeyError)


def test_the_app_log_goes_to_the_workers_log_file_not_the_terminal(tmp_path, monkeypatch, capsys):
    from imagen_tui import services
    from imagen_tui.tui import app as app_module

    path = tmp_path / "logs" / "tui-worker.log"
    monkeypatch.setattr(services, "worker_log_path", lambda: path)
    log = app_module.log
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(log, "propagate", True)
    monkeypatch.setattr(log, "level", logging.NOTSET)
    assert app_module._log_to_file() == str(path)
    try:
        raise ValueError("boom")
    except ValueError as error:
        log.error("worker %s failed", "jobs-load", exc_info=error)
    for handler in log.handlers:
        handler.close()
    text = path.read_text(encoding="utf-8")
    assert "ERROR imagen.tui: worker jobs-load failed" in text
    assert "Traceback" in text and "ValueError: boom" in text
    assert capsys.readouterr().err == ""
