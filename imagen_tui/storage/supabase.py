"""Supabase Storage: upload each image and its sidecar to a bucket over HTTP.

    POST {url}/storage/v1/object/{bucket}/{prefix/}{key}     raw bytes, Content-Type

The service key (env var `key_env`) goes in the `apikey` header, as the new
`sb_secret_...` keys require (they are not JWTs and must not be sent as
Bearer tokens); a legacy `service_role` JWT is also sent as `Authorization:
Bearer`, as those need. The key is never logged or stored.

Supabase answers most errors with HTTP 400 and the real status as a string
in the body (`{"statusCode": "409", "error": "Duplicate", ...}`), so errors
are classified on the body; success is 200 (or 201) and nothing else: a
redirect (an `http://` URL, a proxy) stored nothing. An upload never
overwrites another object: if the name is taken, the image goes under the
name plus the first 12 digits of the SHA-256 of the image and its sidecar
(upserted, so a retry lands on the same object, and only identical files
can meet there). The sidecar is named after the image's final object name
(`x.png` -> `x.png.json`), so it belongs to that image alone. Object keys
are ASCII (`object_key`): Storage refuses others. Transient failures (429,
5xx, a lost connection) are retried with backoff; the local file is never
touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from imagen_tui.backends.http import (
    Classification,
    HttpClient,
    HttpError,
    server_message,
)
from imagen_tui.config.secrets import redact_url
from imagen_tui.limits import UPLOAD_DEADLINE_S
from imagen_tui.retry import backoff_delay
from imagen_tui.storage import Upload

if TYPE_CHECKING:
    from imagen_tui.storage import StorageSettings

log = logging.getLogger(__name__)

ATTEMPTS = 3  # uploads of one file, on top of HttpClient's own retry of a failed call
RETRY_BASE_S = 1.0
RETRY_CAP_S = 10.0
SCHEME = "supabase"

Sleep = Callable[[float], Awaitable[None]]


def _body_status(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("statusCode") or "") if isinstance(body, dict) else ""


def classify(response: httpx.Response) -> Classification | None:
    """Supabase Storage's refusals, by the status its body names."""
    said = server_message(response)
    code = _body_status(response)
    if code == "409":
        return Classification("duplicate", said)
    if code in ("401", "403"):
        return Classification("access denied", f"{said} (check the key and the bucket's policies)")
    if code == "404":
        return Classification("not found", f"{said} (does the bucket exist?)")
    if code == "413":
        return Classification("too large", said)
    if code == "415":
        return Classification("type refused", f"{said} (the bucket's allowed MIME types)")
    return None


def _jwt_bearer(token: str) -> Mapping[str, str]:
    """A legacy JWT key also goes as a Bearer token; the new secret keys never do."""
    return {"Authorization": f"Bearer {token}"} if token.startswith("eyJ") else {}


# What an object key segment may hold as it is; anything else is transliterated.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_SUCCESS = (200, 201)  # Storage's documented success statuses for an upload


def object_key(key: PurePosixPath) -> str:
    """`key` as an ASCII object key Storage accepts: each segment made of
    [A-Za-z0-9._-] stays as it is; any other is transliterated (accents
    dropped, other characters become `-`) and gets the first 8 hex digits
    of the SHA-256 of its original text, so `café` and `cafe` stay apart
    and `東京` still has a name."""
    parts = []
    for segment in key.parts:
        if _SAFE_SEGMENT.fullmatch(segment) and segment not in (".", ".."):
            parts.append(segment)
            continue
        stem, dot, suffix = segment.rpartition(".")
        if not dot or not _SAFE_SEGMENT.fullmatch(suffix):
            stem, suffix = segment, ""
        plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        plain = _UNSAFE_RUN.sub("-", plain).strip("-.")
        digest = hashlib.sha256(segment.encode()).hexdigest()[:8]
        name = f"{plain}-{digest}" if plain else digest
        parts.append(f"{name}.{suffix}" if suffix else name)
    return "/".join(parts)


def object_uri(url: str, bucket: str, path: str) -> str:
    """The object's authenticated download URL (GET it with the key or a user's JWT)."""
    return redact_url(f"{url}/storage/v1/object/{quote(bucket)}/{quote(path)}")


class SupabaseStorage:
    type_name = "supabase"

    def __init__(
        self,
        url: str,
        bucket: str,
        key_env: str,
        *,
        prefix: str = "",
        deadline_s: float = UPLOAD_DEADLINE_S,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.deadline_s = deadline_s
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._sleep = sleep
        self.http = HttpClient(
            name="supabase storage",
            base_url=f"{self.url}/storage/v1/",
            token_env=key_env,
            auth_header="apikey",
            auth_scheme=None,
            timeout=httpx.Timeout(120.0, connect=5.0),
            classify=classify,
            extra_auth=_jwt_bearer,
            sleep=sleep,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: StorageSettings, **kwargs: Any) -> SupabaseStorage:
        assert settings.url and settings.bucket and settings.key_env
        return cls(
            settings.url, settings.bucket, settings.key_env, prefix=settings.prefix, **kwargs
        )

    def _path(self, key: PurePosixPath) -> str:
        name = object_key(key)
        return f"{self.prefix}/{name}" if self.prefix else name

    async def store(self, upload: Upload) -> str:
        """Upload the image and its sidecar; the image's object URI. One deadline
        (`deadline_s`) covers both files and every retry, however slow the server."""
        try:
            async with asyncio.timeout(self.deadline_s):
                return await self._store(upload)
        except TimeoutError:
            raise HttpError(
                f"supabase storage: keeping {upload.key} took longer than {self.deadline_s:g} s; "
                "gave up",
                transient=True,
            ) from None

    async def _store(self, upload: Upload) -> str:
        image = await asyncio.to_thread(upload.image.read_bytes)
        sidecar = None
        if upload.sidecar is not None:
            sidecar = await asyncio.to_thread(upload.sidecar.read_bytes)
        path = self._path(upload.key)
        try:
            await self._upload(path, image, upload.mime_type, upsert=False)
        except HttpError as error:
            if error.kind != "duplicate":
                raise
            # Taken (another worker's image, or our own earlier try): a name of its own,
            # from both files, so only the very same image and metadata share it.
            digest = hashlib.sha256(image + (sidecar or b"")).hexdigest()[:12]
            key = upload.key.with_name(f"{upload.key.stem}-{digest}{upload.key.suffix}")
            path = self._path(key)
            await self._upload(path, image, upload.mime_type, upsert=True)
        if sidecar is not None:
            # Named after the image's final name: no other image's sidecar can be replaced.
            await self._upload(f"{path}.json", sidecar, "application/json", upsert=True)
        return object_uri(self.url, self.bucket, path)

    async def _upload(self, path: str, data: bytes, mime_type: str, *, upsert: bool) -> None:
        """One object, tried up to ATTEMPTS times while the failure is transient."""
        target = f"object/{quote(self.bucket)}/{quote(path)}"
        headers = {"Content-Type": mime_type, "x-upsert": "true" if upsert else "false"}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await self.http.request(
                    "POST", target, billable=False, content=data, headers=headers
                )
                if response.status_code not in _SUCCESS:
                    raise HttpError(
                        f"supabase storage: upload of {path} answered {response.status_code} "
                        f"{response.reason_phrase}, not 200: nothing was stored (check "
                        "storage.url: the project's https:// URL, no proxy that redirects)",
                        status=response.status_code,
                    )
                return
            except HttpError as error:
                if not error.transient or attempt == ATTEMPTS:
                    raise
                wait = max(
                    error.retry_after or 0.0,
                    backoff_delay(attempt, base=RETRY_BASE_S, cap=RETRY_CAP_S),
                )
                log.warning(
                    "supabase storage: upload of %s failed (%s); try %d of %d in %.1f s",
                    path,
                    error,
                    attempt + 1,
                    ATTEMPTS,
                    wait,
                )
                await self._sleep(wait)

    async def aclose(self) -> None:
        await self.http.aclose()
