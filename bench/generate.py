"""How long `imagen generate` takes on the mock backend.

Prints, per size, the median and p95 of:
  render     the mock's drawing + PNG encoding alone (the baseline)
  pipeline   plan + backend + metadata + atomic write of image and sidecar,
             in-process; its ratio to `render` is the framework's share
  command    the whole `imagen generate` process, start-up included; its
             ratio to `python -c 'import PIL.Image'` shows the start-up cost.
             The two processes alternate run by run and the ratio reported
             is the median of the per-pair ratios, so a machine that gets
             busier or quieter during the run does not skew it.

Run: .venv/bin/python bench/generate.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagen_tui.backends.mock import render
from imagen_tui.core.pipeline import plan, run
from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.workbench import open_workbench

IMAGEN = Path(sys.executable).parent / "imagen"
SIZES = ((512, 512), (1024, 1024))


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _timed(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {runs} runs each, times in ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        # A user of its own: no config, and no embedded server running (as root the
        # server lives in /var/lib/imagen unless XDG_DATA_HOME says otherwise; a
        # running one would add the ledger's database round trip to every run).
        isolated = {
            "HOME": tmp,
            "XDG_CONFIG_HOME": f"{tmp}/.config",
            "XDG_DATA_HOME": f"{tmp}/.local/share",
        }
        # Bytecode as an installed package has it (pip compiles it at install).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(isolated)
        os.environ.update(isolated)
        workbench = open_workbench()
        out = Path(tmp) / "out"
        # One untimed run writes the bytecode caches the timed runs then use.
        subprocess.run(
            [str(IMAGEN), "generate", "warm-up", "--size", "64x64", "--out", str(out)],
            env=env,
            check=True,
            capture_output=True,
        )
        baseline = [sys.executable, "-c", "import PIL.Image"]
        subprocess.run(baseline, env=env, check=True)
        startup: list[float] = []
        for width, height in SIZES:
            size = f"{width}x{height}"
            base = _timed(
                lambda w=width, h=height: render("a lighthouse at dusk", "", w, h, 20, 42), runs
            )

            def one(w: int = width, h: int = height) -> None:
                p = plan(
                    workbench,
                    RequestSpec("a lighthouse at dusk", width=w, height=h, seed=42),
                    directory=out,
                )
                asyncio.run(run(p, workbench.backend(p.backend)))

            pipe = _timed(one, runs)
            command = [str(IMAGEN), "generate", "a lighthouse at dusk", "--seed", "42"]
            command += ["--size", size, "--out", str(out)]
            bare, cmd = _paired(baseline, command, env, runs)
            startup += bare
            ratios = [c / b for b, c in zip(bare, cmd, strict=True)]
            base_med, base_p95 = _stats(base)
            pipe_med, pipe_p95 = _stats(pipe)
            cmd_med, cmd_p95 = _stats(cmd)
            print(
                f"{size:>9} render (baseline)          median {base_med:7.1f}  p95 {base_p95:7.1f}"
            )
            print(
                f"{size:>9} pipeline in-process        median {pipe_med:7.1f}  p95 {pipe_p95:7.1f}"
                f"  = {pipe_med / base_med:4.2f}x render, +{pipe_med - base_med:.1f} ms"
            )
            print(
                f"{size:>9} imagen generate (process)  median {cmd_med:7.1f}  p95 {cmd_p95:7.1f}"
                f"  = {statistics.median(ratios):4.2f}x bare start-up (median of"
                f" {runs} paired ratios, {min(ratios):.2f}-{max(ratios):.2f})"
            )
        start_med, start_p95 = _stats(startup)
        print(
            f"{'baseline python -c import PIL.Image':<44} median {start_med:7.1f}"
            f"  p95 {start_p95:7.1f}"
        )


def _paired(
    first: list[str], second: list[str], env: dict[str, str], runs: int
) -> tuple[list[float], list[float]]:
    """Wall times of two commands run alternately, `runs` pairs."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for argv, samples in zip((first, second), times, strict=True):
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            samples.append((time.perf_counter() - started) * 1000)
    return times


if __name__ == "__main__":
    main()
