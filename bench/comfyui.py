"""The comfyui adapter's own cost per image, against the fake ComfyUI server.

The fake (tests/comfyui_fake.py) runs in a separate process and "executes" a
prompt at once, replaying the recorded success transcript, so whatever time
an image takes here is protocol and client work, not generation. Prints the
median and p95 per image of:

  baseline   a minimal hand-written client with plain httpx + websockets on
             one open socket, alternating image by image with the adapter:
             POST /prompt, wait for executing node=null, GET /history,
             GET /view (the floor for this protocol and server)
  adapter    ComfyBackend.generate: graph build, socket, submit, following
             the frames, history, download (wall time)
  adapter cpu  CPU time of this process per adapter image (the adapter's
             own cost, without the time spent waiting for the server)
  fill       building the graph alone (workflow.fill), in microseconds

Run: .venv/bin/python bench/comfyui.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request
from imagen_tui.backends.comfyui import ComfyBackend

REPO = Path(__file__).resolve().parents[1]
SERVE_FAKE = (
    "import sys; from tests.comfyui_fake import FakeComfy; fake = FakeComfy().start(); "
    "print(fake.port, flush=True); sys.stdin.read(); fake.stop()"
)


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.2f} (p95 {p95:6.2f})"


class Baseline:
    """The floor: one socket (no compression, like the adapter's), one httpx client."""

    def __init__(self, url: str, graph: dict[str, Any]) -> None:
        self.url, self.graph = url, graph
        self.client_id = uuid.uuid4().hex

    async def __aenter__(self) -> Baseline:
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.http = httpx.AsyncClient(base_url=self.url)
        self.ws = await websockets.connect(ws_url, compression=None)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.ws.close()
        await self.http.aclose()

    async def image(self, seed: int) -> None:
        self.graph["7"]["inputs"]["seed"] = seed
        prompt_id = str(uuid.uuid4())
        body = {"prompt": self.graph, "client_id": self.client_id, "prompt_id": prompt_id}
        (await self.http.post("/prompt", json=body)).raise_for_status()
        while True:
            frame = json.loads(await self.ws.recv())
            data = frame.get("data", {})
            done = frame["type"] == "executing" and data.get("node") is None
            if done and data.get("prompt_id") == prompt_id:
                break
        entry = (await self.http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = entry["outputs"]["9"]["images"][0]
        (await self.http.get("/view", params=image)).raise_for_status()


async def measure(
    backend: ComfyBackend, base: Baseline, runs: int
) -> tuple[list[float], list[float], float]:
    """Alternate the two, one image each per round, so drift hits both alike."""
    await backend.generate(Request(prompt="warm-up", seed=1))  # opens the socket once
    await base.image(2)
    baseline_ms: list[float] = []
    adapter_ms: list[float] = []
    adapter_cpu = 0.0
    for n in range(runs):
        started = time.perf_counter()
        await base.image(10_000 + n)
        baseline_ms.append((time.perf_counter() - started) * 1000)
        cpu, started = time.process_time(), time.perf_counter()
        await backend.generate(Request(prompt="a red fox in snow", seed=20_000 + n))
        adapter_ms.append((time.perf_counter() - started) * 1000)
        adapter_cpu += time.process_time() - cpu
    return baseline_ms, adapter_ms, adapter_cpu * 1000 / runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {runs} images each, times in ms"
    )
    fake = subprocess.Popen(
        [sys.executable, "-c", SERVE_FAKE],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = f"http://127.0.0.1:{int(fake.stdout.readline())}"
        block = registry.validate_block("bench", {"type": "comfyui", "url": url})
        backend = registry.create("bench", block)
        assert isinstance(backend, ComfyBackend)
        graph = backend.workflow.fill({"prompt": "a red fox in snow", "seed": 1})

        fills = []
        for seed in range(1000):
            started = time.perf_counter()
            backend.workflow.fill({"prompt": "a red fox", "seed": seed, "steps": 4})
            fills.append((time.perf_counter() - started) * 1_000_000)

        async def both() -> tuple[list[float], list[float], float]:
            try:
                async with Baseline(url, graph) as base:
                    return await measure(backend, base, runs)
            finally:
                await backend.aclose()

        base, ours, cpu = asyncio.run(both())
        print(f"baseline (plain httpx + websockets)  {_stats(base)}")
        print(f"adapter (ComfyBackend.generate)      {_stats(ours)}")
        print(f"adapter cpu per image                {cpu:7.2f}")
        print(f"fill (graph build), microseconds     {_stats(fills)}")
        print(
            "adapter - baseline (median)          "
            f"{statistics.median(ours) - statistics.median(base):7.2f}"
        )
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(10)


if __name__ == "__main__":
    main()
