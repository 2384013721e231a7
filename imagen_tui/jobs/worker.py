"""The job worker: claim -> pipeline -> complete, over a `Queue`.

    wake-ups (LISTEN + a safety poll) -> each free slot claims until the
    queue is empty -> the shared pipeline renders and writes the image ->
    one fenced write records images row, usage row and `done`.

A heartbeat thread renews the leases of in-flight jobs; a lease found lost
cancels its generation and drops the result, because the job was rescued and
may be running elsewhere. The first stop request (SIGTERM/SIGINT) stops
claiming and lets in-flight jobs finish; a second one cancels them and hands
them back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from imagen_tui.core.pipeline import Outcome, Plan, Spec, Workbench, plan, run
from imagen_tui.core.thumbnails import THUMBNAIL_MIME
from imagen_tui.db.queue import Completion, Job, QueueUnavailable, backoff_delay
from imagen_tui.errors import GenerationError, ImagenError, InputError

log = logging.getLogger("imagen.worker")

T = TypeVar("T")


class Heartbeat(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Queue(Protocol):
    """What the worker needs from a job queue (PostgreSQL: `db.queue.PgQueue`)."""

    worker_id: str

    async def claim(self) -> Job | None: ...

    async def complete(self, job: Job, done: Completion) -> int | None: ...

    async def fail(self, job: Job, error: str) -> bool: ...

    async def retry(self, job: Job, error: str, delay_s: float) -> bool: ...

    async def release(self, job: Job) -> bool: ...

    async def progress(self, job: Job, fraction: float) -> bool: ...

    async def rescue(self) -> list[tuple[int, str]]: ...

    async def next_due(self) -> float | None: ...

    def wakeups(self) -> AsyncIterator[None]: ...

    def heartbeat(
        self, in_flight: Callable[[], Iterable[int]], on_lost: Callable[[int], None]
    ) -> Heartbeat: ...

    async def close(self) -> None: ...


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the worker's event loop: uvloop where it is installed, else asyncio's.

    uvloop takes ~0.1 ms off each pickup (NOTIFY -> claim -> start), a fifth of
    the Python share of it (docs/performance.md).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def new_worker_id() -> str:
    """Unique per process start, so a restarted worker never owns its old leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 1  # jobs at once (one GPU: 1)
    poll_interval: float = 5.0  # safety poll and rescue period, seconds
    once: bool = False  # drain the queue, then exit
    progress_interval: float = 0.5  # at most two progress writes per second per job


class _ProgressWriter:
    """Forwards a backend's progress to the job row, at most once per interval."""

    def __init__(self, queue: Queue, job: Job, interval: float) -> None:
        self._queue, self._job, self._interval = queue, job, interval
        self._loop = asyncio.get_running_loop()
        self._latest: float | None = None
        self._last_sent = 0.0
        self._task: asyncio.Task[None] | None = None

    def report(self, fraction: float) -> None:  # any thread
        self._loop.call_soon_threadsafe(self._update, fraction)

    def _update(self, fraction: float) -> None:
        self._latest = min(max(fraction, 0.0), 1.0)
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(max(0.0, self._last_sent + self._interval - time.monotonic()))
        value, self._latest, self._task = self._latest, None, None
        self._last_sent = time.monotonic()
        if value is not None:
            with contextlib.suppress(QueueUnavailable):  # progress is best effort
                await self._queue.progress(self._job, value)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def job_spec(job: Job) -> Spec:
    size = (job.width, job.height) if job.width and job.height else None
    return Spec(
        prompt=job.prompt,
        negative=job.negative_prompt,
        style=job.style,
        size=size,
        steps=job.steps,
        seed=job.seed,
        backend=job.backend,
        options=job.options,
    )


def completion_of(outcome: Outcome, plan: Plan) -> Completion:
    result, request = outcome.result, plan.request
    return Completion(
        seed=result.seed,
        width=request.width,
        height=request.height,
        steps=result.steps,
        backend=plan.backend,
        backend_type=plan.backend_type,
        model=result.model,
        mime_type=result.mime_type,
        sha256=outcome.sha256,
        bytes=len(result.image),
        storage_uri=outcome.written.image.as_uri(),
        thumbnail=outcome.thumbnail,
        thumbnail_mime=THUMBNAIL_MIME if outcome.thumbnail else None,
        metadata=outcome.record,
        prompt_sha256=hashlib.sha256(plan.prompt.encode()).hexdigest(),
        latency_ms=round(result.latency_ms or 0.0, 1),
        cost_usd=result.cost_usd,
    )


class Worker:
    def __init__(self, workbench: Workbench, queue: Queue, options: WorkerOptions) -> None:
        self.workbench = workbench
        self.queue = queue
        self.options = options
        self.stats: Counter[str] = Counter()  # done, failed, retried, dropped, released
        self._stop_requests = 0
        self._wake = asyncio.Event()
        self._in_flight: dict[int, Job] = {}
        self._generations: dict[int, asyncio.Task[Outcome]] = {}
        self._lost: set[int] = set()
        self._slots: list[asyncio.Task[None]] = []
        self._last_rescue = float("-inf")

    # ----------------------------------------------------------- control

    @property
    def stopping(self) -> bool:
        return self._stop_requests > 0

    @property
    def forced(self) -> bool:
        """A second stop request cancelled in-flight jobs."""
        return self._stop_requests > 1

    def stop(self) -> None:
        """First call: stop claiming, finish in-flight jobs. Second: cancel and release them."""
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info("stopping: no new claims; waiting for %d job(s)", len(self._in_flight))
        else:
            log.warning("stopping now: cancelling %d job(s)", len(self._in_flight))
            for slot in self._slots:
                slot.cancel()
        self._wake_all()

    def _wake_all(self) -> None:
        # Each waiter holds the event current when it last looked at the queue,
        # so a wake-up between its claim and its wait is never missed.
        event, self._wake = self._wake, asyncio.Event()
        event.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep until woken, stopped, or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # no extra Task, unlike wait_for
                await self._wake.wait()

    def _lease_lost(self, job_id: int) -> None:
        self._lost.add(job_id)
        generation = self._generations.get(job_id)
        if generation is not None:
            generation.cancel()

    # ----------------------------------------------------------- main loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self.queue.heartbeat(
            in_flight=lambda: list(self._in_flight),
            on_lost=lambda job_id: loop.call_soon_threadsafe(self._lease_lost, job_id),
        )
        heartbeat.start()
        listener = None if self.options.once else asyncio.create_task(self._listen())
        try:
            self._slots = [
                asyncio.create_task(self._slot()) for _ in range(self.options.concurrency)
            ]
            outcomes = await asyncio.gather(*self._slots, return_exceptions=True)
            crashes = [
                outcome
                for outcome in outcomes
                if isinstance(outcome, BaseException)
                and not isinstance(outcome, asyncio.CancelledError)
            ]
            if crashes:  # a bug: exit non-zero so a supervisor restarts the worker
                raise crashes[0]
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            heartbeat.stop()
            await self.queue.close()
            await self.workbench.aclose()

    async def _listen(self) -> None:
        async for _ in self.queue.wakeups():
            self._wake_all()

    async def _slot(self) -> None:
        failures = 0
        while not self.stopping:
            waiting_on = self._wake
            try:
                job = await self.queue.claim()
                # Rescue passes (1-3 ms) run when the queue looks empty and after a
                # job, never between a wake-up and its claim.
                if job is None and await self._rescue_if_due():
                    continue  # jobs came back to the queue: claim them
            except QueueUnavailable as error:
                failures += 1
                if failures == 1:
                    log.warning("database unavailable, retrying: %s", error)
                await self._pause(backoff_delay(failures, base=0.2, cap=5.0))
                continue
            if failures:
                log.info("database back after %d failed attempt(s)", failures)
                failures = 0
            if job is None:
                if self.options.once:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(await self._idle_timeout()):
                        await waiting_on.wait()
                continue
            await self._process(job)
            with contextlib.suppress(QueueUnavailable):  # the next claim reports it
                await self._rescue_if_due()

    async def _idle_timeout(self) -> float:
        """How long to wait for a wake-up: the safety poll, or less when a job
        waiting out its retry backoff becomes due sooner (no NOTIFY marks that)."""
        try:
            due = await self.queue.next_due()
        except QueueUnavailable:
            due = None
        if due is None:
            return self.options.poll_interval
        return min(self.options.poll_interval, max(due, 0.01))

    async def _rescue_if_due(self) -> int:
        """A rescue pass, at most once per poll interval; how many jobs are pending again."""
        if time.monotonic() - self._last_rescue < self.options.poll_interval:
            return 0
        self._last_rescue = time.monotonic()
        requeued = 0
        for job_id, status in await self.queue.rescue():
            log.warning("job %d: lease expired, its worker is gone; now %s", job_id, status)
            if status == "pending":
                requeued += 1
        return requeued

    # ----------------------------------------------------------- one job

    async def _process(self, job: Job) -> None:
        self._in_flight[job.id] = job
        try:
            await self._process_claimed(job)
        except asyncio.CancelledError:
            # Hard stop: hand the job back so another worker starts it at once.
            if job.id not in self._lost:
                with contextlib.suppress(QueueUnavailable):
                    await self.queue.release(job)
                self.stats["released"] += 1
                self._log(job, "released", "stopped before it finished")
            raise
        finally:
            self._in_flight.pop(job.id, None)
            self._generations.pop(job.id, None)

    async def _process_claimed(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            planned = plan(
                self.workbench,
                job_spec(job),
                idx=job.series_idx or 1,
                series=str(job.series_id) if job.series_id else None,
            )
        except InputError as error:  # bad job parameters: retrying cannot help
            await self._settle(job, "failed", str(error))
            return
        progress = _ProgressWriter(self.queue, job, self.options.progress_interval)
        generation = asyncio.create_task(
            run(
                planned,
                self.workbench.backend(planned.backend),
                progress=progress.report,
                thumbnail=True,
            )
        )
        self._generations[job.id] = generation
        try:
            outcome = await generation
        except asyncio.CancelledError:
            if job.id in self._lost:
                self.stats["dropped"] += 1
                self._log(job, "dropped", "lease lost during generation", planned)
                return
            raise
        except GenerationError as error:
            await self._settle(job, "retry" if error.transient else "failed", str(error), planned)
            return
        except ImagenError as error:  # the image could not be written: may be transient
            await self._settle(job, "retry", str(error), planned)
            return
        except Exception as error:
            log.exception("job %d: unexpected error", job.id)
            reason = f"internal error: {type(error).__name__}: {error}"
            await self._settle(job, "failed", reason, planned)
            return
        finally:
            await progress.close()

        done = completion_of(outcome, planned)
        image_id = await self._persist(lambda: self.queue.complete(job, done))
        latency = (time.perf_counter() - started) * 1000
        if image_id is None:
            for path in (outcome.written.image, outcome.written.sidecar):
                if path is not None:
                    path.unlink(missing_ok=True)
            self.stats["dropped"] += 1
            self._log(job, "dropped", "lease lost before completion", planned, outcome)
            return
        self.stats["done"] += 1
        self._log(
            job, "done", f"image {image_id} {outcome.path} in {latency:.0f} ms", planned, outcome
        )

    async def _settle(
        self, job: Job, outcome: str, error: str, planned: Plan | None = None
    ) -> None:
        """Record a failure: retry with backoff while attempts remain, else failed."""
        if outcome == "retry" and job.attempts < job.max_attempts:
            delay = backoff_delay(job.attempts)
            await self._persist(lambda: self.queue.retry(job, error, delay))
            self.stats["retried"] += 1
            detail = f"in {delay:.1f} s (attempt {job.attempts}/{job.max_attempts}): {error}"
            self._log(job, "retry", detail, planned)
            return
        await self._persist(lambda: self.queue.fail(job, error))
        self.stats["failed"] += 1
        self._log(job, "failed", error, planned)

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run a result write, retrying through database outages until it answers.

        A write that lands after the lease ran out is refused by its fence,
        so retrying for as long as it takes is safe.
        """
        failures = 0
        while True:
            try:
                return await write()
            except QueueUnavailable:
                failures += 1
                await asyncio.sleep(backoff_delay(failures, base=0.2, cap=5.0))

    def _log(
        self,
        job: Job,
        outcome: str,
        detail: str,
        planned: Plan | None = None,
        result: Outcome | None = None,
    ) -> None:
        """One line per job: id, series, backend, seed, latency, outcome."""
        fields = [f"job {job.id}"]
        if job.series_id is not None:
            fields.append(f"series {job.series_id}#{job.series_idx}")
        if planned is not None:
            fields.append(f"backend {planned.backend}")
            fields.append(f"seed {planned.request.seed}")
        if result is not None:
            fields.append(f"latency {result.result.latency_ms or 0:.0f} ms")
        level = logging.INFO if outcome in ("done", "retry", "released") else logging.WARNING
        log.log(level, "%s: %s: %s", ", ".join(fields), outcome, detail)
