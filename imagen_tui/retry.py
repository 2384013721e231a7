"""Who retries what, and how long to wait: ImaGen's retry policy in one place.

Three layers may try something again; each retries only what it owns, so
nothing is retried twice over (and no paid generation is bought twice):

1. An HTTP adapter (`backends.http`) retries a single HTTP call, and only
   a call that cannot have been billed: a 429 (the server refused it) up to
   3 times, honouring `Retry-After`; a 5xx or a lost connection once, and
   only for a request that starts nothing billable (a lookup, a download,
   or a create call that never reached the server). A create call that may
   have started a paid generation is never re-sent: the adapter looks it up
   instead. When the adapter gives up it raises
   `GenerationError(transient=True, retry_after=...)`.
2. The worker retries a *job* whose generation failed with a transient
   error: the job goes back to the queue with `run_at` pushed out by
   `job_retry_delay` (exponential backoff with jitter, or the backend's
   `retry_after` when that is longer), until the job has used
   `max_attempts`. Bad input and permanent failures fail the job at once.
   `imagen generate` does not retry: it reports the error and exits 1.
3. Database writes of a result (completion, failure, progress) are retried
   by the worker until the database answers, with `backoff_delay`; every
   such write is fenced on the job's lease, so a late write is harmless.
   Listener and heartbeat connections reconnect the same way. Each outage is
   logged twice, when it starts and when it ends (`Outage`), never per try.
"""

from __future__ import annotations

import logging
import random
import time

JOB_RETRY_BASE_S = 0.5
JOB_RETRY_CAP_S = 60.0
MAX_RETRY_AFTER_S = 3_600.0  # a backend asking for longer is capped at an hour
RECONNECT_BASE_S = 0.2
RECONNECT_CAP_S = 5.0


def backoff_delay(
    attempt: int, base: float = JOB_RETRY_BASE_S, cap: float = JOB_RETRY_CAP_S
) -> float:
    """Exponential backoff with jitter: about base * 2^(attempt-1), at most `cap` seconds.

    The jitter (75-100 % of the step) keeps workers that failed together from
    retrying in lockstep.
    """
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * random.uniform(0.75, 1.0)


def job_retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before a job that failed transiently (on `attempt`) runs again."""
    delay = backoff_delay(attempt)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, MAX_RETRY_AFTER_S)
    return delay


def reconnect_delay(failures: int) -> float:
    """Seconds before the next try to reach the database after `failures` in a row."""
    return backoff_delay(failures, base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)


class Outage:
    """Logs an outage once when it starts and once when it ends, never per retry.

        outage = Outage(log, "listener")
        ...
        except QueueUnavailable as error:
            await asyncio.sleep(outage.failed(error))
        else:
            outage.recovered()

    `failed` returns how long to wait before the next try.
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self.failures = 0
        self._since = 0.0

    @property
    def ongoing(self) -> bool:
        return self.failures > 0

    def failed(self, error: object) -> float:
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
            self._log.warning("%s: database unavailable, retrying: %s", self._what, error)
        return reconnect_delay(self.failures)

    def recovered(self) -> None:
        if self.failures:
            self._log.info(
                "%s: database back after %d failed attempt(s) in %.1f s",
                self._what,
                self.failures,
                time.monotonic() - self._since,
            )
            self.failures = 0
