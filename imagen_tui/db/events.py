"""PostgreSQL notifications as async iterators that survive a dropped connection.

- `listen(url, channels)`: the raw stream, on a dedicated autocommit
  connection (psycopg holds a connection's lock while it waits for
  notifications, so it can share nothing). It yields `Connected` after every
  (re)connect, `Notification`s, and `Disconnected` when the connection drops;
  then it reconnects with backoff, logging the outage once when it starts and
  once when it ends. Notifications sent while disconnected are lost, which is
  why `Connected(first=False)` tells the consumer to re-read what it shows.
- `job_events(url)`: the same for `imagen_job_events`, with each payload
  parsed into a `JobEvent` (malformed payloads are skipped).

Any session that may connect can `pg_notify` on any channel, so a payload is
a hint to re-read a row, never data to trust: the worker asks the database
before acting on a cancel, and views re-read the rows they show.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from imagen_tui.retry import Outage
from imagen_tui.text import one_line

WAKE_CHANNEL = "imagen_jobs"  # a job may be ready: workers claim
EVENTS_CHANNEL = "imagen_job_events"  # a job changed: live views re-read it
CANCELS_CHANNEL = "imagen_job_cancels"  # a running job was canceled: its worker stops it

log = logging.getLogger("imagen.events")


@dataclass(frozen=True)
class Connected:
    """LISTENing (again). After a reconnect (`first` False) re-read what you show."""

    first: bool


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; reconnecting with backoff."""

    error: str


@dataclass(frozen=True)
class Notification:
    channel: str
    payload: str


@dataclass(frozen=True)
class JobEvent:
    """A job was inserted, or its status or progress changed: re-read it."""

    id: int
    status: str
    series_id: int | None = None
    series_idx: int | None = None
    progress: float | None = None
    image_id: int | None = None

    @classmethod
    def parse(cls, payload: str) -> JobEvent | None:
        """The event in a notification's payload; None if it is not a well-formed one."""
        try:
            data: Any = json.loads(payload)
            if not isinstance(data, dict):
                return None
            progress = data.get("progress")
            return cls(
                id=_int(data["id"]),
                status=str(data["status"]),
                series_id=_optional_int(data.get("series_id")),
                series_idx=_optional_int(data.get("series_idx")),
                progress=None if progress is None else float(progress),
                image_id=_optional_int(data.get("image_id")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a whole number: {value!r}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


async def listen(
    url: str, channels: Sequence[str], *, label: str = "listener"
) -> AsyncIterator[Connected | Disconnected | Notification]:
    """Notifications on `channels`, forever; see the module doc."""
    outage = Outage(log, label)
    first = True
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                outage.recovered()
                yield Connected(first)
                first = False
                async for note in conn.notifies():
                    yield Notification(note.channel, note.payload)
        except psycopg.OperationalError as error:
            if not outage.ongoing:
                yield Disconnected(one_line(str(error), 200))
            await asyncio.sleep(outage.failed(one_line(str(error), 200)))


async def job_events(url: str) -> AsyncIterator[Connected | Disconnected | JobEvent]:
    """Job events for a live view: `Connected`, `Disconnected` and parsed `JobEvent`s."""
    async for item in listen(url, (EVENTS_CHANNEL,), label="job events"):
        if isinstance(item, Notification):
            event = JobEvent.parse(item.payload)
            if event is not None:
                yield event
        else:
            yield item
