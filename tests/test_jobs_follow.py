"""`imagen jobs follow ID...`, run as a real process while a real `imagen worker`
renders on the mock (slow enough to send previews), against the suite's real
PostgreSQL: one line (or JSON object) per event until the jobs end, exit 0
when all are done and 1 when one failed."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import IMAGEN, Home
from tests.helpers import sql


@pytest.fixture
def queue(home: Home, db_url: str) -> Home:
    home.env["IMAGEN_DATABASE_URL"] = db_url
    home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n    delay_ms: 1500\n"
        "    fail_if_prompt_contains: storm\n"
    )
    return home


def submit(home: Home, prompt: str, count: int = 1) -> list[int]:
    done = home.imagen(
        "submit", prompt, "--count", str(count), "--size", "256x256", "--steps", "10", "--json"
    )
    assert done.returncode == 0, done.stderr
    ids: list[int] = json.loads(done.stdout)["job_ids"]
    return ids


def follow(home: Home, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`imagen jobs follow ARGS` while a worker renders the queue; its result."""
    follower = subprocess.Popen(
        [str(IMAGEN), "jobs", "follow", *args],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The worker starts once the follower listens (nothing happens before it, so
    # the follower's first read sees every job pending).
    deadline = time.monotonic() + 30
    while not sql(
        db_url,
        "SELECT 1 FROM pg_stat_activity WHERE query = 'LISTEN \"imagen_job_events\"' "
        "AND pid <> pg_backend_pid()",
    ):
        assert follower.poll() is None, follower.communicate()
        assert time.monotonic() < deadline, "the follower never listened"
        time.sleep(0.05)
    worker = home.imagen("worker", "--once", "--poll-interval", "0.5", timeout=120)
    assert worker.returncode == 0, worker.stderr
    stdout, stderr = follower.communicate(timeout=60)
    return subprocess.CompletedProcess(follower.args, follower.returncode, stdout, stderr)


def test_follow_prints_status_progress_previews_and_the_path_then_exits_0(queue, db_url):
    [job] = submit(queue, "a lighthouse at dusk")
    done = follow(queue, db_url, str(job))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"job {job}: pending"
    assert f"job {job}: running" in lines
    progress = [line for line in lines if line.startswith(f"job {job}: progress ")]
    assert progress and all("/10 (" in line for line in progress), lines
    previews = [line for line in lines if line.startswith(f"job {job}: preview 256x256 (")]
    assert previews and all(" KB) step " in line for line in previews), lines
    [(path,)] = sql(db_url, "SELECT storage_uri FROM imagen.images WHERE job_id = %s", (job,))
    assert lines[-1] == f"job {job}: done {path.removeprefix('file://')}"
    assert sql(db_url, "SELECT count(*) FROM imagen.previews") == [(0,)]


def test_follow_json_prints_one_object_per_event_and_exits_1_when_one_failed(queue, db_url):
    good = submit(queue, "a calm sea")
    bad = submit(queue, "a storm at sea")
    done = follow(queue, db_url, *map(str, good + bad), "--json")
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = {(e["job_id"], e["event"]) for e in events}
    assert (good[0], "done") in kinds and (bad[0], "failed") in kinds
    assert any(e["event"] == "preview" and e["width"] == 256 for e in events)
    failed = next(e for e in events if e["event"] == "failed")
    assert "storm" in failed["error"]
    done_event = next(e for e in events if e["event"] == "done")
    assert done_event["path"].endswith(".png")


def test_follow_refuses_an_unknown_job_in_one_line(queue, db_url):
    done = queue.imagen("jobs", "follow", "999999")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "999999" in done.stderr
