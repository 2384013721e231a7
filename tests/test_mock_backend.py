"""The mock backend: deterministic, real PNGs of the requested size, offline."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageChops, ImageFont, ImageStat

import imagen_tui.backends.mock as mock_package
from imagen_tui.backends.base import Backend, Request
from imagen_tui.backends.blocking import run_blocking
from imagen_tui.backends.mock import MOCK_TYPE, MockBackend, render
from imagen_tui.backends.mock.render import _cut, _wrap
from imagen_tui.errors import GenerationError

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a lighthouse on a rocky cliff at dusk, oil painting"
HANG_GUARD_S = 60  # waits end on an Event; this bound is only reached when the code hangs


def options(**overrides):
    block = {
        "type": "mock",
        "model": "mock-v1",
        "delay_ms": 0,
        "delay_blocks": False,
        "fail_if_prompt_contains": None,
    }
    return {**block, **overrides}


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def mean_difference(a: bytes, b: bytes) -> float:
    """Mean absolute per-pixel difference over R, G and B, 0..255."""
    diff = ImageChops.difference(decode(a).convert("RGB"), decode(b).convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def first_line(child, stream):
    """The child's first line on `stream`, or "" when a hang guard had to kill it."""
    guard = threading.Timer(HANG_GUARD_S, child.kill)
    guard.start()
    try:
        return stream.readline()
    finally:
        guard.cancel()


def test_render_is_byte_identical_for_identical_arguments():
    first = render(PROMPT, "blurry", 320, 200, 20, 42)
    second = render(PROMPT, "blurry", 320, 200, 20, 42)
    assert first == second


def test_render_is_identical_in_another_process_with_another_hash_seed():
    code = (
        "import hashlib, sys; from imagen_tui.backends.mock import render; "
        f"sys.stdout.write(hashlib.sha256(render({PROMPT!r}, 'x', 200, 120, 20, 42)).hexdigest())"
    )
    expected = hashlib.sha256(render(PROMPT, "x", 200, 120, 20, 42)).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,  # so the child imports this checkout
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout == expected


def test_generate_is_byte_identical_for_the_same_request():
    backend = MockBackend("mock", options())
    request = Request(prompt=PROMPT, width=256, height=256, steps=12, seed=7)

    async def twice():
        return await backend.generate(request), await backend.generate(request)

    first, second = asyncio.run(twice())
    assert first.image == second.image
    assert first.image == render(PROMPT, "", 256, 256, 12, 7)
    assert (first.seed, first.steps, first.model) == (7, 12, "mock-v1")
    assert first.mime_type == "image/png"
    assert first.cost_usd == 0.0


def test_generate_here_is_generate_without_an_event_loop():
    backend = MockBackend("mock", options())
    request = Request(prompt=PROMPT, width=256, height=256, steps=12, seed=7)
    assert backend.renders_here
    looped = asyncio.run(backend.generate(request))
    here = backend.generate_here(request)
    assert here == looped  # the same bytes, seed, steps, model and cost
    with pytest.raises(GenerationError, match="fail_if_prompt_contains"):
        MockBackend("mock", options(fail_if_prompt_contains="BOOM")).generate_here(
            Request(prompt="a BOOM in the night", seed=1)
        )


@pytest.mark.parametrize("blocks", [False, True], ids=["loop-delay", "blocking-delay"])
def test_a_simulated_delay_is_left_to_the_event_loop(blocks):
    backend = MockBackend("mock", options(delay_ms=10, delay_blocks=blocks))
    assert not backend.renders_here
    with pytest.raises(RuntimeError, match="a simulated delay needs the event loop"):
        backend.generate_here(Request(prompt=PROMPT, width=64, height=64, seed=1))


@pytest.mark.parametrize("seed", range(0, 10, 2))
def test_different_seeds_give_visibly_different_images(seed):
    a = render(PROMPT, "", 256, 256, 20, seed)
    b = render(PROMPT, "", 256, 256, 20, seed + 1)
    # Re-encoding alone would score 0; a different palette scores tens.
    assert mean_difference(a, b) > 12


def test_different_steps_change_the_pixels():
    a = render(PROMPT, "", 256, 256, 20, 5)
    b = render(PROMPT, "", 256, 256, 40, 5)
    assert ImageChops.difference(decode(a), decode(b)).getbbox() is not None


def test_different_prompt_changes_the_pixels():
    a = render(PROMPT, "", 256, 256, 20, 5)
    b = render(PROMPT + ", at dawn", "", 256, 256, 20, 5)
    assert mean_difference(a, b) > 12


@pytest.mark.parametrize("size", [(64, 64), (513, 257), (2048, 64), (2048, 2048)])
def test_output_is_a_png_of_exactly_the_requested_size(size):
    width, height = size
    image = decode(render(PROMPT * 3, "", width, height, 20, 1))
    assert image.format == "PNG"
    assert image.size == (width, height)
    assert image.mode == "RGB"


def test_images_are_smooth_not_noise():
    png = render(PROMPT, "", 512, 512, 20, 3)
    assert len(png) < 0.3 * 512 * 512 * 3


def test_a_missing_seed_is_chosen_reported_and_reproducible():
    backend = MockBackend("mock", options())
    request = Request(prompt=PROMPT, width=128, height=96, seed=None)
    result = asyncio.run(backend.generate(request))
    assert isinstance(result.seed, int)
    assert result.steps == 20
    assert result.image == render(PROMPT, "", 128, 96, 20, result.seed)


def test_fail_if_prompt_contains_raises_a_generation_error_naming_the_option():
    backend = MockBackend("mock", options(fail_if_prompt_contains="BOOM"))
    with pytest.raises(GenerationError, match="fail_if_prompt_contains"):
        asyncio.run(backend.generate(Request(prompt="a BOOM in the night", seed=1)))
    # Prompts without the marker still work.
    result = asyncio.run(backend.generate(Request(prompt="quiet night", width=64, height=64)))
    assert decode(result.image).size == (64, 64)


def test_delay_does_not_block_the_event_loop():
    backend = MockBackend("mock", options(delay_ms=300))
    ticks = 0

    async def ticker(done: asyncio.Event):
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main():
        done = asyncio.Event()
        task = asyncio.create_task(ticker(done))
        await backend.generate(Request(prompt=PROMPT, width=128, height=128, seed=1))
        done.set()
        await task

    asyncio.run(main())
    # About 30 ticks fit in 300 ms; a blocking sleep would allow only 2 or 3.
    assert ticks >= 10


def test_a_cancelled_generate_returns_while_the_render_still_runs(monkeypatch):
    entered, release = threading.Event(), threading.Event()
    threads = []

    def stuck_render(*args):  # like the quadratic caption cut on a huge word
        threads.append(threading.current_thread())
        entered.set()
        release.wait(HANG_GUARD_S)
        return b"too late"

    # The package attribute, not the dotted string: "imagen_tui.backends.mock.render"
    # names the re-exported function, which shadows the submodule.
    monkeypatch.setattr(mock_package, "render", stuck_render)
    backend = MockBackend("mock", options())

    async def main():
        task = asyncio.create_task(backend.generate(Request(prompt=PROMPT, seed=1)))
        assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert threads[0].is_alive()

    try:
        asyncio.run(main())  # would wait for the render when its thread is asyncio's
        assert threads[0].daemon
    finally:
        release.set()


def test_delay_blocks_spends_the_delay_in_a_thread_reporting_progress_in_order():
    backend = MockBackend("mock", options(delay_ms=5, delay_blocks=True))
    reports = []

    def progress(fraction, preview=None):
        reports.append((fraction, threading.current_thread()))

    request = Request(prompt=PROMPT, width=96, height=64, steps=5, seed=3)
    result = asyncio.run(backend.generate(request, progress))
    assert [fraction for fraction, _ in reports] == [0.2, 0.4, 0.6, 0.8, 1.0]
    threads = {thread for _, thread in reports}
    assert len(threads) == 1 and threading.main_thread() not in threads  # off the loop
    assert result.image == render(PROMPT, "", 96, 64, 5, 3)  # the same image as without


def test_a_generate_cancelled_in_a_blocking_delay_returns_while_the_sleep_goes_on(monkeypatch):
    entered, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    reports: list[object] = []
    renders: list[object] = []

    def uninterruptible_sleep(seconds):  # one tick of the mock's blocking delay
        threads.append(threading.current_thread())
        entered.set()
        release.wait(HANG_GUARD_S)

    monkeypatch.setattr(mock_package, "time", SimpleNamespace(sleep=uninterruptible_sleep))
    monkeypatch.setattr(mock_package, "render", lambda *args: renders.append(args) or b"")  # type: ignore[func-returns-value]
    backend = MockBackend("mock", options(delay_ms=600_000, delay_blocks=True))

    async def main():
        request = Request(prompt=PROMPT, steps=4, seed=1)
        task = asyncio.create_task(
            backend.generate(request, lambda fraction, preview=None: reports.append(fraction))
        )
        assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert threads[0].is_alive()  # still inside its first tick
        assert threads[0].daemon  # so neither asyncio.run nor the interpreter waits for it

    try:
        asyncio.run(main())
    finally:
        release.set()
    threads[0].join(HANG_GUARD_S)
    assert not threads[0].is_alive()
    assert len(threads) == 1  # it stopped after the tick it was in:
    assert reports == []  # no progress for a cancelled generation,
    assert renders == []  # and no image nobody waits for


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_imagen_generate_inside_a_blocking_delay(home):
    home.write_config(
        "backends:\n  mock:\n    type: mock\n    delay_ms: 600000\n    delay_blocks: true\n"
    )
    # `imagen generate`, with a watcher that says when the mock's blocking thread runs.
    script = textwrap.dedent(
        """
        import sys, threading, time
        from imagen_tui.cli import main

        def announce():
            while not any(t.name.startswith("run_blocking(") for t in threading.enumerate()):
                time.sleep(0.001)
            print("inside", file=sys.stderr, flush=True)

        threading.Thread(target=announce, daemon=True).start()
        sys.exit(main(["generate", "a lighthouse", "--size", "64x64"]))
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first_line(child, child.stderr) == "inside\n"
        child.send_signal(signal.SIGINT)  # once; exit must not wait for the 30 s tick
        stdout, stderr = child.communicate(timeout=HANG_GUARD_S)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == 130
    assert stdout == ""
    assert "interrupted" in stderr
    assert home.files() == []


def test_registry_entry_describes_the_config_block():
    names = {option.name: option for option in MOCK_TYPE.options}
    assert set(names) == {"model", "delay_ms", "delay_blocks", "fail_if_prompt_contains"}
    assert names["delay_ms"].minimum == 0
    assert (names["delay_blocks"].kind, names["delay_blocks"].default) == (bool, False)
    assert MOCK_TYPE.default_model == "mock-v1"
    backend = MOCK_TYPE.factory("offline", options(model="mock-xl"))
    assert isinstance(backend, Backend)
    assert (backend.name, backend.type_name, backend.model) == ("offline", "mock", "mock-xl")
    asyncio.run(backend.aclose())


# --------------------------------------------------------------------------
# Cutting long words: a bounded number of font measurements, whatever the prompt


class CountingFont:
    """A font that counts its measurements and remembers the longest string measured."""

    def __init__(self, size: int):
        self.font = ImageFont.load_default(size=size)
        self.calls = 0
        self.longest = 0

    def getlength(self, text: str) -> float:
        self.calls += 1
        self.longest = max(self.longest, len(text))
        return self.font.getlength(text)


def cut_one_character_at_a_time(text, font, max_width, suffix=""):
    """The original quadratic _cut: the reference for what the output must be."""
    while text and font.getlength(text + suffix) > max_width:
        text = text[:-1].rstrip()
    return text + suffix


@pytest.mark.parametrize("length", [100_000, 131_072])
def test_a_huge_word_is_cut_with_few_short_measurements(length):
    font = CountingFont(56)  # the text size of a large image
    lines = _wrap(["x" * length], font, 1900, 3)  # type: ignore[arg-type]  # a stand-in font
    # One measurement per character of a 100k-character string took hours.
    assert font.calls <= 64
    assert font.longest < 1000
    assert len(lines) == 1
    assert 20 < len(lines[0]) < 200
    assert set(lines[0]) == {"x"}
    assert font.font.getlength(lines[0]) <= 1900
    assert font.font.getlength(lines[0] + "x") > 1900  # the longest prefix that fits


def test_a_131k_character_prompt_costs_what_a_short_one_does():
    words = ("a lighthouse on a rocky cliff at dusk, oil painting, " * 2600)[:131_072].split()
    huge = CountingFont(56)
    lines = _wrap(words, huge, 1900, 3)  # type: ignore[arg-type]  # a stand-in font
    short = CountingFont(56)
    assert _wrap(words[:100], short, 1900, 3) == lines  # type: ignore[arg-type]
    # The lines fill after a few dozen words: the rest of the prompt is never measured.
    assert huge.calls == short.calls <= 128
    assert huge.longest < 1000
    assert len(lines) == 3
    assert lines[-1].endswith(" …")
    assert all(huge.font.getlength(line) <= 1900 for line in lines)


def test_a_huge_word_among_ordinary_ones_is_cut_and_followed():
    font = CountingFont(30)
    lines = _wrap(["a", "cat", "y" * 131_072, "sleeps"], font, 700, 3)  # type: ignore[arg-type]  # a stand-in font
    assert font.calls <= 64
    assert font.longest < 1000
    assert lines[0] == "a cat"
    assert set(lines[1]) == {"y"}
    assert font.font.getlength(lines[1]) <= 700 < font.font.getlength(lines[1] + "y")
    assert lines[2] == "sleeps"


def test_cut_gives_what_cutting_one_character_at_a_time_gave():
    rng = random.Random(20240611)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ WMil.,;'!-_0123456789  "
    fonts = {size: ImageFont.load_default(size=size) for size in (9, 17, 56)}
    cut_somewhere = 0
    for _ in range(160):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        if rng.random() < 0.3:
            text += " " * rng.randint(1, 3)  # trailing blanks: kept only when all fits
        font = fonts[rng.choice(list(fonts))]
        max_width = rng.choice([0, 5, 40, 150, 400, 900, 2000])
        suffix = rng.choice(["", " …"])
        expected = cut_one_character_at_a_time(text, font, max_width, suffix)
        assert _cut(text, font, max_width, suffix) == expected, (text, max_width, suffix)
        cut_somewhere += 0 < len(expected) - len(suffix) < len(text)
    assert cut_somewhere > 40  # many cases really cut, not just all-or-nothing


def test_a_131k_character_single_word_prompt_renders():
    image = decode(render("x" * 131_072, "", 1024, 768, 20, 1))
    assert image.format == "PNG"
    assert image.size == (1024, 768)


# --------------------------------------------------------------------------
# run_blocking (backends/base.py): a stop never waits for a backend's thread


def test_run_blocking_returns_the_result_and_passes_arguments():
    async def main():
        return await run_blocking(divmod, 7, 2), await run_blocking(int, "ff", base=16)

    assert asyncio.run(main()) == ((3, 1), 255)


def test_run_blocking_propagates_the_functions_exception():
    def fail(message):
        raise ValueError(message)

    async def main():
        await run_blocking(fail, "boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())


def test_run_blocking_propagates_stop_iteration_as_a_runtime_error():
    async def main():
        await run_blocking(next, iter(()))

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_is_handled_while_run_blocking_waits_even_if_the_loop_missed_it():
    # The function's own thread catches a signal while the loop's thread sleeps in its
    # selector: nothing interrupts that sleep, so Python can run the handler (in the
    # main thread) only once the loop wakes. run_blocking wakes it regularly.
    handled = threading.Event()
    main_thread = threading.main_thread().ident

    def blocking():
        assert main_thread is not None
        while sys._current_frames()[main_thread].f_code.co_name != "select":
            threading.Event().wait(0.001)  # until the loop is about to sleep, or asleep
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # caught right here
        return handled.wait(HANG_GUARD_S)  # the handler must run while we still block

    async def main():
        return await run_blocking(blocking)

    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: handled.set())
    try:
        assert asyncio.run(main())
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("outcome", ["result", "exception"])
def test_cancelling_run_blocking_returns_while_the_function_still_runs(outcome):
    entered, release = threading.Event(), threading.Event()
    threads = []
    loop_errors = []

    def blocking():
        threads.append(threading.current_thread())
        entered.set()
        release.wait(HANG_GUARD_S)
        if outcome == "exception":
            raise ValueError("too late: nobody is waiting")
        return "too late: nobody is waiting"

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        task = asyncio.create_task(run_blocking(blocking))
        assert await asyncio.to_thread(entered.wait, HANG_GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert threads[0].is_alive()  # cancelled while the function is still blocked
        assert threads[0].daemon  # so the interpreter's exit never waits for it
        # Let the function finish and deliver its outcome to the cancelled future:
        # it must be dropped without a word.
        release.set()
        await asyncio.to_thread(threads[0].join, HANG_GUARD_S)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert not threads[0].is_alive()
    assert loop_errors == []


def test_a_result_arriving_after_the_loop_closed_is_dropped_quietly(monkeypatch):
    entered, release = threading.Event(), threading.Event()
    threads = []
    thread_errors: list[object] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)

    def blocking():
        threads.append(threading.current_thread())
        entered.set()
        release.wait(HANG_GUARD_S)
        return "too late"

    async def main():
        task = asyncio.create_task(run_blocking(blocking))
        await asyncio.to_thread(entered.wait, HANG_GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())  # returns, and closes the loop, while `blocking` still runs
    assert threads[0].is_alive()
    release.set()
    threads[0].join(HANG_GUARD_S)
    assert not threads[0].is_alive()
    assert thread_errors == []  # no "Event loop is closed" from the thread


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_asyncio_run_while_run_blocking_is_stuck():
    script = textwrap.dedent(
        """
        import asyncio, sys, threading
        from imagen_tui.backends.blocking import run_blocking

        def stuck_in_native_code():
            print("inside", flush=True)
            threading.Event().wait()  # forever

        try:
            asyncio.run(run_blocking(stuck_in_native_code))
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first_line(child, child.stdout) == "inside\n"
        child.send_signal(signal.SIGINT)  # once: with asyncio.to_thread even two would hang
        assert child.wait(timeout=HANG_GUARD_S) == 130
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
