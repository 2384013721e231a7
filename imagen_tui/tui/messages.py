"""What the app tells its screens (through Signals) and itself (through Messages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from imagen_tui.core.rows import JobRow
    from imagen_tui.services import Session


@dataclass(frozen=True)
class JobsUpdate:
    """Jobs re-read after their events. `reload`: re-read everything you show
    (the database just opened, or the listener reconnected and may have missed
    events)."""

    rows: tuple[JobRow, ...] = ()
    reload: bool = False


class DatabaseReady(Message):
    """The session is open (the embedded server started and migrated if need be)."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


class DatabaseFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SeriesSubmitted(Message):
    """A series was queued from the form."""

    def __init__(self, series_id: int, job_ids: tuple[int, ...]) -> None:
        super().__init__()
        self.series_id, self.job_ids = series_id, job_ids
