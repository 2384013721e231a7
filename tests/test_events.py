"""The job event stream a live view follows: typed events, malformed payloads
skipped, and a dropped connection reported, reconnected and flagged for a reload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from imagen_tui.core.events import Connected, Disconnected, JobEvent
from imagen_tui.db.events import job_events
from tests.helpers import sql


async def next_item(stream: AsyncIterator[object], timeout: float = 30) -> object:
    async with asyncio.timeout(timeout):
        return await anext(stream)


def test_events_arrive_typed_and_malformed_payloads_are_skipped(db_url):
    async def scenario() -> list[Any]:
        stream = job_events(db_url)
        assert isinstance(stream, AsyncGenerator)  # it can be closed
        assert await next_item(stream) == Connected(first=True)
        ((job_id,),) = await asyncio.to_thread(
            sql, db_url, "INSERT INTO imagen.jobs (prompt) VALUES ('x') RETURNING id"
        )
        for forged in ("not json", "[1, 2]", '{"status": "done"}', '{"id": "7", "status": "x"}'):
            await asyncio.to_thread(
                sql, db_url, "SELECT pg_notify('imagen_job_events', %s)", (forged,)
            )
        await asyncio.to_thread(
            sql,
            db_url,
            "UPDATE imagen.jobs SET progress = 0.25 WHERE id = %s",
            (job_id,),
        )
        got = [await next_item(stream), await next_item(stream)]
        await stream.aclose()
        return [job_id, *got]

    job_id, inserted, progressed = asyncio.run(scenario())
    assert inserted == JobEvent(id=job_id, status="pending")
    assert progressed == JobEvent(id=job_id, status="pending", progress=0.25)


def test_a_dropped_connection_is_reported_then_reconnected_for_a_reload(db_url, restartable):
    async def scenario() -> list[Any]:
        stream = job_events(db_url)
        assert isinstance(stream, AsyncGenerator)  # it can be closed
        seen = [await next_item(stream)]
        await asyncio.to_thread(restartable.stop)
        seen.append(await next_item(stream))  # Disconnected, while the server is down
        await asyncio.to_thread(restartable.start_again)
        seen.append(await next_item(stream, timeout=60))  # back: reload what you show
        ((job_id,),) = await asyncio.to_thread(
            sql, db_url, "INSERT INTO imagen.jobs (prompt) VALUES ('after') RETURNING id"
        )
        seen.append(await next_item(stream))
        await stream.aclose()
        return [job_id, *seen]

    job_id, connected, dropped, back, event = asyncio.run(scenario())
    assert connected == Connected(first=True)
    assert isinstance(dropped, Disconnected) and dropped.error
    assert back == Connected(first=False)
    assert event == JobEvent(id=job_id, status="pending")


@pytest.mark.parametrize(
    "payload",
    [
        '{"id": 3, "status": "done", "series_id": 1, "series_idx": 2, "progress": 1, '
        '"image_id": 9}',
    ],
)
def test_a_payload_parses_into_its_fields(payload):
    assert JobEvent.parse(payload) == JobEvent(
        id=3, status="done", series_id=1, series_idx=2, progress=1.0, image_id=9
    )
