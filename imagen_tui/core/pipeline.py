"""The one generate path shared by the CLI, the worker and the TUI.

open_workbench()  config + presets + backend blocks, all checked
plan()            what the user asked for (a Spec) -> a checked Plan;
                  every input error is raised here, before anything runs
run()             Plan -> backend -> image file + metadata -> Outcome
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from imagen_tui import __version__
from imagen_tui.backends import registry
from imagen_tui.backends.base import MAX_SEED, Backend, Progress, Request, Result, random_seed
from imagen_tui.config import Config, load_config
from imagen_tui.core.metadata import parameters_text
from imagen_tui.core.naming import check_template, render_name
from imagen_tui.core.output import EXTENSIONS, Written, write_image
from imagen_tui.core.prompt import Style, load_styles, pick_style
from imagen_tui.core.sizes import DEFAULT_SIZE, check_size
from imagen_tui.core.thumbnails import make_thumbnail
from imagen_tui.errors import GenerationError, ImagenError, InputError

MAX_COUNT = 10
MAX_STEPS = 500


@dataclass
class Workbench:
    """A checked configuration with the backend instances built on demand."""

    config: Config
    styles: dict[str, Style]
    backend_blocks: dict[str, dict[str, Any]]  # instance -> validated block
    _backends: dict[str, Backend] = field(default_factory=dict)

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = registry.create(name, self.backend_blocks[name])
        return self._backends[name]

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()


def open_workbench(config_path: str | Path | None = None) -> Workbench:
    """Load the config and check every block of it; raise ConfigError on the first fault."""
    config = load_config(config_path)
    blocks = {
        name: registry.validate_block(name, block, config.where)
        for name, block in config.backends.items()
    }
    check_template(config.output.naming, where=config.where(("output", "naming")))
    return Workbench(config=config, styles=load_styles(config), backend_blocks=blocks)


@dataclass(frozen=True)
class Spec:
    """What the user asked for, as typed: any field may be left to the defaults."""

    prompt: str
    negative: str = ""
    style: str | None = None
    size: tuple[int, int] | None = None
    steps: int | None = None
    seed: int | None = None
    backend: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A checked Spec for one image: everything `run` needs, nothing left to guess."""

    prompt: str  # the user's prompt, before the style
    style: Style | None
    backend: str  # instance name
    backend_type: str
    request: Request  # styled prompt, concrete size and seed
    directory: Path
    naming: str
    write_json: bool
    idx: int = 1
    series: str | None = None


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    result: Result
    written: Written
    record: dict[str, Any]  # the metadata stored in the PNG and the sidecar
    sha256: str  # of the image bytes as returned by the backend
    thumbnail: bytes | None = None  # a small JPEG, when asked for

    @property
    def path(self) -> Path:
        return self.written.image


def _check_directory(directory: Path) -> None:
    """Refuse an output directory that cannot be created or written, without creating it."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError("out", f"{probe} is a file, not a directory; choose another directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError("out", f"{probe} is not writable; choose a directory you can write to")


def clean_prompt(prompt: str) -> str:
    """The prompt without surrounding blanks; InputError when nothing is left."""
    prompt = prompt.strip()
    if not prompt:
        raise InputError("prompt", "the prompt is empty; say what the image should show")
    return prompt


def plan(
    workbench: Workbench,
    spec: Spec,
    *,
    idx: int = 1,
    series: str | None = None,
    directory: Path | None = None,
) -> Plan:
    """Check a Spec against the workbench; raise InputError naming the field at fault."""
    prompt = clean_prompt(spec.prompt)
    backend_name = spec.backend or workbench.config.default_backend
    block = workbench.backend_blocks.get(backend_name)
    if block is None:
        known = ", ".join(sorted(workbench.backend_blocks))
        raise InputError("backend", f"no backend named {backend_name!r}; configured: {known}")
    status = registry.status(block)
    if status != "ok":
        raise InputError("backend", f"{backend_name} is {status}")
    style = pick_style(workbench.styles, spec.style)
    width, height = spec.size or (style.size if style and style.size else DEFAULT_SIZE)
    check_size(width, height)
    steps = spec.steps if spec.steps is not None else (style.steps if style else None)
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise InputError("steps", f"{steps} is out of range; use 1 to {MAX_STEPS}")
    seed = random_seed() if spec.seed is None else spec.seed
    if not 0 <= seed <= MAX_SEED:
        raise InputError("seed", f"{seed} is out of range; use 0 to {MAX_SEED}")
    directory = (directory or workbench.config.output.directory).expanduser().absolute()
    _check_directory(directory)
    styled, negative = style.apply(prompt, spec.negative) if style else (prompt, spec.negative)
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
    return Plan(
        prompt=prompt,
        style=style,
        backend=backend_name,
        backend_type=block["type"],
        request=request,
        directory=directory,
        naming=workbench.config.output.naming,
        write_json=workbench.config.output.write_metadata_json,
        idx=idx,
        series=series,
    )


def plan_tries(
    workbench: Workbench,
    spec: Spec,
    count: int,
    *,
    series: str | None = None,
    directory: Path | None = None,
) -> list[Plan]:
    """N tries of one prompt, each with its own seed: the given seed + i, or random."""
    if not 1 <= count <= MAX_COUNT:
        raise InputError("count", f"{count} is out of range; use 1 to {MAX_COUNT}")
    plans = []
    for i in range(count):
        seed = None if spec.seed is None else spec.seed + i
        plans.append(
            plan(
                workbench,
                replace(spec, seed=seed),
                idx=i + 1,
                series=series,
                directory=directory,
            )
        )
    return plans


def build_record(plan: Plan, result: Result, created: datetime) -> dict[str, Any]:
    """The metadata of one image, as stored in its PNG `imagen` chunk and its sidecar."""
    request = plan.request
    return {
        "prompt": plan.prompt,
        "prompt_styled": request.prompt,
        "negative_prompt": request.negative_prompt,
        "style": request.style,
        "seed": result.seed,
        "width": request.width,
        "height": request.height,
        "size": f"{request.width}x{request.height}",
        "steps": result.steps,
        "backend": plan.backend,
        "backend_type": plan.backend_type,
        "model": result.model,
        "mime_type": result.mime_type,
        "latency_ms": round(result.latency_ms or 0.0, 1),
        "cost_usd": result.cost_usd,
        "idx": plan.idx,
        "series": plan.series,
        "created_at": created.isoformat(timespec="seconds"),
        "imagen_version": __version__,
    }


async def _call_backend(
    backend: Backend, request: Request, progress: Progress | None = None
) -> Result:
    started = time.perf_counter()
    try:
        result = await backend.generate(request, progress)
    except (ImagenError, asyncio.CancelledError):
        raise
    except Exception as error:  # an adapter bug or a library error: report, do not crash
        raise GenerationError(f"{backend.name}: {type(error).__name__}: {error}") from error
    if not result.image or result.mime_type not in EXTENSIONS:
        raise GenerationError(
            f"{backend.name}: returned no usable image ({len(result.image)} bytes of "
            f"{result.mime_type!r})"
        )
    if result.latency_ms is None:
        result = replace(result, latency_ms=(time.perf_counter() - started) * 1000)
    return result


def _write_files(
    plan: Plan, name: PurePosixPath, result: Result, chunks: dict[str, str], record: dict[str, Any]
) -> Written:
    """write_image for one outcome, its errors told in the user's terms."""
    try:
        return write_image(
            plan.directory,
            name,
            result.image,
            result.mime_type,
            text_chunks=chunks,
            sidecar=record if plan.write_json else None,
        )
    except ValueError as error:  # the bytes are not the image type the backend claimed
        raise GenerationError(f"{plan.backend}: returned a broken image: {error}") from error
    except OSError as error:  # disk full, permissions changed since planning, ...
        raise ImagenError(
            f"output: cannot write into {plan.directory}: {error.strerror or error}"
        ) from error


def _thumbnail_of(plan: Plan, image: bytes) -> bytes:
    try:
        return make_thumbnail(image)
    except (OSError, ValueError) as error:  # Pillow cannot decode what the backend sent
        raise GenerationError(f"{plan.backend}: returned an unreadable image: {error}") from error


async def _undo_write(writing: asyncio.Future[Written]) -> None:
    """Wait for a write still running in its thread, then remove what it wrote."""
    try:
        written = await asyncio.shield(writing)
    except BaseException:
        return  # the write failed: write_image leaves nothing behind
    for path in (written.image, written.sidecar):
        if path is not None:
            path.unlink(missing_ok=True)


async def run(
    plan: Plan,
    backend: Backend,
    *,
    progress: Progress | None = None,
    thumbnail: bool = False,
) -> Outcome:
    """Generate one planned image and write it with its metadata.

    `progress` receives the backend's fraction done; `thumbnail` also makes a
    small JPEG preview (for the database).
    """
    result = await _call_backend(backend, plan.request, progress)
    created = datetime.now(UTC).astimezone()
    record = build_record(plan, result, created)
    name = render_name(
        plan.naming,
        {
            "prompt": plan.prompt,
            "when": created,
            "seed": result.seed,
            "backend": plan.backend,
            "model": result.model,
            "width": plan.request.width,
            "height": plan.request.height,
            "idx": plan.idx,
            "series": plan.series or "",
            "style": plan.request.style or "",
        },
    )
    extra = {"Backend": plan.backend}
    if plan.request.style:
        extra["Style"] = plan.request.style
    chunks = {
        "parameters": parameters_text(
            plan.request.prompt,
            plan.request.negative_prompt,
            steps=result.steps,
            seed=result.seed,
            width=plan.request.width,
            height=plan.request.height,
            model=result.model,
            extra=extra,
        ),
        "imagen": json.dumps(record, ensure_ascii=False),
    }
    # The files are written (waiting on the disk) while the preview is made (on the
    # CPU). Whatever stops the run after that, a failed preview or a cancellation
    # (a lost lease), waits for the write and removes its files: nothing half-done stays.
    writing = asyncio.ensure_future(
        asyncio.to_thread(_write_files, plan, name, result, chunks, record)
    )
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
    return Outcome(
        plan=plan,
        result=result,
        written=written,
        record=record,
        sha256=hashlib.sha256(result.image).hexdigest(),
        thumbnail=preview,
    )
