"""One ComfyUI server session: HTTP calls (through `backends.http`) and one WebSocket.

A backend instance keeps one `Session` for all its jobs: one httpx client,
one WebSocket under one `clientId`. A reader task routes each text frame
to the mailbox of the prompt it names (`data.prompt_id`); frames for other
prompts and `status` frames are dropped.

Binary frames are latent previews (a server started with `--preview-method`):
the client advertises `supports_preview_metadata` in a `feature_flags`
message on connect, and a server that supports it sends event type 4 (JSON
metadata naming the prompt, then the image), routed by its prompt id. Older
servers send type 1 (format, then the image), which names no prompt: it goes
to the prompt this socket last saw executing (ComfyUI runs one at a time).
Previews reach the mailbox as `PREVIEW` frames; frames for another prompt,
text frames (type 3) and malformed or oversized ones are dropped. When the socket
closes, every mailbox gets `DROPPED`, and each follower polls `/history`
and reconnects (same `clientId`: ComfyUI replaces the old socket and
re-sends the current `executing`), so no result is lost with a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from imagen_tui.backends.http import HttpClient, HttpError, json_object, mask, read_token
from imagen_tui.config.secrets import redact_url
from imagen_tui.errors import GenerationError
from imagen_tui.limits import MAX_BODY_BYTES
from imagen_tui.text import one_line

log = logging.getLogger(__name__)

Frame = Mapping[str, Any]
DROPPED: Final = None  # put in every mailbox when the socket closes
CANCEL_TIMEOUT_S = 3.0  # a cancel's queue delete + interrupt give up after this
MAX_FRAME_BYTES = 64 * 2**20  # binary previews can be large; we drop them unread
MAX_PREVIEW_BYTES = 8 * 2**20  # a larger preview image is dropped
MAX_PREVIEW_METADATA = 4096  # bytes of a type-4 frame's JSON
PREVIEW: Final = "imagen_preview"  # the `type` of a preview frame put in a mailbox
PREVIEW_MIME = {1: "image/jpeg", 2: "image/png"}  # type-1 frames' format codes


def parse_preview(message: bytes) -> tuple[str | None, bytes, str] | None:
    """(prompt id or None, image bytes, MIME type) of a binary preview frame; None for
    any other binary frame or a malformed one."""
    if len(message) < 8:
        return None
    event = int.from_bytes(message[:4], "big")
    if event == 1:
        mime = PREVIEW_MIME.get(int.from_bytes(message[4:8], "big"))
        image = message[8:]
        if mime is None or not image or len(image) > MAX_PREVIEW_BYTES:
            return None
        return None, image, mime
    if event == 4:
        size = int.from_bytes(message[4:8], "big")
        if size > MAX_PREVIEW_METADATA or 8 + size >= len(message):
            return None
        try:
            meta = json.loads(message[8 : 8 + size])
        except ValueError:
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("prompt_id"), str):
            return None
        mime = meta.get("image_type")
        image = message[8 + size :]
        if mime not in PREVIEW_MIME.values() or len(image) > MAX_PREVIEW_BYTES:
            return None
        return meta["prompt_id"], image, str(mime)
    return None


class Unreachable(GenerationError):
    """No connection to the server at all (refused, timed out): it is down or elsewhere."""


class Session:
    """HTTP and WebSocket access to one ComfyUI server, shared by all jobs of a backend."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        connect_timeout: float,
        auth_header: str | None = None,
        auth_env: str | None = None,
        max_bytes: int = MAX_BODY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)  # what messages say (never its userinfo)
        self.client_id = uuid4().hex
        self.connect_timeout = connect_timeout
        self._auth_header = auth_header or "Authorization"
        self._auth_env = auth_env
        self.http = HttpClient(
            name=name,
            base_url=self.url,
            token_env=auth_env,
            auth_header=self._auth_header,
            auth_scheme=None,  # the variable holds the whole header value
            timeout=httpx.Timeout(60.0, connect=connect_timeout),
            max_bytes=max_bytes,
            transport=transport,
        )
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._mailboxes: dict[str, asyncio.Queue[Frame | None]] = {}
        self._lock: asyncio.Lock | None = None
        self._executing: str | None = None  # the prompt this socket last saw start
        # What the server said in its `feature_flags` reply (None: no reply yet).
        self.server_features: Mapping[str, Any] | None = None
        self.previews_seen = 0  # preview frames of our prompts since the session opened

    # ------------------------------------------------------------ socket

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = parts.path.rstrip("/") + "/ws"
        return urlunsplit((scheme, parts.netloc, path, f"clientId={self.client_id}", ""))

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def watch(self, prompt_id: str) -> asyncio.Queue[Frame | None]:
        """A mailbox for `prompt_id`'s frames; open it before the prompt is posted."""
        box: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._mailboxes[prompt_id] = box
        return box

    def unwatch(self, prompt_id: str) -> None:
        self._mailboxes.pop(prompt_id, None)

    async def connect(self) -> None:
        """Open the socket unless it is open; raise a transient GenerationError naming
        the URL when the server cannot be reached."""
        if self.connected:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.connected:
                return
            headers = {}
            if self._auth_env:
                headers[self._auth_header] = self._token()
            try:
                ws = await websockets.connect(
                    self.ws_url,
                    additional_headers=headers,
                    open_timeout=self.connect_timeout,
                    max_size=MAX_FRAME_BYTES,
                    compression=None,
                    user_agent_header=None,
                )
            except websockets.InvalidStatus as error:
                raise self._refused(error.response.status_code) from None
            except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
                raise self.unreachable(error) from None
            except Exception as error:  # the library refused something (a header): never sent
                why = mask(f"{type(error).__name__}: {error}", self.http.secret())
                raise GenerationError(
                    f"{self.name}: could not open the WebSocket to ComfyUI at {self.shown_url} "
                    f"({one_line(why, 200)})"
                ) from None
            # Ask for type-4 previews (naming their prompt); an older server ignores it.
            flags = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps(flags))
            self._ws = ws
            self._reader = asyncio.create_task(self._read(ws), name=f"{self.name} websocket")

    def _refused(self, status: int) -> GenerationError:
        """The server answered the socket's handshake with an HTTP error."""
        if status in (401, 403):
            if self._auth_env:
                why = f"rejected the value of ${self._auth_env} (HTTP {status}); check it"
            else:
                why = f"refused the connection (HTTP {status}); if it needs a header, set "
                why += "auth_header and auth_env"
            return GenerationError(f"{self.name}: ComfyUI at {self.shown_url} {why}")
        return GenerationError(
            f"{self.name}: ComfyUI at {self.shown_url} refused the WebSocket (HTTP {status})",
            transient=True,
        )

    def unreachable(self, error: BaseException) -> Unreachable:
        if isinstance(error, TimeoutError):
            why = f"no answer within {self.connect_timeout:g} s"
        elif isinstance(error, ConnectionRefusedError):
            why = "connection refused"
        else:
            why = one_line(mask(f"{type(error).__name__}: {error}", self.http.secret()), 200)
        return Unreachable(
            f"{self.name}: cannot reach ComfyUI at {self.shown_url} ({why}); is it running?",
            transient=True,
        )

    def _token(self) -> str:
        assert self._auth_env is not None
        return read_token(self.name, self._auth_env, header_value=True)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if not isinstance(message, str):
                    self._preview(message)
                    continue
                try:
                    frame = json.loads(message)
                    if frame.get("type") == "feature_flags" and isinstance(frame["data"], dict):
                        self.server_features = frame["data"]
                        continue
                    prompt_id = frame["data"]["prompt_id"]
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # status, crash reports: not about a prompt
                box = self._mailboxes.get(prompt_id) if isinstance(prompt_id, str) else None
                if box is not None:
                    self._track(frame, prompt_id)
                    box.put_nowait(frame)
        except (websockets.ConnectionClosed, OSError) as error:
            log.info("%s: websocket closed: %s", self.name, error)
        finally:
            for box in self._mailboxes.values():
                box.put_nowait(DROPPED)

    def _track(self, frame: Frame, prompt_id: str) -> None:
        """Which of our prompts runs now (for type-1 previews, which name none)."""
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind in ("execution_start", "progress") or (
            kind == "executing" and data.get("node") is not None
        ):
            self._executing = prompt_id
        elif self._executing == prompt_id and kind in (
            "executing",
            "execution_error",
            "execution_interrupted",
            "execution_success",
        ):
            self._executing = None

    def _preview(self, message: bytes) -> None:
        parsed = parse_preview(message)
        if parsed is None:
            return
        prompt_id, image, mime = parsed
        if prompt_id is None:
            prompt_id = self._executing
        box = self._mailboxes.get(prompt_id) if prompt_id is not None else None
        if box is None:
            return  # another client's prompt, or one no longer followed
        self.previews_seen += 1
        # Type 4 (it names its prompt) comes before its step's progress frame, type 1 after.
        named = parsed[0] is not None
        data = {"image": image, "mime_type": mime, "before_progress": named}
        box.put_nowait({"type": PREVIEW, "data": data})

    # ------------------------------------------------------------ HTTP

    async def submit(self, graph: Mapping[str, Any], prompt_id: str) -> httpx.Response:
        """POST /prompt; the 200 or 400 response (a 400 carries node_errors)."""
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        return await self.http.request("POST", "/prompt", json=body, billable=True, expect=(400,))

    async def history(self, prompt_id: str) -> Mapping[str, Any] | None:
        """The history entry of a finished prompt; None while queued or running."""
        response = await self.http.request("GET", f"/history/{prompt_id}", billable=False)
        entry = json_object(response).get(prompt_id)
        return entry if isinstance(entry, Mapping) else None

    async def queue_state(self, prompt_id: str) -> str | None:
        """`running`, `pending`, or None when `prompt_id` is not in ComfyUI's queue."""
        response = await self.http.request("GET", "/queue", billable=False)
        body = json_object(response)
        for state, key in (("running", "queue_running"), ("pending", "queue_pending")):
            for item in body.get(key) or ():
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return state
        return None

    async def view(self, image: Mapping[str, Any]) -> tuple[bytes, str]:
        """An output image's bytes and MIME type."""
        params = {
            "filename": str(image.get("filename", "")),
            "subfolder": str(image.get("subfolder", "")),
            "type": str(image.get("type", "output")),
        }
        response = await self.http.request("GET", "/view", params=params, billable=False)
        mime = response.headers.get("content-type", "image/png").split(";")[0].strip()
        return response.content, mime or "image/png"

    async def cancel(self, prompt_id: str) -> None:
        """Remove `prompt_id` from the queue if pending, interrupt it if running.

        Best effort, bounded by CANCEL_TIMEOUT_S: the delete comes first, so a
        prompt that starts between the two calls is still interrupted.
        """
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                await self.http.request(
                    "POST", "/queue", json={"delete": [prompt_id]}, billable=False
                )
                await self.http.request(
                    "POST", "/interrupt", json={"prompt_id": prompt_id}, billable=False
                )
        except (HttpError, TimeoutError) as error:
            log.warning("%s: could not cancel prompt %s: %s", self.name, prompt_id, error)

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        await self.http.aclose()
