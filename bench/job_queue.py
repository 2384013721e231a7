"""How fast the job queue picks up and drains jobs, next to pgqueuer on the same server.

Run:  .venv/bin/pip install -e '.[bench]'    (pgqueuer + asyncpg: the reference)
      .venv/bin/python bench/job_queue.py [--samples 200] [--drain-jobs 5000] [--no-profile]
                                      [--only latency,pgq_latency,...] (see _phases)

Everything runs on a fresh private embedded PostgreSQL (stock settings: fsync
and synchronous_commit on) started in a temp dir and stopped at the end. Each
phase gets its own database (ours cloned from a migrated template, pgqueuer's
from an installed one). Workers are separate OS processes (multiprocessing,
spawn): ours is the real `imagen_tui.jobs.worker.Worker` over `PgQueue`, with a
bench backend type `instant` registered in the worker process that returns a
PNG rendered once at start-up; the reference is pgqueuer's `QueueManager` on
its asyncpg driver with a no-op `async def` entrypoint.

Figures printed (see `_explain` for what each includes):

1. pickup latency: the parent's time.monotonic() right after the INSERT's
   commit returns -> time.monotonic() at the first line of the backend's
   `generate` (ours) / of the entrypoint (pgqueuer). CLOCK_MONOTONIC is
   system-wide on Linux, so the two processes' readings compare directly.
   Samples are taken one at a time with the worker idle: the next job is
   inserted ~20 ms after the previous one was recorded as finished.
2. framework overhead per job at 512x512: wall time of a one-worker drain of
   300 jobs / 300, the instant backend costing ~nothing; plus a per-stage
   breakdown from a second, instrumented drain.
3. drain throughput: 5,000 jobs inserted in one statement, ANALYZE, drained by
   1 and 2 worker processes in `--once` mode (WorkerOptions(once=True));
   pgqueuer in its `drain` mode. Clock: from the moment the (already started,
   connected) worker processes are released to the moment the last one has
   returned from its run loop.

It takes 4.5-9 minutes on a 2-core VM, most of it the two 512x512 drains (every
job writes and fsyncs two files). The machine may be shared: before each phase
it waits (up to --quiet-wait s) for other processes to go quiet, and it prints
how much CPU they used during each phase. The process exits non-zero only on
errors; missed targets are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psycopg

from imagen_tui.db import embedded, migrate

PROMPT = "a lighthouse at dusk, volumetric light"
SIZE_FULL = (512, 512)
SIZE_TINY = (64, 64)  # the smallest size the jobs table accepts
PGQ_ENTRYPOINT = "noop"
IMAGEN_TEMPLATE = "imagen_template"
PGQ_TEMPLATE = "pgq_template"

TARGET_P50_MS = 1.5
TARGET_P99_MS = 4.0
TARGET_OVERHEAD_MS = 15.0
QUIET_PERCENT = 10.0  # other processes' CPU share below which the machine counts as quiet

_INSERT_ONE = """INSERT INTO imagen.jobs (prompt, width, height, seed)
VALUES (%(prompt)s, %(width)s, %(height)s, %(seed)s) RETURNING id"""

# One statement: one wake-up notification for the whole batch (the per-row job
# event trigger still fires once per row, as it does in production).
_INSERT_BATCH = """INSERT INTO imagen.jobs (prompt, width, height, seed)
SELECT %(prompt)s, %(width)s, %(height)s, i FROM generate_series(1, %(n)s) AS i"""

# =========================================================================== worker processes


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process runs (pickled to the spawned child)."""

    kind: str  # "imagen" or "pgqueuer"
    url: str
    once: bool  # drain, then exit; else run until SIGTERM
    report_starts: bool  # send ("start", key, t, extra) at every job start
    profile: str | None = None  # imagen only: "latency" or "job" stage timings
    config: str = ""  # imagen: the config file
    sizes: tuple[tuple[int, int], ...] = (SIZE_FULL,)  # imagen: images to prepare
    log_path: str = ""


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the bench process dies, however it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_main(spec: WorkerSpec, pipe: Connection, go: Any) -> None:
    _die_with_parent()
    try:
        if spec.kind == "imagen":  # on the event loop `imagen worker` uses
            from imagen_tui.jobs.worker import run_loop

            run_loop(_imagen_worker(spec, pipe, go))
        else:  # pgqueuer as it ships: asyncio's own loop
            asyncio.run(_pgq_worker(spec, pipe, go))
    except BaseException:
        with contextlib.suppress(Exception):
            pipe.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None


class Probe:
    """Stage timings (ms) and the latest time stamps, collected in a worker process."""

    def __init__(self) -> None:
        self.ms: defaultdict[str, list[float]] = defaultdict(list)
        self.marks: dict[str, float] = {}

    def timed_async(self, owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)
        probe = self

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            result = await original(*args, **kwargs)
            probe.ms[key].append((time.monotonic() - started) * 1000)
            return result

        setattr(owner, name, wrapper)

    def timed_sync(self, owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)
        probe = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                probe.ms[key].append((time.monotonic() - started) * 1000)

        setattr(owner, name, wrapper)


def _install_probes(probe: Probe, mode: str) -> None:
    """Wrap the worker's stages (in this process only) to time them."""
    import imagen_tui.core.output as output
    import imagen_tui.core.pipeline as pipeline
    import imagen_tui.jobs.worker as worker_module
    from imagen_tui.db.queue import PgQueue
    from imagen_tui.jobs.worker import Worker

    original_claim = PgQueue.claim

    async def claim(self: PgQueue, backends: Any, accept_default: bool) -> Any:
        started = time.monotonic()
        job = await original_claim(self, backends, accept_default)
        ended = time.monotonic()
        probe.ms["claim" if job is not None else "claim (empty)"].append((ended - started) * 1000)
        if job is not None:
            probe.marks["claim_start"], probe.marks["claim_end"] = started, ended
        return job

    PgQueue.claim = claim  # type: ignore[method-assign]

    original_wake = Worker._wake_all

    def wake_all(self: Worker) -> None:
        probe.marks["wake"] = time.monotonic()
        original_wake(self)

    Worker._wake_all = wake_all  # type: ignore[method-assign]
    probe.timed_async(PgQueue, "rescue", "rescue")
    if mode != "job":
        return
    probe.timed_async(PgQueue, "complete", "complete (images+usage+job row)")
    probe.timed_async(Worker, "_process", "job: plan -> completion written")
    probe.timed_sync(worker_module, "plan", "plan")
    probe.timed_async(worker_module, "run", "pipeline.run (backend+write+thumbnail)")
    probe.timed_sync(pipeline, "write_image", "write image+sidecar (thread)")
    probe.timed_sync(output, "add_png_text", "add PNG text chunks")
    probe.timed_sync(os, "fsync", "fsync (per call)")
    probe.timed_sync(pipeline, "make_thumbnail", "thumbnail (thread)")


async def _imagen_worker(spec: WorkerSpec, pipe: Connection, go: Any) -> None:
    # What `imagen worker` does (imagen_tui.cli.jobs.cmd_worker), minus argument parsing
    # and with the bench backend registered first.
    logging.basicConfig(
        filename=spec.log_path, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from imagen_tui.backends import registry
    from imagen_tui.backends.base import Progress, Request, Result
    from imagen_tui.backends.mock import render
    from imagen_tui.core.workbench import open_workbench
    from imagen_tui.db.queue import PgQueue
    from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id

    images = {size: render(PROMPT, "", size[0], size[1], 20, 42) for size in spec.sizes}
    probe = Probe()

    def on_start(seed: int, started: float) -> None:
        if not spec.report_starts:
            return
        extra = None
        if spec.profile == "latency":
            marks = probe.marks
            extra = (marks.get("wake"), marks.get("claim_start"), marks.get("claim_end"))
        pipe.send(("start", seed, started, extra))

    class InstantBackend:
        """Returns a prepared PNG at once; notes when `generate` is entered."""

        type_name = "instant"

        def __init__(self, name: str, _block: Mapping[str, Any]) -> None:
            self.name = name
            self.model = "instant-v1"

        async def generate(self, request: Request, progress: Progress | None = None) -> Result:
            started = time.monotonic()
            seed = request.seed if request.seed is not None else 0
            on_start(seed, started)
            size = (request.width, request.height)
            image = images.get(size)
            if image is None:  # not prepared: render once, then keep
                image = images[size] = render(PROMPT, "", size[0], size[1], 20, 42)
            return Result(image=image, mime_type="image/png", model=self.model, seed=seed, steps=20)

        async def aclose(self) -> None:
            pass

    registry.register(
        registry.BackendType(
            name="instant",
            summary="bench: a prepared PNG, returned at once",
            options=(),
            factory=InstantBackend,
            default_model="instant-v1",
        )
    )
    if spec.profile:
        _install_probes(probe, spec.profile)
    workbench = open_workbench(spec.config)
    queue = PgQueue(spec.url, new_worker_id())
    await queue.rescue()  # connect now, so the drain clock does not include connecting
    probe.ms.clear()
    worker = Worker(workbench, queue, WorkerOptions(once=spec.once))
    pipe.send(("ready", os.getpid()))
    if not go.wait(120):
        raise TimeoutError("never released by the bench process")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    await worker.run()
    ended = time.monotonic()
    pipe.send(("done", ended, dict(worker.stats), dict(probe.ms)))


async def _pgq_worker(spec: WorkerSpec, pipe: Connection, go: Any) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    connection = await asyncpg.connect(spec.url)
    manager = QueueManager(Queries(AsyncpgDriver(connection)))
    count = 0

    @manager.entrypoint(PGQ_ENTRYPOINT, accepts_context=False)
    async def noop(job: Job) -> None:
        started = time.monotonic()
        nonlocal count
        count += 1
        if spec.report_starts:
            pipe.send(("start", int(job.payload or b"0"), started, None))

    pipe.send(("ready", os.getpid()))
    if not go.wait(120):
        raise TimeoutError("never released by the bench process")
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
    mode = QueueExecutionMode.drain if spec.once else QueueExecutionMode.continuous
    await manager.run(mode=mode)
    ended = time.monotonic()
    await connection.close()
    pipe.send(("done", ended, {"done": count}, {}))


# =========================================================================== the bench process


class BenchError(Exception):
    pass


CpuSample = tuple[float, float, float]  # (machine busy, machine total, ours) in clock ticks


class CpuMeter:
    """CPU used by other processes than this bench (its workers and its server).

    The machine may be shared (another test run, a build): every phase records
    how much of the machine's CPU went elsewhere while it ran, so a figure taken
    on a busy machine can be told apart. Ours = this process and its reaped
    worker processes (os.times) + our postmaster with its reaped backends
    (cutime/cstime) and its live children.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.hz = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _system() -> tuple[float, float]:
        """(busy, total) CPU ticks of the whole machine since boot."""
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq + steal
        return busy, busy + idle + iowait

    @staticmethod
    def _stat(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text.rsplit(")", 1)[1].split()  # field n of proc(5) is [n - 3]

    def _server_ticks(self) -> float:
        try:
            postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            fields = self._stat(postmaster)
        except (OSError, ValueError, IndexError):
            return 0.0
        ticks = sum(int(fields[n - 3]) for n in (14, 15, 16, 17))
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                child = self._stat(int(entry.name))
                if int(child[4 - 3]) == postmaster:
                    ticks += int(child[14 - 3]) + int(child[15 - 3])
        return ticks

    def sample(self) -> CpuSample:
        """(machine busy, machine total, ours), all in ticks."""
        own = os.times()
        ours = (own.user + own.system + own.children_user + own.children_system) * self.hz
        busy, total = self._system()
        return busy, total, ours + self._server_ticks()

    @staticmethod
    def foreign_percent(start: CpuSample, end: CpuSample) -> float:
        """Share of the machine's CPU capacity used by others between two samples."""
        total = end[1] - start[1]
        if total <= 0:
            return 0.0
        return max(0.0, (end[0] - start[0]) - (end[2] - start[2])) * 100 / total

    def wait_quiet(self, limit_percent: float, max_wait: float) -> float:
        """Wait (up to max_wait s) for a 1 s window where others use < limit; their last %."""
        deadline = time.monotonic() + max_wait
        while True:
            start = self.sample()
            time.sleep(1.0)
            foreign = self.foreign_percent(start, self.sample())
            if foreign < limit_percent or time.monotonic() >= deadline:
                return foreign


@dataclass
class Child:
    process: BaseProcess
    pipe: Connection
    name: str

    def expect(self, kind: str, timeout: float) -> tuple[Any, ...]:
        """The next message of `kind` from this worker (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.name}: no {kind!r} message within {timeout:g} s")
            try:
                ready = self.pipe.poll(min(remaining, 0.5))
            except (EOFError, OSError):
                ready = True
            if not ready:
                if not self.process.is_alive():
                    raise BenchError(f"{self.name}: exited ({self.process.exitcode}) early")
                continue
            try:
                message = self.pipe.recv()
            except (EOFError, OSError):
                raise BenchError(
                    f"{self.name}: exited ({self.process.exitcode}) before {kind!r}"
                ) from None
            if message[0] == "error":
                raise BenchError(f"{self.name} failed:\n{message[1]}")
            if message[0] == kind:
                return tuple(message)


@dataclass
class Latency:
    label: str
    ms: list[float]
    breakdown: dict[str, list[float]] = field(default_factory=dict)

    def pct(self, q: float) -> float:
        return _percentile(self.ms, q)


@dataclass
class Drain:
    label: str
    jobs: int
    workers: int
    seconds: float
    per_worker: list[dict[str, Any]]
    stages: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def ms_per_job(self) -> float:
        return self.seconds * 1000 / self.jobs


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _with_database(url: str, old: str, new: str) -> str:
    return url.replace(f"/{old}?", f"/{new}?", 1)


class Bench:
    """The server, the worker processes, and the phases."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.pgdata = root / "pgdata"
        self.ctx = mp.get_context("spawn")
        self.children: list[Child] = []
        self.phase_number = 0
        self.imagen_url = ""
        self.pgq_url = ""
        self.server_info: dict[str, str] = {}
        self.cpu = CpuMeter(self.pgdata)
        self.conditions: dict[str, tuple[float, float]] = {}  # phase -> (before, during) %

    # ------------------------------------------------------------------ server

    def start_server(self) -> None:
        started = time.monotonic()
        self.imagen_url = embedded.server_url(self.pgdata, database=IMAGEN_TEMPLATE)
        with psycopg.connect(self.imagen_url, autocommit=True) as conn:
            migrate.migrate(conn)
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers"):
                row = conn.execute(f"SHOW {name}").fetchone()
                self.server_info[name] = str(row[0]) if row else "?"
        if not self.args.no_pgqueuer:
            self.pgq_url = embedded.server_url(self.pgdata, database=PGQ_TEMPLATE)
            asyncio.run(self._install_pgqueuer(self.pgq_url))
        _say(f"server up and schemas installed in {time.monotonic() - started:.1f} s")

    @staticmethod
    async def _install_pgqueuer(url: str) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        connection = await asyncpg.connect(url)
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    def new_database(self, template: str) -> str:
        """A fresh database cloned from `template`; its URL."""
        self.phase_number += 1
        name = f"p{self.phase_number}_{template.split('_')[0]}"
        admin = _with_database(self.imagen_url, IMAGEN_TEMPLATE, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return _with_database(self.imagen_url, IMAGEN_TEMPLATE, name)

    def stop_server(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            embedded.stop(self.pgdata)

    # ------------------------------------------------------------------ processes

    def spawn(self, spec: WorkerSpec, go: Any, name: str) -> Child:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_child_main, args=(spec, child_end, go), name=name, daemon=True
        )
        process.start()
        child_end.close()
        child = Child(process, parent_end, name)
        self.children.append(child)
        return child

    def reap(self, children: list[Child], timeout: float = 15.0) -> None:
        for child in children:
            child.process.join(timeout)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(5)
            child.pipe.close()
            self.children.remove(child)

    def kill_all(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(Exception):
                if child.process.is_alive():
                    child.process.terminate()
        for child in list(self.children):
            with contextlib.suppress(Exception):
                child.process.join(5)
                if child.process.is_alive():
                    child.process.kill()
                    child.process.join(5)
        self.children.clear()

    def phase_dir(self, label: str) -> tuple[Path, str]:
        """A directory for one phase, with a config file naming the instant backend."""
        directory = self.root / f"phase{self.phase_number}_{label}"
        (directory / "out").mkdir(parents=True)
        config = directory / "imagen.yaml"
        config.write_text(
            "default_backend: instant\n"
            "output:\n"
            f"  directory: {json.dumps(str(directory / 'out'))}\n"
            "backends:\n"
            "  instant:\n"
            "    type: instant\n",
            encoding="utf-8",
        )
        return directory, str(config)

    def wait_listening(self, url: str, timeout: float = 30.0) -> None:
        """Until a worker's LISTEN is in place (a notification sent before would be lost)."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
                ).fetchone()
                if row and row[0] > 0:
                    return
                time.sleep(0.05)
        raise BenchError("the worker never started listening")

    # ------------------------------------------------------------------ pickup latency

    def imagen_latency(self, profile: bool) -> Latency:
        url = self.new_database(IMAGEN_TEMPLATE)
        label = "imagen-latency" + ("-profiled" if profile else "")
        directory, config = self.phase_dir(label)
        go = self.ctx.Event()
        spec = WorkerSpec(
            kind="imagen",
            url=url,
            once=False,
            report_starts=True,
            profile="latency" if profile else None,
            config=config,
            log_path=str(directory / "worker.log"),
        )
        child = self.spawn(spec, go, label)
        child.expect("ready", 120)
        go.set()
        self.wait_listening(url)
        samples: list[float] = []
        parts: dict[str, list[float]] = defaultdict(list)
        warmup, count = self.args.warmup, self.args.samples
        with (
            psycopg.connect(url, autocommit=True) as conn,
            psycopg.connect(url, autocommit=True) as events,
        ):
            events.execute("LISTEN imagen_job_events")
            for i in range(warmup + count):
                seed = i + 1
                params = {"prompt": PROMPT, "width": 512, "height": 512, "seed": seed}
                cursor = conn.execute(_INSERT_ONE, params)
                committed = time.monotonic()  # autocommit: the COMMIT has been acknowledged
                row = cursor.fetchone()
                assert row is not None
                _, got, started, extra = child.expect("start", 10)
                if got != seed:
                    raise BenchError(f"{label}: expected job with seed {seed}, got {got}")
                _wait_done(events, row[0], 10)
                if i >= warmup:
                    samples.append((started - committed) * 1000)
                    if extra is not None:
                        wake, claim_start, claim_end = extra
                        parts["commit -> notification handled"].append((wake - committed) * 1000)
                        parts["-> claim sent"].append((claim_start - wake) * 1000)
                        parts["claim round trip"].append((claim_end - claim_start) * 1000)
                        parts["-> generate entered"].append((started - claim_end) * 1000)
                time.sleep(self.args.spacing_ms / 1000)
        child.process.terminate()  # SIGTERM: the worker's graceful stop
        _, _, _, stages = child.expect("done", 30)
        if stages.get("rescue"):
            parts["(rescue passes, ms each)"] = stages["rescue"]
        self.reap([child])
        shutil.rmtree(directory / "out", ignore_errors=True)
        return Latency(label, samples, dict(parts))

    def pgq_latency(self) -> Latency:
        url = self.new_database(PGQ_TEMPLATE)
        label = "pgqueuer-latency"
        go = self.ctx.Event()
        child = self.spawn(
            WorkerSpec(kind="pgqueuer", url=url, once=False, report_starts=True), go, label
        )
        child.expect("ready", 120)
        go.set()
        # Its one connection both listens and queries, so pg_stat_activity cannot
        # show the LISTEN; jobs inserted before it are found by its first dequeue,
        # and the warm-up jobs absorb the start.
        time.sleep(1.0)
        samples = asyncio.run(self._pgq_latency_loop(url, child))
        child.process.terminate()
        child.expect("done", 30)
        self.reap([child])
        return Latency(label, samples)

    async def _pgq_latency_loop(self, url: str, child: Child) -> list[float]:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries
        from pgqueuer.domain.settings import db_settings

        connection = await asyncpg.connect(url)
        listener = await asyncpg.connect(url)
        deleted = asyncio.Event()

        def on_notify(_conn: object, _pid: object, _channel: object, payload: object) -> None:
            # A finished job is deleted from the queue table: pgqueuer's own
            # statement trigger says so on its channel.
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                if json.loads(str(payload)).get("operation") == "delete":
                    deleted.set()

        await listener.add_listener(db_settings().channel, on_notify)
        queries = Queries(AsyncpgDriver(connection))
        samples: list[float] = []
        missed_completion = 0
        try:
            for i in range(self.args.warmup + self.args.samples):
                key = i + 1
                await queries.enqueue(PGQ_ENTRYPOINT, str(key).encode())
                committed = time.monotonic()
                _, got, started, _ = child.expect("start", 10)
                if got != key:
                    raise BenchError(f"pgqueuer: expected job {key}, got {got}")
                try:
                    await asyncio.wait_for(deleted.wait(), 2.0)
                except TimeoutError:
                    missed_completion += 1
                deleted.clear()
                if i >= self.args.warmup:
                    samples.append((started - committed) * 1000)
                await asyncio.sleep(self.args.spacing_ms / 1000)
        finally:
            await listener.close()
            await connection.close()
        if missed_completion:
            _say(f"pgqueuer: {missed_completion} completions not seen within 2 s")
        return samples

    # ------------------------------------------------------------------ drains

    def imagen_drain(
        self, jobs: int, workers: int, size: tuple[int, int], profile: bool = False
    ) -> Drain:
        url = self.new_database(IMAGEN_TEMPLATE)
        label = f"imagen {size[0]}x{size[1]}, {workers} proc"
        directory, config = self.phase_dir(f"imagen-drain-{size[0]}-{workers}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                _INSERT_BATCH, {"prompt": PROMPT, "width": size[0], "height": size[1], "n": jobs}
            )
            conn.execute("ANALYZE imagen.jobs")
        go = self.ctx.Event()
        children = [
            self.spawn(
                WorkerSpec(
                    kind="imagen",
                    url=url,
                    once=True,
                    report_starts=False,
                    profile="job" if profile else None,
                    config=config,
                    sizes=(size,),
                    log_path=str(directory / f"worker{n}.log"),
                ),
                go,
                f"{label} #{n}",
            )
            for n in range(workers)
        ]
        drain = self._run_drain(label, jobs, children, go)
        with psycopg.connect(url, autocommit=True) as conn:
            counts = dict(
                conn.execute("SELECT status, count(*) FROM imagen.jobs GROUP BY status").fetchall()
            )
        if counts.get("done", 0) != jobs:
            raise BenchError(f"{label}: expected {jobs} done jobs, found {counts}")
        shutil.rmtree(directory / "out", ignore_errors=True)
        return drain

    def pgq_drain(self, jobs: int, workers: int) -> Drain:
        url = self.new_database(PGQ_TEMPLATE)
        label = f"pgqueuer no-op, {workers} proc"
        asyncio.run(self._pgq_fill(url, jobs))
        go = self.ctx.Event()
        children = [
            self.spawn(
                WorkerSpec(kind="pgqueuer", url=url, once=True, report_starts=False),
                go,
                f"{label} #{n}",
            )
            for n in range(workers)
        ]
        drain = self._run_drain(label, jobs, children, go)
        done = sum(int(stats.get("done", 0)) for stats in drain.per_worker)
        left = asyncio.run(self._pgq_left(url))
        if done != jobs or left:
            raise BenchError(f"{label}: {done} jobs run, {left} left in the queue; expected {jobs}")
        return drain

    @staticmethod
    async def _pgq_fill(url: str, jobs: int) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        connection = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(connection))
            await queries.enqueue(
                [PGQ_ENTRYPOINT] * jobs, [str(i + 1).encode() for i in range(jobs)], [0] * jobs
            )
            await connection.execute(f"ANALYZE {queries.qbe.settings.queue_table}")
        finally:
            await connection.close()

    @staticmethod
    async def _pgq_left(url: str) -> int:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        connection = await asyncpg.connect(url)
        try:
            table = Queries(AsyncpgDriver(connection)).qbe.settings.queue_table
            return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await connection.close()

    def _run_drain(self, label: str, jobs: int, children: list[Child], go: Any) -> Drain:
        for child in children:
            child.expect("ready", 120)
        released = time.monotonic()
        go.set()
        timeout = max(60.0, jobs * 0.06)
        finished: list[float] = []
        per_worker: list[dict[str, Any]] = []
        stages: dict[str, list[float]] = defaultdict(list)
        for child in children:
            _, ended, stats, child_stages = child.expect("done", timeout)
            finished.append(ended)
            per_worker.append(stats)
            for key, values in child_stages.items():
                stages[key].extend(values)
        self.reap(children)
        drain = Drain(label, jobs, len(children), max(finished) - released, per_worker, stages)
        _say(f"{label}: {jobs} jobs in {drain.seconds:.2f} s = {drain.rate:,.0f} jobs/s")
        return drain


def _wait_done(events: psycopg.Connection, job_id: int, timeout: float) -> None:
    """Until the job event stream says job `job_id` is finished."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for note in events.notifies(timeout=remaining):
            event = json.loads(note.payload)
            if event.get("id") != job_id:
                continue
            if event.get("status") == "done":
                return
            if event.get("status") == "failed":
                raise BenchError(f"job {job_id} ended {event.get('status')}: see worker.log")
    raise BenchError(f"job {job_id} not done within {timeout:g} s")


def _say(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# =========================================================================== report


def _machine(bench: Bench) -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    versions = []
    for package in ("psycopg", "asyncpg", "pgqueuer"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
    info = bench.server_info
    import imagen_tui

    return [
        f"imagen_tui {imagen_tui.__version__} from {Path(imagen_tui.__file__).parent}",
        f"date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"machine: {os.cpu_count()} cores ({model}), {memory}, {platform.system()} "
        f"{platform.release()}",
        f"python: {platform.python_version()}; {', '.join(versions)}",
        f"postgresql: {info.get('server_version')} embedded (unix socket), fsync="
        f"{info.get('fsync')}, synchronous_commit={info.get('synchronous_commit')}, "
        f"shared_buffers={info.get('shared_buffers')}",
    ]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _report(bench: Bench, results: dict[str, Any]) -> None:
    args = bench.args
    print()
    print("# Job queue benchmark (bench/job_queue.py)")
    for line in _machine(bench):
        print(f"# {line}")
    print()

    ours: Latency | None = results.get("latency")
    ref: Latency | None = results.get("pgq_latency")
    rows: list[tuple[str, str, str, str, str]] = []
    verdicts: list[str] = []

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    if ours is not None:
        for q in (50, 95, 99):
            mine = ours.pct(q)
            theirs = ref.pct(q) if ref else None
            target = {50: f"< {TARGET_P50_MS} ms", 99: f"< {TARGET_P99_MS} ms"}.get(q, "")
            if target:
                target += " and < ref"
            rows.append(
                (f"pickup p{q} (ms)", _fmt(mine), _fmt(theirs), ratio(mine, theirs), target)
            )
        p50, p99 = ours.pct(50), ours.pct(99)
        met = p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
        if ref is not None:
            met = met and p50 < ref.pct(50) and p99 < ref.pct(99)
        verdicts.append(f"pickup p50 {p50:.2f} ms / p99 {p99:.2f} ms: {'MET' if met else 'MISSED'}")
    overhead: Drain | None = results.get("overhead")
    if overhead is not None:
        per_job = overhead.ms_per_job
        rows.append(
            (
                f"overhead per job, 512x512 (ms, {overhead.jobs} jobs)",
                _fmt(per_job),
                "-",
                "-",
                f"< {TARGET_OVERHEAD_MS:g} ms",
            )
        )
        verdicts.append(
            f"overhead {per_job:.2f} ms/job: {'MET' if per_job < TARGET_OVERHEAD_MS else 'MISSED'}"
        )
    for workers in (1, 2):
        reference: Drain | None = results.get(f"pgq_drain_{workers}")
        for size in (SIZE_FULL, SIZE_TINY):
            drain: Drain | None = results.get(f"drain_{size[0]}_{workers}")
            if drain is None:
                continue
            rows.append(
                (
                    f"drain {drain.jobs} jobs, {workers} proc, {size[0]}x{size[1]} (jobs/s)",
                    _fmt(drain.rate, 0),
                    _fmt(reference.rate, 0) if reference else "-",
                    ratio(drain.rate, reference.rate if reference else None),
                    "",
                )
            )
    widths = [max(len(row[i]) for row in [*rows, _HEADER]) for i in range(5)]
    for row in [_HEADER, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print()
    print("ratio = ours / pgqueuer (asyncpg driver, no-op entrypoint), same server, same run;")
    print("latency: below 1 means we are faster; throughput: above 1 means we are faster.")
    print()
    for verdict in verdicts:
        print(f"target: {verdict}")

    profiled: Latency | None = results.get("latency_profiled")
    if profiled is not None and profiled.breakdown:
        print()
        print(
            f"pickup breakdown (instrumented run, {len(profiled.ms)} samples; "
            f"its own total p50 {profiled.pct(50):.2f} / p99 {profiled.pct(99):.2f} ms):"
        )
        for key, values in profiled.breakdown.items():
            print(
                f"  {key:<34} p50 {_percentile(values, 50):7.3f}  p95 "
                f"{_percentile(values, 95):7.3f}  p99 {_percentile(values, 99):7.3f}  "
                f"max {max(values):7.3f} ms  (n={len(values)})"
            )
    staged: Drain | None = results.get("overhead_profiled")
    if staged is not None and staged.stages:
        print()
        print(
            f"per-job stages (instrumented {staged.jobs}-job drain, 512x512, "
            f"{staged.ms_per_job:.2f} ms/job wall):"
        )
        for key, values in staged.stages.items():
            print(
                f"  {key:<40} n={len(values):<5} per job {sum(values) / staged.jobs:7.3f}  "
                f"median {statistics.median(values):7.3f}  p95 {_percentile(values, 95):7.3f} ms"
            )
    if bench.conditions:
        print()
        print(
            "other processes' share of the machine's CPU (before the phase / while it ran; "
            f"figures from phases above {QUIET_PERCENT:g}% are suspect):"
        )
        print(
            "  "
            + ", ".join(
                f"{phase} {before:.0f}/{during:.0f}%"
                for phase, (before, during) in bench.conditions.items()
            )
        )
    print()
    _explain(args)


_HEADER = ("figure", "imagen", "pgqueuer", "ratio", "target")


def _explain(args: argparse.Namespace) -> None:
    print(
        f"""what each figure includes:
  pickup: INSERT commit acknowledged (parent's time.monotonic()) -> first line of the
    handler in the worker process (ours: the instant backend's generate(); pgqueuer: the
    entrypoint). Ours = NOTIFY delivery + the worker's wake-up + claim statement (its own
    commit) + plan + task start. {args.samples} samples after {args.warmup} warm-up jobs, one
    job at a time, the next inserted {args.spacing_ms:g} ms after the previous one was
    recorded finished (ours: its `done` job event; pgqueuer: its queue-table DELETE).
  overhead per job: one worker draining N already-queued 512x512 jobs (`--once`), wall
    time / N. Per job: claim (UPDATE ... SKIP LOCKED, commit), plan, backend (a prepared
    PNG: ~0), PNG metadata chunks, atomic write of image and JSON sidecar (2 fsyncs), a
    256 px JPEG thumbnail, the completion statement (images + usage rows + job row,
    commit), the per-job log line, the asyncio/thread hops between them.
  drain 512x512: the same work per job as the overhead figure, {args.drain_jobs} jobs.
  drain 64x64: the same pipeline with a 64x64 PNG: still a real claim, file writes with
    fsync, thumbnail and completion; only the image bytes are small. Ours has no true
    no-op: every job writes a file and two database rows more than pgqueuer's.
  pgqueuer: QueueManager.run (batch_size 10, default settings) on AsyncpgDriver, a no-op
    async entrypoint; its completion is a buffered DELETE + log INSERT every <=0.1 s.
  drains: clock starts when the already started and connected worker processes are
    released, stops when the last has returned from its run loop; 1 or 2 processes,
    concurrency 1 each for ours."""
    )


# =========================================================================== main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="pickup samples (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unrecorded first jobs")
    parser.add_argument("--spacing-ms", type=float, default=20.0, help="idle gap between samples")
    parser.add_argument("--overhead-jobs", type=int, default=300)
    parser.add_argument("--drain-jobs", type=int, default=5000)
    parser.add_argument("--no-pgqueuer", action="store_true", help="skip the reference")
    parser.add_argument("--no-profile", action="store_true", help="skip the instrumented runs")
    parser.add_argument("--no-full-drain", action="store_true", help="skip the 512x512 drains")
    parser.add_argument(
        "--only", default="", help="run only these phases (comma-separated names, e.g. latency)"
    )
    parser.add_argument("--budget", type=int, default=1200, help="abort after this many seconds")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help=f"before each phase, wait up to this many seconds for other processes to use "
        f"< {QUIET_PERCENT:g}%% of the CPU (default 15)",
    )
    args = parser.parse_args()
    if not args.no_pgqueuer:
        try:
            import asyncpg  # noqa: F401
            import pgqueuer  # noqa: F401
        except ImportError:
            print("pgqueuer/asyncpg missing: pip install -e '.[bench]' (or --no-pgqueuer)")
            return 2

    def abort(signum: int, _frame: object) -> None:
        raise BenchError(f"stopped by signal {signum} (budget {args.budget} s, or interrupted)")

    signal.signal(signal.SIGALRM, abort)
    signal.signal(signal.SIGTERM, abort)
    signal.alarm(args.budget)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="imagen-qbench-"))
    root.chmod(0o711)  # ours: as root, the server's own account must pass through it
    bench = Bench(root, args)
    results: dict[str, Any] = {}
    try:
        bench.start_server()
        only = set(filter(None, args.only.split(",")))
        for phase, run in _phases(bench, args):
            if only and phase not in only:
                continue
            before = bench.cpu.wait_quiet(QUIET_PERCENT, args.quiet_wait)
            _say(f"{phase} (other processes: {before:.0f}% CPU) ...")
            start = bench.cpu.sample()
            results[phase] = run()
            during = CpuMeter.foreign_percent(start, bench.cpu.sample())
            bench.conditions[phase] = (before, during)
        _report(bench, results)
        print(f"\n(total {time.monotonic() - started:.0f} s)")
        return 0
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        if results:
            _report(bench, results)
        return 1
    finally:
        signal.alarm(0)
        bench.kill_all()
        with contextlib.suppress(Exception):
            bench.stop_server()
        shutil.rmtree(root, ignore_errors=True)


def _phases(bench: Bench, args: argparse.Namespace) -> Iterator[tuple[str, Callable[[], Any]]]:
    pgq = not args.no_pgqueuer
    yield "latency", lambda: bench.imagen_latency(profile=False)
    if pgq:
        yield "pgq_latency", bench.pgq_latency
    if not args.no_profile:
        yield "latency_profiled", lambda: bench.imagen_latency(profile=True)
    yield "overhead", lambda: bench.imagen_drain(args.overhead_jobs, 1, SIZE_FULL)
    if not args.no_profile:
        yield (
            "overhead_profiled",
            lambda: bench.imagen_drain(args.overhead_jobs, 1, SIZE_FULL, profile=True),
        )
    for workers in (1, 2):
        if pgq:
            yield f"pgq_drain_{workers}", lambda w=workers: bench.pgq_drain(args.drain_jobs, w)
        yield (
            f"drain_64_{workers}",
            lambda w=workers: bench.imagen_drain(args.drain_jobs, w, SIZE_TINY),
        )
        if not args.no_full_drain:
            yield (
                f"drain_512_{workers}",
                lambda w=workers: bench.imagen_drain(args.drain_jobs, w, SIZE_FULL),
            )


if __name__ == "__main__":
    sys.exit(main())
