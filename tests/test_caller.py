"""Who the cost ledger says made an image, in the original ImaGen's order:
$IMAGEN_CALLER, $MAI_FROM_ID, the tmux pane's `@mai-name` option (inside tmux
only), then user@host. tmux is a fake script on PATH that records its arguments."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

import pytest

from imagen_tui.core import ledger

USER_AT_HOST = f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture
def fake_tmux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `tmux` on PATH that logs its arguments to calls.txt and runs body.sh
    (prints the pane name by default); returns the folder holding both."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "tmux"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {folder}/calls.txt\n. {folder}/body.sh\n')
    script.chmod(0o755)
    (folder / "body.sh").write_text("echo 'reviewer-2'\n")
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    for name in ("IMAGEN_CALLER", "MAI_FROM_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,123,0")
    monkeypatch.setenv("TMUX_PANE", "%7")
    return folder


def calls(folder: Path) -> list[str]:
    path = folder / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_imagen_caller_wins_over_everything(fake_tmux: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMAGEN_CALLER", "  render-box \n")
    monkeypatch.setenv("MAI_FROM_ID", "agent-7")
    assert ledger.caller() == "render-box"
    assert calls(fake_tmux) == []


def test_mai_from_id_comes_next(fake_tmux: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMAGEN_CALLER", "   ")  # blank: not set
    monkeypatch.setenv("MAI_FROM_ID", "agent-7")
    assert ledger.caller() == "agent-7"
    assert calls(fake_tmux) == []


def test_inside_tmux_the_pane_name_comes_next(fake_tmux: Path):
    assert ledger.caller() == "reviewer-2"
    assert calls(fake_tmux) == ["display-message", "-p", "-t", "%7", "#{@mai-name}"]


def test_outside_tmux_tmux_is_not_asked(fake_tmux: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TMUX")
    assert ledger.caller() == USER_AT_HOST
    assert calls(fake_tmux) == []


@pytest.mark.parametrize(
    "body",
    [
        "echo ''\n",  # the option is not set: tmux prints an empty line
        "echo 'not-a-name'; echo 'no server running' >&2; exit 1\n",
        "sleep 5; echo 'too-late'\n",  # hangs: the timeout gives up on it
    ],
    ids=["unset", "fails", "hangs"],
)
def test_a_pane_without_a_name_or_a_failing_tmux_falls_back_to_user_at_host(
    fake_tmux: Path, monkeypatch: pytest.MonkeyPatch, body: str
):
    monkeypatch.setattr(ledger, "TMUX_TIMEOUT_S", 0.3)
    (fake_tmux / "body.sh").write_text(body)
    assert ledger.caller() == USER_AT_HOST
    assert calls(fake_tmux)  # it was asked


def test_no_tmux_binary_falls_back_to_user_at_host(
    fake_tmux: Path, monkeypatch: pytest.MonkeyPatch
):
    (fake_tmux / "tmux").unlink()
    monkeypatch.setenv("PATH", str(fake_tmux))
    assert ledger.caller() == USER_AT_HOST


def test_a_long_pane_name_is_cut(fake_tmux: Path):
    (fake_tmux / "body.sh").write_text(f"echo '{'n' * 500}'\necho second line\n")
    assert ledger.caller() == "n" * ledger.MAX_CALLER
