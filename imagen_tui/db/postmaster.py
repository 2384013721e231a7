"""Whether the embedded PostgreSQL server runs, read from its data directory's
postmaster.pid, and the URL to reach it: no subprocess, no driver, nothing
started. A one-shot command that only records to a database already there
(the ledger row of `imagen generate`) needs no more than this; `embedded`
starts and stops the server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import platformdirs

DATABASE = "imagen"
ROOT_DATA_HOME = Path("/var/lib/imagen")  # root's data, where the account can reach it


def effective_uid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def data_directory() -> Path:
    """Where the embedded server keeps its data ($XDG_DATA_HOME/imagen/pgdata).

    As root without XDG_DATA_HOME it is /var/lib/imagen/pgdata: the server's
    account could not enter /root, and ImaGen does not open /root up for it.
    """
    if effective_uid() == 0 and not os.environ.get("XDG_DATA_HOME", "").strip():
        return ROOT_DATA_HOME / "pgdata"
    return Path(platformdirs.user_data_dir("imagen")) / "pgdata"


def running_url(pgdata: Path | None = None, database: str = DATABASE) -> str | None:
    """The URL of the embedded server if it is up and ready; None otherwise (never starts it).

    For work that only happens when a database is already there, such as the
    ledger row of `imagen generate`.
    """
    pgdata = Path(os.path.abspath(pgdata or data_directory()))
    running = ready_postmaster(pgdata)
    if running is None or running.socket_dir is None:
        return None
    return url_of(running, database)


class Postmaster(NamedTuple):
    """What postmaster.pid says about a server whose process is alive."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping", ...


def live_postmaster(pgdata: Path) -> Postmaster | None:
    """The server of `pgdata` if its process runs (a stale postmaster.pid: None)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    # pid, data dir, start time, port, socket dir, listen address, shmem, status;
    # the server writes the last lines while it starts
    lines += [""] * (8 - len(lines))
    try:
        pid, port = int(lines[0]), int(lines[3] or 5432)
    except ValueError:
        return None
    if pid <= 0 or not _is_postmaster(pid, lines[1]):
        return None
    socket_dir = Path(lines[4].strip()) if lines[4].strip() else None
    return Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=lines[7].strip())


def ready_postmaster(pgdata: Path) -> Postmaster | None:
    running = live_postmaster(pgdata)
    return running if running is not None and running.status == "ready" else None


def _is_postmaster(pid: int, datadir: str) -> bool:
    """Whether `pid` is a postgres serving `datadir`: after a crash or reboot the pid
    in a stale postmaster.pid may belong to any process (or be a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another account's
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): the pid check must do
    except PermissionError:
        return True
    # pg_ctl starts it as `postgres -D DATADIR ...`; a zombie has no cmdline
    return os.path.basename(argv[0]).startswith(b"postgres") and os.fsencode(datadir) in argv


def url_of(running: Postmaster, database: str) -> str:
    assert running.socket_dir is not None  # checked by _require_private_socket
    port = "" if running.port == 5432 else f"&port={running.port}"
    host = quote(str(running.socket_dir), safe="/")
    return f"postgresql://postgres:@/{quote(database, safe='')}?host={host}{port}"
