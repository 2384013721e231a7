"""Who runs the embedded server, where it may go, and how its tools are run.

- The account: the user; as root (PostgreSQL refuses to run as root) the owner
  of an existing data directory, else a system account `imagen-pg` created
  without home or login.
- The directories: the data directory's parents and the data directory
  itself, and the socket directory, which must be private to the account.
  Permissions of directories ImaGen did not create are never changed: one
  that is not right is refused in one line naming it and the fix.
- The locks that serialise concurrent starters (per user, next to the data).
- Running a PostgreSQL tool as the account, with a clean environment, and
  turning its output into a one-line error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagen_tui.db.postmaster import ROOT_DATA_HOME, effective_uid
from imagen_tui.errors import DatabaseError

SERVER_ACCOUNT = "imagen-pg"  # runs the server when ImaGen runs as root
_SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux (104 on macOS and the BSDs), NUL included
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to be ready
_LOCK_TIMEOUT = 300.0  # longer than a start can take (initdb + pg_ctl)
FALLBACK_HINT = "or set IMAGEN_DATABASE_URL to use another server"


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Account:
    """The account the server runs as: ours, or as root a separate one."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def is_other(self) -> bool:
        return self.uid != effective_uid()

    @classmethod
    def of_uid(cls, uid: int, gid: int) -> Account:
        import pwd

        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # a uid without a passwd entry (containers)
            return cls(name=str(uid), uid=uid, gid=gid, groups=frozenset({gid}))
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
        return cls(name=entry.pw_name, uid=uid, gid=entry.pw_gid, groups=frozenset(groups))


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def account_for(pgdata: Path) -> Account:
    """Who runs the server: the user; as root, the owner of an existing data
    directory (one made by an older ImaGen belongs to `pgserver`), else imagen-pg."""
    try:
        info: os.stat_result | None = os.stat(pgdata)
    except FileNotFoundError:
        info = None
    euid = effective_uid()
    if euid != 0:
        if info is not None and info.st_uid != euid:
            raise refused(
                pgdata,
                f"it belongs to {user_name(info.st_uid)}",
                "use a data directory of your own",
            )
        groups = frozenset(os.getgroups())
        return Account(name=user_name(euid), uid=euid, gid=os.getegid(), groups=groups)
    if info is None:
        return _server_account(pgdata)
    if info.st_uid == 0:
        raise refused(
            pgdata,
            "it belongs to root and PostgreSQL does not run as root",
            f"remove it to have ImaGen create it for {SERVER_ACCOUNT}",
        )
    return Account.of_uid(info.st_uid, info.st_gid)


def _server_account(pgdata: Path) -> Account:
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
            raise refused(
                pgdata,
                f"PostgreSQL does not run as root and the account {SERVER_ACCOUNT} could "
                f"not be created ({summary(output)})",
                f"create a system account {SERVER_ACCOUNT}",
            ) from None
    return Account.of_uid(entry.pw_uid, entry.pw_gid)


def _may_enter(info: os.stat_result, account: Account) -> bool:
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in account.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def blocking_directory(path: Path, account: Account) -> Path | None:
    """The first directory on the way to `path` that `account` may not enter."""
    real = Path(os.path.realpath(path))
    for directory in [*reversed(real.parents), real]:
        if not _may_enter(os.stat(directory), account):
            return directory
    return None


def _require_reachable(pgdata: Path, path: Path, account: Account) -> None:
    blocked = blocking_directory(path, account)
    if blocked is None:
        return
    mode = stat.filemode(os.stat(blocked).st_mode)
    raise refused(
        pgdata,
        f"its account {account.name} cannot enter {blocked} ({mode}; ImaGen does not change that)",
        f"use the default location {ROOT_DATA_HOME / 'pgdata'} (unset XDG_DATA_HOME), set "
        f"XDG_DATA_HOME to a directory {account.name} can enter",
    )


# --------------------------------------------------------------------------- directories


def make_parents(pgdata: Path, account: Account) -> None:
    """Create the missing parents of `pgdata`: private to the user, or as root
    0755 so the server's account can pass through (they hold nothing but it)."""
    missing: list[Path] = []
    existing = pgdata.parent
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise refused(pgdata, f"{existing} is not a directory", "set XDG_DATA_HOME elsewhere")
    if account.is_other:
        _require_reachable(pgdata, existing, account)
    mode = 0o755 if account.is_other else 0o700
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, mode)
            os.chmod(directory, mode)  # ours, just made: the umask must not decide


def make_data_directory(pgdata: Path, account: Account) -> None:
    try:
        os.mkdir(pgdata, 0o700)
    except FileExistsError:
        if not pgdata.is_dir():
            raise refused(pgdata, "it is not a directory", "move it away") from None
        return
    os.chmod(pgdata, 0o700)
    if account.is_other:
        os.chown(pgdata, account.uid, account.gid)


def socket_directory(pgdata: Path, account: Account) -> Path:
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
        if account.is_other and blocking_directory(base, account) is not None:
            continue
        _private_directory(pgdata, parent, account)
        _private_directory(pgdata, candidate, account)
        return candidate
    raise refused(
        pgdata,
        "its path is too long for a unix socket and no short private directory was found",
        "set TMPDIR to a short directory",
    )


def _owned_privately(directory: Path, uid: int) -> bool:
    """Whether `directory` exists, private to `uid` (XDG_RUNTIME_DIR may be stale)."""
    try:
        return is_private(str(directory), uid) is None
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


def _private_directory(pgdata: Path, directory: Path, account: Account) -> None:
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
    problem = is_private(str(directory), account.uid)
    if problem is not None:
        raise refused(
            pgdata,
            f"its socket directory {directory} {problem}",
            f"remove {directory} (ImaGen then creates it private)",
        )


def is_private(directory: str, uid: int) -> str | None:
    """None if `directory` is a real directory of `uid` that no one else may
    enter, else what is wrong with it."""
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"belongs to {user_name(info.st_uid)}, not {user_name(uid)}"
    if info.st_mode & 0o077:
        return f"is open to other users ({stat.filemode(info.st_mode)})"
    return None


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def locked(pgdata: Path) -> Iterator[None]:
    """Hold `<pgdata>.lock`, next to the data (a directory of the user, or made by
    ImaGen), while starting or stopping: one process starts, the others wait."""
    path = pgdata.with_name(pgdata.name + ".lock")
    with holding(path, f"starting the embedded PostgreSQL in {pgdata}"):
        yield


@contextlib.contextmanager
def holding(path: Path, doing: str) -> Iterator[None]:
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


# --------------------------------------------------------------------------- running tools


def run(account: Account, args: list[str], timeout: float) -> tuple[int, str]:
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


def summary(output: str) -> str:
    """The telling line of a tool's output (its error), for a one-line message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    tool_said = [line for line in lines if re.match(r"[\w-]+: ", line)]  # "pg_ctl: could not ..."
    return (tool_said or lines or ["no output"])[0]


def refused(pgdata: Path, problem: str, fix: str) -> DatabaseError:
    return DatabaseError(
        f"the embedded PostgreSQL in {pgdata} cannot start: {problem}; {fix}, {FALLBACK_HINT}"
    )


def could_not_start(pgdata: Path, detail: str) -> DatabaseError:
    return DatabaseError(
        f"the embedded PostgreSQL in {pgdata} could not start ({detail}); "
        f"see {pgdata / 'log'}, {FALLBACK_HINT}"
    )
