"""Routing (issue 16 point 1): jobs name their backend, workers claim only what
they can render, and a job no online worker serves waits and says why.

Real PostgreSQL; the fleet tests run real `imagen worker` processes, each with
its own config (docs/worker.md, "Routing").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagen_tui import services
from imagen_tui.core.rows import JobRow, backends_served, waiting_for
from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.widgets.image_tile import ImageTile, TileInfo
from imagen_tui.tui.widgets.job_table import COLUMN_INDEX, job_cells
from tests.conftest import Home
from tests.helpers import add_job, job_row, sql
from tests.processes import DONE, count_status, wait_until

WAITING_GPU = "waiting for a worker with comfy-gpu"


@pytest.fixture
def queue(home: Home, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database as this process's (and its children's) queue; the home
    config (what `imagen jobs` reads) is a mock-only one."""
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    home.env["IMAGEN_DATABASE_URL"] = db_url
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)
    yield db_url


def instance_config(home: Home, name: str) -> Path:
    """A config whose default (and only named) instance is `name`, a mock."""
    path = home.root / f"{name}.yaml"
    path.write_text(
        f"default_backend: {name}\noutput:\n  directory: {home.root / name}\n"
        f"backends:\n  {name}:\n    type: mock\n",
        encoding="utf-8",
    )
    return path


def announce(url: str, worker_id: str, backends: list[str], default: str | None, age_s: float = 0):
    """A presence row as a worker writes it, last seen `age_s` ago (lease 60 s)."""
    sql(
        url,
        "INSERT INTO imagen.workers (id, host, pid, backends, default_backend, concurrency,"
        " lease_s, last_seen) VALUES (%s, 'box', 4242, %s, %s, 1, 60,"
        " now() - make_interval(secs => %s))",
        (worker_id, backends, default, age_s),
    )


# --------------------------------------------------------------------------- real workers


def test_two_workers_with_disjoint_backends_drain_a_mixed_queue(home, queue, workers):
    """Each job is rendered by the worker that has its backend (a job with no
    backend by either, on its default), none fails; a job for a backend neither
    has stays pending, and `imagen jobs` and `imagen workers` say why."""
    left = workers.start_and_wait(queue, "--config", str(instance_config(home, "left")))
    right = workers.start_and_wait(queue, "--config", str(instance_config(home, "right")))
    ids = {
        "left": [add_job(queue, f"l{i}", backend="left") for i in range(4)],
        "right": [add_job(queue, f"r{i}", backend="right") for i in range(4)],
        None: [add_job(queue, f"n{i}") for i in range(2)],
    }
    gpu_job = add_job(queue, "needs the gpu", backend="comfy-gpu", priority=50)
    wait_until(
        lambda: count_status(queue, "done") == 10, "the mixed queue to drain", 60, [left, right]
    )
    assert count_status(queue, "failed") == 0
    worker_of = dict(sql(queue, "SELECT pid, id FROM imagen.workers"))
    for name, pid in (("left", left.pid), ("right", right.pid)):
        for job_id in ids[name]:
            assert job_row(queue, job_id)["worker_id"] == worker_of[pid]
    for job_id in ids[None]:
        (made_by,) = sql(queue, "SELECT backend FROM imagen.images WHERE job_id = %s", (job_id,))
        assert made_by[0] in ("left", "right")  # the default of whichever worker took it
    assert left.done_count() + right.done_count() == 10

    # Both workers passed an idle poll since: the job for comfy-gpu was not touched.
    gpu = job_row(queue, gpu_job)
    assert (gpu["status"], gpu["attempts"], gpu["error"]) == ("pending", 0, None)
    listed = home.imagen("jobs")
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(f"{gpu_job} ")]
    assert line.split()[3] == "comfy-gpu" and line.endswith(WAITING_GPU)
    as_json = [json.loads(line) for line in home.imagen("jobs", "--json").stdout.splitlines()]
    assert {row["id"]: row["unserved"] for row in as_json}[gpu_job] is True
    assert not any(row["unserved"] for row in as_json if row["id"] != gpu_job)

    shown = home.imagen("workers")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["BACKEND"])
    assert [line.split() for line in lines[start:]] == [
        ["BACKEND", "WORKERS", "ONLINE"],
        ["left", "1"],
        ["mock", "2"],
        ["right", "1"],
    ]
    assert DONE in left.log() and DONE in right.log()


# --------------------------------------------------------------------------- what front ends read


def test_a_job_waits_while_no_online_worker_serves_its_backend(queue):
    """Stale workers do not count; a job with no backend waits for a worker with
    a default; the series' try says the same."""
    workbench = open_workbench()
    with services.session(workbench) as db:
        submitted = db.submit(workbench, services.spec_from_form(prompt="fox", backend="gpu"), 1)
        no_backend = add_job(queue, "from another app")

        def waiting() -> dict[int, str | None]:
            return {row.id: row.waiting for row in db.jobs()}

        (job_id,) = submitted.job_ids
        expected = {job_id: "waiting for a worker with gpu", no_backend: waiting_for(None)}
        assert waiting() == expected
        announce(queue, "dead", ["gpu"], "gpu", age_s=120)  # stale: not online
        assert waiting() == expected
        announce(queue, "cloud", ["gpu"], None)  # serves gpu, has no default
        assert waiting() == {job_id: None, no_backend: waiting_for(None)}
        (attempt,) = db.series_detail(submitted.series_id).tries
        assert attempt.waiting is None and attempt.job_backend == "gpu"
        announce(queue, "laptop", ["mock"], "mock")
        assert waiting() == {job_id: None, no_backend: None}
        assert backends_served(db.workers()) == {"gpu": 1, "mock": 1}

        sql(queue, "DELETE FROM imagen.workers WHERE id <> 'dead'")
        (attempt,) = db.series_detail(submitted.series_id).tries
        assert attempt.waiting == "waiting for a worker with gpu"
        sql(queue, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job_id,))
        assert waiting()[job_id] is None  # only a pending job waits


def _row(**fields: object) -> JobRow:
    base: dict[str, object] = {
        "id": 7,
        "status": "pending",
        "series_id": None,
        "series_idx": None,
        "prompt": "fox",
        "backend": "comfy-gpu",
        "seed": None,
        "attempts": 0,
        "max_attempts": 3,
        "progress": None,
        "error": None,
        "image_id": None,
        "storage_uri": None,
        "created_at": None,
        "started_at": None,
        "finished_at": None,
    }
    return JobRow(**{**base, **fields})  # type: ignore[arg-type]


def test_the_job_table_names_the_instance_and_says_what_a_job_waits_for():
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    waiting = job_cells(_row(unserved=True, created_at=now), now)
    assert waiting[COLUMN_INDEX["backend"]].plain == "comfy-gpu"
    assert waiting[COLUMN_INDEX["error"]].plain == WAITING_GPU
    served = job_cells(_row(created_at=now, error="a retry's reason"), now)
    assert served[COLUMN_INDEX["error"]].plain == "a retry's reason"
    unknown = job_cells(_row(backend=None, created_at=now), now)
    assert unknown[COLUMN_INDEX["backend"]].plain == "—"  # never "default"


def test_a_series_tile_says_what_its_try_waits_for():
    tile = ImageTile(TileInfo("1", "#1", "seed —", status="pending", waiting=WAITING_GPU))
    assert WAITING_GPU in tile._status_text().plain
    quiet = ImageTile(TileInfo("1", "#1", "seed —", status="pending"))
    assert "waiting" not in quiet._status_text().plain


def test_a_supabase_user_sees_what_their_job_waits_for(api, db_url):
    """The waiting check reads only the presence columns users may read (no id,
    host or pid), so it works under row-level security too."""
    from imagen_tui.db import repositories as q
    from tests.helpers import acting

    user = "00000000-0000-0000-0000-0000000000a1"
    job_id = add_job(db_url, backend="comfy-gpu", owner_user_id=user)
    with acting(api, user):
        (row,) = q.fetch(api, q.jobs_page())
    assert (row.id, row.waiting) == (job_id, WAITING_GPU)
    announce(db_url, "gpu1:42:abc", ["comfy-gpu"], None)
    with acting(api, user):
        (row,) = q.fetch(api, q.jobs_page())
    assert row.waiting is None
