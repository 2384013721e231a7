"""`imagen config init`: where it may write, and that a failure leaves nothing behind."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from imagen_tui.config import SAMPLE_CONFIG, write_sample
from imagen_tui.errors import InputError


def everything_under(root: Path) -> list[Path]:
    """Every file and directory under `root`: what a command left on disk."""
    return sorted(root.rglob("*"))


def one_error_line(done) -> str:
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    return line


def test_init_creates_missing_directories_and_leaves_no_temp_file(home):
    path = home.root / "new" / "sub" / "imagen.yaml"
    done = home.imagen("config", "init", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(path)
    assert path.read_text() == SAMPLE_CONFIG
    assert everything_under(home.root) == [path.parent.parent, path.parent, path]


def test_init_refuses_to_replace_a_file_without_force(home):
    path = home.root / "mine.yaml"
    path.write_text("default_backend: mock\n")
    done = home.imagen("config", "init", "--config", str(path))
    assert done.returncode == 2
    assert one_error_line(done) == (
        f"imagen: --config: {path} already exists; pass --force to overwrite it"
    )
    assert path.read_text() == "default_backend: mock\n"
    assert everything_under(home.root) == [path]


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_init_onto_a_directory_names_the_flag_and_leaves_nothing(home, force):
    directory = home.root / "configs"
    directory.mkdir()
    done = home.imagen("config", "init", "--config", str(directory), *force)
    assert done.returncode == 2
    assert one_error_line(done) == (
        f"imagen: --config: {directory} is a directory; "
        f"name a file, e.g. {directory / 'imagen.yaml'}"
    )
    assert everything_under(home.root) == [directory]


def test_init_from_imagen_config_names_the_variable(home):
    directory = home.root / "configs"
    directory.mkdir()
    home.env["IMAGEN_CONFIG"] = str(directory)
    done = home.imagen("config", "init", "--force")
    assert done.returncode == 2
    assert one_error_line(done).startswith(f"imagen: $IMAGEN_CONFIG: {directory} is a directory")


def test_init_under_a_file_names_the_flag_and_leaves_nothing(home):
    blocker = home.root / "notes"
    blocker.write_text("a file, not a directory")
    path = blocker / "sub" / "imagen.yaml"
    done = home.imagen("config", "init", "--config", str(path))
    assert done.returncode == 2
    assert one_error_line(done) == (
        f"imagen: --config: cannot write {path}: {blocker} is not a directory; choose another path"
    )
    assert everything_under(home.root) == [blocker]


@pytest.mark.parametrize("under", [(), ("new", "sub")], ids=["existing-dir", "new-dirs"])
def test_init_that_fails_removes_the_directories_it_made(home, under):
    # The directories can be made, the file cannot (its name is too long for the
    # file system): what init created on the way must go again.
    path = home.root.joinpath(*under, "x" * 300 + ".yaml")
    done = home.imagen("config", "init", "--config", str(path))
    assert done.returncode == 2
    assert one_error_line(done) == (
        f"imagen: --config: cannot write {path}: file name too long; choose another path"
    )
    assert everything_under(home.root) == []


def test_init_into_a_directory_nobody_can_write(home):
    # /proc takes no new files, not even from root (the tests may run as root,
    # for whom a chmod-ed directory is still writable).
    path = Path("/proc/imagen.yaml")
    done = home.imagen("config", "init", "--config", str(path))
    assert done.returncode == 2
    assert one_error_line(done) == (
        f"imagen: --config: cannot write {path}: no such file or directory; choose another path"
    )
    assert not path.exists()
    assert everything_under(home.root) == []


def _fail_making_the_temp_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def _fail_replacing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        (_fail_making_the_temp_file, "permission denied; choose a directory you can write to"),
        (_fail_replacing, "read-only file system; choose another path"),
    ],
    ids=["temp-file", "replace"],
)
def test_write_sample_failing_at_any_step_leaves_nothing(home, monkeypatch, fail, reason):
    # Permissions cannot be tested as root, so the failures are made to order.
    path = home.root / "new" / "sub" / "imagen.yaml"
    fail(monkeypatch)
    with pytest.raises(InputError) as caught:
        write_sample(path, field="config")
    assert caught.value.field == "config"
    assert caught.value.message == f"cannot write {path}: {reason}"
    assert everything_under(home.root) == []


def test_write_sample_force_keeps_the_mode_of_the_file_it_replaces(home):
    path = home.write_config("default_backend: mock\n")
    path.chmod(0o600)
    write_sample(path, force=True)
    assert path.read_text() == SAMPLE_CONFIG
    assert path.stat().st_mode & 0o777 == 0o600
    assert everything_under(path.parent) == [path]
