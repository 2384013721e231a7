"""The job worker: claim -> pipeline -> record, over a `Queue` (see `jobs.types`).

    start: sweep the output folder of what a killed run left (`jobs.sweep`)
    wake-ups (LISTEN + a safety poll) -> each free slot claims until the
    queue is empty -> the shared pipeline renders and writes the image ->
    one fenced write records the images row, the usage row and `done`.

Guarantees, each with a test:

- A job is run at least once and recorded at most once: every write about a
  claimed job is fenced on its lease token, and recording is idempotent (a
  retry after a lost reply finds its own committed result).
- A file is deleted only when the database says for certain that no row
  refers to it; an image whose fate is unknown keeps its journal link for
  the next start's sweep.
- One job cannot take the worker down: whatever goes wrong while handling a
  job (bad parameters, a backend bug, a database refusing the result) fails
  or retries that job with its real error, and the worker goes on.
- A slot that crashes anyway (a bug in the loop itself) is logged at once and
  stops the worker with a non-zero exit, so its supervisor restarts it.
- A heartbeat thread renews the leases of in-flight jobs; a lease found lost,
  or a cancel the database confirms, cancels the generation within a second.
- A cancellation always ends what it reaches: cancelling `run()` cancels its
  slots and waits for them (they hand their jobs back), and a cancelled slot
  ends even if its job was already lost (only the generation's own cancel,
  on a lost job, lets the slot go on to the next job).
- It claims only jobs for its ready backend instances (and jobs with no
  backend while its default is one of them, minus `held_back`): a job for a
  backend it lacks is never claimed, so never failed for it.
- On a shared GPU (`jobs.gpu`), no job is claimed for a ComfyUI instance while
  it lacks memory (jobs for other backends still are), ComfyUI is asked to
  unload its models after `free_after_idle_s` without a job, and a job that
  ran out of GPU memory is handed back without using up an attempt (at most
  MAX_OOM_HANDBACKS times; after that it counts).
- The first stop request (SIGTERM/SIGINT) stops claiming, withdraws the
  presence row at once (offline for front ends) and lets in-flight jobs
  finish; a second cancels them and hands them back to the queue; the
  process exits even if a backend never returns (see `install_stop_signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import FrameType
from typing import Any, TypeVar

from imagen_tui.core.ledger import caller, prompt_sha256
from imagen_tui.core.pipeline import Outcome, Plan, plan, real_size, run
from imagen_tui.core.thumbnails import THUMBNAIL_MIME
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import GenerationError, GpuOutOfMemory, ImagenError, InputError
from imagen_tui.jobs.gpu import DEFAULT_GPU_WAIT, GpuGates, GpuWait
from imagen_tui.jobs.progress import ProgressWriter
from imagen_tui.jobs.sweep import sweep
from imagen_tui.jobs.types import (
    CancelHint,
    Completion,
    Heartbeat,
    Job,
    Queue,
    QueueError,
    QueueRejected,
    QueueUnavailable,
    Wake,
)
from imagen_tui.limits import (
    DEFAULT_GENERATION_S,
    DEFAULT_POLL_S,
    JOB_SLACK_S,
    MAX_OOM_HANDBACKS,
    PREVIEW_INTERVAL_S,
    PROGRESS_INTERVAL_S,
    UPLOAD_DEADLINE_S,
)
from imagen_tui.retry import Outage, job_retry_delay
from imagen_tui.storage import Upload
from imagen_tui.text import one_line

log = logging.getLogger("imagen.worker")

T = TypeVar("T")


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


def _cancelling() -> bool:
    """The running task itself was asked to cancel (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def job_deadline_s(backend: Any) -> float:
    """How long one job may run, generation and upload together: the backend's own
    `timeout_s` (DEFAULT_GENERATION_S for one that declares none) plus
    JOB_SLACK_S (its calls' retries, writing the files) plus UPLOAD_DEADLINE_S."""
    timeout = getattr(backend, "timeout_s", None)
    generation = DEFAULT_GENERATION_S
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        generation = float(timeout)
    return generation + JOB_SLACK_S + UPLOAD_DEADLINE_S


def new_worker_id() -> str:
    """Unique per process start, for logs and the usage rows' caller."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 1  # jobs at once (one GPU: 1)
    poll_interval: float = DEFAULT_POLL_S  # safety poll and rescue period, seconds
    once: bool = False  # drain the queue, then exit
    progress_interval: float = PROGRESS_INTERVAL_S
    preview_interval: float = PREVIEW_INTERVAL_S  # at most one preview write per job per this
    stop_grace_s: float = 10.0  # after a second stop: time to hand jobs back, then exit anyway
    gpu_wait: GpuWait = DEFAULT_GPU_WAIT  # a ComfyUI instance short of memory looks again


class WorkerCrashed(ImagenError):
    """A slot of the worker crashed (a bug); the worker stopped. Already logged."""


def completion_of(
    outcome: Outcome, planned: Plan, who: str = "", object_uri: str | None = None
) -> Completion:
    result = outcome.result
    width, height = real_size(planned, result)
    return Completion(
        seed=result.seed,
        width=width,
        height=height,
        steps=result.steps,
        backend=planned.backend,
        backend_type=planned.backend_type,
        model=result.model,
        mime_type=result.mime_type,
        sha256=outcome.sha256,
        byte_size=len(result.image),
        storage_uri=outcome.written.image.as_uri(),
        thumbnail=outcome.thumbnail,
        thumbnail_mime=THUMBNAIL_MIME if outcome.thumbnail else None,
        metadata=outcome.record,
        prompt_sha256=prompt_sha256(planned.prompt),
        latency_ms=round(result.latency_ms or 0.0, 1),
        cost_usd=result.cost_usd,
        caller=who or caller(),
        object_uri=object_uri,
        options=dict(planned.request.options),
    )


class Worker:
    def __init__(self, workbench: Workbench, queue: Queue, options: WorkerOptions) -> None:
        self.workbench = workbench
        self.queue = queue
        self.options = options
        self.stats: Counter[str] = Counter()  # done, failed, retried, dropped, released
        # Set while every slot waits for work; and how many cancel hints were checked
        # with the database (seams for status displays and tests).
        self.idle = asyncio.Event()
        self.cancel_checks = 0
        self._idle_slots = 0
        self._stop_requests = 0
        self._wake = asyncio.Event()
        self._gave_up = asyncio.Event()  # the forced stop's grace period ran out
        self._in_flight: dict[int, Job] = {}
        self._generations: dict[int, asyncio.Task[Outcome]] = {}
        self._lost: dict[int, str] = {}  # job id -> why this worker no longer holds it
        self._checks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._slots: list[asyncio.Task[None]] = []
        self._heartbeat: Heartbeat | None = None
        self._last_rescue = float("-inf")
        self._claims_outage = Outage(log, "claims")
        self._listener_crash: BaseException | None = None
        self.caller = caller()  # the usage rows' caller (core/ledger.py: who is generating)
        # Routing: the instances this worker claims jobs for, and the one a job
        # with no backend gets (None: it leaves such jobs to others). `held_back`
        # is a seam: instances not to claim for right now (e.g. its GPU is short of
        # memory); jobs for the others still flow.
        self.backends: frozenset[str] = frozenset(workbench.ready_backends())
        self.default_backend: str | None = workbench.ready_default()
        self.held_back: set[str] = set()
        self.gpu = GpuGates()  # a gate per instance on a shared GPU (set up in run())
        self._note: str | None = None

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
            # Offline at once, so an app starts a worker rather than counting on this one.
            if self._heartbeat is not None:
                self._heartbeat.withdraw()
        elif self._stop_requests == 2:
            log.warning("stopping now: cancelling %d job(s)", len(self._in_flight))
            for slot in self._slots:
                slot.cancel()
            asyncio.get_running_loop().call_later(self.options.stop_grace_s, self._gave_up.set)
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

    def _lose(self, job_id: int, reason: str) -> None:
        """This worker no longer holds the job: stop its generation, drop its result."""
        if job_id not in self._in_flight:
            return
        self._lost.setdefault(job_id, reason)
        generation = self._generations.get(job_id)
        if generation is not None:
            generation.cancel()

    def claimable(self) -> tuple[list[str], bool]:
        """What a claim may take now: (instances, whether a job with no backend)."""
        backends = sorted(self.backends - self.held_back)
        return backends, self.default_backend is not None and self.default_backend in backends

    # ----------------------------------------------------------- main loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self.queue.heartbeat(
            in_flight=lambda: {job_id: job.lease for job_id, job in list(self._in_flight.items())},
            on_lost=lambda job_id: loop.call_soon_threadsafe(self._lose, job_id, "lease lost"),
        )
        heartbeat.start()
        self._heartbeat = heartbeat
        if self.stopping:
            heartbeat.withdraw()  # stopped before it ran
        listener: asyncio.Task[None] | None = None
        keeper: asyncio.Task[None] | None = None
        try:
            self.gpu = self._gates()
            await self._sweep()
            if not self.options.once:
                listener = asyncio.create_task(self._listen())
                if self.gpu:
                    keeper = asyncio.create_task(self._keep_gpu())
            self._slots = [
                asyncio.create_task(self._slot()) for _ in range(self.options.concurrency)
            ]
            crash = await self._wait_for_slots() or self._listener_crash
            if crash is not None:
                what = "the listener" if crash is self._listener_crash else "a worker slot"
                raise WorkerCrashed(f"{what} crashed: {type(crash).__name__}: {crash}")
        finally:
            # No slot outlives run(): when run() itself is cancelled, its slots are
            # too, and they hand their jobs back while the queue is still open
            # (a forced stop's grace period still bounds the wait).
            if not all(slot.done() for slot in self._slots) and not self._gave_up.is_set():
                for slot in self._slots:
                    slot.cancel()
                await self._wait_for_slots()
            for task in (listener, keeper, self._sweeper, *self._checks):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            heartbeat.stop()
            await self.queue.close()
            await self.workbench.aclose()

    def _gates(self) -> GpuGates:
        """A gate for each served instance on a shared GPU (ComfyUI)."""
        backends = {}
        for name in sorted(self.backends):
            try:
                backends[name] = self.workbench.backend(name)
            except Exception as error:  # its jobs will fail with this error; no gate for it
                log.warning("backend %s: %s", name, one_line(str(error)))
        return GpuGates.of(backends, self.options.gpu_wait)

    async def _keep_gpu(self) -> None:
        """Ask each idle ComfyUI instance to free its models when it is due."""
        while not self.stopping:
            due = await self.gpu.free_idle()
            await self._pause(self.options.poll_interval if due is None else min(due, 60.0))

    async def _claim(self) -> Job | None:
        """The next job this worker may run now: none for a ComfyUI instance that
        lacks GPU memory (`jobs.gpu`: held back), while jobs for other backends flow."""
        if self.gpu:
            open_now = await self.gpu.claimable(sorted(self.backends))
            await self._set_note(self.gpu.note)
            self.held_back = set() if open_now is None else set(self.backends - set(open_now))
        backends, accept_default = self.claimable()
        if not backends:
            return None  # every instance is held back: no need to ask the database
        return await self.queue.claim(backends, accept_default)

    async def _set_note(self, note: str | None) -> None:
        """What the presence row says about this worker (`imagen workers`, the header)."""
        if note == self._note:
            return
        self._note = note
        with contextlib.suppress(QueueError):  # the heartbeat writes it at its next beat
            await self.queue.set_note(note)

    async def _wait_for_slots(self) -> BaseException | None:
        """Wait until every slot ends; log a crashed one at once and stop the others."""
        crash: BaseException | None = None
        pending: set[asyncio.Future[Any]] = set(self._slots)
        gave_up = asyncio.ensure_future(self._gave_up.wait())
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending | {gave_up}, return_when=asyncio.FIRST_COMPLETED
                )
                if gave_up in done:
                    log.error(
                        "jobs did not stop within %g s; exiting anyway", self.options.stop_grace_s
                    )
                    return crash
                pending.discard(gave_up)
                for slot in done:
                    if slot.cancelled() or slot.exception() is None:
                        continue
                    error = slot.exception()
                    if crash is None:
                        crash = error
                        log.critical(
                            "a worker slot crashed; stopping so the supervisor restarts the worker",
                            exc_info=error,
                        )
                        if not self.stopping:
                            self.stop()
            return crash
        finally:
            gave_up.cancel()

    async def _sweep(self, what: str = "start-up sweep") -> None:
        """Clean the output folder of killed runs' leftovers, waiting out an outage
        (at start, and after a rescue pass that found dead workers' jobs)."""
        outage = Outage(log, what)
        while not self.stopping:
            try:
                await sweep(self.workbench.config.output.directory, self.queue, log)
            except QueueUnavailable as error:
                await self._pause(outage.failed(error))
                continue
            except (QueueError, OSError) as error:
                log.warning("%s of the output folder skipped: %s", what, error)
            outage.recovered()
            return

    async def _listen(self) -> None:
        try:
            async for signal_ in self.queue.signals():
                if isinstance(signal_, Wake):
                    self._wake_all()
                elif isinstance(signal_, CancelHint) and signal_.job_id in self._in_flight:
                    job = self._in_flight[signal_.job_id]
                    check = asyncio.create_task(self._check_cancel(job))
                    self._checks.add(check)
                    check.add_done_callback(self._checks.discard)
        except Exception as error:  # a bug: the listener reconnects by itself otherwise
            self._listener_crash = error
            log.critical("the listener crashed; stopping the worker", exc_info=error)
            self.stop()

    async def _check_cancel(self, job: Job) -> None:
        """A cancel hint is only a hint (anyone may send one): ask the database first."""
        try:
            reason = await self.queue.lost(job)
        except QueueError:
            return  # the heartbeat finds out at its next beat
        finally:
            self.cancel_checks += 1
        if reason is not None:
            self._lose(job.id, reason)

    async def _slot(self) -> None:
        while not self.stopping:
            waiting_on = self._wake
            try:
                job = await self._claim()
                # Rescue passes (1-3 ms) run when the queue looks empty and after a
                # job, never between a wake-up and its claim.
                if job is None and await self._rescue_if_due():
                    continue  # jobs came back to the queue: claim them
            except QueueUnavailable as error:
                await self._pause(self._claims_outage.failed(error))
                continue
            self._claims_outage.recovered()
            if job is None:
                if self.options.once:
                    return
                await self._wait_for_work(waiting_on)
                continue
            await self._process(job)
            with contextlib.suppress(QueueUnavailable):  # the next claim reports it
                await self._rescue_if_due()

    async def _wait_for_work(self, waiting_on: asyncio.Event) -> None:
        self._idle_slots += 1
        if self._idle_slots == self.options.concurrency:
            self.idle.set()
        try:
            timeout = await self._idle_timeout()
            retry_in = self.gpu.retry_in()
            if retry_in is not None:
                timeout = min(timeout, retry_in)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiting_on.wait()
        finally:
            self._idle_slots -= 1
            self.idle.clear()

    async def _idle_timeout(self) -> float:
        """How long to wait for a wake-up: the safety poll, or less when a job
        waiting out its retry backoff becomes due sooner (no NOTIFY marks that)."""
        try:
            due = await self.queue.next_due(*self.claimable())
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
        rescued = await self.queue.rescue()
        for job_id, status in rescued:
            log.warning("job %d: lease expired, its worker is gone; now %s", job_id, status)
            if status == "pending":
                requeued += 1
        if rescued and (self._sweeper is None or self._sweeper.done()):
            # Their leases just died: whatever their dead workers left can go now,
            # not only at this worker's next start.
            self._sweeper = asyncio.create_task(self._sweep("sweep after a rescue"))
        return requeued

    # ----------------------------------------------------------- one job

    async def _process(self, job: Job) -> None:
        self._in_flight[job.id] = job
        try:
            await self._run_job(job)
        except asyncio.CancelledError:
            # Hard stop: hand the job back so another worker starts it at once.
            if job.id not in self._lost:
                with contextlib.suppress(QueueError):
                    await self.queue.release(job)
                self.stats["released"] += 1
                self._log(job, "released", "stopped before it finished")
            raise
        except Exception as error:  # a bug while handling this job: it fails, the worker goes on
            log.exception("job %d: unexpected error", job.id)
            await self._settle(job, "failed", f"internal error: {type(error).__name__}: {error}")
        finally:
            self._in_flight.pop(job.id, None)
            self._generations.pop(job.id, None)
            self._lost.pop(job.id, None)

    async def _run_job(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            planned = plan(
                self.workbench,
                job.spec,
                idx=job.series_idx or 1,
                series=job.series_id,
                job=job.id,
                named_at=job.series_created_at,
            )
        except InputError as error:  # bad job parameters: retrying cannot help
            await self._settle(job, "failed", str(error))
            return
        progress = ProgressWriter(
            self.queue, job, self.options.progress_interval, self.options.preview_interval
        )
        backend = self.workbench.backend(planned.backend)
        # One deadline for the whole run, upload included (see job_deadline_s).
        limit = job_deadline_s(backend)
        deadline = asyncio.get_running_loop().time() + limit
        gate = self.gpu.get(planned.backend)
        if gate is not None:
            gate.started()
        generation = asyncio.create_task(
            run(planned, backend, progress=progress.report, thumbnail=True, journal=job.journal)
        )
        self._generations[job.id] = generation
        try:
            async with asyncio.timeout_at(deadline) as timer:
                outcome = await generation
        except TimeoutError:
            if not timer.expired():
                raise
            reason = (
                f"the job ran past its deadline of {limit:g} s (the backend's timeout plus "
                "the upload's); stopped, nothing recorded"
            )
            await self._settle(job, "failed", reason, planned)
            return
        except asyncio.CancelledError:
            if job.id in self._lost:
                self.stats["dropped"] += 1
                self._log(job, "dropped", f"{self._lost[job.id]}; generation stopped", planned)
                if not _cancelling():
                    return  # only the generation was cancelled (`_lose`): the slot goes on
            raise  # this slot itself was cancelled: it ends, whether the job was lost or not
        except GpuOutOfMemory as error:
            await self._out_of_memory(job, error, planned)
            return
        except GenerationError as error:
            outcome_ = "retry" if error.transient else "failed"
            await self._settle(job, outcome_, str(error), planned, error.retry_after)
            return
        except ImagenError as error:  # the image could not be written: may be transient
            await self._settle(job, "retry", str(error), planned)
            return
        except Exception as error:  # an adapter or pipeline bug: this job fails
            log.exception("job %d: unexpected error", job.id)
            reason = f"internal error: {type(error).__name__}: {error}"
            await self._settle(job, "failed", reason, planned)
            return
        finally:
            if gate is not None:
                gate.finished()
            await progress.close()
        object_uri = await self._store(job, planned, outcome, deadline)
        await self._record(job, planned, outcome, started, object_uri)

    async def _store(
        self, job: Job, planned: Plan, outcome: Outcome, deadline: float | None = None
    ) -> str | None:
        """Upload the image (and sidecar) where the config says; the object URI, or None.

        A failed upload (already retried by the storage), or one still running at
        the job's `deadline` (loop time), is logged and the image stays local: the
        job is recorded all the same, without an object URI (it was paid for).
        """
        storage = self.workbench.storage()
        if storage.type_name == "local":
            return None
        written = outcome.written
        upload = Upload(
            image=written.image,
            sidecar=written.sidecar,
            key=PurePosixPath(written.image.relative_to(planned.directory).as_posix()),
            mime_type=outcome.result.mime_type,
        )
        try:
            async with asyncio.timeout_at(deadline):
                return await storage.store(upload)
        except TimeoutError:
            log.warning(
                "job %d: upload to %s storage ran past the job's deadline, the image stays local",
                job.id,
                storage.type_name,
            )
            return None
        except GenerationError as error:
            log.warning(
                "job %d: upload to %s storage failed, the image stays local: %s",
                job.id,
                storage.type_name,
                one_line(str(error)),
            )
            return None

    async def _record(
        self,
        job: Job,
        planned: Plan,
        outcome: Outcome,
        started: float,
        object_uri: str | None = None,
    ) -> None:
        """Write the result; keep the files only if a row refers to them."""
        written = outcome.written
        done = completion_of(outcome, planned, self.caller, object_uri)
        try:
            try:
                image_id = await self._persist(job, lambda: self.queue.complete(job, done))
            except QueueRejected as error:
                # Perhaps the usage row was refused (a ledger constraint, a schema
                # drift): the image must not be lost for it. Once more without it.
                log.warning(
                    "job %d: the result was refused (%s); recording it without its usage row",
                    job.id,
                    error,
                )
                unledgered = dataclasses.replace(done, ledger=False)
                image_id = await self._persist(job, lambda: self.queue.complete(job, unledgered))
        except QueueRejected as error:
            # The statement failed, so its transaction rolled back: no row refers to the files.
            written.remove()
            await self._settle(job, "failed", f"the database refused the result: {error}", planned)
            return
        if image_id is None:  # not ours any more (canceled, or rescued and re-run)
            recorded = await self._persist(job, lambda: self.queue.recorded_files([job.id]))
            if written.image.as_uri() in recorded:
                written.drop_journal()
            else:
                written.remove()
            reason = self._lost.get(job.id) or await self._persist(
                job, lambda: self.queue.lost(job)
            )
            self.stats["dropped"] += 1
            self._log(
                job, "dropped", f"{reason or 'lease lost'} before it was recorded", planned, outcome
            )
            return
        written.drop_journal()
        latency = (time.perf_counter() - started) * 1000
        self.stats["done"] += 1
        self._log(
            job, "done", f"image {image_id} {outcome.path} in {latency:.0f} ms", planned, outcome
        )

    async def _out_of_memory(self, job: Job, error: GpuOutOfMemory, planned: Plan) -> None:
        """Hand the job back without using up an attempt (at most MAX_OOM_HANDBACKS
        times, then it counts as one), and wait for memory before claiming for its
        instance again."""
        gate = self.gpu.get(planned.backend)
        delay = await gate.out_of_memory() if gate is not None else self.options.gpu_wait.first
        await self._set_note(self.gpu.note)
        seed = planned.request.seed
        if await self._persist(
            job, lambda: self.queue.hand_back(job, str(error), delay, seed, MAX_OOM_HANDBACKS)
        ):
            self.stats["handed back"] += 1
            self._log(job, "handed back", f"in {delay:.1f} s, no attempt used: {error}", planned)
            return
        await self._settle(job, "retry", str(error), planned, delay)

    async def _settle(
        self,
        job: Job,
        outcome: str,
        error: str,
        planned: Plan | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Record a failure: retry with backoff while attempts remain, else failed."""
        seed = planned.request.seed if planned is not None else None
        try:
            if outcome == "retry" and job.attempts < job.max_attempts:
                delay = job_retry_delay(job.attempts, retry_after)
                await self._persist(job, lambda: self.queue.retry(job, error, delay, seed))
                self.stats["retried"] += 1
                detail = f"in {delay:.1f} s (attempt {job.attempts}/{job.max_attempts}): {error}"
                self._log(job, "retry", detail, planned)
                return
            await self._persist(job, lambda: self.queue.fail(job, error, seed))
        except QueueRejected as refused:  # the lease runs out and a rescue retries it
            log.error("job %d: could not record its failure (%s): %s", job.id, refused, error)
            return
        self.stats["failed"] += 1
        self._log(job, "failed", error, planned)

    async def _persist(self, job: Job, write: Callable[[], Awaitable[T]]) -> T:
        """Run a write about a job, retrying through database outages until it answers.

        Every such write is fenced on the job's lease, so one that lands late
        is refused rather than wrong, and retrying for as long as it takes is safe.
        """
        outage = Outage(log, f"job {job.id}")
        while True:
            try:
                result = await write()
            except QueueUnavailable as error:
                await asyncio.sleep(outage.failed(error))
                continue
            outage.recovered()
            return result

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
        quiet = ("done", "retry", "released", "handed back")
        level = logging.INFO if outcome in quiet else logging.WARNING
        log.log(level, "%s: %s: %s", ", ".join(fields), outcome, one_line(detail))


def install_stop_signals(worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
    """SIGTERM and SIGINT stop the worker, whatever its backends are doing.

    The first asks it to finish in-flight jobs, the second to cancel and hand
    them back. The handlers run in the main thread (not as event loop
    callbacks), so they are counted even when a backend blocks the loop; after
    the second, a watchdog thread ends the process (exit 130) if the worker has
    not finished within its grace period plus a few seconds. A third exits at once.
    """
    requests = 0

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal requests
        requests += 1
        if requests >= 3:
            os._exit(130)
        loop.call_soon_threadsafe(worker.stop)
        if requests == 2:
            watchdog = threading.Timer(worker.options.stop_grace_s + 5.0, os._exit, args=(130,))
            watchdog.daemon = True
            watchdog.start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
