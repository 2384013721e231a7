"""Where a worker keeps its images besides the local folder: the `Storage` protocol.

- `local` (the default): today's behaviour. The pipeline has already written
  the image and its sidecar to the output folder; nothing more is done and
  the images row carries no object URI.
- `supabase` (`supabase.py`): each image (and its sidecar) is uploaded to a
  Supabase Storage bucket under the same relative path the naming template
  gave it locally, and the object's URI is recorded on the images row
  (`object_uri`), so any front end with database access can fetch the full
  image. An upload is retried; one that still fails is logged and the image
  stays local (the row is recorded without an object URI). The local file is
  never touched.

The config block (`storage:` at the top of imagen.yaml) is checked here, as
backend blocks are by `backends.registry`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Protocol

from imagen_tui.config import Locate
from imagen_tui.config.secrets import url_userinfo_problem
from imagen_tui.errors import ConfigError
from imagen_tui.limits import ENV_NAME

__all__ = [
    "LocalStorage",
    "Storage",
    "StorageSettings",
    "Upload",
    "check_storage_block",
    "open_storage",
]

# A bucket name, and each folder of a prefix: no '/', and never '.' or '..' (httpx
# removes dot segments, which would send an upload to another Storage API path).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")

# How Supabase keys begin: a key_env holding one is the key itself, pasted in by mistake.
_KEY_PREFIXES = ("sb_secret_", "sb_publishable_", "eyJ")

STORAGE_KEYS = {
    "local": ("type",),
    "supabase": ("type", "url", "bucket", "key_env", "prefix"),
}


class Upload(NamedTuple):
    """One image to keep: its files on disk and the name the naming template gave it."""

    image: Path
    sidecar: Path | None
    key: PurePosixPath  # relative, e.g. 2026-12-02/0941_a-red-fox_42.png
    mime_type: str


class Storage(Protocol):
    type_name: str

    async def store(self, upload: Upload) -> str | None:
        """Keep the image; the object URI to record, or None when it is only local.
        Raises `GenerationError` (an `HttpError`) when a remote copy failed."""
        ...

    async def aclose(self) -> None: ...


class LocalStorage:
    """The output folder only (the pipeline already wrote the files)."""

    type_name = "local"

    async def store(self, upload: Upload) -> str | None:
        return None

    async def aclose(self) -> None:
        """Nothing to release."""


class StorageSettings(NamedTuple):
    type: str = "local"
    url: str | None = None
    bucket: str | None = None
    key_env: str | None = None
    prefix: str = ""

    @property
    def status(self) -> str:
        """`ok`, or `not configured (set VAR)`."""
        import os

        if self.key_env and not os.environ.get(self.key_env, "").strip():
            return f"not configured (set {self.key_env})"
        return "ok"


def _no_location(_path: tuple[str, ...]) -> str | None:
    return None


def check_storage_block(block: Mapping[str, Any], locate: Locate = _no_location) -> StorageSettings:
    """Check the `storage:` block; ConfigError naming the key at fault."""
    if not block:
        return StorageSettings()
    kind = block.get("type", "local")
    if kind not in STORAGE_KEYS:
        raise ConfigError(
            f"storage.type: {kind!r} is not a storage type; use local or supabase",
            locate(("storage", "type")),
        )
    for key, value in block.items():
        if key not in STORAGE_KEYS[kind]:
            raise ConfigError(
                f"storage.{key}: unknown key for {kind} storage; known keys: "
                f"{', '.join(STORAGE_KEYS[kind])}",
                locate(("storage", str(key))),
            )
        if not isinstance(value, str):
            raise ConfigError(f"storage.{key}: expected a string", locate(("storage", str(key))))
    if kind == "local":
        return StorageSettings()
    for key in ("url", "bucket", "key_env"):
        if not block.get(key, "").strip():
            raise ConfigError(f"storage.{key}: required for supabase storage", locate(("storage",)))
    url = block["url"].strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(
            "storage.url: expected the project URL, e.g. https://PROJECT.supabase.co",
            locate(("storage", "url")),
        )
    problem = url_userinfo_problem("storage.url", url)
    if problem is not None:
        raise ConfigError(problem, locate(("storage", "url")))
    if url.startswith("http://") and not _loopback(url):
        raise ConfigError(
            "storage.url: http:// is allowed only on this machine (127.0.0.1, localhost); "
            "use the project's https:// URL",
            locate(("storage", "url")),
        )
    bucket = block["bucket"].strip()
    if not _SAFE_NAME.fullmatch(bucket):
        raise ConfigError(
            f"storage.bucket: {_shown(bucket)} is not a bucket name; use letters, digits, "
            "'.', '_' and '-' (not starting with '.', no '/')",
            locate(("storage", "bucket")),
        )
    prefix = block.get("prefix", "").strip().strip("/")
    if prefix and not all(
        _SAFE_NAME.fullmatch(folder) and folder not in (".", "..") for folder in prefix.split("/")
    ):
        raise ConfigError(
            f"storage.prefix: {_shown(prefix)} is not a folder path; use folder names of "
            "letters, digits, '.', '_' and '-' separated by '/' (no '.' or '..' folders)",
            locate(("storage", "prefix")),
        )

    key_env = block["key_env"]
    if not re.fullmatch(ENV_NAME, key_env) or key_env.startswith(_KEY_PREFIXES):
        raise ConfigError(
            # Never echo it: it may be the key itself, pasted in by mistake.
            "storage.key_env: not an environment variable name; name the variable that "
            "holds the service key, e.g. SUPABASE_SECRET_KEY",
            locate(("storage", "key_env")),
        )
    return StorageSettings(
        type="supabase",
        url=url,
        bucket=bucket,
        key_env=block["key_env"],
        prefix=prefix,
    )


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    """A config value quoted for a one-line error (control characters escaped)."""
    from imagen_tui.text import one_line

    return repr(one_line(value, 60))


def open_storage(settings: StorageSettings) -> Storage:
    if settings.type == "supabase":
        from imagen_tui.storage.supabase import SupabaseStorage

        return SupabaseStorage.from_settings(settings)
    return LocalStorage()
