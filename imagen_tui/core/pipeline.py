"""The one generate path shared by the CLI, the worker and the TUI.

plan()   what the user asked for (a RequestSpec) -> a checked Plan: backend
         chosen and configured, style applied, size, steps and seed settled,
         output directory writable. Every input error is raised here, before
         anything runs.
run()    Plan -> backend -> image file + metadata -> Outcome
render_here()
         the same for a backend that renders in the calling thread
         (`RendersHere`, the mock): no event loop and no threads, so a
         one-shot `imagen generate` never imports asyncio.

The workbench (config, presets, backends) comes from `core.workbench`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from imagen_tui import __version__
from imagen_tui.backends.base import (
    Backend,
    Progress,
    RendersHere,
    Request,
    Result,
    random_seed,
)
from imagen_tui.core.metadata import parameters_text
from imagen_tui.core.naming import render_name
from imagen_tui.core.output import EXTENSIONS, Written, write_image
from imagen_tui.core.prompt import Style, pick_style
from imagen_tui.core.spec import RequestSpec, try_seeds
from imagen_tui.core.thumbnails import make_thumbnail
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import GenerationError, ImagenError, InputError
from imagen_tui.limits import DEFAULT_SIZE, MAX_IMAGE_COST_USD

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)


class Plan(NamedTuple):
    """A checked, fully resolved request: everything `run` needs, nothing left to guess."""

    prompt: str  # the user's prompt, before the style
    style: Style | None
    backend: str  # instance name
    backend_type: str
    request: Request  # styled prompt, concrete size and seed
    directory: Path
    naming: str
    write_json: bool
    idx: int = 1
    series: int | None = None  # the queue's series id
    job: int | None = None  # the queue's job id
    # The time `{date}` and `{time}` name the files by; None: when the image is
    # written. A series passes its own creation time, so its folder never splits.
    named_at: datetime | None = None


class Outcome(NamedTuple):
    plan: Plan
    result: Result
    written: Written
    record: dict[str, Any]  # the metadata stored in the PNG and the sidecar
    sha256: str  # of the image bytes as returned by the backend
    thumbnail: bytes | None = None  # a small JPEG, when asked for

    @property
    def path(self) -> Path:
        return self.written.image


# A folder refusing a new file: the user's to fix, an input error (exit 2), not a fault.
_FOLDER_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})

_WRITABLE: set[Path] = set()  # directories a probe file was created in by this process


def check_directory(directory: Path) -> None:
    """Refuse an output directory that cannot be created or written, creating nothing.

    The deepest existing folder is probed by creating (and removing) a file:
    access checks say yes to root even where nothing can be created (/proc, a
    read-only mount). A folder that passed stays trusted for this process.
    """
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe in _WRITABLE:
        return
    if not probe.is_dir():
        raise InputError("out", f"{probe} is a file, not a directory; choose another directory")
    try:
        descriptor, name = tempfile.mkstemp(dir=probe, prefix=".imagen-probe-")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            "out", f"cannot write in {probe} ({reason}); choose a directory you can write to"
        ) from None
    os.close(descriptor)
    os.unlink(name)
    _WRITABLE.add(probe)


def _output_directory(workbench: Workbench, directory: str | Path | None) -> Path:
    if directory is None:
        chosen = workbench.config.output.directory
    elif not str(directory).strip():
        raise InputError("out", "is empty; name a directory, or leave it out for output.directory")
    else:
        chosen = Path(directory)
    chosen = chosen.expanduser().absolute()
    check_directory(chosen)
    return chosen


def plan(
    workbench: Workbench,
    spec: RequestSpec,
    *,
    idx: int = 1,
    series: int | None = None,
    job: int | None = None,
    named_at: datetime | None = None,
    directory: str | Path | None = None,
) -> Plan:
    """Check a RequestSpec against the workbench; raise InputError naming the field at fault."""
    spec = spec.checked()
    backend_name, block = workbench.backend_block(spec.backend)
    status = workbench.backend_status(backend_name)
    if status != "ok":
        raise InputError("backend", f"{backend_name} is {status}")
    style = pick_style(workbench.styles, spec.style) if spec.style else None  # no YAML read
    width, height = spec.size or (style.size if style and style.size else DEFAULT_SIZE)
    steps = spec.steps if spec.steps is not None else (style.steps if style else None)
    seed = random_seed() if spec.seed is None else spec.seed
    output = workbench.config.output
    if style:
        styled, negative = style.apply(spec.prompt, spec.negative_prompt)
    else:
        styled, negative = spec.prompt, spec.negative_prompt
    request = Request(
        prompt=styled,
        negative_prompt=negative.strip(),
        width=width,
        height=height,
        steps=steps,
        seed=seed,
        style=style.name if style else None,
        options=dict(spec.options),
    )
    workbench.check_request(backend_name, request)
    return Plan(
        prompt=spec.prompt,
        style=style,
        backend=backend_name,
        backend_type=str(block["type"]),
        request=request,
        directory=_output_directory(workbench, directory),
        naming=output.naming if series is None else output.series_naming,
        write_json=output.write_metadata_json,
        idx=idx,
        series=series,
        job=job,
        named_at=named_at,
    )


def plan_tries(
    workbench: Workbench,
    spec: RequestSpec,
    count: int,
    *,
    directory: str | Path | None = None,
) -> list[Plan]:
    """`count` tries of one prompt, each with its own seed: the given seed + i, or random."""
    return [
        plan(workbench, spec._replace(seed=seed), idx=i, directory=directory)
        for i, seed in enumerate(try_seeds(spec.seed, count), start=1)
    ]


def real_size(plan: Plan, result: Result) -> tuple[int, int]:
    """The image's pixel size: the backend's when it reports one, else the one asked for."""
    if result.width and result.height:
        return result.width, result.height
    return plan.request.width, plan.request.height


def build_record(plan: Plan, result: Result, created: datetime) -> dict[str, Any]:
    """The metadata of one image, as stored in its PNG `imagen` chunk and its sidecar.

    `width`/`height` are the image's real size; `requested_size` is recorded
    too when the backend could not honour the size asked for exactly.
    """
    request = plan.request
    width, height = real_size(plan, result)
    sized = {"requested_size": f"{request.width}x{request.height}"}
    return {
        "prompt": plan.prompt,
        "prompt_styled": request.prompt,
        "negative_prompt": request.negative_prompt,
        "style": request.style,
        "seed": result.seed,
        "width": width,
        "height": height,
        "size": f"{width}x{height}",
        **(sized if (width, height) != (request.width, request.height) else {}),
        "steps": result.steps,
        "options": dict(request.options),  # the job's own (allowlisted) inputs
        "backend": plan.backend,
        "backend_type": plan.backend_type,
        "model": result.model,
        "mime_type": result.mime_type,
        "latency_ms": round(result.latency_ms or 0.0, 1),
        "cost_usd": None if result.cost_usd is None else float(result.cost_usd),
        "idx": plan.idx,
        "series": plan.series,
        "job": plan.job,
        "created_at": created.isoformat(timespec="seconds"),
        "imagen_version": __version__,
    }


@contextlib.contextmanager
def _adapter_errors(name: str) -> Iterator[None]:
    """An adapter bug or a library error as a GenerationError naming the backend
    instance: reported, never a crash. ImagenError, cancellation and interrupts pass."""
    try:
        yield
    except ImagenError:
        raise
    except Exception as error:
        raise GenerationError(f"{name}: {type(error).__name__}: {error}") from error


def _checked(name: str, result: Result, started: float) -> Result:
    """Backend `name`'s result, refused when it holds no usable image; its latency
    (the pipeline's own wall time since `started` when it reported none that
    makes sense) and its cost (unpriced when out of range) made sane."""
    if not result.image or result.mime_type not in EXTENSIONS:
        raise GenerationError(
            f"{name}: returned no usable image ({len(result.image)} bytes of {result.mime_type!r})"
        )
    if result.latency_ms is None or not 0 <= result.latency_ms < _MAX_LATENCY_MS:
        result = result._replace(latency_ms=(time.perf_counter() - started) * 1000)
    if result.cost_usd is not None and not _sane_cost(result.cost_usd):
        # A figure derived from what a server reported (tokens): unpriced, never
        # a negative or absurd cost, nor a ledger row the database refuses.
        log.warning("%s: cost %s is out of range; recorded as unpriced", name, result.cost_usd)
        result = result._replace(cost_usd=None)
    return result


async def _call_backend(
    backend: Backend, request: Request, progress: Progress | None = None
) -> Result:
    started = time.perf_counter()
    with _adapter_errors(backend.name):
        result = await backend.generate(request, progress)
    return _checked(backend.name, result, started)


_MAX_LATENCY_MS = 86_400_000.0  # a day: anything else a backend reports is not a latency


def _sane_cost(cost: Decimal) -> bool:
    return cost.is_finite() and 0 <= cost <= MAX_IMAGE_COST_USD


def _write_files(plan: Plan, result: Result, files: _Files, journal: str | None) -> Written:
    """write_image for one outcome, its errors told in the user's terms."""
    try:
        return write_image(
            plan.directory,
            files.name,
            result.image,
            result.mime_type,
            text_chunks=files.chunks,
            sidecar=files.record if plan.write_json else None,
            journal=journal,
        )
    except ValueError as error:  # the bytes are not the image type the backend claimed
        raise GenerationError(f"{plan.backend}: returned a broken image: {error}") from error
    except OSError as error:  # disk full, permissions changed since planning, ...
        where = error.filename or plan.directory  # the folder or file that failed
        reason = error.strerror or str(error)
        if error.errno in _FOLDER_REFUSED:  # a folder under the output directory (a date folder)
            raise InputError(
                "out",
                f"cannot write in {where} ({reason}); make it writable or choose another directory",
            ) from error
        raise ImagenError(f"output: cannot write {where}: {reason}") from error


def _thumbnail_of(plan: Plan, image: bytes) -> bytes:
    try:
        return make_thumbnail(image)
    except (OSError, ValueError) as error:  # Pillow cannot decode what the backend sent
        raise GenerationError(f"{plan.backend}: returned an unreadable image: {error}") from error


class _Files(NamedTuple):
    """What is written for one result: its file name, PNG text chunks and record."""

    name: PurePosixPath
    chunks: dict[str, str]
    record: dict[str, Any]


def _files_for(plan: Plan, result: Result) -> _Files:
    created = datetime.now(UTC).astimezone()
    record = build_record(plan, result, created)
    width, height = real_size(plan, result)
    name = render_name(
        plan.naming,
        {
            "prompt": plan.prompt,
            "when": plan.named_at or created,
            # A backend that takes no seed: the planned one still tells tries apart.
            "seed": result.seed if result.seed is not None else plan.request.seed,
            "backend": plan.backend,
            "model": result.model,
            "width": width,
            "height": height,
            "idx": plan.idx,
            "series": plan.series,
            "style": plan.request.style or "",
        },
    )
    extra = {"Backend": plan.backend}
    if plan.request.style:
        extra["Style"] = plan.request.style
    if plan.request.options:
        extra["Options"] = json.dumps(dict(plan.request.options), sort_keys=True)
    chunks = {
        "parameters": parameters_text(
            plan.request.prompt,
            plan.request.negative_prompt,
            steps=result.steps,
            seed=result.seed,
            width=width,
            height=height,
            model=result.model,
            extra=extra,
        ),
        "imagen": json.dumps(record, ensure_ascii=False),
    }
    return _Files(name, chunks, record)


def _outcome(
    plan: Plan, result: Result, files: _Files, written: Written, thumbnail: bytes | None
) -> Outcome:
    return Outcome(
        plan=plan,
        result=result,
        written=written,
        record=files.record,
        sha256=hashlib.sha256(result.image).hexdigest(),
        thumbnail=thumbnail,
    )


def render_here(plan: Plan, backend: RendersHere, *, progress: Progress | None = None) -> Outcome:
    """`run` for a backend that renders in this thread (`backend.renders_here`):
    no event loop, no threads. A KeyboardInterrupt while the files are written
    leaves nothing behind (`output.write_image`)."""
    started = time.perf_counter()
    with _adapter_errors(backend.name):
        result = backend.generate_here(plan.request, progress)
    result = _checked(backend.name, result, started)
    files = _files_for(plan, result)
    written = _write_files(plan, result, files, None)
    return _outcome(plan, result, files, written, None)


async def _undo_write(writing: asyncio.Future[Written]) -> None:
    """Wait for a write still running in its thread, then remove what it wrote."""
    import asyncio

    try:
        written = await asyncio.shield(writing)
    except BaseException:
        return  # the write failed: write_image leaves nothing behind
    written.remove()


async def run(
    plan: Plan,
    backend: Backend,
    *,
    progress: Progress | None = None,
    thumbnail: bool = False,
    journal: str | None = None,
) -> Outcome:
    """Generate one planned image and write it with its metadata.

    `progress` receives the backend's fraction done; `thumbnail` also makes a
    small JPEG preview (for the database); `journal` keeps a hidden hard link
    named after it beside the image until the caller drops it (see
    `output.write_image`), so a crash before the image is recorded can be
    cleaned up later.
    """
    import asyncio  # here, not at the top: render_here's callers never load it

    result = await _call_backend(backend, plan.request, progress)
    files = _files_for(plan, result)
    # The files are written (waiting on the disk) while the preview is made (on the
    # CPU). Whatever stops the run after that, a failed preview or a cancellation
    # (a lost lease), waits for the write and removes its files: nothing half-done stays.
    writing = asyncio.ensure_future(asyncio.to_thread(_write_files, plan, result, files, journal))
    previewing = (
        asyncio.ensure_future(asyncio.to_thread(_thumbnail_of, plan, result.image))
        if thumbnail
        else None
    )
    try:
        written = await asyncio.shield(writing)
        preview = await previewing if previewing is not None else None
    except BaseException:
        if previewing is not None:
            previewing.cancel()  # its thread runs on; its result is dropped
            previewing.add_done_callback(lambda done: done.cancelled() or done.exception())
        await _undo_write(writing)
        raise
    return _outcome(plan, result, files, written, preview)
