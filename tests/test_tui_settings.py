"""The `tui:` config block and the TUI's remembered state (form values, theme)."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from imagen_tui import services
from imagen_tui.config import SAMPLE_CONFIG, TuiConfig
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import ConfigError, InputError


def error_of(home, text: str) -> str:
    path = home.write_config(text)
    with pytest.raises(ConfigError) as caught:
        open_workbench(path)
    return str(caught.value)


# --------------------------------------------------------------------------- tui:


def test_defaults_without_a_tui_block(home):
    assert open_workbench().config.tui == TuiConfig("auto", "auto", "textual-dark")


def test_every_key_is_read(home):
    path = home.write_config("tui:\n  worker: never\n  image_protocol: sixel\n  theme: nord\n")
    assert open_workbench(path).config.tui == TuiConfig("never", "sixel", "nord")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tui:\n  worker: always\n",
            "2: tui.worker: expected one of auto, never, got 'always'",
        ),
        (
            "tui:\n  worker: no\n",  # YAML reads `no` as false
            "2: tui.worker: expected one of auto, never, got False",
        ),
        (
            "tui:\n  theme: x\n  image_protocol: kitty\n",
            "3: tui.image_protocol: expected one of auto, tgp, sixel, halfcell, unicode, "
            "got 'kitty'",
        ),
        ("tui:\n  theme: ''\n", "2: tui.theme: expected a theme name, e.g. textual-dark, got ''"),
        ("tui:\n  theme: 3\n", "2: tui.theme: expected a theme name, e.g. textual-dark, got 3"),
        (
            "tui:\n  workers: auto\n",
            "2: tui.workers: unknown key; known keys here: worker, image_protocol, theme",
        ),
        ("tui: auto\n", "1: tui: expected a mapping (worker, image_protocol, theme), got 'auto'"),
    ],
)
def test_bad_values_are_one_line_naming_key_and_allowed_values(home, text, expected):
    message = error_of(home, text)
    assert message == f"{home.config_path}:{expected}"
    assert "\n" not in message


def test_config_check_refuses_a_bad_tui_block_exit_2(home):
    home.write_config("tui:\n  image_protocol: png\n")
    done = home.imagen("config", "check")
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "tui.image_protocol: expected one of auto, tgp, sixel, halfcell, unicode, got 'png'"
    )


def test_the_sample_config_documents_the_tui_block(home):
    home.write_config(SAMPLE_CONFIG)
    assert open_workbench(home.config_path).config.tui == TuiConfig()
    assert "\ntui:\n" in SAMPLE_CONFIG and "\n  worker: auto\n" in SAMPLE_CONFIG


def test_config_show_lists_the_tui_settings_and_where_they_come_from(home):
    path = home.write_config("tui:\n  theme: nord\n")
    rows = {row.key: row for row in services.config_rows(open_workbench(path))}
    assert rows["tui.theme"].value == "nord"
    assert rows["tui.theme"].source == f"{path}:2"
    assert rows["tui.worker"].value == "auto"
    assert rows["tui.worker"].source == "built-in default"


# --------------------------------------------------------------------------- state


def state_file(home):
    return home.root / ".local" / "state" / "imagen" / "tui-state.json"


def test_no_state_is_an_empty_dict(home):
    assert services.load_tui_state() == {}


def test_state_round_trips_under_the_home_state_dir(home):
    state = {"theme": "nord", "form": {"prompt": "a red fox", "count": 3, "seed": None}}
    path = services.save_tui_state(state)
    assert path == state_file(home)
    assert services.load_tui_state() == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # prompts are private
    services.save_tui_state({"theme": "gruvbox"})  # replaces, whole
    assert services.load_tui_state() == {"theme": "gruvbox"}
    assert [p.name for p in path.parent.iterdir()] == ["tui-state.json"]  # no temp left


def test_xdg_state_home_is_respected(home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = services.save_tui_state({"a": 1})
    assert path == tmp_path / "state" / "imagen" / "tui-state.json"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe\x00", "cannot read it"),
        (b"", "not valid JSON"),
    ],
)
def test_a_corrupt_state_file_is_ignored_with_a_warning(home, content, why, caplog):
    path = state_file(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    warnings: list[str] = []
    assert services.load_tui_state(warn=warnings.append) == {}
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: {why}")
    assert warnings[0].endswith("; ignored (starting with defaults)")
    with caplog.at_level(logging.WARNING, logger="imagen.tui"):
        assert services.load_tui_state() == {}
    assert why in caplog.text
    services.save_tui_state({"ok": True})  # and the next save repairs it
    assert json.loads(path.read_text()) == {"ok": True}


def test_saving_what_json_cannot_hold_or_where_nothing_can_be_written(home):
    with pytest.raises(InputError, match="cannot save the app's state"):
        services.save_tui_state({"when": object()})
    assert not state_file(home).exists()
    blocker = home.root / ".local"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(InputError, match="cannot save the app's state in "):
        services.save_tui_state({"a": 1})
    os.unlink(blocker)
