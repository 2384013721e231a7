"""Sharing the GPU: a gate per ComfyUI instance, so the worker is a good neighbour
to Ollama and F5-TTS on the same card (docs/worker.md, "Sharing the GPU").

- `GpuGate.ready()`: may the worker claim a job for this instance now? It reads
  what ComfyUI can use (`/system_stats`: free VRAM plus what ComfyUI already
  holds, see `backends.comfyui.memory`); below the instance's
  `min_free_vram_gb` it asks Ollama (`ollama_url`) to unload its idle models,
  then waits with backoff: no reading until `retry_at`, and `note` says why
  ("waiting for GPU memory: 3.1 of 16.0 GB free").
- `GpuGate.out_of_memory()`: a job ran out of GPU memory; unload Ollama's idle
  models and hold the gate for a backoff (the worker hands the job back).
- `GpuGate.free_if_idle()`: after `free_after_idle_s` with no job for the
  instance, `POST /free` once, so the others get the memory back.

`GpuGates` holds the gates of one worker and answers the claim's question:
which of the served instances may it claim for right now.

Nothing here raises for a server that does not answer: an unreadable
`/system_stats` opens the gate (the job then fails or retries as any job on
an unreachable server does), a failed Ollama or `/free` call is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from imagen_tui.errors import GenerationError
from imagen_tui.text import one_line

if TYPE_CHECKING:
    from imagen_tui.backends.comfyui.memory import Vram

log = logging.getLogger("imagen.worker")

FRESH_S = 1.0  # a reading that opened the gate is trusted this long (one GET per second at most)
MAX_SHARE = 0.9  # a threshold above this share of the card is taken as this share


class IdleUnloader(Protocol):
    async def unload_idle(self) -> list[str]: ...


@runtime_checkable
class SharedGpu(Protocol):
    """What a backend on a shared GPU offers (the ComfyUI backend)."""

    name: str
    min_free_vram_gb: float
    free_after_idle_s: float
    ollama: IdleUnloader | None

    async def vram(self) -> Vram: ...

    async def free_memory(self) -> None: ...


@dataclass(frozen=True)
class GpuWait:
    """How long a short gate waits before it looks again: `first`, doubling up to `cap`."""

    first: float = 2.0
    cap: float = 30.0


DEFAULT_GPU_WAIT = GpuWait()


def waiting_note(usable_gb: float, total_gb: float) -> str:
    return f"waiting for GPU memory: {usable_gb:.1f} of {total_gb:.1f} GB free"


class GpuGate:
    """The gate of one ComfyUI instance (see the module docstring)."""

    def __init__(
        self,
        gpu: SharedGpu,
        wait: GpuWait = DEFAULT_GPU_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gpu = gpu
        self.name = gpu.name
        self.wait = wait
        self._clock = clock
        self.note: str | None = None  # why the gate is shut; None while open
        self.retry_at = float("-inf")  # shut until then (monotonic)
        self._backoff = wait.first
        self._fresh_until = float("-inf")
        self._busy = 0
        self._last_used = clock()
        self._freed = False
        self._unreadable = False  # logged once per outage
        self.frees = 0  # /free calls sent (a seam for tests and logs)

    @property
    def min_free_gb(self) -> float:
        return self.gpu.min_free_vram_gb

    # ----------------------------------------------------------- the claim's question

    async def ready(self) -> bool:
        """May the worker claim a job for this instance now? (see the module docstring)"""
        now = self._clock()
        if now < self.retry_at:
            return False
        if self.min_free_gb <= 0 or now < self._fresh_until:
            self._open()
            return True
        reading = await self._read()
        if reading is None or self._enough(reading):
            self._open()
            return True
        if await self._unload_ollama():
            reading = await self._read()
            if reading is None or self._enough(reading):
                self._open()
                return True
        self._hold(waiting_note(reading.usable_gb, reading.total_gb))
        return False

    def _enough(self, reading: Vram) -> bool:
        if not reading.gpu:
            return True  # ComfyUI on the CPU: no VRAM to share
        return reading.usable_gb >= min(self.min_free_gb, MAX_SHARE * reading.total_gb)

    async def _read(self) -> Vram | None:
        try:
            reading = await self.gpu.vram()
        except GenerationError as error:
            if not self._unreadable:
                log.warning(
                    "%s: cannot read free GPU memory; not waiting for it: %s", self.name, error
                )
            self._unreadable = True
            return None
        if self._unreadable:
            log.info("%s: free GPU memory readable again", self.name)
        self._unreadable = False
        return reading

    def _open(self) -> None:
        if self.note is not None:
            log.info("%s: GPU memory available again; claiming", self.name)
        self.note = None
        self._backoff = self.wait.first
        if self.min_free_gb > 0 and self._fresh_until < self._clock():
            self._fresh_until = self._clock() + FRESH_S

    def _hold(self, note: str) -> float:
        """Shut the gate for the next backoff; the seconds it stays shut."""
        if note != self.note:
            log.info("%s: %s; looking again in %.0f s", self.name, note, self._backoff)
        delay = self._backoff
        self.note = note
        self.retry_at = self._clock() + delay
        self._fresh_until = float("-inf")
        self._backoff = min(self._backoff * 2, self.wait.cap)
        return delay

    async def _unload_ollama(self) -> list[str]:
        ollama = self.gpu.ollama
        if ollama is None:
            return []
        try:
            names = await ollama.unload_idle()
        except GenerationError as error:
            log.warning("%s: could not unload Ollama's idle models: %s", self.name, error)
            return []
        if names:
            log.info("%s: asked Ollama to unload %s", self.name, one_line(", ".join(names), 300))
        return names

    async def out_of_memory(self) -> float:
        """A job for this instance ran out of GPU memory: unload Ollama's idle models,
        shut the gate for a backoff; the seconds it stays shut."""
        await self._unload_ollama()
        return self._hold("waiting for GPU memory: the last job ran out of it")

    # ----------------------------------------------------------- idle

    def started(self) -> None:
        self._busy += 1
        self._freed = False

    def finished(self) -> None:
        self._busy = max(self._busy - 1, 0)
        self._last_used = self._clock()

    async def free_if_idle(self) -> float | None:
        """`POST /free` once after `free_after_idle_s` with no job; seconds until it is
        due (None: nothing to do until a job runs)."""
        idle_s = self.gpu.free_after_idle_s
        if idle_s <= 0 or self._freed or self._busy:
            return None
        due = self._last_used + idle_s - self._clock()
        if due > 0:
            return due
        self._freed = True
        self._fresh_until = float("-inf")  # the next claim reads the memory again
        try:
            await self.gpu.free_memory()
        except GenerationError as error:
            log.warning("%s: could not ask ComfyUI to free its models: %s", self.name, error)
            return None
        self.frees += 1
        log.info(
            "%s: no job for %g s; asked ComfyUI to unload its models (the next job reloads them)",
            self.name,
            idle_s,
        )
        return None


class GpuGates:
    """The gates of one worker, by instance name."""

    def __init__(self, gates: Iterable[GpuGate] = ()) -> None:
        self.gates: dict[str, GpuGate] = {gate.name: gate for gate in gates}

    @classmethod
    def of(cls, backends: Mapping[str, object], wait: GpuWait = DEFAULT_GPU_WAIT) -> GpuGates:
        """A gate for each backend on a shared GPU (the others need none)."""
        return cls(
            GpuGate(backend, wait)
            for backend in backends.values()
            if isinstance(backend, SharedGpu)
        )

    def __bool__(self) -> bool:
        return bool(self.gates)

    def get(self, name: str) -> GpuGate | None:
        return self.gates.get(name)

    async def claimable(self, served: Sequence[str]) -> list[str] | None:
        """The served instances the worker may claim for now; None: all of them."""
        shut = {name for name, gate in self.gates.items() if not await gate.ready()}
        if not shut:
            return None
        return [name for name in served if name not in shut]

    @property
    def note(self) -> str | None:
        """What the presence row says while any gate is shut."""
        notes = [(name, gate.note) for name, gate in sorted(self.gates.items()) if gate.note]
        if not notes:
            return None
        if len(notes) == 1:
            return notes[0][1]
        return "; ".join(f"{name}: {note}" for name, note in notes)

    def retry_in(self) -> float | None:
        """Seconds until the first shut gate looks again; None when none is shut."""
        now = time.monotonic()
        waits = [gate.retry_at - now for gate in self.gates.values() if gate.note]
        return max(min(waits), 0.01) if waits else None

    async def free_idle(self) -> float | None:
        """Send `/free` where it is due; seconds until the next one may be (None: none)."""
        dues = [due for gate in self.gates.values() if (due := await gate.free_if_idle())]
        return min(dues) if dues else None
