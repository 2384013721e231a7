"""`run_blocking`: how an adapter runs work it cannot interrupt, in a thread the
event loop does not wait for."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# While run_blocking waits, the event loop is woken this often (seconds); see there.
SIGNAL_CHECK_INTERVAL = 0.1


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
