"""Shared fixtures: every test runs with its own HOME, config and output dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.pg import PgServer

if TYPE_CHECKING:
    from tests.processes import Workers

IMAGEN = Path(sys.executable).parent / "imagen"  # the installed console script


def running(pid: int) -> bool:
    """The process exists and has not exited (an exited orphan may stay a zombie
    until whatever adopted it reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Variables that would make a test read the developer's own setup.
_LEAKY_ENV = (
    "IMAGEN_CONFIG",
    "IMAGEN_CALLER",  # the caller identity's sources (core/ledger.py)
    "MAI_FROM_ID",
    "TMUX",
    "TMUX_PANE",
    "XDG_CONFIG_HOME",
    "XDG_PICTURES_DIR",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
)


@dataclass
class Home:
    """An isolated user: HOME, config dir and environment for subprocesses."""

    root: Path
    env: dict[str, str]

    @property
    def config_path(self) -> Path:
        return self.root / ".config" / "imagen.yaml"

    @property
    def pictures(self) -> Path:
        return self.root / "Pictures" / "imagen"

    def write_config(self, text: str) -> Path:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path

    def files(self) -> list[Path]:
        """Every file under HOME except the config: what a command wrote."""
        return sorted(p for p in self.root.rglob("*") if p.is_file() and p != self.config_path)

    def imagen(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(IMAGEN), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def halfcell_pictures() -> Iterator[None]:
    """The app draws pictures in half cells (deterministic, no escape sequences),
    as a terminal without a graphics protocol does; then as before."""
    from imagen_tui.tui.pictures import protocol

    before = protocol.protocol()
    protocol.use_protocol("halfcell")
    yield
    protocol.use_protocol(before)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    root = tmp_path / "home"
    root.mkdir()
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(root))
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["HOME"] = str(root)
    yield Home(root=root, env=env)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    # Not under pytest's tmp_path: pytest prunes old numbered temp folders, and a
    # concurrent pytest run on the same machine could delete a live data directory.
    root = Path(tempfile.mkdtemp(prefix="imagen-pg-"))
    # Ours, made 0700: as root the server runs as its own account, which must pass
    # through it to the data directory (ImaGen refuses, never opens, one it cannot).
    # From a checkout that account cannot reach (under /root), ImaGen copies the
    # server's binaries for it next to the data: in here, removed with it.
    root.chmod(0o711)
    server = PgServer.start(root / "data")
    try:
        yield server
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def restartable(pg_server: PgServer) -> Iterator[PgServer]:
    """The session server, guaranteed to be running again after the test
    (for tests that stop it to cause an outage)."""
    yield pg_server
    try:
        with psycopg.connect(pg_server.admin_url, autocommit=True, connect_timeout=3):
            return
    except psycopg.OperationalError:
        pg_server.start_again()


@pytest.fixture(scope="module")
def rls_login(pg_server: PgServer) -> Iterator[str]:
    """A login role like PostgREST's `authenticator`: no superuser, owns nothing,
    inherits nothing, may switch to anon / authenticated / service_role.
    Roles are cluster-wide: a unique name, dropped after the module."""
    name = f"rls_tester_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(role))
        conn.execute(sql.SQL("GRANT anon, authenticated, service_role TO {}").format(role))
    try:
        yield name
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


@pytest.fixture
def api(db_url: str, rls_login: str) -> Iterator[psycopg.Connection]:
    """A connection as the login role (trust auth on the server's unix socket)."""
    with psycopg.connect(make_conninfo(db_url, user=rls_login), autocommit=True) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False)  # else RLS would not apply and the tests prove nothing
        owns = conn.execute(
            """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'imagen' AND c.relowner = current_user::regrole"""
        ).fetchone()
        assert owns == (0,)
        yield conn


# --------------------------------------------------------------------------- worker processes


@pytest.fixture
def workers(home: Home, tmp_path: Path) -> Iterator[Workers]:
    """Real `imagen worker` processes; any left running are killed after the test,
    which fails if one of them logged a traceback."""
    from tests.processes import Workers

    logs = tmp_path / "logs"
    logs.mkdir()
    pool = Workers(home, logs)
    try:
        yield pool
    finally:
        pool.kill_leftovers()
    crashed = [w.log() for w in pool.started if "Traceback" in w.log()]
    assert not crashed, "a worker logged a traceback:\n" + "\n".join(crashed)
