"""What the worker and a job queue say to each other: the `Queue` protocol and
the values that cross it.

The worker (`jobs.worker`) depends only on this module, so it runs over any
implementation: PostgreSQL in production (`db.queue.PgQueue`), or a wrapper
around it in a test. Nothing here imports a database driver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from imagen_tui.core.spec import RequestSpec


@dataclass(frozen=True)
class Job:
    """A claimed job: what to make, whose it is, and the claim it runs under."""

    id: int
    spec: RequestSpec
    # This claim's token. Every later write about the job is fenced on it, so a
    # write from an earlier claim of the same job (lost, rescued, re-claimed)
    # can never land.
    lease: str
    owner_user_id: UUID | None = None
    series_id: int | None = None
    series_idx: int | None = None
    series_created_at: datetime | None = None
    attempts: int = 1
    max_attempts: int = 3

    @property
    def journal(self) -> str:
        """The token that names this claim's journal links in the output folder."""
        return f"{self.id}-{self.lease}"


def parse_journal(token: str) -> tuple[int, str] | None:
    """(job id, lease) from a `Job.journal` token; None if it is not one."""
    job_id, separator, lease = token.partition("-")
    if not separator or not job_id.isdigit() or not lease:
        return None
    return int(job_id), lease


@dataclass(frozen=True)
class Completion:
    """What a finished job writes: its images row and its usage row."""

    seed: int | None  # None: the backend takes no seed
    width: int
    height: int
    steps: int | None
    backend: str
    backend_type: str
    model: str
    mime_type: str
    sha256: str
    byte_size: int  # of the image file
    storage_uri: str
    thumbnail: bytes | None
    thumbnail_mime: str | None
    metadata: Mapping[str, Any]
    prompt_sha256: str
    latency_ms: float
    cost_usd: Decimal | None
    caller: str = ""  # who ran it: $IMAGEN_CALLER or user@host
    object_uri: str | None = None  # the remote copy (Supabase Storage), if any
    ledger: bool = True  # False: record the image without its usage row
    options: Mapping[str, Any] = field(default_factory=dict)  # the job's own inputs, as used


@dataclass(frozen=True)
class PreviewImage:
    """A running job's latest preview as the worker keeps it: JPEG, small."""

    jpeg: bytes
    width: int
    height: int
    step: int | None = None
    total: int | None = None


class QueueError(Exception):
    """The queue could not do what was asked. `str()` is one line for a log or a job."""


class QueueUnavailable(QueueError):
    """The database could not be reached; back off and try the same thing again."""


class QueueRejected(QueueError):
    """The database refused a statement (a constraint, a permission, ...):
    trying the same write again cannot help."""


@dataclass(frozen=True)
class Wake:
    """Jobs may be waiting: claim until the queue is empty. Also sent after every
    (re)connect of the listener, since notifications sent meanwhile are lost."""


@dataclass(frozen=True)
class CancelHint:
    """Someone may have canceled job `job_id`. A hint, never trusted: any
    session may send one, so the worker asks the database before acting."""

    job_id: int


Signal = Wake | CancelHint


class Heartbeat(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def withdraw(self) -> None:
        """The worker is stopping: count it offline at once (its leases still renew)."""
        ...


class Queue(Protocol):
    """What the worker needs from a job queue."""

    worker_id: str

    async def claim(self, backends: Sequence[str], accept_default: bool) -> Job | None:
        """The next runnable job for one of `backends` (or with no backend, i.e. the
        worker's default, when `accept_default`), now running under a new lease;
        None when there is none."""
        ...

    async def complete(self, job: Job, done: Completion) -> int | None:
        """Record the result; the new image id, or None when the lease was lost.

        Idempotent: when an earlier try of this very call committed but its reply
        was lost, the retry finds its own result and returns that image id.
        """
        ...

    async def fail(self, job: Job, error: str, seed: int | None) -> bool:
        """The job failed for good; `seed`, if chosen, is kept so a retry reuses it."""
        ...

    async def retry(self, job: Job, error: str, delay_s: float, seed: int | None) -> bool:
        """Back to the queue after `delay_s` (the attempt counts)."""
        ...

    async def release(self, job: Job) -> bool:
        """Back to the queue at once, the attempt not counted (a stop, not the job's fault)."""
        ...

    async def hand_back(
        self, job: Job, error: str, delay_s: float, seed: int | None, limit: int
    ) -> bool:
        """Back to the queue after `delay_s`, the attempt not counted (the GPU ran out of
        memory: not the job's fault), if it was handed back fewer than `limit` times
        before; False otherwise (or when the lease was lost)."""
        ...

    async def set_note(self, note: str | None) -> None:
        """What the worker's presence row says it is doing (None: nothing to say)."""
        ...

    async def progress(self, job: Job, fraction: float) -> bool: ...

    async def preview(self, job: Job, preview: PreviewImage) -> bool:
        """Keep `preview` as the job's latest (replacing any older one) and tell the
        live views; False when the claim no longer holds the job."""
        ...

    async def lost(self, job: Job) -> str | None:
        """None while the job still runs under this claim; else why not (`canceled`, ...)."""
        ...

    async def recorded_files(self, job_ids: Sequence[int]) -> set[str]:
        """The storage URIs the images rows of these jobs point at."""
        ...

    async def live_leases(self, leases: Sequence[str]) -> set[str]:
        """Those of `leases` under which a job is still running (the lease not expired)."""
        ...

    async def rescue(self) -> list[tuple[int, str]]:
        """Requeue (or fail) jobs whose lease expired; [(job id, new status)]."""
        ...

    async def next_due(self, backends: Sequence[str], accept_default: bool) -> float | None:
        """Seconds until a pending job this worker may claim (as `claim` picks them)
        becomes runnable (<= 0: now); None: none pending."""
        ...

    def signals(self) -> AsyncIterator[Signal]:
        """Wake-ups and cancel hints, reconnecting by itself; starts with a Wake."""
        ...

    def heartbeat(
        self,
        in_flight: Callable[[], Mapping[int, str]],  # job id -> lease, to renew
        on_lost: Callable[[int], object],  # called (in the heartbeat's thread) per lost job
    ) -> Heartbeat: ...

    async def close(self) -> None: ...
