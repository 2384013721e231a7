"""The comfyui backend against a real ComfyUI, when one runs on this machine.

Skipped unless IMAGEN_TEST_COMFYUI_URL names it (e.g. http://127.0.0.1:8188).
No model files are needed: the graphs are model-free (EmptyImage -> SaveImage),
and the FLUX check only expects the missing-model error when the file is
absent. A CPU-only server is enough:

    python main.py --cpu --listen 127.0.0.1 --port 8188
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request
from imagen_tui.backends.comfyui import ComfyBackend
from imagen_tui.errors import GenerationError
from tests.helpers import fractions_into

URL = os.environ.get("IMAGEN_TEST_COMFYUI_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="set IMAGEN_TEST_COMFYUI_URL to a ComfyUI")

EMPTY = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 3368652},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
# Slow on CPU (seconds) and without progress hooks: an interrupt lands at the node boundary.
SLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 2048, "height": 2048, "batch_size": 4, "color": 3368652},
    },
    "3": {
        "class_type": "ImageBlur",
        "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "slow"}},
}


def backend(
    tmp_path: Path, graph: dict[str, object] | None = None, **options: object
) -> ComfyBackend:
    block: dict[str, object] = {"type": "comfyui", "url": URL, **options}
    if graph is not None:
        path = tmp_path / "graph.json"
        path.write_text(json.dumps(graph))
        block["workflow"] = str(path)
    made = registry.create("real", registry.validate_block("real", block))
    assert isinstance(made, ComfyBackend)
    return made


def test_imagen_generate_with_a_model_free_workflow(home, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(EMPTY))
    home.write_config(
        f"backends:\n  real:\n    type: comfyui\n    url: {URL}\n    workflow: {path}\n"
    )
    for _ in range(2):  # the second is served from ComfyUI's cache
        done = home.imagen("generate", "ignored", "--backend", "real", "--size", "96x80")
        assert done.returncode == 0, done.stderr
    from PIL import Image

    images = [p for p in home.files() if p.suffix == ".png"]
    assert len(images) == 2 and all(Image.open(p).size == (96, 80) for p in images)


def test_missing_flux_files_are_named(tmp_path):
    installed = httpx.get(f"{URL}/object_info/UNETLoader").json()["UNETLoader"]["input"]
    if "flux1-schnell.safetensors" in installed["required"]["unet_name"][0]:
        pytest.skip("FLUX schnell is installed on this server")

    async def scenario() -> None:
        made = backend(tmp_path)
        try:
            await made.generate(Request(prompt="a fox", seed=1))
        finally:
            await made.aclose()

    with pytest.raises(GenerationError, match=r"model file 'flux1-schnell\.safetensors' is not"):
        asyncio.run(scenario())


def test_cancel_interrupts_the_running_prompt(tmp_path):
    async def scenario() -> str:
        graph = json.loads(json.dumps(SLOW))
        graph["1"]["inputs"]["color"] = time.time_ns() % 0xFFFFFF  # not from the cache
        made = backend(tmp_path, graph)
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1)))
            async with httpx.AsyncClient(base_url=URL) as client:
                for _ in range(200):
                    running = (await client.get("/queue")).json()["queue_running"]
                    if running:
                        break
                    await asyncio.sleep(0.05)
                prompt_id = str(running[0][1])
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(1200):  # the interrupt lands at the next node boundary
                    entry = (await client.get(f"/history/{prompt_id}")).json().get(prompt_id)
                    if entry:
                        return str([m[0] for m in entry["status"]["messages"]])
                    await asyncio.sleep(0.05)
            raise AssertionError("the prompt never ended")
        finally:
            await made.aclose()

    assert "execution_interrupted" in asyncio.run(scenario())


def _has_test_sleep() -> bool:
    return bool(httpx.get(f"{URL}/object_info/TestSleep").json()) if URL else False


def test_progress_then_a_running_cancel_within_a_second(tmp_path):
    """Needs ComfyUI's own testing pack (tests/execution/testing_nodes/testing-pack
    copied into custom_nodes/): TestSleep reports progress like a sampler."""
    if not _has_test_sleep():
        pytest.skip("TestSleep (ComfyUI's testing pack) is not installed on this server")
    graph: dict[str, object] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
    }
    seed = time.time_ns() % 10_000_000  # the colour: a graph ComfyUI has not cached

    async def scenario() -> tuple[list[float], float]:
        made = backend(tmp_path, graph, seed_at="1.color", steps_at="2.seconds")
        try:
            seen: list[float] = []
            await made.generate(Request(prompt="x", seed=seed, steps=1), fractions_into(seen))
            assert seen and seen[-1] == 1.0 and seen == sorted(seen)
            running: list[float] = []
            task = asyncio.create_task(
                made.generate(Request(prompt="x", seed=seed + 1, steps=30), fractions_into(running))
            )
            while not running:
                await asyncio.sleep(0.01)
            cancelled = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with httpx.AsyncClient(base_url=URL) as client:
                while (await client.get("/queue")).json()["queue_running"]:
                    await asyncio.sleep(0.01)
            return seen, time.monotonic() - cancelled
        finally:
            await made.aclose()

    _seen, seconds = asyncio.run(scenario())
    assert seconds < 1.0
