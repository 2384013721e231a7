"""The `comfyui` backend: FLUX (or any API-format graph) on a ComfyUI server.

This package holds:

- `COMFYUI_TYPE`, the registry entry (config options and constructor);
- `ComfyBackend`, the backend instance: fill the graph, open the socket,
  `POST /prompt` with our own `prompt_id`, follow that prompt's frames to
  `executing {node: null}`, then `/history` and `/view` for the image;
- `workflow.py` (graphs and placement), `client.py` (the HTTP + WebSocket
  session), `errors.py` (server reports as one-line errors), `status.py`
  (the `imagen backends` probe).

Cancel (Ctrl-C, `imagen jobs cancel`, a lost lease, a timeout) removes the
prompt from ComfyUI's queue or interrupts it before the error propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

from imagen_tui.backends.base import Preview, Progress, Request, Result, random_seed
from imagen_tui.backends.blocking import run_blocking
from imagen_tui.backends.comfyui import errors, seen
from imagen_tui.backends.comfyui.client import (
    DROPPED,
    PREVIEW,
    Frame,
    Session,
    Unreachable,
)
from imagen_tui.backends.comfyui.memory import Ollama, Vram, free_models, read_vram
from imagen_tui.backends.comfyui.workflow import (
    BUILTIN_WORKFLOWS,
    DEFAULT_MODELS,
    FIELDS,
    LAYOUTS,
    Models,
    Workflow,
    builtin,
    load_user,
)
from imagen_tui.backends.http import MaybeStarted, json_object
from imagen_tui.backends.imageinfo import output_image_info
from imagen_tui.backends.registry import MAX_DOWNLOAD_OPTION, BackendType, Option, Probe
from imagen_tui.errors import ConfigError, GenerationError
from imagen_tui.limits import MAX_BODY_BYTES

__all__ = ["COMFYUI_TYPE", "ComfyBackend"]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8188"
QUIET_POLL_S = 5.0  # no frame for this long on an open socket: look at /history anyway
FINISHING_POLL_S = 0.05  # ended but not in /history yet: look again this soon
DROPPED_POLL_S = 0.5  # socket down: poll /history and try to reconnect this often
RECONNECT_CAP_S = 5.0


def _options(block: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = block.get(key)
    return default if value is None else value


class ComfyBackend:
    """A backend instance on one ComfyUI server (one session for all its jobs)."""

    type_name = "comfyui"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = dict(options)
        self.url: str = _options(options, "url", DEFAULT_URL)
        self.queue_timeout: float = _options(options, "queue_timeout", 600.0)
        self.run_timeout: float = _options(options, "run_timeout", 600.0)
        # How long one generation may take in all (the worker's job deadline builds on it).
        self.timeout_s: float = self.queue_timeout + self.run_timeout
        self.prefix: str = _options(options, "filename_prefix", "imagen")
        self.session = Session(
            name=f"comfyui {name}",
            url=self.url,
            connect_timeout=_options(options, "connect_timeout", 5.0),
            auth_header=options.get("auth_header"),
            auth_env=options.get("auth_env"),
            max_bytes=_options(options, "max_download_mb", MAX_BODY_BYTES // 2**20) * 2**20,
        )
        self._workflow: Workflow | None = None
        self.model: str = options.get("model") or model_name(options)
        # Sharing the GPU (jobs/gpu.py; docs/worker.md "Sharing the GPU").
        self.min_free_vram_gb: float = _options(
            options, "min_free_vram_gb", default_min_free_vram_gb(options)
        )
        self.free_after_idle_s: float = _options(
            options, "free_after_idle_s", DEFAULT_FREE_AFTER_IDLE_S
        )
        ollama_url = options.get("ollama_url")
        self.ollama: Ollama | None = (
            Ollama(ollama_url, _options(options, "ollama_keep_alive_s", OLLAMA_KEEP_ALIVE_S))
            if ollama_url
            else None
        )
        self._previews_recorded: bool | None = None  # what seen.record last wrote

    async def vram(self) -> Vram:
        """What the server's first device has for ComfyUI (GenerationError if unreadable)."""
        return await read_vram(self.session.name, self.session.http)

    async def free_memory(self) -> None:
        """Ask ComfyUI to unload its models and free its cached memory."""
        await free_models(self.session.http)

    @property
    def workflow(self) -> Workflow:
        """The graph and its placement, loaded on first use (a ConfigError if broken)."""
        if self._workflow is None:
            self._workflow = load_workflow(self.options)
        return self._workflow

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        try:
            workflow = self.workflow
        except ConfigError as error:  # the same file fails every time: not worth a retry
            raise GenerationError(f"{self.session.name}: {error}") from None
        seed = request.seed if request.seed is not None else random_seed()
        steps = request.steps or workflow.default_steps
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "negative": request.negative_prompt,
            "seed": seed,
            "width": request.width,
            "height": request.height,
            "prefix": self.prefix,
        }
        if steps is not None:
            values["steps"] = steps
        graph = workflow.fill(values)
        prompt_id = str(uuid4())
        session = self.session
        previews_before = session.previews_seen
        mailbox = session.watch(prompt_id)
        posted = False
        try:
            await session.connect()
            posted = True
            response = await session.submit(graph, prompt_id)
            if response.status_code == 400:
                raise errors.validation_error(
                    f"{session.name}: invalid graph", json_object(response)
                )
            entry = await self._follow(prompt_id, mailbox, progress, steps)
            image, _mime = await session.view(self._image_of(entry, workflow))
        except asyncio.CancelledError:
            if posted:
                await session.cancel(prompt_id)
            raise
        except MaybeStarted:
            await session.cancel(prompt_id)  # it may sit in the queue: take it out
            raise
        finally:
            session.unwatch(prompt_id)
        # The same check as every cloud output: type, size, no decompression bomb.
        checked_mime, width, height = output_image_info(session.name, image)
        await self._remember_previews(session.previews_seen > previews_before)
        return Result(
            image=image,
            mime_type=checked_mime,
            width=width,
            height=height,
            model=self.model,
            seed=seed,
            steps=steps if workflow.places.get("steps") else None,
            cost_usd=Decimal(0),  # local: the GPU is yours
            extra={"comfyui_prompt_id": prompt_id},
        )

    async def _follow(
        self,
        prompt_id: str,
        mailbox: asyncio.Queue[Frame | None],
        progress: Progress | None,
        steps: int | None = None,
    ) -> Mapping[str, Any]:
        """Follow the prompt to its end; its /history entry (raises on failure or timeout)."""
        session = self.session
        loop = asyncio.get_running_loop()
        started = False
        deadline = loop.time() + self.queue_timeout
        done = 0.0
        step: tuple[int, int] | None = None  # the sampler's last (step, steps)
        reconnects = 0
        ended = False
        lost: GenerationError | None = None  # why the socket is down, while it is
        while True:
            left = deadline - loop.time()
            if left <= 0 and not started and await self._running_now(prompt_id):
                # It started while the socket was down (no frame told us): the run's turn.
                started = True
                deadline = loop.time() + self.run_timeout
                continue
            if left <= 0:
                await session.cancel(prompt_id)
                if lost is not None:
                    waited = self.run_timeout if started else self.queue_timeout
                    raise GenerationError(
                        f"{session.name}: lost the connection to ComfyUI at {session.shown_url} "
                        f"mid-prompt and did not get it back within {waited:g} s ({lost})",
                        transient=True,
                    )
                if started:
                    raise GenerationError(
                        f"{session.name}: the run took longer than run_timeout "
                        f"({self.run_timeout:g} s); interrupted it on the server",
                        transient=True,
                    )
                raise GenerationError(
                    f"{session.name}: the prompt did not start within queue_timeout "
                    f"({self.queue_timeout:g} s; the server is busy); removed it from the queue",
                    transient=True,
                )
            if not session.connected:
                # The socket dropped: reconnect. A server that refuses the socket may still
                # answer HTTP (a proxy): look for the result in /history meanwhile. One
                # that is down is not polled (each failed call would log a retry).
                try:
                    await session.connect()
                except GenerationError as error:
                    if lost is None:
                        log.warning("%s: socket lost; reconnecting: %s", session.name, error)
                    lost = error
                    if not isinstance(error, Unreachable):
                        entry = await self._history_if_up(prompt_id)
                        if entry is not None:
                            return self._finished(entry)
                    reconnects += 1
                    await asyncio.sleep(min(DROPPED_POLL_S * reconnects, RECONNECT_CAP_S, left))
                    continue
                if lost is not None:
                    log.warning("%s: socket back after %d failed tries", session.name, reconnects)
                lost = None
                reconnects = 0
                # Frames sent while the socket was down are lost. The queue first: ComfyUI
                # writes the history entry before it takes a prompt off the queue.
                state = await session.queue_state(prompt_id)
                entry = await session.history(prompt_id)
                if entry is not None:
                    return self._finished(entry)
                if state is None:
                    raise GenerationError(
                        f"{session.name}: the prompt is no longer on the server at "
                        f"{session.shown_url} (ComfyUI restarted?)",
                        transient=True,
                    )
                if state == "running" and not started:
                    started = True
                    deadline = loop.time() + self.run_timeout
                continue
            try:
                async with asyncio.timeout(min(left, FINISHING_POLL_S if ended else QUIET_POLL_S)):
                    frame = await mailbox.get()
            except TimeoutError:
                entry = await session.history(prompt_id)
                if entry is not None:
                    return self._finished(entry)
                continue
            if frame is DROPPED:
                continue
            kind, data = frame.get("type"), frame.get("data") or {}
            if not started and kind in ("execution_start", "executing", "progress"):
                started = True
                deadline = loop.time() + self.run_timeout
            if kind == "progress" and progress is not None:
                value, maximum = data.get("value"), data.get("max")
                if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum:
                    done = max(done, min(1.0, value / maximum))
                    step = (int(value), int(maximum))
                    progress(done)
            elif kind == PREVIEW:
                if progress is not None:
                    shown, total = step if step is not None else (0, steps)
                    if data["before_progress"] and shown is not None:
                        # ComfyUI sends a type-4 preview before its step's progress frame
                        # (a type-1 one after it): it shows the step to come.
                        shown += 1
                        total = total or steps
                        shown = min(shown, total) if total else shown
                    progress(done, Preview(data["image"], data["mime_type"], shown, total))
            elif kind == "execution_error":
                raise errors.execution_error(session.name, data)
            elif kind == "execution_interrupted":
                raise _interrupted(session.name)
            elif kind == "executing" and data.get("node") is None:
                entry = await session.history(prompt_id)
                if entry is not None:
                    return self._finished(entry)
                ended = True  # ComfyUI writes history first, so this is rare: poll it soon

    async def _remember_previews(self, sent: bool) -> None:
        """For `imagen backends`: whether this server sends previews (written on change)."""
        if sent != self._previews_recorded:
            self._previews_recorded = sent
            await run_blocking(seen.record, self.url, sent)

    async def _history_if_up(self, prompt_id: str) -> Mapping[str, Any] | None:
        try:
            return await self.session.history(prompt_id)
        except GenerationError:
            return None

    async def _running_now(self, prompt_id: str) -> bool:
        try:
            return await self.session.queue_state(prompt_id) == "running"
        except GenerationError:  # the server is down too: it is not running there
            return False

    def _finished(self, entry: Mapping[str, Any]) -> Mapping[str, Any]:
        """The entry of a prompt that ended well; raises what ended it otherwise."""
        status = entry.get("status") or {}
        if status.get("status_str") == "success" or entry.get("outputs"):
            return entry
        for message in status.get("messages") or ():
            if not isinstance(message, list) or len(message) != 2:
                continue
            if message[0] == "execution_error":
                raise errors.execution_error(self.session.name, message[1])
            if message[0] == "execution_interrupted":
                raise _interrupted(self.session.name)
        raise GenerationError(f"{self.session.name}: the prompt failed without saying why")

    def _image_of(self, entry: Mapping[str, Any], workflow: Workflow) -> Mapping[str, Any]:
        outputs = entry.get("outputs") or {}
        images = (outputs.get(workflow.output) or {}).get("images") or []
        if not images:
            raise GenerationError(
                f"{self.session.name}: the prompt finished but output node {workflow.output} "
                "produced no image"
            )
        image: Mapping[str, Any] = images[0]
        return image

    async def aclose(self) -> None:
        if self.ollama is not None:
            await self.ollama.aclose()
        await self.session.aclose()


def _interrupted(name: str) -> GenerationError:
    return GenerationError(
        f"{name}: the prompt was interrupted on the server (by the web UI or another client)"
    )


# What a built-in FLUX workflow needs free on the card before a job is claimed, in GB
# (GiB): the diffusion model, both text encoders and the VAE, plus room to run. fp8
# weights (weight_dtype fp8_*, or the single fp8 checkpoint): about 12. 16-bit weights
# (23 GB for the model alone) do not fit a 16 GB card; ComfyUI then offloads part of
# them to system RAM, and still wants nearly the whole card: 14. A user workflow: 0
# (the check is off; say what it needs with min_free_vram_gb).
FP8_MIN_FREE_VRAM_GB = 12.0
FULL_MIN_FREE_VRAM_GB = 14.0
DEFAULT_FREE_AFTER_IDLE_S = 300.0
OLLAMA_KEEP_ALIVE_S = 300.0  # Ollama's own default (OLLAMA_KEEP_ALIVE=5m)


def default_min_free_vram_gb(block: Mapping[str, Any]) -> float:
    """The documented default of `min_free_vram_gb` for a validated block."""
    workflow = str(block.get("workflow") or "flux-schnell")
    if workflow not in BUILTIN_WORKFLOWS:
        return 0.0
    if str(block.get("layout") or "split") == "checkpoint":
        return FP8_MIN_FREE_VRAM_GB  # the default checkpoints are the fp8 files
    dtype = str(block.get("weight_dtype") or models_of(block).weight_dtype or "default")
    return FP8_MIN_FREE_VRAM_GB if dtype.startswith("fp8") else FULL_MIN_FREE_VRAM_GB


def model_name(block: Mapping[str, Any]) -> str:
    workflow = str(block.get("workflow") or "flux-schnell")
    if workflow in BUILTIN_WORKFLOWS:
        return workflow
    return Path(workflow).stem


def models_of(block: Mapping[str, Any]) -> Models:
    workflow = str(block.get("workflow") or "flux-schnell")
    defaults = DEFAULT_MODELS.get(workflow, DEFAULT_MODELS["flux-schnell"])
    return Models(
        unet=block.get("unet") or defaults.unet,
        clip_l=block.get("clip_l") or defaults.clip_l,
        t5=block.get("t5") or defaults.t5,
        vae=block.get("vae") or defaults.vae,
        checkpoint=block.get("checkpoint") or defaults.checkpoint,
        weight_dtype=block.get("weight_dtype") or defaults.weight_dtype,
    )


def load_workflow(block: Mapping[str, Any]) -> Workflow:
    """The workflow a validated block configures (ConfigError when it is broken)."""
    workflow = str(block.get("workflow") or "flux-schnell")
    steps = block.get("steps")
    if workflow in BUILTIN_WORKFLOWS:
        layout = str(block.get("layout") or "split")
        return builtin(workflow, layout, models_of(block), steps)
    declared = {name: block.get(f"{name}_at") for name in FIELDS}
    return load_user(workflow, declared, block.get("output_node"), steps)


def _probe(block: Mapping[str, Any]) -> Probe:
    from imagen_tui.backends.comfyui.status import probe

    return probe(block)


_PLACE_HELP = "where {} goes in a user workflow: node_id.input_name (default: found by class)"

COMFYUI_TYPE = BackendType(
    name="comfyui",
    summary="FLUX (or any API-format graph) on a ComfyUI server, over HTTP and WebSocket",
    options=(
        Option("url", str, default=DEFAULT_URL, help="the ComfyUI server"),
        Option(
            "workflow",
            str,
            default="flux-schnell",
            help="flux-schnell, flux-dev, or the path of an API-format workflow JSON",
        ),
        Option(
            "layout", str, default="split", choices=LAYOUTS, help="built-in graphs: model files"
        ),
        Option("model", str, help="model name recorded in metadata (default: the workflow's)"),
        Option("unet", str, help="diffusion model file (models/diffusion_models), split layout"),
        Option("clip_l", str, help="CLIP-L text encoder file (models/text_encoders)"),
        Option("t5", str, help="T5-XXL text encoder file (models/text_encoders)"),
        Option("vae", str, help="VAE file (models/vae), split layout"),
        Option("checkpoint", str, help="single checkpoint file (models/checkpoints)"),
        Option(
            "weight_dtype",
            str,
            default="default",
            choices=("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"),
            help="UNETLoader weight type (fp8 halves VRAM)",
        ),
        Option("steps", int, minimum=1, maximum=200, help="default steps (schnell 4, dev 20)"),
        Option("filename_prefix", str, default="imagen", help="SaveImage prefix on the server"),
        Option("connect_timeout", float, default=5.0, minimum=0.1, help="seconds to connect"),
        Option(
            "queue_timeout", float, default=600.0, minimum=0.1, help="seconds to wait in the queue"
        ),
        Option("run_timeout", float, default=600.0, minimum=0.1, help="seconds for one run"),
        MAX_DOWNLOAD_OPTION,
        Option(
            "min_free_vram_gb",
            float,
            minimum=0.0,
            maximum=1024.0,
            help="claim a job only when ComfyUI can use this many GB of VRAM (0: no check; "
            "default: built-in FLUX fp8 12, 16-bit 14, own workflow 0)",
        ),
        Option(
            "free_after_idle_s",
            float,
            default=DEFAULT_FREE_AFTER_IDLE_S,
            minimum=0.0,
            maximum=86_400.0,
            help="after this long with no job, ask ComfyUI to unload its models (0: never)",
        ),
        Option("ollama_url", str, help="Ollama on the same GPU: unload its idle models when short"),
        Option(
            "ollama_keep_alive_s",
            float,
            default=OLLAMA_KEEP_ALIVE_S,
            minimum=0.0,
            maximum=86_400.0,
            help="the keep-alive Ollama runs with (OLLAMA_KEEP_ALIVE), to tell idle models",
        ),
        Option("auth_header", str, help="header sent with every call (e.g. Authorization)"),
        Option("auth_env", str, env=True, help="environment variable holding the header value"),
        Option("output_node", str, help="user workflow: the output node id (default: found)"),
        *(Option(f"{name}_at", str, help=_PLACE_HELP.format(name)) for name in FIELDS),
    ),
    factory=ComfyBackend,
    default_model="flux-schnell",
    probe=_probe,
    model_for=model_name,
)
