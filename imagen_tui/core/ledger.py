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
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagen_tui.core.pipeline import Outcome

CALLER_ENV = "IMAGEN_CALLER"
MAX_CALLER = 200


def caller() -> str:
    """Who is generating: $IMAGEN_CALLER, else user@host."""
    named = os.environ.get(CALLER_ENV, "").strip()
    if named:
        return named[:MAX_CALLER]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"[:MAX_CALLER]


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
