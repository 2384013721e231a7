"""The shared generate path: what is left on disk when a run does not finish."""

from __future__ import annotations

import asyncio
import threading

import pytest

from imagen_tui.backends.base import Progress, RendersHere, Request, Result
from imagen_tui.core import pipeline
from imagen_tui.core.pipeline import plan, run
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import GenerationError, InputError


@pytest.fixture
def planned(home):
    workbench = open_workbench()
    return workbench, plan(workbench, RequestSpec("a red fox", width=64, height=64, seed=1))


def test_an_unreadable_image_for_the_thumbnail_leaves_no_files(planned, monkeypatch):
    workbench, job = planned

    def broken(_image: bytes) -> bytes:
        raise OSError("cannot identify image file")

    monkeypatch.setattr(pipeline, "make_thumbnail", broken)
    with pytest.raises(GenerationError, match="returned an unreadable image"):
        asyncio.run(run(job, workbench.backend(job.backend), thumbnail=True))
    assert not [p for p in job.directory.rglob("*") if p.is_file()]


def test_a_run_cancelled_while_its_files_are_written_removes_them(planned, monkeypatch):
    workbench, job = planned
    started, release = threading.Event(), threading.Event()
    real_write = pipeline.write_image

    def slow_write(*args, **kwargs):
        started.set()
        release.wait(10)  # the cancellation lands while this thread is writing
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_image", slow_write)

    async def scenario() -> None:
        task = asyncio.create_task(run(job, workbench.backend(job.backend), thumbnail=True))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert not [p for p in job.directory.rglob("*") if p.is_file()]


def test_a_finished_run_keeps_image_and_sidecar(planned):
    workbench, job = planned
    outcome = asyncio.run(run(job, workbench.backend(job.backend), thumbnail=True))
    assert outcome.path is not None and outcome.written is not None
    assert outcome.path.is_file() and outcome.written.sidecar is not None
    assert outcome.written.sidecar.is_file()
    assert outcome.thumbnail and outcome.thumbnail[:2] == b"\xff\xd8"  # a JPEG


def test_options_a_backend_does_not_understand_are_refused_when_planned(home):
    """Mock and ComfyUI use no request options: a job asking for some is refused at
    submit (generate and submit plan first), naming the keys, never silently ignored."""
    workbench = open_workbench()
    spec = RequestSpec("a red fox", width=64, height=64, options={"cfg": 3.5, "sampler": "x"})
    with pytest.raises(InputError) as caught:
        plan(workbench, spec)
    assert (caught.value.field, caught.value.message) == (
        "options",
        "cfg, sampler: not an option a job may set on a mock backend; it takes none",
    )
    assert plan(workbench, RequestSpec("a red fox", options={})).request.options == {}


def test_cloud_backends_pass_the_options_a_job_may_set(home, monkeypatch):
    home.write_config("backends:\n  flux:\n    type: replicate\n    api_token_env: SOME_TOKEN\n")
    monkeypatch.setenv("SOME_TOKEN", "r8_x")
    workbench = open_workbench(home.config_path)
    spec = RequestSpec("a fox", backend="flux", options={"go_fast": False})
    assert plan(workbench, spec).request.options == {"go_fast": False}


# --------------------------------------------------------------------------- render_here


class _HereBackend:
    """A backend that renders in the calling thread and returns what it is given."""

    name = "here"
    renders_here = True

    def __init__(self, answer: Result | Exception) -> None:
        self.answer = answer

    def generate_here(self, request: Request, progress: Progress | None = None) -> Result:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_render_here_writes_the_image_run_writes(planned, tmp_path):
    workbench, job = planned
    mock = workbench.backend(job.backend)
    looped = asyncio.run(run(job._replace(directory=tmp_path / "loop"), mock))
    assert isinstance(mock, RendersHere) and mock.renders_here  # the instant mock
    here = pipeline.render_here(job._replace(directory=tmp_path / "here"), mock)
    for outcome in (here, looped):
        assert outcome.path is not None and outcome.path.is_file()
        assert outcome.written.sidecar is not None and outcome.written.sidecar.is_file()
    assert here.sha256 == looped.sha256  # the same picture, seed 1
    assert here.record.keys() == looped.record.keys()
    assert {k: v for k, v in here.record.items() if k not in ("created_at", "latency_ms")} == {
        k: v for k, v in looped.record.items() if k not in ("created_at", "latency_ms")
    }


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (ValueError("bad palette"), "here: ValueError: bad palette"),
        (Result(b"", "image/png", "m", 1), "here: returned no usable image (0 bytes"),
        (
            Result(b"GIF89a", "image/gif", "m", 1),
            "returned no usable image (6 bytes of 'image/gif')",
        ),
    ],
    ids=["adapter-bug", "no-bytes", "unknown-type"],
)
def test_render_here_refuses_what_run_refuses_and_writes_nothing(planned, answer, message):
    _workbench, job = planned
    with pytest.raises(GenerationError) as refused:
        pipeline.render_here(job, _HereBackend(answer))
    assert message in str(refused.value)
    assert not [p for p in job.directory.rglob("*") if p.is_file()]
