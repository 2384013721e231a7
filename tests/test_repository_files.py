"""The repository holds source, docs, tests and their fixtures: no wheels,
archives or build output, and no large file outside the test fixtures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LARGE = 1024 * 1024  # bytes
# Recorded server transcripts and snapshot SVGs may be big; nothing else may.
FIXTURE_DIRS = ("tests/fixtures/", "tests/__snapshots__/")
PACKAGED = (".whl", ".tar.gz", ".tgz", ".zip", ".egg")


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_over_1_mb_outside_the_fixtures() -> None:
    large = [
        name
        for name in tracked_files()
        if not name.startswith(FIXTURE_DIRS)
        and (ROOT / name).is_file()
        and (ROOT / name).stat().st_size > LARGE
    ]
    assert large == [], f"tracked files over 1 MB: {large}"


def test_no_wheel_or_archive_is_tracked() -> None:
    packaged = [name for name in tracked_files() if name.endswith(PACKAGED)]
    assert packaged == [], f"build output or archives in the repository: {packaged}"


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in helper modules (tests/helpers.py, tests/tui.py, ...),
    so running one test file never runs, or depends on, another's tests."""
    importing = [
        path.name
        for path in sorted((ROOT / "tests").glob("*.py"))
        if re.search(r"^\s*(from|import) tests\.test_", path.read_text(), re.MULTILINE)
    ]
    assert importing == [], f"test modules importing another test module: {importing}"
