"""What the app tells its screens (through Signals) and itself (through Messages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

# The feed's update, published to the screens through the app's jobs signal.
from imagen_tui.services.feed import JobsUpdate as JobsUpdate

if TYPE_CHECKING:
    from imagen_tui.services import Session, Submission


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
    """A series was queued from this app (the form, or "again")."""

    def __init__(self, submission: Submission) -> None:
        super().__init__()
        self.submission = submission

    @property
    def series_id(self) -> int:
        return self.submission.series_id

    @property
    def job_ids(self) -> tuple[int, ...]:
        return self.submission.job_ids
