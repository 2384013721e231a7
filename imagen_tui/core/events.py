"""What a live view hears from the queue: job events and the listener's state.

These are plain data (no driver): `db.events` produces them from PostgreSQL
notifications, and front ends consume them through `services.job_events`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Connected:
    """LISTENing (again). After a reconnect (`first` False) re-read what you show."""

    first: bool


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; reconnecting with backoff."""

    error: str


@dataclass(frozen=True)
class PreviewNote:
    """What a preview event says of the new preview (the picture is read apart)."""

    step: int | None
    total: int | None
    width: int
    height: int
    size: int  # bytes of the JPEG


@dataclass(frozen=True)
class JobEvent:
    """A job was inserted, or its status or progress changed: re-read it. With
    `preview`: the running job has a new preview (its row did not change)."""

    id: int
    status: str
    series_id: int | None = None
    series_idx: int | None = None
    progress: float | None = None
    image_id: int | None = None
    preview: PreviewNote | None = None

    @classmethod
    def parse(cls, payload: str) -> JobEvent | None:
        """The event in a notification's payload; None if it is not a well-formed one."""
        try:
            data: Any = json.loads(payload)
            if not isinstance(data, dict):
                return None
            progress = data.get("progress")
            return cls(
                id=_int(data["id"]),
                status=str(data["status"]),
                series_id=_optional_int(data.get("series_id")),
                series_idx=_optional_int(data.get("series_idx")),
                progress=None if progress is None else float(progress),
                image_id=_optional_int(data.get("image_id")),
                preview=_preview(data.get("preview")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _preview(value: Any) -> PreviewNote | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("preview: not an object")
    return PreviewNote(
        step=_optional_int(value.get("step")),
        total=_optional_int(value.get("total")),
        width=_int(value["width"]),
        height=_int(value["height"]),
        size=_int(value["bytes"]),
    )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a whole number: {value!r}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)
