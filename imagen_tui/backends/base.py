"""What every backend adapter speaks: Request in, Result out.

A backend instance is built from one `backends.<name>` block of the config by
the constructor its `type` names in the registry (see `registry.py`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from imagen_tui.limits import DEFAULT_SIZE, MAX_SEED, RANDOM_SEED_BOUND

__all__ = ["MAX_SEED", "Backend", "Progress", "Request", "Result", "random_seed"]


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND)


@dataclass(frozen=True)
class Request:
    """One image to make. `prompt` is final: any style preset is already applied."""

    prompt: str
    negative_prompt: str = ""
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    steps: int | None = None  # None: the backend's own default
    seed: int | None = None  # None: the backend picks one and reports it
    style: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One image made, with what a user needs to reproduce and account for it."""

    image: bytes
    mime_type: str
    model: str
    seed: int  # the seed actually used
    steps: int | None = None
    latency_ms: float | None = None  # None: the pipeline records its own wall time
    cost_usd: float | None = None  # estimate; 0.0 for local backends
    extra: Mapping[str, Any] = field(default_factory=dict)


# Called by a backend with the fraction done (0..1) as a generation advances;
# it may be called from any thread and must return at once.
Progress = Callable[[float], None]


@runtime_checkable
class Backend(Protocol):
    """A configured backend instance."""

    name: str  # the instance name from the config, e.g. "flux-local"
    type_name: str  # the registry type, e.g. "comfyui"
    model: str

    async def generate(self, request: Request, progress: Progress | None = None) -> Result: ...

    async def aclose(self) -> None: ...
