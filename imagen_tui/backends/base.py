"""What every backend adapter speaks: Request in, Result out.

A backend instance is built from one `backends.<name>` block of the config by
the constructor its `type` names in the registry (see `registry.py`). A
backend that draws on this machine's CPU with nothing to wait for may also
render in the calling thread (`RendersHere`): `imagen generate` then starts
no event loop at all. `blocking.run_blocking` is how an adapter runs work it
cannot interrupt.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from imagen_tui.limits import DEFAULT_SIZE, RANDOM_SEED_BOUND


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND)


class Request(NamedTuple):
    """One image to make. `prompt` is final: any style preset is already applied."""

    prompt: str
    negative_prompt: str = ""
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    steps: int | None = None  # None: the backend's own default
    seed: int | None = None  # None: the backend picks one and reports it
    style: str | None = None
    options: Mapping[str, Any] = MappingProxyType({})


class Result(NamedTuple):
    """One image made, with what a user needs to reproduce and account for it."""

    image: bytes
    mime_type: str
    model: str
    seed: int | None  # the seed actually used; None: the backend takes none (OpenAI)
    steps: int | None = None
    latency_ms: float | None = None  # None: the pipeline records its own wall time
    cost_usd: Decimal | None = None  # estimate, exact; 0 for local backends, None: unknown
    extra: Mapping[str, Any] = MappingProxyType({})
    # The real pixel size when it differs from the one asked for (a backend that
    # only knows aspect ratios); None: the requested size.
    width: int | None = None
    height: int | None = None


class Preview(NamedTuple):
    """A picture of a generation in progress (a sampler's latent preview).

    `image` is an encoded JPEG or PNG as the backend got or drew it, any size;
    whoever keeps it bounds and re-encodes it. `step`/`total`: the sampler step
    it shows, when known.
    """

    image: bytes
    mime_type: str = "image/jpeg"
    step: int | None = None
    total: int | None = None


class Progress(Protocol):
    """Called by a backend with the fraction done (0..1) as a generation advances,
    and with a `Preview` when it has one. It may be called from any thread and
    must return at once (a receiver that is busy drops the preview)."""

    def __call__(self, fraction: float, preview: Preview | None = None) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A configured backend instance."""

    name: str  # the instance name from the config, e.g. "flux-local"
    type_name: str  # the registry type, e.g. "comfyui"
    model: str

    async def generate(self, request: Request, progress: Progress | None = None) -> Result: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class RendersHere(Protocol):
    """A backend that can also make its image in the calling thread, without an
    event loop: all its work is this machine's CPU (the mock). `renders_here`
    says whether this instance can (a mock that simulates a remote wait cannot);
    `generate_here` is `generate` run to the end in this thread, progress
    included, and interruptible by KeyboardInterrupt. Such a backend holds
    nothing `aclose` would release."""

    name: str

    @property
    def renders_here(self) -> bool: ...

    def generate_here(self, request: Request, progress: Progress | None = None) -> Result: ...
