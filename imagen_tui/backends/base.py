"""What every backend adapter speaks: Request in, Result out.

A backend instance is built from one `backends.<name>` block of the config by
the constructor its `type` names in the registry (see `registry.py`).
`run_blocking` is how an adapter runs work it cannot interrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from imagen_tui.limits import DEFAULT_SIZE, RANDOM_SEED_BOUND

P = ParamSpec("P")
T = TypeVar("T")

# While run_blocking waits, the event loop is woken this often (seconds); see there.
SIGNAL_CHECK_INTERVAL = 0.1


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
    seed: int | None  # the seed actually used; None: the backend takes none (OpenAI)
    steps: int | None = None
    latency_ms: float | None = None  # None: the pipeline records its own wall time
    cost_usd: Decimal | None = None  # estimate, exact; 0 for local backends, None: unknown
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The real pixel size when it differs from the one asked for (a backend that
    # only knows aspect ratios); None: the requested size.
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Preview:
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


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` in a fresh daemon thread and await its result.

    Backends use it for CPU- or driver-bound work that cannot be interrupted:
    drawing and encoding an image, a GPU or native library call. Unlike
    `asyncio.to_thread`, whose thread pool `asyncio.run` joins on the way out,
    it never holds up a stop:

    - cancelling the awaiting task (Ctrl-C, SIGTERM, a worker's forced stop, a
      lost lease) raises CancelledError at once, while `fn` runs on;
    - neither the event loop's shutdown nor the interpreter's exit waits for
      the thread;
    - a signal is acted on within SIGNAL_CHECK_INTERVAL, even one the loop
      missed. Python runs a handler in the main thread at its next bytecode,
      and asyncio.run's SIGINT handler has no wakeup fd: a Ctrl-C that lands
      just before the loop goes to sleep in its selector, or that another
      thread catches, would wait for the loop's next event, here the end of
      `fn` (seen for about 1 in 100 SIGINTs sent as the loop went idle, on a
      loaded machine). So the loop is woken at that interval while it waits.
      Handlers set with `loop.add_signal_handler` (the worker's) have a
      wakeup fd and never miss.

    The abandoned thread runs until `fn` returns, then its result or exception
    is dropped quietly. So `fn` must not leave anything behind that only its
    caller would clean up, and it should stop early when it can (a step
    callback that checks a flag, say). An exception raised by `fn` propagates
    to the awaiting task. Context variables are copied into the thread, as
    `asyncio.to_thread` does.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def set_result(value: T) -> None:  # on the loop
        if not future.done():  # cancelled: nobody is waiting any more
            future.set_result(value)

    def set_exception(error: BaseException) -> None:  # on the loop
        if not future.done():
            future.set_exception(error)

    def work() -> None:  # in the thread
        settle: Callable[[], None]
        try:
            value = context.run(fn, *args, **kwargs)
        except StopIteration as error:  # a Future refuses to carry it
            wrapped = RuntimeError(f"{name} raised StopIteration")
            wrapped.__cause__ = error
            settle = functools.partial(set_exception, wrapped)
        except BaseException as error:
            settle = functools.partial(set_exception, error)
        else:
            settle = functools.partial(set_result, value)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle)

    checking: asyncio.TimerHandle | None = None

    def check_signals() -> None:  # entering any Python function runs pending handlers
        nonlocal checking
        checking = loop.call_later(SIGNAL_CHECK_INTERVAL, check_signals)

    name = getattr(fn, "__qualname__", None) or repr(fn)
    threading.Thread(target=work, name=f"run_blocking({name})", daemon=True).start()
    check_signals()
    try:
        return await future
    finally:
        if checking is not None:
            checking.cancel()
