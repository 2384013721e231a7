"""The layers of docs/architecture.md hold: imports point down, front ends reach
the database only through services, and core and backends stay free of
database, Rich and Textual code. The contracts live in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_the_import_contracts_are_kept():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    # Every contract was checked (a renamed package would silently match nothing).
    assert done.stdout.count(" KEPT") == 4
