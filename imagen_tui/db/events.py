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
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from imagen_tui.core.events import Connected, Disconnected, JobEvent
from imagen_tui.retry import Outage
from imagen_tui.text import one_line

WAKE_CHANNEL = "imagen_jobs"  # a job may be ready: workers claim
EVENTS_CHANNEL = "imagen_job_events"  # a job changed: live views re-read it
CANCELS_CHANNEL = "imagen_job_cancels"  # a running job was canceled: its worker stops it

log = logging.getLogger("imagen.events")


@dataclass(frozen=True)
class Notification:
    channel: str
    payload: str


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
