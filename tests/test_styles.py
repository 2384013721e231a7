"""Style presets: the shipped set, user overrides, and applying a preset."""

from __future__ import annotations

import pytest

from imagen_tui.core.prompt import load_shipped, pick_style
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import InputError

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
