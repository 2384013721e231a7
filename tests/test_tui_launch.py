"""`imagen-tui`: argument errors, and `--headless-worker`, the worker systemd runs
and the app starts as its child: real processes on a real PostgreSQL."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import types
from pathlib import Path

from imagen_tui import cli
from imagen_tui.errors import InputError
from imagen_tui.tui import launch
from tests.conftest import Home
from tests.processes import (
    count_status,
    insert_jobs,
    listening_sessions,
    wait_until,
    write_config,
)

IMAGEN_TUI = Path(sys.executable).parent / "imagen-tui"  # the installed console script


def run_tui(home: Home, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [str(IMAGEN_TUI), *args],
        env=env or home.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_worker_flags_need_headless_worker(home):
    done = run_tui(home, "--concurrency", "2")
    assert done.returncode == 2
    assert done.stderr == (
        "imagen-tui: error: --concurrency: only with --headless-worker (see imagen-tui --help)\n"
    )
    done = run_tui(home, "--lease=5")
    assert done.returncode == 2
    assert "--lease: only with --headless-worker" in done.stderr


def test_bad_flags_are_one_line_exit_2(home):
    for args, expected in (
        (["--headless-worker", "--no-worker"], "--no-worker: not with --headless-worker"),
        (["--headless-worker", "--concurrency", "0"], "0 is out of range; use 1 to 64"),
        (["--headless-worker", "--lease", "nan"], "nan is out of range"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--head"], "unrecognized arguments: --head"),  # no abbreviations
    ):
        done = run_tui(home, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert expected in done.stderr, done.stderr
        assert done.stdout == ""


def test_headless_worker_config_error_is_one_line_exit_2(home, tmp_path):
    done = run_tui(home, "--headless-worker", "--once", "--config", str(tmp_path / "none.yaml"))
    assert done.returncode == 2
    assert done.stderr.startswith("imagen-tui: ")
    assert "none.yaml: file not found" in done.stderr
    assert len(done.stderr.splitlines()) == 1


# The headless path run in a child Python, reporting what it imported.
PROBE = """
import json, sys
from imagen_tui.tui import launch
code = launch.main(sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"textual", "rich"})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def test_headless_worker_renders_jobs_without_loading_textual_or_rich(home, db_url):
    write_config(home)
    job_ids = insert_jobs(db_url, 3)
    env = {**home.env, "IMAGEN_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--headless-worker", "--once", "--poll-interval", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"code": 0, "loaded": []}
    assert count_status(db_url, "done") == len(job_ids)
    assert ": draining the queue once" in done.stderr  # the worker's log, on stderr
    assert "worker stopped: 3 done" in done.stderr


def test_python_m_imagen_tui_tui_is_the_same_command(home, db_url):
    write_config(home)
    insert_jobs(db_url, 1)
    env = {**home.env, "IMAGEN_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "imagen_tui.tui", "--headless-worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert count_status(db_url, "done") == 1


def test_headless_worker_stops_cleanly_on_sigterm(home, db_url, tmp_path):
    write_config(home)
    env = {**home.env, "IMAGEN_DATABASE_URL": db_url}
    log_path = tmp_path / "worker.log"
    before = listening_sessions(db_url)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(IMAGEN_TUI), "--headless-worker", "--poll-interval", "0.5"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: listening_sessions(db_url) - before, "the worker to LISTEN")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log_path.read_text()
    assert "stopping: no new claims" in text
    assert "worker stopped: no jobs" in text
    assert "Traceback" not in text


def test_without_headless_worker_main_hands_the_arguments_to_run_app(home, monkeypatch):
    seen: list[argparse.Namespace] = []

    def run_app(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    fake = types.ModuleType("imagen_tui.tui.app")
    fake.run_app = run_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagen_tui.tui.app", fake)
    assert launch.main(["--config", "x.yaml", "--no-worker"]) == 7
    assert launch.main([]) == 7
    (first, second) = seen
    assert (first.config, first.no_worker, first.headless_worker) == ("x.yaml", True, False)
    assert (second.config, second.no_worker) == (None, False)


def test_an_app_error_is_one_line_and_its_exit_code(home, monkeypatch, capsys):
    def run_app(args: argparse.Namespace) -> int:
        raise InputError("config", "no such file")

    fake = types.ModuleType("imagen_tui.tui.app")
    fake.run_app = run_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagen_tui.tui.app", fake)
    assert launch.main([]) == 2
    assert capsys.readouterr().err == "imagen-tui: config: no such file\n"


def test_worker_flags_parse_exactly_as_imagen_worker_does():
    flags = ["--concurrency", "3", "--poll-interval", "0.5", "--lease", "7", "--once"]
    cli_args = cli.build_parser().parse_args(["worker", *flags])
    tui_args = launch.parse_args(["--headless-worker", *flags])
    for name in ("concurrency", "poll_interval", "lease", "once"):
        assert getattr(cli_args, name) == getattr(tui_args, name), name
    defaults = launch.parse_args(["--headless-worker"])
    cli_defaults = cli.build_parser().parse_args(["worker"])
    for name in ("concurrency", "poll_interval", "lease", "once"):
        assert getattr(cli_defaults, name) == getattr(defaults, name), name
