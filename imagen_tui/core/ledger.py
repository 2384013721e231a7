"""The cost ledger's entries: one `usage` row per generated image.

Every generation, by `imagen generate` or by a worker, appends a row to
`imagen.usage`: backend, model, seed, the SHA-256 of the prompt (never the
prompt itself), latency, the cost estimate (exact, a Decimal) and the caller.
This module builds the entry; the database layer writes it (`db.queue` for
the worker, in the same statement as the image; `services.UsageLedger` for
`imagen generate`). A failed ledger write is a warning: the image is kept.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagen_tui.core.pipeline import Outcome

CALLER_ENV = "IMAGEN_CALLER"
MAI_ENV = "MAI_FROM_ID"  # set by the mai agent tools, as the original ImaGen reads it
TMUX_NAME_OPTION = "@mai-name"  # the pane's name, set by the same tools
TMUX_TIMEOUT_S = 1.0
MAX_CALLER = 200


def caller() -> str:
    """Who is generating, in the original ImaGen's order: $IMAGEN_CALLER, then
    $MAI_FROM_ID, then the tmux pane's `@mai-name` option (only inside tmux),
    then user@host. The first one set and not blank wins."""
    for name in (CALLER_ENV, MAI_ENV):
        named = _clean(os.environ.get(name, ""))
        if named:
            return named
    pane_name = _tmux_pane_name()
    if pane_name:
        return pane_name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"[:MAX_CALLER]


def _clean(text: str) -> str:
    """The first line of `text`, stripped, cut to MAX_CALLER characters."""
    lines = text.strip().splitlines()
    return lines[0].strip()[:MAX_CALLER] if lines else ""


def _tmux_pane_name() -> str:
    """The `@mai-name` option of this tmux pane; "" outside tmux, when unset, or on
    any failure (no tmux binary, no server, too slow): the next source is used."""
    if not os.environ.get("TMUX"):
        return ""
    command = ["tmux", "display-message", "-p"]
    pane = os.environ.get("TMUX_PANE")
    if pane:
        command += ["-t", pane]
    command.append(f"#{{{TMUX_NAME_OPTION}}}")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TMUX_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if done.returncode != 0:
        return ""
    return _clean(done.stdout)


def prompt_sha256(prompt: str) -> str:
    """What the ledger keeps of a prompt: its SHA-256 (the user's prompt, before any style)."""
    return hashlib.sha256(prompt.encode()).hexdigest()


@dataclass(frozen=True)
class UsageEntry:
    """One row of `imagen.usage` (the database fills in id, owner and time)."""

    backend: str
    backend_type: str
    model: str
    seed: int | None
    prompt_sha256: str
    width: int
    height: int
    latency_ms: float
    cost_usd: Decimal | None
    caller: str
    source: str  # "cli", "worker" or "tui"
    job_id: int | None = None
    worker_id: str | None = None


def usage_entry(outcome: Outcome, source: str, who: str | None = None) -> UsageEntry:
    plan, result = outcome.plan, outcome.result
    width, height = outcome.record["width"], outcome.record["height"]  # the real size
    return UsageEntry(
        backend=plan.backend,
        backend_type=plan.backend_type,
        model=result.model,
        seed=result.seed,
        prompt_sha256=prompt_sha256(plan.prompt),
        width=width,
        height=height,
        latency_ms=round(result.latency_ms or 0.0, 1),
        cost_usd=result.cost_usd,
        caller=who or caller(),
        source=source,
        job_id=plan.job,
    )
