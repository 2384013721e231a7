"""Backend instance and style names come from the config and are shown in menus
(issue 17 point 15): they are refused at load with markup or control characters,
and the Compose screen shows whatever names it has literally, never as markup."""

from __future__ import annotations

import pytest
from textual.widgets import Select
from textual.widgets._select import SelectOverlay

from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import ConfigError
from imagen_tui.tui.screens.compose import ComposeScreen
from tests.conftest import Home
from tests.tui import make_app, run, until


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('styles:\n  "[@click=app.quit]x":\n    prompt: "{prompt}"\n',
         "styles: '[@click=app.quit]x'"),
        ('styles:\n  "bold\\x1b[2J":\n    prompt: "{prompt}"\n', "styles: 'bold\\\\x1b[2J'"),
        ('backends:\n  "[b]gpu[/b]":\n    type: mock\n', "backends: '[b]gpu[/b]'"),
        ('backends:\n  "a\\tb":\n    type: mock\n', "backends: 'a\\\\tb'"),
    ],
)  # fmt: skip
def test_names_with_markup_or_control_characters_are_refused(home: Home, text: str, shown: str):
    path = home.write_config(text)
    with pytest.raises(ConfigError) as refused:
        open_workbench(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:2: {shown} is not a")
    assert message.endswith(
        "names may not be blank or hold '[', ']' or control characters; rename it"
    )
    assert "\x1b" not in message and "\t" not in message


def test_compose_shows_names_literally(home, monkeypatch, db_url):
    """A name that reached the screen anyway (a config from an older version) is
    shown as written: `[@click=app.quit]x` is text, not a link that quits."""
    app = make_app(home, monkeypatch, db_url, config='styles:\n  plain:\n    prompt: "{prompt}"\n')
    styles = app.workbench.styles
    styles["[@click=app.quit]x"] = styles["plain"]._replace(name="[@click=app.quit]x")

    async def scenario():
        async with app.run_test(size=(100, 34)) as pilot:
            await until(pilot, lambda: app.session is not None)
            screen = app.screen
            assert isinstance(screen, ComposeScreen)
            overlay = screen.query_one("#style", Select).query_one(SelectOverlay)
            prompts = [
                str(getattr(overlay.get_option_at_index(i).prompt, "plain", ""))
                for i in range(overlay.option_count)
            ]
            assert "[@click=app.quit]x" in prompts
            backends = screen.query_one("#backend", Select).query_one(SelectOverlay)
            assert getattr(backends.get_option_at_index(0).prompt, "plain", None) == "mock"

    run(scenario())
