"""Style presets: the shipped `styles/presets.yaml` plus the user's own, and
how a preset turns a prompt into the prompt a backend receives."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from imagen_tui.config import Config, KeyPath, Locate, load_yaml, locator
from imagen_tui.core.resources import presets_path
from imagen_tui.core.sizes import parse_size
from imagen_tui.errors import ConfigError, InputError
from imagen_tui.limits import MAX_STEPS, MIN_STEPS

PLACEHOLDER = "{prompt}"
STYLE_KEYS = ("description", "prompt", "negative", "size", "steps")


class Style(NamedTuple):
    name: str
    template: str  # contains {prompt}
    negative: str = ""
    size: tuple[int, int] | None = None
    steps: int | None = None
    description: str = ""
    origin: str = "shipped"  # "shipped", or the config file that defined it

    def apply(self, prompt: str, negative: str = "") -> tuple[str, str]:
        """The styled prompt and the negative prompt (the preset's, then the user's)."""
        styled = self.template.replace(PLACEHOLDER, prompt)
        negatives = [part for part in (self.negative, negative.strip()) if part]
        return styled, ", ".join(negatives)


def parse_style(name: str, block: Any, prefix: KeyPath, locate: Locate, origin: str) -> Style:
    """Check one preset block (shipped or the user's) and build its Style."""
    dotted = ".".join(prefix)
    if isinstance(block, str):  # shorthand: `name: "{prompt}, watercolor"`
        block = {"prompt": block}
    if not isinstance(block, dict):
        raise ConfigError(
            f"{dotted}: expected a mapping with at least `prompt:`, got {block!r}", locate(prefix)
        )
    for key in block:
        if key not in STYLE_KEYS:
            raise ConfigError(
                f"{dotted}.{key}: unknown key; known keys here: {', '.join(STYLE_KEYS)}",
                locate((*prefix, str(key))),
            )
    template = block.get("prompt")
    if not isinstance(template, str) or PLACEHOLDER not in template:
        raise ConfigError(
            f"{dotted}.prompt: must be a string containing {PLACEHOLDER} "
            f'where the user\'s prompt goes, e.g. "{PLACEHOLDER}, watercolor"',
            locate((*prefix, "prompt")) or locate(prefix),
        )
    _refuse_control_characters(template, (*prefix, "prompt"), locate)
    strings = {}
    for key in ("negative", "description"):
        value = block.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(
                f"{dotted}.{key}: expected a string, got {value!r}", locate((*prefix, key))
            )
        _refuse_control_characters(value, (*prefix, key), locate)
        strings[key] = value.strip()
    size = None
    if "size" in block:
        try:
            size = parse_size(str(block["size"]), f"{dotted}.size")
        except InputError as error:
            raise ConfigError(str(error), locate((*prefix, "size"))) from None
    steps = block.get("steps")
    if steps is not None and (
        not isinstance(steps, int) or isinstance(steps, bool) or not MIN_STEPS <= steps <= MAX_STEPS
    ):
        raise ConfigError(
            f"{dotted}.steps: expected a whole number from {MIN_STEPS} to {MAX_STEPS}, "
            f"got {steps!r}",
            locate((*prefix, "steps")),
        )
    return Style(
        name=name,
        template=template,
        negative=strings["negative"],
        size=size,
        steps=steps,
        description=strings["description"],
        origin=origin,
    )


def _refuse_control_characters(text: str, key: KeyPath, locate: Locate) -> None:
    """A preset's text goes to backends, files' metadata and terminals: no control
    characters (NUL, ESC, CR, ...) in it, except newline and tab."""
    for char in text:
        if char not in "\n\t" and unicodedata.category(char) == "Cc":
            raise ConfigError(
                f"{'.'.join(key)}: holds the control character U+{ord(char):04X}; "
                "remove it (only newline and tab may appear in a preset)",
                locate(key) or locate(key[:-1]),
            )


def _parse_all(
    blocks: Mapping[str, Any], prefix: KeyPath, locate: Locate, origin: str
) -> dict[str, Style]:
    return {
        str(name): parse_style(str(name), block, (*prefix, str(name)), locate, origin)
        for name, block in blocks.items()
    }


def load_shipped(path: Path | None = None) -> dict[str, Style]:
    path = path or presets_path()
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of preset name -> preset", f"{path}:1")

    return _parse_all(data, (), locator(path, lines), "shipped")


def user_styles(config: Config) -> dict[str, Style]:
    """The user's `styles:` block, checked (ConfigError naming the key)."""
    origin = str(config.path) if config.path else "config"
    return _parse_all(config.styles, ("styles",), config.where, origin)


def load_styles(config: Config, user: Mapping[str, Style] | None = None) -> dict[str, Style]:
    """Shipped presets, extended or overridden by the user's `styles:` block
    (`user`: that block already checked by `user_styles`)."""
    styles = load_shipped()
    styles.update(user_styles(config) if user is None else user)
    return dict(sorted(styles.items()))


def pick_style(styles: Mapping[str, Style], name: str | None) -> Style | None:
    """The named preset, None for no style; an unknown name lists the known ones."""
    if not name:
        return None
    style = styles.get(name)
    if style is None:
        raise InputError("style", f"unknown style {name!r}; known styles: {', '.join(styles)}")
    return style
