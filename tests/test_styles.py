"""Style presets: the shipped set, user overrides, and applying a preset."""

from __future__ import annotations

import pytest

from imagen_tui.core.prompt import load_shipped, pick_style
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import ConfigError, InputError

EXPECTED = {
    "blog-header",
    "photo",
    "illustration",
    "watercolor",
    "pixel-art",
    "cinematic",
    "product-shot",
    "line-art",
}


def test_shipped_presets_are_complete_and_valid():
    styles = load_shipped()
    assert set(styles) >= EXPECTED
    for style in styles.values():
        assert style.template.count("{prompt}") == 1, style.name
        assert style.description, style.name


def test_apply_puts_the_prompt_in_and_joins_negatives():
    style = load_shipped()["watercolor"]
    prompt, negative = style.apply("a cat in a fishbowl", "dogs")
    assert prompt.startswith("a cat in a fishbowl, loose watercolor painting")
    assert negative == f"{style.negative}, dogs"


def test_prompt_braces_are_kept_literally():
    style = load_shipped()["photo"]
    prompt, _ = style.apply("a sign reading {hello} and {prompt}")
    assert prompt.startswith("a sign reading {hello} and {prompt}, professional photograph")


def test_user_styles_extend_and_override(home):
    path = home.write_config(
        "styles:\n"
        "  photo: '{prompt}, polaroid'\n"
        "  mine:\n"
        "    prompt: 'tiny {prompt}'\n"
        "    size: 640x480\n"
    )
    styles = open_workbench(path).styles
    assert styles["photo"].template == "{prompt}, polaroid"
    assert styles["photo"].origin == str(path)
    assert styles["mine"].size == (640, 480)
    assert styles["cinematic"].origin == "shipped"


def test_unknown_style_lists_known_names(home):
    styles = open_workbench().styles
    with pytest.raises(InputError) as caught:
        pick_style(styles, "vaporwave")
    message = str(caught.value)
    assert caught.value.field == "style"
    assert message.startswith("style: unknown style 'vaporwave'; known styles: ")
    for name in EXPECTED:
        assert name in message


@pytest.mark.parametrize(
    ("escape", "code"),
    [
        ("\\0", "U+0000"),
        ("\\e", "U+001B"),
        ("\\r", "U+000D"),
        ("\\x7f", "U+007F"),
        ("\\N", "U+0085"),
    ],
    ids=["NUL", "ESC", "CR", "DEL", "NEL"],
)
@pytest.mark.parametrize(("key", "line"), [("prompt", 3), ("negative", 4), ("description", 5)])
def test_control_character_in_a_user_style_is_a_config_error(home, escape, code, key, line):
    values = {"prompt": "{prompt}, ink", "negative": "blur", "description": "Ink"}
    values[key] += escape  # a YAML escape: the file itself holds only printable text
    path = home.write_config(
        "styles:\n  mine:\n"
        f'    prompt: "{values["prompt"]}"\n'
        f'    negative: "{values["negative"]}"\n'
        f'    description: "{values["description"]}"\n'
    )
    with pytest.raises(ConfigError) as caught:
        open_workbench(path)
    assert str(caught.value) == (
        f"{path}:{line}: styles.mine.{key}: holds the control character {code}; "
        "remove it (only newline and tab may appear in a preset)"
    )


def test_control_character_in_a_shorthand_style_names_its_line(home):
    path = home.write_config('styles:\n  quick: "{prompt}\\0"\n')
    with pytest.raises(ConfigError) as caught:
        open_workbench(path)
    assert str(caught.value) == (
        f"{path}:2: styles.quick.prompt: holds the control character U+0000; "
        "remove it (only newline and tab may appear in a preset)"
    )


def test_newline_and_tab_in_a_style_are_kept(home):
    path = home.write_config('styles:\n  mine:\n    prompt: "{prompt},\\tink\\nwash"\n')
    style = open_workbench(path).styles["mine"]
    assert style.apply("a fox") == ("a fox,\tink\nwash", "")


def test_config_check_refuses_a_style_holding_nul(home):
    home.write_config('styles:\n  mine:\n    prompt: "{prompt}\\0, ink"\n')
    done = home.imagen("config", "check")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"imagen: {home.config_path}:3: styles.mine.prompt: holds the control character "
        "U+0000; remove it (only newline and tab may appear in a preset)"
    )
