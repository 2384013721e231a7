"""Live previews (issue 18 part 1), from the backends to the previews table.

- The ComfyUI client reads the binary preview frames of its own prompt: the
  recorded frames of ComfyUI 0.3.64 (type 1 and type 4), the fake server's
  per-step previews in both formats, none of another prompt's.
- The mock sends its picture, blurred then sharpened, when `delay_ms` is set.
- The worker keeps the latest one per job in imagen.previews (real
  PostgreSQL): shrunk to a small JPEG, at most one per interval (more are
  dropped, not queued), a job event saying so, the row gone when the job
  ends, readable by its owner only.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image

from imagen_tui.backends import registry
from imagen_tui.backends.base import Preview, Request
from imagen_tui.backends.comfyui import ComfyBackend
from imagen_tui.backends.comfyui.client import parse_preview
from imagen_tui.core.events import JobEvent
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.jobs.progress import ProgressWriter
from imagen_tui.jobs.types import Job
from imagen_tui.jobs.worker import new_worker_id
from imagen_tui.limits import PREVIEW_MAX_SIDE
from tests.comfyui_fake import FakeComfy
from tests.helpers import acting, add_job, make_worker, running_worker, sql, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"
ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"


class Seen:
    """A progress callback that keeps what it was given."""

    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.previews: list[Preview] = []

    def __call__(self, fraction: float, preview: Preview | None = None) -> None:
        self.fractions.append(fraction)
        if preview is not None:
            self.previews.append(preview)


def jpeg(size: tuple[int, int] = (512, 512)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


# ------------------------------------------------------------------ frames


def test_the_recorded_binary_frames_parse_as_previews():
    legacy = (FIXTURES / "ws_binary_legacy_frame.bin").read_bytes()
    parsed = parse_preview(legacy)
    assert parsed is not None and parsed[0] is None and parsed[2] == "image/png"
    assert parsed[1].startswith(b"\x89PNG")
    with_meta = (FIXTURES / "ws_binary_with_metadata_frame.bin").read_bytes()
    parsed = parse_preview(with_meta)
    assert parsed is not None
    assert parsed[0] == "fd5d542d-a261-4f75-b071-9ca08d1e12ea"  # the recorded prompt
    assert parsed[2] == "image/png" and parsed[1].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00\x00\x01",  # no format
        b"\x00\x00\x00\x01\x00\x00\x00\x07abc",  # unknown format
        b"\x00\x00\x00\x03\x00\x00\x00\x01\x31hello",  # type 3: text, not a preview
        b"\x00\x00\x00\x04\x00\x00\xff\xff{}",  # metadata longer than the frame
        b"\x00\x00\x00\x04\x00\x00\x00\x02{}img",  # no prompt id
        b"\x00\x00\x00\x04\x00\x00\x00\x05[1,2]img",  # not an object
    ],
)
def test_malformed_or_other_binary_frames_are_not_previews(frame):
    assert parse_preview(frame) is None


# ------------------------------------------------------------------ the ComfyUI adapter


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    server = FakeComfy().start()
    yield server
    server.stop()


def comfy(fake: FakeComfy) -> ComfyBackend:
    made = registry.create(
        "flux", {"type": "comfyui", "url": fake.url, "queue_timeout": 20.0, "run_timeout": 20.0}
    )
    assert isinstance(made, ComfyBackend)
    return made


def generate(made: ComfyBackend, seen: Seen, steps: int = 4, seed: int = 1) -> None:
    async def go() -> None:
        try:
            await made.generate(Request(prompt="x", seed=seed, steps=steps), seen)
        finally:
            await made.aclose()

    asyncio.run(go())


@pytest.mark.parametrize("metadata", [True, False], ids=["type4", "type1"])
def test_comfyui_previews_of_each_step_reach_the_progress_callback(fake, metadata):
    fake.scenario, fake.preview_method, fake.supports_metadata = "progress", "auto", metadata
    seen = Seen()
    made = comfy(fake)
    generate(made, seen, steps=4)
    assert fake.feature_flags == [{"supports_preview_metadata": True}]  # advertised
    assert [(p.step, p.total) for p in seen.previews] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p.mime_type == "image/jpeg" and p.image[:2] == b"\xff\xd8" for p in seen.previews)
    assert made.session.previews_seen == 4
    assert (made.session.server_features is not None) is metadata


def test_a_preview_for_another_prompt_id_is_ignored(fake):
    fake.scenario, fake.preview_method, fake.foreign_previews = "progress", "auto", True
    seen = Seen()
    generate(comfy(fake), seen, steps=3)
    assert fake.previews_sent == 6  # 3 of ours, 3 naming another prompt
    assert [p.step for p in seen.previews] == [1, 2, 3]


def test_a_server_without_preview_method_sends_none(fake):
    fake.scenario = "progress"
    seen = Seen()
    made = comfy(fake)
    generate(made, seen, steps=2)
    assert seen.fractions == [0.5, 1.0] and seen.previews == []
    assert made.session.previews_seen == 0


# ------------------------------------------------------------------ the mock


def test_the_mock_sends_its_picture_blurred_then_sharp_when_delayed():
    made = registry.create("mock", {"type": "mock", "delay_ms": 200})
    seen = Seen()
    asyncio.run(made.generate(Request(prompt="a fox", seed=3, steps=5), seen))
    assert [(p.step, p.total) for p in seen.previews] == [(i, 5) for i in range(1, 6)]
    pictures = [Image.open(io.BytesIO(p.image)) for p in seen.previews]
    assert all(p.format == "JPEG" and max(p.size) <= PREVIEW_MAX_SIDE for p in pictures)

    def detail(picture: Image.Image) -> float:  # sharper: neighbours differ more
        pixels = list(picture.convert("L").getdata())
        return sum(abs(a - b) for a, b in itertools.pairwise(pixels)) / len(pixels)

    assert detail(pictures[0]) < detail(pictures[-1])


def test_the_mock_sends_no_preview_without_a_delay():
    made = registry.create("mock", {"type": "mock"})
    seen = Seen()
    asyncio.run(made.generate(Request(prompt="a fox", seed=3, steps=5), seen))
    assert seen.previews == []


# ------------------------------------------------------------------ the worker and the table


@pytest.fixture
def mock_workbench(home, tmp_path) -> Workbench:
    path = home.write_config(
        f"output:\n  directory: {tmp_path / 'out'}\n"
        "backends:\n  mock:\n    type: mock\n    delay_ms: 1500\n"
    )
    return open_workbench(path)


def previews(db_url: str) -> list[tuple[Any, ...]]:
    return sql(db_url, "SELECT job_id, step, total, width, height, jpeg FROM imagen.previews")


def test_a_running_job_keeps_its_latest_preview_small_and_loses_it_when_done(
    db_url, mock_workbench
):
    job_id = add_job(db_url, width=512, height=384, steps=10)
    events: list[JobEvent] = []

    async def scenario() -> None:
        listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        await listener.execute("LISTEN imagen_job_events")

        async def listen() -> None:
            async for note in listener.notifies():
                event = JobEvent.parse(note.payload)
                assert event is not None
                events.append(event)

        task = asyncio.create_task(listen())
        worker = make_worker(db_url, mock_workbench)
        async with running_worker(worker):
            await wait_for(lambda: bool(previews(db_url)), what="a preview row")
            [(job, step, total, width, height, data)] = previews(db_url)
            assert job == job_id and total == 10 and 1 <= step <= 10
            picture = Image.open(io.BytesIO(bytes(data)))
            assert picture.format == "JPEG" and picture.size == (width, height) == (256, 192)
            done = "SELECT 1 FROM imagen.jobs WHERE status = 'done'"
            await wait_for(lambda: bool(sql(db_url, done)), what="the job done")
        task.cancel()
        await listener.close()

    asyncio.run(scenario())
    assert previews(db_url) == []  # gone with the run
    noted = [e for e in events if e.preview is not None]
    assert noted and all(e.id == job_id and e.status == "running" for e in noted)
    assert noted[0].preview is not None and noted[0].preview.width == 256
    # At most two a second: 1.5 s of rendering, 10 previews offered.
    assert len(noted) <= 4


def claimed(db_url: str, queue: PgQueue) -> Job:
    add_job(db_url)

    async def claim() -> Job:
        job = await queue.claim([], True)
        assert job is not None
        return job

    return asyncio.run(claim())


def test_previews_faster_than_the_throttle_are_dropped_not_queued(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)
    picture = jpeg()

    async def scenario() -> ProgressWriter:
        writer = ProgressWriter(queue, job, interval=0.05, preview_interval=30.0)

        # From a backend's thread, as fast as it can: one is taken, the rest dropped.
        def send() -> None:
            for i in range(1, 51):
                writer.report(i / 50, Preview(picture, step=i, total=50))

        sender = threading.Thread(target=send)
        sender.start()
        await asyncio.to_thread(sender.join)
        await wait_for(lambda: writer.previews_written == 1, what="the first preview written")
        await writer.close()
        await queue.close()
        return writer

    writer = asyncio.run(scenario())
    assert (writer.previews_taken, writer.previews_dropped) == (1, 49)
    [(job_id, step, total, *_)] = previews(db_url)
    assert (job_id, step, total) == (job.id, 1, 50)


def test_after_the_interval_the_next_preview_replaces_the_last(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)

    async def scenario() -> ProgressWriter:
        writer = ProgressWriter(queue, job, interval=0.05, preview_interval=0.2)
        writer.report(0.1, Preview(jpeg(), step=1, total=10))
        await wait_for(lambda: writer.previews_written == 1, what="the first preview")
        await asyncio.sleep(0.25)  # the throttle's interval: the point of this test
        writer.report(0.2, Preview(jpeg((64, 32)), step=2, total=10))
        await wait_for(lambda: writer.previews_written == 2, what="the second preview")
        await writer.close()
        await queue.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.previews_dropped == 0
    assert [row[1:5] for row in previews(db_url)] == [(2, 10, 64, 32)]


def test_an_unreadable_preview_is_dropped_and_the_job_goes_on(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)

    async def scenario() -> ProgressWriter:
        writer = ProgressWriter(queue, job)
        writer.report(0.1, Preview(b"\xff\xd8 not really", step=1, total=10))
        await writer.close()
        await queue.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.previews_taken == 1 and writer.previews_written == 0
    assert previews(db_url) == []


@pytest.mark.parametrize("end", ["done", "failed", "canceled", "pending"])
def test_the_preview_row_goes_when_the_job_stops_running(db_url, end):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)

    async def keep() -> None:
        writer = ProgressWriter(queue, job)
        writer.report(0.5, Preview(jpeg(), step=5, total=10))
        await wait_for(lambda: writer.previews_written == 1, what="the preview")
        await writer.close()
        await queue.close()

    asyncio.run(keep())
    assert len(previews(db_url)) == 1
    # However it ends: a result, a failure, a cancel, a rescue or release (pending).
    extra = ", image_id = NULL" if end == "done" else ""
    sql(
        db_url,
        f"UPDATE imagen.jobs SET status = %s, lease_id = NULL, lease_expires_at = NULL{extra} "
        "WHERE id = %s",
        (end, job.id),
    )
    assert previews(db_url) == []


def test_no_preview_is_kept_for_a_job_the_claim_no_longer_holds(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)
    sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job.id,))

    async def keep() -> bool:
        from imagen_tui.jobs.types import PreviewImage

        try:
            return await queue.preview(job, PreviewImage(jpeg((8, 8)), 8, 8, 1, 2))
        finally:
            await queue.close()

    assert asyncio.run(keep()) is False
    assert previews(db_url) == []


def test_only_the_jobs_owner_reads_its_preview(db_url, api):
    queue = PgQueue(db_url, new_worker_id())
    with acting(api, ALICE):
        api.execute("INSERT INTO imagen.jobs (prompt) VALUES ('fox')")
    job = asyncio.run(queue.claim([], True))
    assert job is not None

    async def keep() -> None:
        from imagen_tui.jobs.types import PreviewImage

        try:
            assert await queue.preview(job, PreviewImage(jpeg((8, 8)), 8, 8, 1, 2))
        finally:
            await queue.close()

    asyncio.run(keep())
    query = "SELECT job_id FROM imagen.previews"
    with acting(api, ALICE):
        assert api.execute(query).fetchall() == [(job.id,)]
    with acting(api, BOB):
        assert api.execute(query).fetchall() == []
    with acting(api, ALICE), pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.execute("UPDATE imagen.previews SET step = 2")
    # Alice cancels her running job: its preview goes, though she may not delete it.
    with acting(api, ALICE):
        api.execute("UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (job.id,))
    assert previews(db_url) == []


def test_the_preview_event_is_small_and_names_the_job(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)

    async def scenario() -> str:
        from imagen_tui.jobs.types import PreviewImage

        listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        await listener.execute("LISTEN imagen_job_events")
        data = jpeg((256, 256))
        assert await queue.preview(job, PreviewImage(data, 256, 256, 3, 20))
        await queue.close()
        async for note in listener.notifies(timeout=5, stop_after=1):
            await listener.close()
            return note.payload
        raise AssertionError("no event")

    payload = asyncio.run(scenario())
    assert len(payload) < 300
    assert json.loads(payload)["preview"]["width"] == 256
    event = JobEvent.parse(payload)
    assert event is not None and event.id == job.id and event.preview is not None
    assert (event.preview.step, event.preview.total, event.preview.height) == (3, 20, 256)


# ------------------------------------------------------------------ imagen backends


def preview_line(fake: FakeComfy) -> str:
    probed = registry.details({"type": "comfyui", "url": fake.url})
    return next(line for line in probed.lines if line.startswith("previews: "))


def test_the_probe_says_how_to_turn_previews_on_when_the_server_sends_none(home, fake):
    line = preview_line(fake)
    assert (
        line == "previews: off (start ComfyUI with --preview-method auto to watch renders appear)"
    )


def test_the_probe_reads_the_servers_preview_method(home, fake):
    fake.preview_method = "taesd"
    assert preview_line(fake) == "previews: on (--preview-method taesd)"


def test_the_probe_says_what_the_last_run_showed(home, fake):
    fake.scenario, fake.preview_method = "progress", "auto"
    generate(comfy(fake), Seen(), steps=2)
    fake.preview_method = None  # started by a launcher whose argv says nothing
    line = preview_line(fake)
    assert line.startswith("previews: on (seen on the last run, ")
    generate(comfy(fake), Seen(), steps=2, seed=9)  # no previews this time
    assert preview_line(fake).startswith("previews: off (none on the last run, ")


def test_a_preview_after_the_run_ended_is_not_kept(db_url):
    queue = PgQueue(db_url, new_worker_id())
    job = claimed(db_url, queue)

    async def scenario() -> ProgressWriter:
        writer = ProgressWriter(queue, job)
        await writer.close()  # the generation returned; a late frame comes in
        writer.report(1.0, Preview(jpeg(), step=10, total=10))
        await queue.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.previews_taken == 0
