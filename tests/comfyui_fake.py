"""A fake ComfyUI server for tests: real HTTP and WebSocket on 127.0.0.1, an ephemeral port.

It replays the transcripts recorded from ComfyUI 0.3.64 (tests/fixtures/comfyui,
see the README there): the frames of ws_ok / ws_exec_error / ws_interrupted /
ws_cached_rerun with this run's prompt id, the history entries, the 400
bodies of validation, /system_stats and /object_info. One executor runs the
queue in order, like ComfyUI's prompt worker: `status` frames go to every
socket, the rest to the prompt's `client_id` only; history is written
before the final `executing {node: null}`.

What a run does is `scenario` when it starts:

- "ok": the recorded success; an identical graph again is a cached rerun
  (execution_cached of every node, the old file names, no new file);
- "progress": sampler steps 1..steps as `progress` frames, `step_delay` apart;
  with `preview_method` set (as `--preview-method auto` does), each step's
  progress frame comes with a latent preview (a 512x512 JPEG): binary event
  type 4 (metadata naming the prompt), sent before the progress frame, on a
  socket that advertised `supports_preview_metadata` in its `feature_flags`
  message while `supports_metadata` is on, else type 1 (no prompt id) after
  it, as ComfyUI 0.3.64 does; `foreign_previews` also sends, before each
  type-4 one, a preview naming another prompt id;
- "exec_error" / "oom": the recorded execution_error (the OOM one with
  torch.OutOfMemoryError and ComfyUI's own tip);
- "hold": starts, reports one step, then runs until interrupted;
- "drop": starts, then closes every socket, refuses new ones until the run
  has finished (its result only in /history), then accepts them again.

`installed` (folder -> files) turns on validation of model file names, the
way ComfyUI does it (a 400 `value_not_in_list` naming the choices).
`set_vram()` makes `/system_stats` report a GPU with the given figures (it
reports the recorded CPU device until then); they can change at any time.
`POST /free` answers 200 and is recorded like every call.
`occupy()` puts another client's prompt in the running slot (held), so the
next prompt waits in the queue. Every call is recorded in `calls`;
`wait_for` waits on a condition, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Opcode
from websockets.server import ServerProtocol

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"
MODEL_FOLDERS = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
}
OOM_MESSAGE = (
    "Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size "
    "to a large number."
)


def _preview_jpeg() -> bytes:
    """A 512x512 JPEG like ComfyUI's latent previews (--preview-size 512)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (200, 60, 30)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


PREVIEW_JPEG = _preview_jpeg()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def transcript(name: str) -> list[dict[str, Any]]:
    """The server->client text frames of a ws_*.jsonl transcript, minus the first
    (the `status` with `sid`, which the fake sends on connect)."""
    frames = []
    for line in (FIXTURES / name).read_text().splitlines():
        entry = json.loads(line)
        if entry.get("dir") == "server->client" and "text" in entry:
            frames.append(entry["text"])
    return frames[1:]


def _replace_prompt_id(value: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(value).replace(old, new))


@dataclass
class _Prompt:
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    number: int
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    foreign: bool = False  # occupy(): another client's prompt
    forgotten: bool = False  # restart(): the server lost it


@dataclass
class _Socket:
    client_id: str
    protocol: ServerProtocol
    writer: asyncio.StreamWriter
    metadata: bool = False  # negotiated type-4 previews (feature_flags)

    def send(self, frame: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        self.writer.write(b"".join(self.protocol.data_to_send()))


class FakeComfy:
    def __init__(self) -> None:
        self.scenario = "ok"
        self.next_scenarios: list[str] = []  # taken one per run before `scenario`
        self.step_delay = 0.0
        self.preview_method: str | None = None  # ComfyUI's --preview-method; None: no previews
        self.supports_metadata = True  # answers feature_flags (ComfyUI >= 0.3.4x)
        self.foreign_previews = False
        self.previews_sent = 0
        self.feature_flags: list[dict[str, Any]] = []  # what clients advertised
        self.installed: dict[str, list[str]] | None = None
        self.calls: list[tuple[str, str, Any]] = []
        self.headers: list[tuple[str, dict[str, str]]] = []  # (path, lower-cased headers)
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.ws_connects = 0
        self.refuse_ws = False
        self.refuse_status = "503 Service Unavailable"  # the answer to a refused socket
        self.device: dict[str, Any] | None = None  # set_vram(): /system_stats' device
        self._cond = threading.Condition()
        self._pending: list[_Prompt] = []
        self._running: _Prompt | None = None
        self._sockets: dict[str, _Socket] = {}
        self._connections: set[asyncio.StreamWriter] = set()  # every open client connection
        self._cache: dict[str, list[dict[str, Any]]] = {}
        self._counter = 0
        self._number = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._work: asyncio.Event | None = None
        self._executor_task: asyncio.Task[None]
        self._png = (FIXTURES / "imagen_00001_.png").read_bytes()
        self.port = 0

    # ------------------------------------------------------------ control (test thread)

    def start(self) -> FakeComfy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._work = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._executor_task = asyncio.create_task(self._executor())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return  # stopped already (a test took the server down)

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._connections):  # a dead process closes every socket
                writer.transport.abort()
            self._executor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._executor_task

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"fake ComfyUI: timed out waiting for {what or predicate}")

    def called(self, method: str, path: str) -> list[Any]:
        """The JSON bodies (or queries) of the calls to `method path` so far."""
        with self._cond:
            return [body for m, p, body in self.calls if m == method and p == path]

    def posted_graphs(self) -> list[dict[str, Any]]:
        return [body["prompt"] for body in self.called("POST", "/prompt")]

    @property
    def running_id(self) -> str | None:
        with self._cond:
            return None if self._running is None else self._running.prompt_id

    @property
    def pending_ids(self) -> list[str]:
        with self._cond:
            return [p.prompt_id for p in self._pending]

    def occupy(self) -> str:
        """Another client's prompt takes the running slot and holds it until interrupted."""
        prompt_id = str(uuid.uuid4())

        def add() -> None:
            with self._cond:
                self._number += 1
                graph = fixture("queue_running.json")["response"]["json"]["queue_running"][0][2]
                self._pending.append(_Prompt(prompt_id, graph, None, self._number, foreign=True))
                self._cond.notify_all()
            assert self._work is not None
            self._work.set()

        self._loop.call_soon_threadsafe(add)
        self.wait_for(lambda: self._running is not None and self._running.prompt_id == prompt_id)
        return prompt_id

    def set_vram(self, free_gb: float, total_gb: float = 16.0, held_gb: float = 0.0) -> None:
        """/system_stats reports a CUDA device: `free_gb` free on the card (torch's unused
        reserve included), of which `held_gb` is memory ComfyUI itself holds loaded."""
        gib = 2**30
        with self._cond:
            self.device = {
                "name": "cuda:0 NVIDIA GeForce RTX 4070 Ti SUPER : cudaMallocAsync",
                "type": "cuda",
                "index": 0,
                "vram_total": int(total_gb * gib),
                "vram_free": int(free_gb * gib),
                "torch_vram_total": int(held_gb * gib),
                "torch_vram_free": 0,
            }

    def release(self, prompt_id: str) -> None:
        """End a held prompt (as if interrupted)."""
        self._loop.call_soon_threadsafe(self._interrupt, prompt_id)

    def restart(self) -> None:
        """As if ComfyUI restarted: sockets, queue and history (kept in memory) are gone."""

        def forget() -> None:
            self._drop_sockets()
            with self._cond:
                running, self._running = self._running, None
                self._pending.clear()
                self.history.clear()
                self._cond.notify_all()
            if running is not None:
                running.forgotten = True
                running.interrupted.set()

        self._loop.call_soon_threadsafe(forget)

    def drop_sockets(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_sockets)

    # ------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                body = b""
                if int(headers.get("content-length", "0")):
                    body = await reader.readexactly(int(headers["content-length"]))
                url = urlsplit(target)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with self._cond:
                    self.headers.append((url.path, headers))
                if url.path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(head, query, reader, writer)
                    return
                payload = json.loads(body) if body else None
                self._record(method, url.path, payload if payload is not None else query)
                status, content_type, content = await self._route(method, url.path, query, payload)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(content)}\r\n\r\n".encode()
                    + content
                )
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._cond:
            self.calls.append((method, path, body))
            self._cond.notify_all()

    async def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, str, bytes]:
        def ok(value: Any, status: int = 200) -> tuple[int, str, bytes]:
            return status, "application/json; charset=utf-8", json.dumps(value).encode()

        if method == "GET" and path == "/system_stats":
            stats = fixture("system_stats.json")["response"]["json"]
            if self.preview_method:
                stats["system"]["argv"] += ["--preview-method", self.preview_method]
            with self._cond:
                if self.device is not None:
                    stats["devices"] = [dict(self.device)]
            return ok(stats)
        if method == "POST" and path == "/free":
            return 200, "text/plain", b""
        if method == "GET" and path.startswith("/object_info/"):
            return ok(self._object_info(path.removeprefix("/object_info/")))
        if method == "POST" and path == "/prompt":
            return ok(*self._submit(body))
        if method == "GET" and path.startswith("/history/"):
            entry = self.history.get(path.removeprefix("/history/"))
            return ok({path.removeprefix("/history/"): entry} if entry else {})
        if method == "GET" and path == "/view":
            key = (
                query.get("filename", ""),
                query.get("subfolder", ""),
                query.get("type", "output"),
            )
            if key not in self.files:
                return 404, "text/plain", b""
            return 200, "image/png", self.files[key]
        if method == "GET" and path == "/queue":
            return ok(
                {
                    "queue_running": [self._item(self._running)] if self._running else [],
                    "queue_pending": [self._item(p) for p in self._pending],
                }
            )
        if method == "POST" and path == "/queue":
            with self._cond:
                deleted = set((body or {}).get("delete", []))
                self._pending = [p for p in self._pending if p.prompt_id not in deleted]
                self._cond.notify_all()
            return 200, "text/plain", b""
        if method == "POST" and path == "/interrupt":
            target = (body or {}).get("prompt_id")
            if self._running is not None and target in (None, self._running.prompt_id):
                self._interrupt(self._running.prompt_id)
            return 200, "text/plain", b""
        return 404, "text/plain", b"404: Not Found"

    @staticmethod
    def _item(prompt: _Prompt | None) -> list[Any]:
        assert prompt is not None
        return [prompt.number, prompt.prompt_id, prompt.graph, {"client_id": prompt.client_id}, []]

    def _object_info(self, class_type: str) -> dict[str, Any]:
        info = copy.deepcopy(fixture("object_info_flux_nodes.json")["response"]["json"])
        if class_type not in info:
            return {}
        node = info[class_type]
        for (cls, input_name), folder in MODEL_FOLDERS.items():
            if cls == class_type and self.installed is not None:
                node["input"]["required"][input_name][0] = list(self.installed.get(folder, []))
        return {class_type: node}

    def _submit(self, body: Any) -> tuple[dict[str, Any], int]:
        invalid = fixture("prompt_invalid.json")
        if not isinstance(body, dict) or "prompt" not in body:
            return invalid["no_prompt_key"]["response"]["json"], 400
        graph = body["prompt"]
        if not any(n.get("class_type") in ("SaveImage", "PreviewImage") for n in graph.values()):
            return invalid["no_output_node"]["response"]["json"], 400
        node_errors = self._model_errors(graph)
        if node_errors:
            template = invalid["flux_schnell_models_not_installed"]["response"]["json"]
            return {"error": template["error"], "node_errors": node_errors}, 400
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        with self._cond:
            self._number += 1
            self._pending.append(_Prompt(prompt_id, graph, body.get("client_id"), self._number))
            self._cond.notify_all()
        assert self._work is not None
        self._work.set()
        self._broadcast_status()
        return {"prompt_id": prompt_id, "number": self._number, "node_errors": {}}, 200

    def _model_errors(self, graph: dict[str, Any]) -> dict[str, Any]:
        """ComfyUI's validation of model file names, in the recorded 400's shape."""
        if self.installed is None:
            return {}
        outputs = [n for n, s in graph.items() if s["class_type"] in ("SaveImage", "PreviewImage")]
        node_errors: dict[str, Any] = {}
        for node, spec in graph.items():
            for input_name, value in spec["inputs"].items():
                folder = MODEL_FOLDERS.get((spec["class_type"], input_name))
                choices = self.installed.get(folder or "", [])
                if folder is None or value in choices:
                    continue
                report = node_errors.setdefault(
                    node,
                    {"errors": [], "dependent_outputs": outputs, "class_type": spec["class_type"]},
                )
                report["errors"].append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"{input_name}: {value!r} not in {choices!r}",
                        "extra_info": {
                            "input_name": input_name,
                            "input_config": [choices, {}],
                            "received_value": value,
                        },
                    }
                )
        return node_errors

    # ------------------------------------------------------------ WebSocket

    async def _websocket(
        self,
        head: bytes,
        query: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._record("GET", "/ws", query)
        if self.refuse_ws:
            writer.write(f"HTTP/1.1 {self.refuse_status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            return
        protocol = ServerProtocol()
        protocol.receive_data(head)
        request = protocol.events_received()[0]
        protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
        writer.write(b"".join(protocol.data_to_send()))
        client_id = query.get("clientId") or uuid.uuid4().hex
        sock = _Socket(client_id, protocol, writer)
        old = self._sockets.get(client_id)
        if old is not None:
            old.writer.transport.abort()
        self._sockets[client_id] = sock
        with self._cond:
            self.ws_connects += 1
            self._cond.notify_all()
        queue_remaining = len(self._pending) + (1 if self._running else 0)
        sock.send(
            {
                "type": "status",
                "data": {
                    "status": {"exec_info": {"queue_remaining": queue_remaining}},
                    "sid": client_id,
                },
            }
        )
        running = self._running
        if running is not None and running.client_id == client_id:  # ComfyUI re-sends this
            sock.send({"type": "executing", "data": {"node": "7", "prompt_id": running.prompt_id}})
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                protocol.receive_data(data)
                for event in protocol.events_received():
                    self._client_frame(sock, event)
                writer.write(b"".join(protocol.data_to_send()))
                if protocol.close_expected():  # the client closed: answered, now hang up
                    break
        except ConnectionError:
            pass
        finally:
            if self._sockets.get(client_id) is sock:
                del self._sockets[client_id]
            writer.close()

    def _client_frame(self, sock: _Socket, event: Any) -> None:
        """A client's text frame: ComfyUI acts on `feature_flags` only."""
        if getattr(event, "opcode", None) != Opcode.TEXT:
            return
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(event.data)
            if message.get("type") == "feature_flags":
                flags = message.get("data") or {}
                with self._cond:
                    self.feature_flags.append(flags)
                    self._cond.notify_all()
                if self.supports_metadata:
                    sock.metadata = bool(flags.get("supports_preview_metadata"))
                    sock.send(
                        {
                            "type": "feature_flags",
                            "data": {"supports_preview_metadata": True, "max_upload_size": 1},
                        }
                    )

    def _metadata(self, prompt: _Prompt) -> bool:
        sock = self._sockets.get(prompt.client_id or "")
        return sock is not None and sock.metadata

    def _preview(self, prompt: _Prompt, prompt_id: str | None = None) -> None:
        """A latent preview of `prompt` (or one naming `prompt_id`), as ComfyUI sends it."""
        sock = self._sockets.get(prompt.client_id or "")
        if sock is None:
            return
        if sock.metadata:
            meta = {
                "node_id": "3",
                "prompt_id": prompt_id or prompt.prompt_id,
                "display_node_id": "3",
                "parent_node_id": None,
                "real_node_id": "3",
                "image_type": "image/jpeg",
            }
            raw = json.dumps(meta).encode()
            data = b"\x00\x00\x00\x04" + len(raw).to_bytes(4, "big") + raw + PREVIEW_JPEG
        else:
            data = b"\x00\x00\x00\x01\x00\x00\x00\x01" + PREVIEW_JPEG
        self._send_bytes(prompt, data)
        with self._cond:
            self.previews_sent += 1
            self._cond.notify_all()

    def _send(self, prompt: _Prompt, frame: dict[str, Any]) -> None:
        if frame.get("type") == "status" or frame.get("type") == "execution_interrupted":
            for sock in list(self._sockets.values()):
                with contextlib.suppress(Exception):
                    sock.send(frame)
            return
        client = self._sockets.get(prompt.client_id or "")
        if client is not None:
            with contextlib.suppress(Exception):
                client.send(frame)

    def _send_bytes(self, prompt: _Prompt, data: bytes) -> None:
        sock = self._sockets.get(prompt.client_id or "")
        if sock is not None:
            sock.protocol.send_binary(data)
            sock.writer.write(b"".join(sock.protocol.data_to_send()))

    def _broadcast_status(self) -> None:
        remaining = len(self._pending) + (1 if self._running else 0)
        frame = {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": remaining}}},
        }
        for sock in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                sock.send(frame)

    def _drop_sockets(self) -> None:
        for sock in list(self._sockets.values()):
            sock.writer.transport.abort()
        self._sockets.clear()

    # ------------------------------------------------------------ the executor

    def _interrupt(self, prompt_id: str) -> None:
        running = self._running
        if running is not None and running.prompt_id == prompt_id:
            running.interrupted.set()

    async def _executor(self) -> None:
        assert self._work is not None
        while True:
            await self._work.wait()
            self._work.clear()
            while self._pending:
                with self._cond:
                    prompt = self._pending.pop(0)
                    self._running = prompt
                    self._cond.notify_all()
                try:
                    await self._run(prompt)
                finally:
                    with self._cond:
                        self._running = None
                        self._cond.notify_all()
                if prompt.forgotten:
                    continue
                self._broadcast_status()
                self._send(
                    prompt,
                    {"type": "executing", "data": {"node": None, "prompt_id": prompt.prompt_id}},
                )

    def _send_executing(self, prompt: _Prompt, node: str) -> None:
        """The frame ComfyUI sends when `node` starts executing."""
        data = {"node": node, "display_node": node, "prompt_id": prompt.prompt_id}
        self._send(prompt, {"type": "executing", "data": data})

    def _frames(self, name: str, prompt: _Prompt, recorded_id: str) -> list[dict[str, Any]]:
        return [
            _replace_prompt_id(frame, recorded_id, prompt.prompt_id)
            for frame in transcript(name)
            if frame["type"] not in ("progress_state", "status")
            and not (frame["type"] == "executing" and frame["data"]["node"] is None)
        ]

    def _finish(
        self, prompt: _Prompt, status_str: str, outputs: dict[str, Any], messages: list[Any]
    ) -> None:
        with self._cond:
            self.history[prompt.prompt_id] = {
                "prompt": [
                    prompt.number,
                    prompt.prompt_id,
                    prompt.graph,
                    {"client_id": prompt.client_id},
                    [],
                ],
                "outputs": outputs,
                "status": {
                    "status_str": status_str,
                    "completed": status_str == "success",
                    "messages": messages,
                },
                "meta": {},
            }
            self._cond.notify_all()

    async def _run(self, prompt: _Prompt) -> None:
        if prompt.foreign:
            await prompt.interrupted.wait()
            self._finish(prompt, "error", {}, [])
            return
        scenario = self.next_scenarios.pop(0) if self.next_scenarios else self.scenario
        graph = prompt.graph
        output = next(
            n for n, s in graph.items() if s["class_type"] in ("SaveImage", "PreviewImage")
        )
        sampler = next((n for n, s in graph.items() if s["class_type"] == "KSampler"), output)
        start = {
            "type": "execution_start",
            "data": {"prompt_id": prompt.prompt_id, "timestamp": _ms()},
        }
        self._send(prompt, start)
        if scenario in ("exec_error", "oom"):
            frames = self._frames(
                "ws_exec_error.jsonl", prompt, "2bc6e3ef-59b1-47eb-8ca0-c952fb454a85"
            )
            for frame in frames:
                if frame["type"] == "execution_error" and scenario == "oom":
                    frame["data"].update(
                        node_id=sampler,
                        node_type="KSampler",
                        exception_type="torch.OutOfMemoryError",
                        exception_message=OOM_MESSAGE,
                    )
                if frame["type"] != "execution_start":
                    self._send(prompt, frame)
            error = next(f for f in frames if f["type"] == "execution_error")
            self._finish(
                prompt,
                "error",
                {},
                [["execution_start", start["data"]], ["execution_error", error["data"]]],
            )
            return
        if scenario == "hold":
            self._send_executing(prompt, sampler)
            self._send(
                prompt,
                {
                    "type": "progress",
                    "data": {"value": 1, "max": 4, "prompt_id": prompt.prompt_id, "node": sampler},
                },
            )
            await prompt.interrupted.wait()
            if prompt.forgotten:
                return
            frames = self._frames(
                "ws_interrupted.jsonl", prompt, "2be1d1dc-e445-4900-892e-a8e4cba7b028"
            )
            interrupted = next(f for f in frames if f["type"] == "execution_interrupted")
            self._send(prompt, interrupted)
            self._finish(
                prompt,
                "error",
                {},
                [
                    ["execution_start", start["data"]],
                    ["execution_interrupted", interrupted["data"]],
                ],
            )
            return
        key = json.dumps(graph, sort_keys=True)
        if key in self._cache:  # a cached rerun: the recorded frames, the old files
            for frame in self._frames(
                "ws_cached_rerun.jsonl", prompt, "b9230770-5d9a-4875-ab77-a6c72d6d6069"
            ):
                if frame["type"] == "execution_start":
                    continue
                if frame["type"] == "execution_cached":
                    frame["data"]["nodes"] = list(graph)
                if frame["type"] == "executed":
                    frame["data"].update(
                        node=output, display_node=output, output={"images": self._cache[key]}
                    )
                self._send(prompt, frame)
            self._finish(prompt, "success", {output: {"images": self._cache[key]}}, [])
            return
        if scenario == "progress":
            steps = int(graph[sampler]["inputs"].get("steps", 4)) if sampler != output else 4
            self._send_executing(prompt, sampler)
            metadata = self._metadata(prompt)
            for step in range(1, steps + 1):
                if self.step_delay:
                    await asyncio.sleep(self.step_delay)
                if self.preview_method and metadata:  # type 4: before its progress frame
                    if self.foreign_previews:
                        self._preview(prompt, str(uuid.uuid4()))
                    self._preview(prompt)
                self._send(
                    prompt,
                    {
                        "type": "progress",
                        "data": {
                            "value": step,
                            "max": steps,
                            "prompt_id": prompt.prompt_id,
                            "node": sampler,
                        },
                    },
                )
                if self.preview_method and not metadata:  # type 1: after it
                    self._preview(prompt)
        if scenario == "drop":
            self._send(
                prompt,
                {
                    "type": "progress",
                    "data": {"value": 1, "max": 4, "prompt_id": prompt.prompt_id, "node": sampler},
                },
            )
            self.refuse_ws = True
            self._drop_sockets()
        images = self._save(
            graph[output]["inputs"].get("filename_prefix", "ComfyUI"), graph[output]["class_type"]
        )
        self._cache[key] = images
        for frame in self._frames("ws_ok.jsonl", prompt, "cc4f9d69-b05f-43bf-8e58-13369e468585"):
            if frame["type"] == "execution_start":
                continue
            if frame["type"] == "executed":
                frame["data"].update(node=output, display_node=output, output={"images": images})
            self._send(prompt, frame)
        self._finish(
            prompt, "success", {output: {"images": images}}, [["execution_start", start["data"]]]
        )
        if scenario == "drop":
            self.refuse_ws = False

    def _save(self, prefix: str, class_type: str) -> list[dict[str, str]]:
        self._counter += 1
        subfolder, _, base = prefix.rpartition("/")
        kind = "temp" if class_type == "PreviewImage" else "output"
        filename = f"{base}_{self._counter:05}_.png"
        with self._cond:
            self.files[(filename, subfolder, kind)] = self._png
        return [{"filename": filename, "subfolder": subfolder, "type": kind}]


def _ms() -> int:
    return int(time.time() * 1000)
