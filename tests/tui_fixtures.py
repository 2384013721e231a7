"""Fixed content for the TUI's snapshot tests: a stand-in for `services.Session`
with the same methods, returning fixed rows, and a fixed clock.

Snapshots must not depend on real timestamps, random seeds or sequence
values, so only they use this; every behaviour test runs on the real
database (tests/tui.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from imagen_tui.core.events import Connected
from imagen_tui.core.rows import (
    GalleryCard,
    ImageRow,
    JobChange,
    JobRow,
    PreviewRow,
    Recalled,
    Search,
    SeriesDetail,
    SeriesRow,
    UsageRow,
    UsageTotal,
    WorkerPresence,
)
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import Workbench
from imagen_tui.services import Session, Submission

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def job(job_id: int, status: str, **changes: Any) -> JobRow:
    started = NOW - timedelta(seconds=40 - job_id) if status != "pending" else None
    finished = (
        started + timedelta(seconds=3.2) if started and status in ("done", "failed") else None
    )
    row = JobRow(
        id=job_id,
        status=status,
        series_id=None,
        series_idx=None,
        prompt="a lighthouse at dusk, oil painting",
        backend="mock",
        seed=1000 + job_id,
        attempts=1 if status != "pending" else 0,
        max_attempts=3,
        progress=None,
        error=None,
        image_id=None,
        storage_uri=None,
        created_at=NOW - timedelta(minutes=5),
        started_at=started,
        finished_at=finished,
    )
    return replace(row, **changes)


JOBS = [
    job(12, "running", series_id=3, series_idx=2, progress=0.45, prompt="a cat in a fishbowl"),
    job(11, "pending", series_id=3, series_idx=3, prompt="a cat in a fishbowl", seed=None),
    job(10, "done", series_id=3, series_idx=1, prompt="a cat in a fishbowl", image_id=7),
    job(9, "failed", error="mock backend refused: prompt contains [bold]boom[/]"),
    job(8, "canceled", prompt="[red]not markup[/] \x1b[2J"),
    job(7, "done", image_id=6),
]


def usage(key: str | None, count: int, priced: int, cost: str, latency_ms: float) -> UsageTotal:
    total = Decimal(cost)
    return UsageTotal(
        key=key,
        count=count,
        priced=priced,
        total_cost=total,
        mean_cost=total / priced if priced else None,
        mean_latency_ms=latency_ms,
    )


USAGE_BY_BACKEND = [
    usage("comfyui", 40, 0, "0", 2850.0),
    usage("openai", 6, 6, "0.2520", 9120.0),
    usage("replicate", 12, 12, "0.0360", 1710.0),
    usage(None, 58, 18, "0.2880", 2840.0),
]
USAGE_BY_DAY = [
    usage((NOW.date() - timedelta(days=back)).isoformat(), count, priced, cost, 2500.0)
    for back, count, priced, cost in [
        (9, 4, 2, "0.0840"),
        (6, 10, 4, "0.0480"),
        (3, 20, 6, "0.1140"),
        (1, 12, 2, "0.0060"),
        (0, 12, 4, "0.0360"),
    ]
]


@dataclass
class FixedSession:
    """A `services.Session` (the protocol), answering from fixed rows; records what
    it was asked to do."""

    jobs_rows: list[JobRow] = field(default_factory=lambda: list(JOBS))
    series_rows: list[SeriesRow] = field(default_factory=list)
    details: dict[int, SeriesDetail] = field(default_factory=dict)
    images: dict[int, ImageRow] = field(default_factory=dict)
    cards: list[GalleryCard] = field(default_factory=list)
    previews: dict[int, PreviewRow] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def close(self) -> None:
        pass

    async def events(self) -> AsyncIterator[Any]:
        yield Connected(first=True)
        await asyncio.Event().wait()  # nothing else happens

    def jobs(self, status: str | None = None, limit: int = 50) -> list[JobRow]:
        return [r for r in self.jobs_rows if status is None or r.status == status][:limit]

    def jobs_by_id(self, job_ids: Sequence[int]) -> list[JobRow]:
        return [r for r in self.jobs_rows if r.id in job_ids]

    def job_preview(self, job_id: int) -> PreviewRow | None:
        return self.previews.get(job_id)

    def series(self, limit: int = 20, search: Search | None = None) -> list[SeriesRow]:
        return self.series_rows[:limit]

    def series_detail(self, series_id: int) -> SeriesDetail:
        return self.details[series_id]

    def series_images(self, series_id: int) -> list[ImageRow]:
        return [row for row in self.images.values() if row.series_id == series_id]

    def gallery(
        self, limit: int = 100, before_id: int | None = None, search: Search | None = None
    ) -> list[GalleryCard]:
        return self.cards[:limit]

    def recall(self, job_id: int | None = None, image_id: int | None = None) -> Recalled:
        self.calls.append(("recall", (job_id, image_id)))
        detail = next(iter(self.details.values()))
        return Recalled(job_id or 0, detail.id, 1, detail.spec, detail.count)

    def prompt_history(self, search: str = "", limit: int = 50) -> list[str]:
        prompts = dict.fromkeys(row.prompt for row in self.jobs_rows)
        return [p for p in prompts if search.lower() in p.lower()][:limit]

    def usage_totals(
        self, by: str = "backend", since: datetime | None = None, until: datetime | None = None
    ) -> list[UsageTotal]:
        return list(USAGE_BY_DAY) if by == "day" else list(USAGE_BY_BACKEND)

    def pick(self, series_id: int, idx: int | None) -> int | None:
        self.calls.append(("pick", (series_id, idx)))
        return None

    def submit(self, workbench: Workbench, spec: RequestSpec, count: int) -> Submission:
        self.calls.append(("submit", (spec, count)))
        return Submission(series_id=1, job_ids=tuple(range(1, count + 1)), spec=spec)

    def cancel(self, job_ids: Sequence[int]) -> list[JobChange]:
        self.calls.append(("cancel", list(job_ids)))
        return []

    def retry(self, job_ids: Sequence[int]) -> list[JobChange]:
        self.calls.append(("retry", list(job_ids)))
        return []

    def workers(self) -> list[WorkerPresence]:
        return []

    def workers_online(self) -> list[WorkerPresence]:
        return []

    def jobs_running_on(self, worker_id: str) -> list[int]:
        return []

    def usage_rows(
        self, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[UsageRow]:
        return []


def _is_a_session() -> Session:
    return FixedSession()  # mypy checks that it answers everything front ends ask
