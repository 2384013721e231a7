"""Sharing the GPU (jobs/gpu.py, docs/worker.md): the free-VRAM gate per ComfyUI
instance, Ollama's idle models unloaded, ComfyUI's `/free` after an idle time, and
out-of-memory hand-backs. Real PostgreSQL and worker; the fake ComfyUI
(tests/comfyui_fake.py) and a fake Ollama (tests/ollama_fake.py) on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagen_tui import services
from imagen_tui.backends.comfyui import ComfyBackend, default_min_free_vram_gb
from imagen_tui.backends.comfyui.memory import GIB, Vram, idle_models, vram_of
from imagen_tui.cli.workers import state
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue, Presence
from imagen_tui.errors import GenerationError
from imagen_tui.jobs.gpu import GpuGate, GpuWait, IdleUnloader
from imagen_tui.jobs.worker import new_worker_id
from imagen_tui.limits import MAX_OOM_HANDBACKS
from tests.comfyui_fake import FakeComfy
from tests.helpers import add_job, job_row, make_worker, running_worker, sql, status_is, wait_for
from tests.ollama_fake import FakeOllama

FAST = GpuWait(first=0.05, cap=0.2)


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    server = FakeComfy().start()
    yield server
    server.stop()


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    server = FakeOllama().start()
    yield server
    server.stop()


def shared_workbench(home: Any, fake: FakeComfy, extra: str = "") -> Workbench:
    path = home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n"
        "default_backend: flux\n"
        "backends:\n"
        f"  flux:\n    type: comfyui\n    url: {fake.url}\n    min_free_vram_gb: 12\n{extra}"
        "  mock:\n    type: mock\n"
    )
    return open_workbench(path)


def presence_queue(db_url: str, workbench: Workbench) -> PgQueue:
    worker_id = new_worker_id()
    presence = Presence(worker_id, socket.gethostname(), os.getpid(), ("flux", "mock"), 1)
    return PgQueue(db_url, worker_id, lease_s=3, presence=presence)


# --------------------------------------------------------------------------- the gate, end to end


def test_short_gpu_memory_stops_claims_for_that_instance_only(db_url, home, fake, monkeypatch):
    monkeypatch.setenv("IMAGEN_DATABASE_URL", db_url)  # `imagen workers` reads this queue
    fake.set_vram(free_gb=3.1, total_gb=16.0)  # Ollama and F5-TTS hold the rest
    workbench = shared_workbench(home, fake)
    flux_job = add_job(db_url, backend="flux")
    default_job = add_job(db_url)  # no backend: the default (flux)
    mock_job = add_job(db_url, backend="mock")
    queue = presence_queue(db_url, workbench)

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, queue=queue, poll_interval=0.2, gpu_wait=FAST)
        async with running_worker(worker):
            await wait_for(status_is(db_url, mock_job, "done"), what="the mock job")
            # The note reaches the presence row, `imagen workers` and the header's source.
            shown = "online: waiting for GPU memory: 3.1 of 16.0 GB free"

            def noted() -> bool:
                return [state(w) for w in services.workers(workbench)] == [shown]

            await wait_for(noted, what="the presence row's note")
            # Several gate periods pass: the flux jobs are still not claimed.
            gets = len(fake.called("GET", "/system_stats"))
            await asyncio.to_thread(
                fake.wait_for, lambda: len(fake.called("GET", "/system_stats")) >= gets + 3
            )
            assert job_row(db_url, flux_job)["status"] == "pending"
            assert job_row(db_url, default_job)["status"] == "pending"
            assert not fake.called("POST", "/prompt")
            fake.set_vram(free_gb=14.0, total_gb=16.0)  # Ollama let go
            await wait_for(status_is(db_url, flux_job, "done"), what="the flux job")
            await wait_for(status_is(db_url, default_job, "done"), what="the default job")
            await wait_for(
                lambda: [state(w) for w in services.workers(workbench)] == ["online"],
                what="the note to clear",
            )

    asyncio.run(scenario())
    assert job_row(db_url, flux_job)["attempts"] == 1


def test_memory_comfyui_already_holds_counts_as_usable(db_url, home, fake):
    # FLUX stays loaded after a render: 4 GB free on the card, 11 GB of it ComfyUI's.
    fake.set_vram(free_gb=4.0, total_gb=16.0, held_gb=11.0)
    workbench = shared_workbench(home, fake)
    job_id = add_job(db_url, backend="flux")
    asyncio.run(make_worker(db_url, workbench, once=True, gpu_wait=FAST).run())
    assert job_row(db_url, job_id)["status"] == "done"


def test_ollama_idle_models_are_unloaded_when_memory_is_short(db_url, home, fake, ollama):
    fake.set_vram(free_gb=5.0, total_gb=16.0)
    ollama.load("gemma3:12b", last_used_s_ago=120)  # idle: unloaded
    ollama.load("llama3.2", last_used_s_ago=2)  # answered a request just now: kept
    ollama.load("qwen3", last_used_s_ago=0, pinned=True)  # keep_alive -1: kept
    ollama.on_unload = lambda name: fake.set_vram(free_gb=14.0, total_gb=16.0)
    workbench = shared_workbench(home, fake, f"    ollama_url: {ollama.url}\n")
    job_id = add_job(db_url, backend="flux")

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2, gpu_wait=FAST)
        async with running_worker(worker):
            await wait_for(status_is(db_url, job_id, "done"), what="the flux job")

    asyncio.run(scenario())
    assert ollama.called("POST", "/api/generate") == [{"model": "gemma3:12b", "keep_alive": 0}]
    assert sorted(ollama.models) == ["llama3.2", "qwen3"]


def test_free_is_sent_once_after_the_idle_time(db_url, home, fake):
    fake.set_vram(free_gb=14.0, total_gb=16.0)
    workbench = shared_workbench(home, fake, "    free_after_idle_s: 0.5\n")
    fake.scenario, fake.step_delay = "progress", 0.3  # a job of ~1.2 s: longer than the idle time

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2, gpu_wait=FAST)
        async with running_worker(worker):
            # At start, nothing ran for the idle time: ComfyUI is asked to free once.
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.called("POST", "/free")) == 1)
            job_id = add_job(db_url, backend="flux")
            await wait_for(status_is(db_url, job_id, "done"), what="the job")
            during = len(fake.called("POST", "/free"))
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.called("POST", "/free")) == 2)
            assert during == 1, "/free was sent while a job ran"
            calls = [(m, p) for m, p, _ in fake.calls if p in ("/free", "/prompt")]
            assert calls == [("POST", "/free"), ("POST", "/prompt"), ("POST", "/free")]

    asyncio.run(scenario())
    assert fake.called("POST", "/free")[0] == {"unload_models": True, "free_memory": True}


# --------------------------------------------------------------------------- out of memory


def test_out_of_memory_hands_back_without_an_attempt_and_counts_after_five(db_url, home, fake):
    fake.next_scenarios = ["oom"] * (MAX_OOM_HANDBACKS + 1)
    workbench = shared_workbench(home, fake)
    job_id = add_job(db_url, backend="flux")

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2, gpu_wait=FAST)
        async with running_worker(worker):
            await wait_for(status_is(db_url, job_id, "done"), what="the job")
            assert worker.stats["handed back"] == MAX_OOM_HANDBACKS
            assert worker.stats["retried"] == 1

    asyncio.run(scenario())
    row = job_row(db_url, job_id)
    # Five hand-backs used no attempt; the sixth out-of-memory counted; the 7th run worked.
    assert (row["attempts"], row["oom_handbacks"]) == (2, MAX_OOM_HANDBACKS)
    assert len(fake.posted_graphs()) == MAX_OOM_HANDBACKS + 2


def test_out_of_memory_waits_for_memory_and_asks_ollama(db_url, home, fake, ollama):
    fake.set_vram(free_gb=14.0, total_gb=16.0)
    fake.next_scenarios = ["oom"]  # Ollama grabbed the card between the check and the run
    ollama.load("gemma3:12b", last_used_s_ago=60)
    workbench = shared_workbench(home, fake, f"    ollama_url: {ollama.url}\n")
    job_id = add_job(db_url, backend="flux")

    async def scenario() -> None:
        worker = make_worker(db_url, workbench, poll_interval=0.2, gpu_wait=FAST)
        async with running_worker(worker):
            await wait_for(status_is(db_url, job_id, "done"), what="the job")

    asyncio.run(scenario())
    row = job_row(db_url, job_id)
    assert (row["attempts"], row["oom_handbacks"]) == (1, 1)
    assert ollama.called("POST", "/api/generate") == [{"model": "gemma3:12b", "keep_alive": 0}]


def test_hand_back_is_fenced_and_bounded(db_url):
    async def scenario() -> list[bool]:
        queue = PgQueue(db_url, new_worker_id(), lease_s=30)
        job_id = add_job(db_url, backend="flux")
        results = []
        for _ in range(3):
            job = await queue.claim(["flux"], False)
            assert job is not None and job.id == job_id
            results.append(await queue.hand_back(job, "out of memory", 0, None, 2))
            if not results[-1]:
                stale = job  # still held: a hand-back under an old lease is refused
                await queue.release(job)
        assert not await queue.hand_back(stale, "late", 0, None, 99)
        await queue.close()
        return results

    assert asyncio.run(scenario()) == [True, True, False]
    ((attempts, handbacks),) = sql(db_url, "SELECT attempts, oom_handbacks FROM imagen.jobs")
    assert (attempts, handbacks) == (0, 2)


def test_claim_for_some_backends_takes_only_theirs(db_url):
    async def scenario() -> list[int | None]:
        queue = PgQueue(db_url, new_worker_id(), lease_s=30)
        taken = []
        for backends, accept_default in ((["mock"], False), (["mock"], False), (["flux"], True)):
            job = await queue.claim(backends, accept_default)
            taken.append(job.id if job else None)
        await queue.close()
        return taken

    flux_job = add_job(db_url, backend="flux")
    null_job = add_job(db_url)
    mock_job = add_job(db_url, backend="mock")
    assert asyncio.run(scenario()) == [mock_job, None, flux_job]
    assert job_row(db_url, null_job)["status"] == "pending"


# --------------------------------------------------------------------------- the gate, unit


class Gpu:
    """A SharedGpu with figures a test sets."""

    name = "flux"

    def __init__(self, min_free: float = 12.0, idle_s: float = 0.0) -> None:
        self.min_free_vram_gb = min_free
        self.free_after_idle_s = idle_s
        self.ollama: IdleUnloader | None = None
        self.reading: Vram | Exception = Vram(usable=int(14 * GIB), total=int(16 * GIB), gpu=True)
        self.reads = 0
        self.frees = 0

    async def vram(self) -> Vram:
        self.reads += 1
        if isinstance(self.reading, Exception):
            raise self.reading
        return self.reading

    async def free_memory(self) -> None:
        self.frees += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def short(gb: float, total: float = 16.0, gpu: bool = True) -> Vram:
    return Vram(usable=int(gb * GIB), total=int(total * GIB), gpu=gpu)


def test_gate_backs_off_doubling_to_its_cap_and_reopens():
    gpu, clock = Gpu(), Clock()
    gate = GpuGate(gpu, GpuWait(first=2.0, cap=5.0), clock)
    gpu.reading = short(3.1)
    assert not asyncio.run(gate.ready())
    assert gate.note == "waiting for GPU memory: 3.1 of 16.0 GB free"
    waits = []
    for _ in range(3):
        waits.append(gate.retry_at - clock.now)
        assert not asyncio.run(gate.ready())  # within the wait: no reading at all
        clock.now = gate.retry_at
        assert not asyncio.run(gate.ready())
    assert waits == [2.0, 4.0, 5.0]
    gpu.reading = short(12.0)
    clock.now = gate.retry_at
    assert asyncio.run(gate.ready())
    assert gate.note is None


@pytest.mark.parametrize(
    ("min_free", "reading", "ready"),
    [
        (12.0, short(11.9), False),
        (12.0, short(12.0), True),
        (0.0, short(0.5), True),  # 0: the check is off
        (15.5, short(14.5), True),  # above 90% of the card: taken as 90% (14.4)
        (12.0, short(1.0, gpu=False), True),  # ComfyUI on the CPU
        (12.0, GenerationError("down", transient=True), True),  # unreadable: not waited for
    ],
)
def test_gate_threshold(min_free, reading, ready):
    gpu = Gpu(min_free)
    gpu.reading = reading
    assert asyncio.run(GpuGate(gpu, clock=Clock()).ready()) is ready
    assert gpu.reads == (0 if min_free == 0 else 1)


def test_gate_frees_once_after_the_idle_time_never_while_busy_and_never_when_zero():
    gpu, clock = Gpu(idle_s=300), Clock()
    gate = GpuGate(gpu, clock=clock)
    assert asyncio.run(gate.free_if_idle()) == 300
    gate.started()
    clock.now += 400
    assert asyncio.run(gate.free_if_idle()) is None and gpu.frees == 0  # a job is running
    gate.finished()
    clock.now += 299
    assert asyncio.run(gate.free_if_idle()) == pytest.approx(1)
    clock.now += 1
    asyncio.run(gate.free_if_idle())
    clock.now += 1000
    asyncio.run(gate.free_if_idle())
    assert gpu.frees == 1  # once, until the next job
    never = Gpu(idle_s=0)
    clock.now += 10_000
    assert asyncio.run(GpuGate(never, clock=clock).free_if_idle()) is None
    assert never.frees == 0


# --------------------------------------------------------------------------- reading the servers


def test_vram_of_counts_what_comfyui_holds_and_refuses_a_bad_shape():
    device = {
        "type": "cuda",
        "vram_total": 16 * GIB,
        "vram_free": 4 * GIB,
        "torch_vram_total": 11 * GIB,
        "torch_vram_free": 1 * GIB,
    }
    reading = vram_of("flux", {"devices": [device]})
    assert (reading.usable_gb, reading.total_gb, reading.gpu) == (14.0, 16.0, True)
    old = {"type": "cuda", "vram_total": 16 * GIB, "vram_free": 4 * GIB}
    assert vram_of("flux", {"devices": [old]}).usable_gb == 4.0
    bodies: list[object] = [{}, {"devices": []}, {"devices": [{"vram_free": "lots"}]}, [1]]
    for body in bodies:
        with pytest.raises(GenerationError, match="flux: /system_stats"):
            vram_of("flux", body)


def test_idle_models_by_expires_at():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def at(seconds: float) -> str:
        return (now + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    body = {
        "models": [
            {"model": "idle", "expires_at": at(300 - 31)},
            {"model": "recent", "expires_at": at(300 - 29)},
            {"model": "pinned", "expires_at": "2318-01-01T00:00:00.123456789Z"},
            {"model": "garbled", "expires_at": "soon"},
            {"expires_at": at(0)},
            "junk",
        ]
    }
    assert idle_models(body, 300, now) == ["idle"]
    assert idle_models({"models": "x"}, 300, now) == []


def test_default_thresholds_per_workflow_and_weights():
    assert default_min_free_vram_gb({"weight_dtype": "fp8_e4m3fn"}) == 12
    assert default_min_free_vram_gb({"workflow": "flux-dev"}) == 14
    assert default_min_free_vram_gb({"layout": "checkpoint"}) == 12
    assert default_min_free_vram_gb({"workflow": "/srv/my_graph.json"}) == 0
    assert ComfyBackend("flux", {"min_free_vram_gb": 0.0}).min_free_vram_gb == 0
