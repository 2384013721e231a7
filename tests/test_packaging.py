"""The wheel carries everything the program reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_presets_and_runs_from_its_own_files(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("imagen_tui-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "imagen_tui/styles/presets.yaml" in names
        assert "imagen_tui/cli/__init__.py" in names
        # The TUI's stylesheets and ComfyUI's built-in graphs are read at run time too.
        stylesheets = {
            f"imagen_tui/styles/tui/{p.name}" for p in (ROOT / "styles" / "tui").glob("*.tcss")
        }
        assert stylesheets and stylesheets <= names
        graphs = {
            f"imagen_tui/{p.relative_to(ROOT / 'imagen_tui').as_posix()}"
            for p in (ROOT / "imagen_tui" / "backends" / "comfyui").rglob("*.json")
        }
        assert graphs and graphs <= names
        unpacked = tmp_path / "site"
        archive.extractall(unpacked)
    # Run from the unpacked wheel alone (PYTHONPATH wins over the editable install).
    probe = (
        "import imagen_tui, imagen_tui.core.resources as r; "
        "print(imagen_tui.__file__); print(r.presets_path())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,  # not the checkout: python -c puts the cwd first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, presets = done.stdout.splitlines()
    assert Path(module_file).is_relative_to(unpacked)
    assert Path(presets) == unpacked / "imagen_tui" / "styles" / "presets.yaml"
