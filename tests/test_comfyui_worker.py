"""The headless worker with a comfyui backend, end to end: a real PostgreSQL, the
fake ComfyUI server (tests/comfyui_fake.py), the jobs table and the files."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from imagen_tui.core.workbench import Workbench, open_workbench
from tests.comfyui_fake import FakeComfy
from tests.helpers import (
    add_job,
    files_in,
    job_row,
    make_worker,
    running_worker,
    sql,
    status_is,
    wait_for,
)


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    server = FakeComfy().start()
    yield server
    server.stop()


@pytest.fixture
def workbench(home, fake) -> Workbench:
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "default_backend: flux\n"
        f"backends:\n  flux:\n    type: comfyui\n    url: {fake.url}\n"
    )
    return open_workbench(path)


def test_a_series_of_three_tries_lands_with_progress_events_on_each_job(db_url, workbench, fake):
    fake.scenario, fake.step_delay = "progress", 0.15  # 4 steps, 0.6 s a job
    ((series_id,),) = sql(
        db_url, "INSERT INTO imagen.series (prompt, count) VALUES ('a fox', 3) RETURNING id"
    )
    sql(
        db_url,
        "INSERT INTO imagen.jobs (series_id, series_idx, prompt, width, height, seed, backend) "
        "SELECT %s, i, 'a fox', 512, 512, 100 + i, 'flux' FROM generate_series(1, 3) i",
        (series_id,),
    )
    progress: dict[int, list[float]] = {}

    async def scenario() -> None:
        listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        await listener.execute("LISTEN imagen_job_events")
        await make_worker(db_url, workbench, once=True).run()
        async for note in listener.notifies(timeout=0.5):
            event = json.loads(note.payload)
            if event["status"] == "running" and event["progress"]:
                progress.setdefault(event["id"], []).append(event["progress"])
        await listener.close()

    asyncio.run(scenario())
    rows = sql(
        db_url,
        "SELECT j.id, j.status, i.seed, i.backend, i.model, i.steps FROM imagen.jobs j "
        "JOIN imagen.images i ON i.job_id = j.id WHERE j.series_id = %s ORDER BY j.series_idx",
        (series_id,),
    )
    assert [row[1:] for row in rows] == [
        ("done", seed, "flux", "flux-schnell", 4) for seed in (101, 102, 103)
    ]
    assert [g["7"]["inputs"]["seed"] for g in fake.posted_graphs()] == [101, 102, 103]
    for job_id, *_ in rows:
        assert progress.get(job_id), f"no progress event for job {job_id}"
        assert all(0 < value <= 1 for value in progress[job_id])
    assert len(files_in(workbench.config.output.directory)) == 6  # 3 images + 3 sidecars


def test_out_of_memory_is_handed_back_without_an_attempt_then_succeeds(db_url, workbench, fake):
    fake.next_scenarios = ["oom"]
    job_id = add_job(db_url, backend="flux")
    errors: list[str | None] = []

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=600)
        async with running_worker(worker) as running:

            def done() -> bool:
                job = job_row(db_url, job_id)
                errors.append(job["error"])
                return job["status"] == "done"

            await wait_for(done, what="the retried job")
            worker.stop()
            await running

    asyncio.run(scenario())
    assert (job_row(db_url, job_id)["attempts"], job_row(db_url, job_id)["oom_handbacks"]) == (1, 1)
    assert any(e and "the GPU ran out of memory" in e for e in errors)
    assert len(fake.posted_graphs()) == 2


@pytest.mark.parametrize("where", ["running", "pending"])
def test_cancel_by_sql_removes_the_prompt_from_comfyui_within_a_second(
    db_url, workbench, fake, where
):
    other = None
    if where == "running":
        fake.scenario = "hold"
    else:
        other = fake.occupy()  # another client's prompt holds the GPU: ours waits in the queue
    job_id = add_job(db_url, backend="flux")

    async def scenario() -> float:
        worker = make_worker(db_url, workbench, lease_s=3600, poll_interval=0.2)
        async with running_worker(worker) as running:
            await asyncio.to_thread(fake.wait_for, lambda: bool(fake.called("POST", "/prompt")))
            prompt_id = fake.called("POST", "/prompt")[0]["prompt_id"]
            if where == "running":
                await asyncio.to_thread(fake.wait_for, lambda: fake.running_id == prompt_id)
            else:
                await asyncio.to_thread(fake.wait_for, lambda: prompt_id in fake.pending_ids)
            started = time.monotonic()
            sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job_id,))
            await asyncio.to_thread(
                fake.wait_for,
                lambda: prompt_id not in fake.pending_ids and fake.running_id != prompt_id,
                5,
                "the prompt to leave ComfyUI",
            )
            elapsed = time.monotonic() - started
            await wait_for(lambda: worker.stats["dropped"] == 1, what="the worker to drop the job")
            worker.stop()
            await running
            assert worker.stats == {"dropped": 1}
            return elapsed

    elapsed = asyncio.run(scenario())
    assert elapsed < 1.0
    prompt_id = fake.called("POST", "/prompt")[0]["prompt_id"]
    if where == "running":
        assert {"prompt_id": prompt_id} in fake.called("POST", "/interrupt")
    else:
        assert {"delete": [prompt_id]} in fake.called("POST", "/queue")
        assert fake.running_id == other
        fake.release(other)
    job = job_row(db_url, job_id)
    assert (job["status"], job["image_id"]) == ("canceled", None)
    assert not files_in(workbench.config.output.directory)
    assert status_is(db_url, job_id, "canceled")()
