"""The `mock` backend: deterministic offline images drawn with Pillow.

It is the default backend, so the whole workbench runs without a GPU or a
network. This package holds:

- `MOCK_TYPE`, the registry entry (config options and constructor);
- `MockBackend`, the backend instance (`generate` / `aclose`, and
  `generate_here`: the same image in the calling thread, no event loop);
- `render` (in `render.py`, re-exported here), the pure function that turns a
  prompt, size, steps and seed into PNG bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from imagen_tui.backends.base import Preview, Progress, Request, Result, random_seed
from imagen_tui.backends.mock.render import MODEL_NAME, preview_jpeg, render, sketch
from imagen_tui.backends.registry import BackendType, Option
from imagen_tui.errors import GenerationError

__all__ = ["DEFAULT_MODEL", "DEFAULT_STEPS", "MOCK_TYPE", "MockBackend", "render"]

DEFAULT_MODEL = MODEL_NAME
DEFAULT_STEPS = 20
MAX_TICKS = 50  # a delay is spent in at most this many steps, each reporting progress


# --------------------------------------------------------------------------
# The backend


class MockBackend:
    """A backend instance that draws its images locally with `render`."""

    type_name = "mock"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.model: str = options.get("model") or DEFAULT_MODEL
        self.delay_ms: int = options.get("delay_ms") or 0
        self.delay_blocks: bool = options.get("delay_blocks") or False
        self.fail_if_prompt_contains: str | None = options.get("fail_if_prompt_contains")

    @property
    def renders_here(self) -> bool:
        """Without a simulated delay: the drawing is all there is. A delay stands
        for a remote GPU's wait or an uninterruptible native call, which the event
        loop path handles (and its tests exercise)."""
        return self.delay_ms == 0

    def generate_here(self, request: Request, progress: Progress | None = None) -> Result:
        """`generate` in this thread, with no event loop (see `renders_here`)."""
        if not self.renders_here:
            raise RuntimeError(f"{self.name}: a simulated delay needs the event loop")
        seed, steps = self._begin(request)
        png = self._draw(request, steps, seed, progress, threading.Event())
        return self._result(png, seed, steps)

    def _begin(self, request: Request) -> tuple[int, int]:
        """The seed and steps of this request; GenerationError for a marked prompt."""
        marker = self.fail_if_prompt_contains
        if marker and marker in request.prompt:
            raise GenerationError(
                f"mock backend: prompt contains {marker!r} (fail_if_prompt_contains)"
            )
        seed = request.seed if request.seed is not None else random_seed()
        return seed, request.steps or DEFAULT_STEPS

    def _result(self, png: bytes, seed: int, steps: int) -> Result:
        return Result(
            image=png,
            mime_type="image/png",
            model=self.model,
            seed=seed,
            steps=steps,
            latency_ms=None,
            cost_usd=Decimal(0),
        )

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        import asyncio  # not at the top: `imagen generate` may render here, loop-free

        from imagen_tui.backends.blocking import run_blocking

        seed, steps = self._begin(request)
        if self.delay_ms > 0 and not self.delay_blocks:
            # Simulated GPU time, reported step by step like a sampler, each step with
            # a preview: the picture, blurred, then sharper at each step.
            ticks = min(steps, MAX_TICKS)
            picture = None
            if progress is not None:
                picture = await run_blocking(
                    sketch, request.prompt, request.negative_prompt, request.width,
                    request.height, steps, seed,
                )  # fmt: skip
            for tick in range(1, ticks + 1):
                await asyncio.sleep(self.delay_ms / 1000 / ticks)
                if progress is not None and picture is not None:
                    jpeg = await run_blocking(preview_jpeg, picture, tick / ticks)
                    progress(tick / ticks, Preview(jpeg, "image/jpeg", tick, ticks))
        # In its own daemon thread, not asyncio.to_thread: a cancelled generation
        # (Ctrl-C, a worker's forced stop) returns at once instead of waiting for it.
        abandoned = threading.Event()
        try:
            png = await run_blocking(self._draw, request, steps, seed, progress, abandoned)
        except asyncio.CancelledError:
            abandoned.set()  # the thread stops after its current tick
            raise
        return self._result(png, seed, steps)

    def _draw(
        self,
        request: Request,
        steps: int,
        seed: int,
        progress: Progress | None,
        abandoned: threading.Event,
    ) -> bytes:
        """The blocking part of `generate`, in a `run_blocking` thread (or, with
        no delay, all of `generate_here`, in the caller's): `render`.

        With `delay_blocks`, `delay_ms` is spent here first, in ticks of
        `time.sleep` that nothing interrupts, like a GPU library call, with
        progress reported after each tick. Once the generation is cancelled
        (`abandoned`), the thread ends after its current tick: no more progress
        and no image (run_blocking drops whatever it returns).
        """
        if self.delay_ms > 0 and self.delay_blocks:
            ticks = min(steps, MAX_TICKS)
            picture = None
            if progress is not None:
                picture = sketch(
                    request.prompt, request.negative_prompt, request.width, request.height,
                    steps, seed,
                )  # fmt: skip
            for tick in range(1, ticks + 1):
                time.sleep(self.delay_ms / 1000 / ticks)
                if abandoned.is_set():
                    return b""
                if progress is not None and picture is not None:
                    jpeg = preview_jpeg(picture, tick / ticks)
                    progress(tick / ticks, Preview(jpeg, "image/jpeg", tick, ticks))
        return render(
            request.prompt,
            request.negative_prompt,
            request.width,
            request.height,
            steps,
            seed,
        )

    async def aclose(self) -> None:
        """Nothing to release: the mock holds no connections or devices."""


MOCK_TYPE = BackendType(
    name="mock",
    summary="Deterministic offline images drawn with Pillow (no GPU, no network)",
    options=(
        Option("model", str, default=DEFAULT_MODEL, help="model name recorded in metadata"),
        Option(
            "delay_ms",
            int,
            default=0,
            minimum=0,
            maximum=600_000,
            help="simulated GPU time per image, reported step by step with a preview each",
        ),
        Option(
            "delay_blocks",
            bool,
            default=False,
            help="spend delay_ms in a thread, in sleeps nothing interrupts, like a GPU call "
            "(to test that Ctrl-C and worker stops still work)",
        ),
        Option(
            "fail_if_prompt_contains",
            str,
            default=None,
            help="fail any generation whose prompt contains this text (for testing error handling)",
        ),
    ),
    factory=MockBackend,
    default_model=DEFAULT_MODEL,
)
