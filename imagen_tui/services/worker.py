"""The job worker's wiring: `WorkerSettings` and `run_worker` (`imagen worker`,
`imagen-tui --headless-worker`, the systemd unit).

`WorkerSettings` is also read by the TUI's launcher, so the worker's own
modules are imported only when `run_worker` runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from imagen_tui.core.workbench import Workbench
from imagen_tui.limits import DEFAULT_LEASE_S, DEFAULT_POLL_S

log = logging.getLogger("imagen.worker")


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 1
    poll_interval: float = DEFAULT_POLL_S
    lease: float = DEFAULT_LEASE_S
    once: bool = False

    @classmethod
    def from_flags(cls, flags: Any) -> WorkerSettings:
        """From the parsed worker flags (`cmdline.add_worker_options`)."""
        return cls(flags.concurrency, flags.poll_interval, flags.lease, flags.once)


def run_worker(workbench: Workbench, settings: WorkerSettings) -> int:
    """Run the job worker until it is stopped (or, `once`, the queue is empty).

    The exit code: 0 after a clean stop, 130 after a forced one (a second
    SIGTERM/SIGINT). A crashed worker raises WorkerCrashed (exit 1, already
    logged); a database that cannot be reached at start raises DatabaseError.
    Logs go to stderr, one line per job, for journald or a terminal.
    """
    import asyncio
    import socket

    from imagen_tui.db.connect import open_database
    from imagen_tui.db.queue import PgQueue, Presence
    from imagen_tui.jobs.worker import (
        Worker,
        WorkerOptions,
        install_stop_signals,
        new_worker_id,
        run_loop,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO; signed download URLs carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    database = open_database(workbench.config)
    worker_id = new_worker_id()
    presence = Presence(
        worker_id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        backends=workbench.ready_backends(),
        default_backend=workbench.ready_default(),
        concurrency=settings.concurrency,
    )
    queue = PgQueue(database.url, worker_id, lease_s=settings.lease, presence=presence)
    options = WorkerOptions(
        concurrency=settings.concurrency, poll_interval=settings.poll_interval, once=settings.once
    )

    async def main() -> int:
        worker = Worker(workbench, queue, options)
        install_stop_signals(worker, asyncio.get_running_loop())
        mode = "draining the queue once" if settings.once else "waiting for jobs"
        log.info(
            "worker %s on %s (%s): %s, concurrency %d, lease %g s",
            worker_id,
            database.display_url,
            database.source,
            mode,
            settings.concurrency,
            settings.lease,
        )
        await worker.run()
        summary = ", ".join(f"{n} {what}" for what, n in sorted(worker.stats.items()))
        log.info("worker stopped: %s", summary or "no jobs")
        return 130 if worker.forced else 0

    return run_loop(main())
