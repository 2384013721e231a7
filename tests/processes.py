"""Real `imagen worker` processes for the tests: start them with their logs in
files, wait on a condition while watching them, and a few queue helpers the
process tests share. The `workers` fixture (conftest.py) hands out a `Workers`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests import helpers
from tests.conftest import IMAGEN, Home
from tests.helpers import sql

T = TypeVar("T")

# The worker's line for a finished job: "job 5, ...: done: image 5 /path/x.png in 53 ms".
DONE = ": done: image "


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = 30.0,
    workers: Sequence[WorkerProcess] = (),
) -> T:
    """Poll `predicate` until it is truthy; fail clearly on timeout or if a worker dies."""

    def check() -> None:
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"worker exited with {worker.process.returncode} while waiting for {what}:\n"
                    f"{worker.log()}"
                )

    def details() -> str:
        return "\n".join(f"--- worker log:\n{w.log()}" for w in workers)

    return helpers.wait_until(predicate, what, timeout, interval=0.05, check=check, details=details)


def insert_jobs(url: str, count: int, prompt: str = "job", size: int = 64) -> list[int]:
    """`count` jobs in one INSERT statement (one wake-up), like a bulk submit."""
    rows = sql(
        url,
        """INSERT INTO imagen.jobs (prompt, width, height)
           SELECT %s || ' ' || i, %s, %s FROM generate_series(1, %s) AS i ORDER BY i
           RETURNING id""",
        (prompt, size, size, count),
    )
    return sorted(row[0] for row in rows)


def count_status(url: str, status: str) -> int:
    return helpers.scalar(url, "SELECT count(*) FROM imagen.jobs WHERE status = %s", (status,))


def listening_sessions(url: str) -> set[int]:
    """Server pids of the sessions LISTENing on this database (workers waiting for jobs)."""
    rows = sql(
        url,
        "SELECT pid FROM pg_stat_activity"
        " WHERE query LIKE 'LISTEN %' AND datname = current_database()",
    )
    return {pid for (pid,) in rows}


def write_config(home: Home, delay_ms: int = 0, *, delay_blocks: bool = False) -> Path:
    """Mock backend (optionally slow, optionally stuck in a thread like a GPU
    library call) writing under the temp HOME; the output dir."""
    out = home.root / "out"
    home.write_config(
        f"output:\n  directory: {out}\n"
        f"backends:\n  mock:\n    type: mock\n    delay_ms: {delay_ms}\n"
        f"    delay_blocks: {'true' if delay_blocks else 'false'}\n"
    )
    return out


# --------------------------------------------------------------------------- worker processes


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def done_count(self) -> int:
        """How many `done` lines it logged (one per job it finished)."""
        return self.log().count(DONE)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after {timeout:g} s:\n{self.log()}")

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)


@dataclass
class Workers:
    home: Home
    logs: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, db_url: str | None, *args: str) -> WorkerProcess:
        env = {k: v for k, v in self.home.env.items() if k != "IMAGEN_DATABASE_URL"}
        if db_url is not None:
            env["IMAGEN_DATABASE_URL"] = db_url
        log_path = self.logs / f"worker-{len(self.started) + 1}.log"
        # Logs go to files, not pipes: 500 jobs' lines would fill a pipe buffer.
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(IMAGEN), "worker", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log_path)
        self.started.append(worker)
        return worker

    def start_and_wait(self, db_url: str, *args: str) -> WorkerProcess:
        """Start a waiting (not --once) worker and wait until it LISTENs for jobs."""
        before = listening_sessions(db_url)
        worker = self.start(db_url, *args)
        wait_until(
            lambda: listening_sessions(db_url) - before, "the worker to LISTEN", workers=[worker]
        )
        return worker

    def kill_leftovers(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(10)
