"""Where the data files shipped with ImaGen are (style presets, stylesheets).

In an installed wheel they sit inside the package (`imagen_tui/styles/`,
mapped there by pyproject.toml); in a source checkout or an editable install
they are the repo's top-level `styles/` folder.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # imagen_tui/


def styles_dir() -> Path:
    """The folder holding `presets.yaml` and the `.tcss` stylesheets."""
    for candidate in (_PACKAGE_DIR / "styles", _PACKAGE_DIR.parent / "styles"):
        if (candidate / "presets.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"ImaGen's styles folder is missing (looked in {_PACKAGE_DIR / 'styles'} and "
        f"{_PACKAGE_DIR.parent / 'styles'}); reinstall the package"
    )


def presets_path() -> Path:
    return styles_dir() / "presets.yaml"
