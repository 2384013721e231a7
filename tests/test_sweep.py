"""The worker's start-up sweep: what killed runs left in the output folder goes,
and an image goes only when the database says nothing refers to it."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image

from imagen_tui.core.output import Written, write_image
from imagen_tui.core.workbench import open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id
from tests.helpers import running_worker, sql


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


def add_job(db_url: str, status: str, lease: str, *, live: bool = False) -> int:
    expires = "now() + interval '1 hour'" if live else "now() - interval '1 minute'"
    ((job_id,),) = sql(
        db_url,
        f"""INSERT INTO imagen.jobs (prompt, status, worker_id, lease_id, lease_expires_at)
            VALUES ('x', 'running', 'w', %s, {expires}) RETURNING id""",
        (lease,),
    )
    if status != "running":
        sql(db_url, "UPDATE imagen.jobs SET status = %s WHERE id = %s", (status, job_id))
    return int(job_id)


def render(out: Path, name: str, journal: str) -> Written:
    written = write_image(
        out,
        PurePosixPath("day", name),
        PNG,
        "image/png",
        text_chunks={},
        sidecar={"prompt": "x"},
        journal=journal,
    )
    assert written.journal is not None and written.journal.is_file()
    return written


def test_the_sweep_removes_leftovers_of_killed_runs_and_keeps_recorded_images(db_url, home, caplog):
    out = home.root / "out"
    workbench = open_workbench(home.write_config(f"output:\n  directory: {out}\n"))

    # A killed run whose result was never recorded: the job failed (or was re-run) since.
    lease_a = str(uuid.uuid4())
    orphan = render(out, "orphan", f"{add_job(db_url, 'failed', lease_a)}-{lease_a}")
    # A killed run whose result WAS recorded just before the kill (the reply was lost).
    lease_b = str(uuid.uuid4())
    job_b = add_job(db_url, "running", lease_b)
    recorded = render(out, "recorded", f"{job_b}-{lease_b}")
    ((image_b,),) = sql(
        db_url,
        """INSERT INTO imagen.images (job_id, seed, width, height, backend, model, mime_type,
                                      sha256, bytes, storage_uri)
           VALUES (%s, 1, 1, 1, 'mock', 'm', 'image/png', 'x', 1, %s) RETURNING id""",
        (job_b, recorded.image.as_uri()),
    )
    sql(
        db_url, "UPDATE imagen.jobs SET status = 'done', image_id = %s WHERE id = %s",
        (image_b, job_b),
    )  # fmt: skip
    # A run still in progress in another worker process sharing the folder.
    lease_c = str(uuid.uuid4())
    in_progress = render(
        out, "in-progress", f"{add_job(db_url, 'running', lease_c, live=True)}-{lease_c}"
    )
    # A run killed before its image got a name: only its journal temp file exists.
    lease_d = str(uuid.uuid4())
    unnamed = (
        out
        / "day"
        / f".imagen-journal-{add_job(db_url, 'failed', lease_d)}-{lease_d}-q1w2e3r4.part"
    )
    unnamed.write_bytes(PNG)
    # Plain temp files: one left by a killed `imagen generate` an hour ago, one being written.
    stale, fresh = out / "day" / ".a1b2c3d4.part", out / "day" / ".e5f6g7h8.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))

    worker = Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True))
    with caplog.at_level(logging.WARNING, logger="imagen.worker"):
        asyncio.run(worker.run())

    left = sorted(p for p in out.rglob("*") if p.is_file())
    assert left == sorted(
        [
            recorded.image,
            recorded.sidecar,
            in_progress.image,
            in_progress.sidecar,
            in_progress.journal,
            fresh,
        ]
    )
    assert orphan.sidecar is not None
    assert not orphan.image.exists() and not orphan.sidecar.exists()
    summary = [r.getMessage() for r in caplog.records if "output folder" in r.getMessage()]
    assert len(summary) == 1
    assert "removed 1 stale temp file(s) and 1 image(s) no job recorded" in summary[0]
    assert "kept 1 recorded image(s)" in summary[0]


def test_a_sweep_with_the_database_away_removes_nothing(home, tmp_path, caplog):
    """No answer from the database, no verdict: the journal and its image stay."""
    out = home.root / "out"
    workbench = open_workbench(home.write_config(f"output:\n  directory: {out}\n"))
    lease = str(uuid.uuid4())
    left = render(out, "unknown", f"7-{lease}")
    dead_url = f"host={tmp_path} dbname=nothing connect_timeout=1"  # no server there

    def asked() -> bool:
        return any("start-up sweep: database unavailable" in r.message for r in caplog.records)

    async def scenario() -> None:
        worker = Worker(workbench, PgQueue(dead_url, new_worker_id()), WorkerOptions(once=True))
        async with running_worker(worker) as running:
            async with asyncio.timeout(20):
                while not asked():  # the sweep found a journal and asked the database
                    await asyncio.sleep(0.02)
            worker.stop()
            await running

    with caplog.at_level(logging.WARNING, logger="imagen.worker"):
        asyncio.run(scenario())
    assert left.image.is_file() and left.journal is not None and left.journal.is_file()


@pytest.mark.parametrize("status", ["failed", "pending"])
def test_a_journal_of_a_rescued_job_is_an_orphan_whatever_the_job_does_next(db_url, home, status):
    out = home.root / "out"
    workbench = open_workbench(home.write_config(f"output:\n  directory: {out}\n"))
    old_lease = str(uuid.uuid4())
    job_id = add_job(db_url, "running", old_lease)
    orphan = render(out, "first-attempt", f"{job_id}-{old_lease}")
    # Rescued: a new lease, or no lease at all.
    sql(
        db_url,
        "UPDATE imagen.jobs SET status = %s, lease_id = NULL, worker_id = NULL, "
        "lease_expires_at = NULL WHERE id = %s",
        (status, job_id),
    )
    if status == "pending":
        sql(
            db_url,
            "UPDATE imagen.jobs SET run_at = now() + interval '1 hour' WHERE id = %s",
            (job_id,),
        )
    asyncio.run(Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True)).run())
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert not orphan.image.exists()


def test_a_rescue_sweeps_what_the_dead_worker_left_without_waiting_for_a_restart(db_url, home):
    """At start the lease is still alive, so the journal stays; once the lease
    runs out, the rescue pass requeues the job and the leftovers go at once."""
    out = home.root / "out"
    workbench = open_workbench(home.write_config(f"output:\n  directory: {out}\n"))
    lease = str(uuid.uuid4())
    ((job_id,),) = sql(
        db_url,
        """INSERT INTO imagen.jobs (prompt, width, height, status, worker_id, lease_id,
                                    lease_expires_at, attempts)
           VALUES ('x', 64, 64, 'running', 'w-dead', %s, now() + interval '1 second', 1)
           RETURNING id""",
        (lease,),
    )
    orphan = render(out, "left-behind", f"{job_id}-{lease}")

    async def scenario() -> None:
        worker = Worker(
            workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(poll_interval=0.2)
        )
        async with running_worker(worker) as running:
            async with asyncio.timeout(30):
                while orphan.image.exists() or sql(
                    db_url, "SELECT status FROM imagen.jobs WHERE id = %s", (job_id,)
                ) != [("done",)]:
                    await asyncio.sleep(0.05)
            worker.stop()
            await running

    asyncio.run(scenario())
    ((uri,),) = sql(db_url, "SELECT storage_uri FROM imagen.images WHERE job_id = %s", (job_id,))
    assert [p.as_uri() for p in out.rglob("*.png")] == [uri]
    assert not list(out.rglob("*.part"))
