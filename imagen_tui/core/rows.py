"""The rows the database hands the front ends: plain frozen dataclasses, no driver.

`db.repositories` builds them from query results; the CLI and the TUI read
them (and name them in annotations) without importing the database layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from imagen_tui.core.ledger import UsageEntry
from imagen_tui.core.spec import RequestSpec


def uri_to_path(uri: str | None) -> Path | None:
    """The local file a `file://` storage URI names; None for other URIs."""
    if not uri or not uri.startswith("file:"):
        return None
    return Path(unquote(urlparse(uri).path))


def waiting_for(backend: str | None) -> str:
    """What a pending job no online worker serves waits for (Jobs, Series, `imagen jobs`)."""
    if backend is None:
        return "waiting for a worker with a default backend"
    return f"waiting for a worker with {backend}"


@dataclass(frozen=True)
class JobRow:
    """A job as listings show it (the seed is the one used, once known)."""

    id: int
    status: str
    series_id: int | None
    series_idx: int | None
    prompt: str
    backend: str | None
    seed: int | None
    attempts: int
    max_attempts: int
    progress: float | None
    error: str | None
    image_id: int | None
    storage_uri: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    object_uri: str | None = None  # the image's remote copy (Supabase Storage), if any
    # Pending, and no online worker serves its backend (or, with none, has a default).
    unserved: bool = False
    steps: int | None = None  # the steps asked for (None: the backend's default)

    @property
    def path(self) -> Path | None:
        return uri_to_path(self.storage_uri)

    @property
    def waiting(self) -> str | None:
        """Why it is not running yet, when no online worker can take it; else None."""
        return waiting_for(self.backend) if self.unserved and self.status == "pending" else None


@dataclass(frozen=True)
class SeriesRow:
    """A series in a listing: its tries done and failed, and the winner's try number."""

    id: int
    prompt: str
    style: str | None
    count: int
    done: int
    failed: int
    winner_idx: int | None
    created_at: datetime


@dataclass(frozen=True)
class TryRow:
    """One try of a series: its job, and its image once done."""

    idx: int
    job_id: int
    status: str
    progress: float | None
    error: str | None
    seed: int | None
    image_id: int | None
    storage_uri: str | None
    width: int | None
    height: int | None
    model: str | None
    backend: str | None
    winner: bool
    object_uri: str | None = None  # the image's remote copy (Supabase Storage), if any
    job_backend: str | None = None  # the instance the job is for (NULL: a worker's default)
    # Pending, and no online worker serves its backend (or, with none, has a default).
    unserved: bool = False

    @property
    def path(self) -> Path | None:
        return uri_to_path(self.storage_uri)

    @property
    def waiting(self) -> str | None:
        """Why it is not running yet, when no online worker can take it; else None."""
        if not (self.unserved and self.status == "pending"):
            return None
        return waiting_for(self.job_backend)


@dataclass(frozen=True)
class SeriesDetail:
    id: int
    spec: RequestSpec
    count: int
    selected_image_id: int | None
    created_at: datetime
    tries: tuple[TryRow, ...]


@dataclass(frozen=True)
class ImageRow:
    """A finished image with its thumbnail: enough for a grid on any machine."""

    id: int
    job_id: int | None
    series_id: int | None
    series_idx: int | None
    seed: int | None  # None: the backend takes no seed
    width: int
    height: int
    backend: str
    model: str
    storage_uri: str
    thumbnail: bytes | None
    thumbnail_mime: str | None
    metadata: Mapping[str, Any]
    created_at: datetime
    object_uri: str | None = None  # the remote copy (Supabase Storage): fetch the full image

    @property
    def path(self) -> Path | None:
        return uri_to_path(self.storage_uri)


@dataclass(frozen=True)
class Submitted:
    series_id: int
    job_ids: tuple[int, ...]


@dataclass(frozen=True)
class JobChange:
    """A job whose status a user changed, and what it was before."""

    id: int
    status: str
    was: str


@dataclass(frozen=True)
class WorkerPresence:
    """A worker's presence row (`imagen.workers`) and whether it counts as online:
    its heartbeat refreshed the row within its lease (see 0003_workers.sql)."""

    id: str  # the worker id, as jobs.worker_id and usage.caller record it
    host: str
    pid: int
    backends: tuple[str, ...]  # the backend instances it can render
    concurrency: int
    lease_s: float
    started_at: datetime
    last_seen: datetime
    seen_ago_s: float  # seconds since last_seen, by the database's clock
    online: bool
    default_backend: str | None = None  # what it renders a job with no backend on
    note: str | None = None  # what it is doing, e.g. "waiting for GPU memory: 3.1 of 16.0 GB free"


@dataclass(frozen=True)
class GalleryCard:
    """One card of the gallery: a solo image, or a series shown by its cover
    (its winner, or its first image until one is picked)."""

    image: ImageRow
    prompt: str
    series_id: int | None  # None: a solo image
    series_count: int  # tries of the series (1 for a solo image)
    series_images: int  # images the series has (1 for a solo image)
    winner: bool  # the cover is the series' picked winner


@dataclass(frozen=True)
class UsageTotal:
    """One group of the usage report; `key` None is the grand total."""

    key: str | None
    count: int
    priced: int  # rows with a cost estimate (the others' cost is unknown)
    total_cost: Decimal  # exact sum of the known estimates
    mean_cost: Decimal | None  # over the priced rows
    mean_latency_ms: float


@dataclass(frozen=True, kw_only=True)
class UsageRow(UsageEntry):
    """One raw usage row: an entry as recorded (never the prompt, only its hash)."""

    id: int
    created_at: datetime


def backends_served(workers: Sequence[WorkerPresence]) -> dict[str, int]:
    """Each backend instance online workers render, and by how many of them, by name."""
    served: dict[str, int] = {}
    for worker in workers:
        if worker.online:
            for name in worker.backends:
                served[name] = served.get(name, 0) + 1
    return dict(sorted(served.items()))


@dataclass(frozen=True)
class PreviewRow:
    """A running job's latest live preview (imagen.previews): a small JPEG."""

    job_id: int
    step: int | None
    total: int | None
    width: int
    height: int
    jpeg: bytes
    updated_at: datetime


@dataclass(frozen=True)
class Recalled:
    """What a job asked for, to fill the form again (`recall`) or queue again (`again`):
    its request (the seed the try used, once known) and its series' tries."""

    job_id: int
    series_id: int | None
    series_idx: int | None
    spec: RequestSpec
    tries: int  # the series' count (1 for a solo job)


@dataclass(frozen=True)
class Search:
    """A filter on the Gallery and the Series list: prompt text (case-insensitive,
    anywhere in the prompt), the backend that rendered it, made since when."""

    text: str = ""
    backend: str | None = None
    since: datetime | None = None

    @property
    def empty(self) -> bool:
        return not self.text and self.backend is None and self.since is None
