"""How a job's facts look in a cell: status, progress bar, elapsed time, user text.

Every function returns a Rich `Text` built from plain strings (never parsed
as markup), and user text goes through `text.one_line` first, so a prompt
like `[bold]x[/]` or one holding an ESC byte is shown literally.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from imagen_tui.text import one_line

STATUS_STYLES = {
    "pending": "dim",
    "running": "bold cyan",
    "done": "green",
    "failed": "bold red",
    "canceled": "yellow",
}


def user_text(value: str | None, limit: int | None = None) -> Text:
    """User-written text on one line, literally."""
    return Text(one_line(value or "", limit))


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def progress_bar(progress: float | None, state: str, width: int = 10) -> Text:
    """`━━━━╸───── 45%` for a running job; full for done, empty otherwise."""
    if state == "done":
        fraction = 1.0
    elif progress is None:
        fraction = 0.0
    else:
        fraction = min(max(progress, 0.0), 1.0)
    filled = round(fraction * width)
    bar = Text()
    bar.append("━" * filled, style=STATUS_STYLES.get(state, "") if state != "pending" else "")
    bar.append("─" * (width - filled), style="dim")
    if state == "running":
        bar.append(f" {fraction:>4.0%}")
    else:
        bar.append("     ")
    return bar


def elapsed(started: datetime | None, finished: datetime | None, now: datetime) -> Text:
    """How long the job ran (or has been running), `1:02` or `12.3s`."""
    if started is None:
        return Text("")
    seconds = max(0.0, ((finished or now) - started).total_seconds())
    if seconds < 60:
        return Text(f"{seconds:.1f}s", justify="right")
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    shown = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return Text(shown, justify="right")
