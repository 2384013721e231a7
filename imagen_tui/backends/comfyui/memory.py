"""GPU memory on a shared card: what ComfyUI can use, Ollama's idle models, `/free`.

The worker (`jobs.gpu`) asks these before it claims a ComfyUI job; nothing
here decides when. Every answer from outside is untrusted: bodies are capped
(`MEMORY_BODY_BYTES`), each call ends within `MEMORY_CALL_S`, and a reply of
the wrong shape is an error naming the server, never a guess.

What ComfyUI can use is the device's free memory plus what ComfyUI itself
already holds: `/system_stats` reports per device `vram_free` (the driver's
free memory plus torch's reserved-but-unused) and `torch_vram_total` /
`torch_vram_free` (what torch reserved, and the unused part of it). So

    usable = vram_free - torch_vram_free + torch_vram_total

counts FLUX as usable once ComfyUI has it loaded (the next job reuses it),
while memory that Ollama or F5-TTS hold is not. A server too old to report
the torch figures gives `vram_free` alone.

Ollama's `/api/ps` lists the models it holds, with `expires_at` (when it
unloads each by itself: the end of its last request plus its keep-alive).
It does not say whether a model is answering a request right now, so a
model counts as idle only when its last request ended at least
`OLLAMA_IDLE_S` ago by that clock: `expires_at <= now + keep_alive - OLLAMA_IDLE_S`.
A model whose `expires_at` lies further out than `keep_alive` (loaded with a
longer or a negative keep-alive, i.e. pinned) is never unloaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from imagen_tui.backends.http import HttpClient, HttpError
from imagen_tui.errors import GenerationError
from imagen_tui.text import one_line

GIB = 2**30
MEMORY_BODY_BYTES = 256 * 2**10  # /system_stats and /api/ps answers are ~1 KiB
MEMORY_CALL_S = 5.0  # one memory call, its retry included
OLLAMA_IDLE_S = 30.0  # an Ollama model unused for this long counts as idle
MAX_OLLAMA_MODELS = 32  # at most this many unload requests per pass
_TIMEOUT = httpx.Timeout(MEMORY_CALL_S, connect=2.0)


@dataclass(frozen=True)
class Vram:
    """One reading of the first device of a ComfyUI server, in bytes."""

    usable: int  # free on the device plus what ComfyUI already holds
    total: int
    gpu: bool  # False: ComfyUI runs on the CPU (no VRAM to share)

    @property
    def usable_gb(self) -> float:
        return self.usable / GIB

    @property
    def total_gb(self) -> float:
        return self.total / GIB


def _number(device: Mapping[str, Any], key: str) -> int | None:
    value = device.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(int(value), 0)


def vram_of(name: str, stats: Any) -> Vram:
    """The reading in a `/system_stats` body; GenerationError when it has none."""
    devices = stats.get("devices") if isinstance(stats, Mapping) else None
    if not isinstance(devices, list) or not devices or not isinstance(devices[0], Mapping):
        raise GenerationError(f"{name}: /system_stats lists no device", transient=True)
    device = devices[0]
    free, total = _number(device, "vram_free"), _number(device, "vram_total")
    if free is None or total is None:
        raise GenerationError(
            f"{name}: /system_stats has no vram_free/vram_total figures", transient=True
        )
    torch_total, torch_free = (
        _number(device, "torch_vram_total"),
        _number(device, "torch_vram_free"),
    )
    usable = free
    if torch_total is not None and torch_free is not None:
        usable = free - min(torch_free, free) + torch_total
    return Vram(usable=min(usable, total), total=total, gpu=device.get("type") != "cpu")


async def read_vram(name: str, http: HttpClient) -> Vram:
    """`GET /system_stats`: the first device's memory (GenerationError when unreadable)."""
    response = await http.request(
        "GET",
        "/system_stats",
        billable=False,
        timeout=_TIMEOUT,
        max_bytes=MEMORY_BODY_BYTES,
        deadline_s=MEMORY_CALL_S,
    )
    try:
        body = response.json()
    except ValueError:
        raise GenerationError(f"{name}: /system_stats is not JSON", transient=True) from None
    return vram_of(name, body)


async def free_models(http: HttpClient) -> None:
    """`POST /free`: ComfyUI unloads its models and frees its cached memory
    (after the prompt it is running, if any)."""
    await http.request(
        "POST",
        "/free",
        json={"unload_models": True, "free_memory": True},
        billable=False,
        timeout=_TIMEOUT,
        max_bytes=MEMORY_BODY_BYTES,
        deadline_s=MEMORY_CALL_S,
    )


def _expires(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python parses at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def idle_models(body: Any, keep_alive_s: float, now: datetime) -> list[str]:
    """The names in an `/api/ps` body whose last request ended OLLAMA_IDLE_S ago or more."""
    models = body.get("models") if isinstance(body, Mapping) else None
    if not isinstance(models, list):
        return []
    latest = now + timedelta(seconds=keep_alive_s - OLLAMA_IDLE_S)
    idle: list[str] = []
    for model in models[:MAX_OLLAMA_MODELS]:
        if not isinstance(model, Mapping):
            continue
        name = model.get("model") or model.get("name")
        expires = _expires(model.get("expires_at"))
        if not isinstance(name, str) or not name or len(name) > 200 or expires is None:
            continue
        if expires <= latest:
            idle.append(name)
    return idle


class Ollama:
    """The Ollama server that shares the GPU: list its models, unload the idle ones."""

    def __init__(self, url: str, keep_alive_s: float) -> None:
        self.url = url.rstrip("/")
        self.keep_alive_s = keep_alive_s
        self.http = HttpClient(
            name=f"ollama {self.url}",
            base_url=self.url,
            timeout=_TIMEOUT,
            max_bytes=MEMORY_BODY_BYTES,
            deadline_s=MEMORY_CALL_S,
        )

    async def unload_idle(self) -> list[str]:
        """Ask Ollama to unload each idle model (`keep_alive: 0`); the names asked.

        Raises GenerationError (one line, naming the server) when it cannot be reached.
        """
        response = await self.http.request("GET", "/api/ps", billable=False)
        try:
            body = response.json()
        except ValueError:
            raise GenerationError(f"ollama {self.url}: /api/ps is not JSON") from None
        names = idle_models(body, self.keep_alive_s, datetime.now(UTC))
        for name in names:
            try:
                await self.http.request(
                    "POST",
                    "/api/generate",
                    json={"model": name, "keep_alive": 0},
                    billable=False,
                )
            except HttpError as error:
                raise GenerationError(
                    one_line(f"ollama {self.url}: unloading {name} failed: {error}", 300)
                ) from None
        return names

    async def aclose(self) -> None:
        await self.http.aclose()
