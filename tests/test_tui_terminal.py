"""`imagen-tui` itself, in a real pseudo-terminal: the README's main job."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from tests.helpers import sql
from tests.tui import online_worker_pids

IMAGEN_TUI = Path(sys.executable).parent / "imagen-tui"


class Terminal:
    """A child process on a pty whose output is drained as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execve(argv[0], argv, env)
        self.output = b""

    def pump(self, seconds: float, until=lambda: False) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until():
                return True
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the child closed its side
                    return until()
                self.output += data
        return until()

    def wait(self, seconds: float) -> int | None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        return None


def test_imagen_tui_opens_starts_a_worker_and_stops_it_on_ctrl_q(home, db_url):
    # A bare pty reports a 0x0 window, which also covers textual-image's
    # division by the column count at import.
    env = {**home.env, "IMAGEN_DATABASE_URL": db_url, "TERM": "xterm-256color"}
    # A pending job (due in an hour) that needs the default backend: the app's worker is needed.
    sql(db_url, "INSERT INTO imagen.jobs (prompt, run_at) VALUES ('later', now() + interval '1 h')")
    app = Terminal([str(IMAGEN_TUI)], env)
    try:
        assert app.pump(60, until=lambda: bool(online_worker_pids(db_url))), app.output[-2000:]
        assert app.pump(10, until=lambda: b"Compose" in app.output)
        os.write(app.fd, b"\x11")  # ctrl+q
        code = app.wait(60)
    finally:
        os.close(app.fd)
    assert code == 0, app.output[-2000:]
    assert online_worker_pids(db_url) == []  # its worker stopped with it


def test_no_worker_only_watches(home, db_url):
    env = {**home.env, "IMAGEN_DATABASE_URL": db_url, "TERM": "xterm-256color"}
    app = Terminal([str(IMAGEN_TUI), "--no-worker"], env)
    try:
        assert app.pump(30, until=lambda: b"watching only" in app.output), app.output[-2000:]
        assert online_worker_pids(db_url) == []
        os.write(app.fd, b"\x11")
        code = app.wait(60)
    finally:
        os.close(app.fd)
    assert code == 0
