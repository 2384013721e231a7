"""Session-level advisory locks that keep two apps from starting a worker
for the same backends at the same moment (see services.local_worker).

One lock per backend instance name, keyed `(START_LOCK_CLASS, hashtext(name))`
(the two-key form, so it never meets the migrations' one-key lock), taken in
sorted order (two apps wanting overlapping sets cannot deadlock) on a
connection of their own, and held until the `with` block ends: the caller
decides and starts its worker while holding them. A lock dies with its
connection, so an app that crashes holding one frees it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg

from imagen_tui.db.connect import first_line
from imagen_tui.errors import DatabaseError

START_LOCK_CLASS = 0x1A6E_0002  # the first key of every start lock
_POLL_S = 0.05


@contextmanager
def start_locks(
    url: str, names: Iterable[str], abort: threading.Event | None = None, timeout: float = 120.0
) -> Iterator[bool]:
    """Hold the start lock of each backend in `names` for the `with` block.

    Yields True once every lock is held, False when `abort` was set (or
    `timeout` seconds passed) first: the caller then starts nothing. Waiting
    polls with `pg_try_advisory_lock`, so an abort is noticed within 50 ms.
    A database failure is a one-line DatabaseError.
    """
    keys = sorted(set(names))
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        try:
            held = _take(conn, keys, abort, time.monotonic() + timeout)
        except BaseException:
            conn.close()
            raise
    except psycopg.Error as error:
        reason = first_line(error, url)
        raise DatabaseError(f"cannot take the worker start lock: {reason}") from None
    # Closing the connection releases its session's locks, whatever ends the block.
    with conn:
        yield held


def _take(
    conn: psycopg.Connection[tuple[object, ...]],
    keys: list[str],
    abort: threading.Event | None,
    deadline: float,
) -> bool:
    for key in keys:
        while True:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (START_LOCK_CLASS, key)
            ).fetchone()
            if row is not None and row[0]:
                break
            if (abort is not None and abort.is_set()) or time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
    return True
