"""Writing a generated image (and its JSON sidecar) into the output directory safely.

`write_image` guarantees:

- the file lands inside the output directory, whatever the name holds
  (symlinked folders pointing elsewhere are refused);
- nothing is ever overwritten: a taken name gets `-2`, `-3`, ... (a name is
  taken when its image or its sidecar exists), and two processes writing the
  same name at once both succeed under different names;
- nothing is half-written: data goes to a hidden `.part` file first and only a
  complete file gets the final name; if anything fails or is interrupted (even
  Ctrl-C), the temp file, the image, the sidecar and any folder made for them
  are removed again.

A caller that records the image elsewhere (the worker, in the database) asks
for a *journal*: the hidden temp file is then kept as a second hard link to
the image, named `.imagen-journal-<token>-*.part`, until the caller drops it
once the image is recorded (or known to be unwanted). If the process is
killed in between, the link is what lets a later sweep find the image and
ask the database whether anything refers to it (`jobs.sweep`). Every temp
file of such a write (the sidecar's too) carries the token, so a sweep can
tell whose it is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from imagen_tui.core.metadata import add_png_text, sidecar_path
from imagen_tui.errors import InputError

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

TEMP_SUFFIX = ".part"
JOURNAL_PREFIX = ".imagen-journal-"

# os.link fails with these on filesystems without hard links (FAT, some network
# and FUSE mounts); there we fall back to an existence check and os.replace.
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
)


class Written(NamedTuple):
    """Where an image (and its sidecar, if one was asked for) ended up."""

    image: Path
    sidecar: Path | None
    journal: Path | None = None  # the hidden second link to the image, when asked for

    def drop_journal(self) -> None:
        """The image is recorded (or gone): its journal link is no longer needed."""
        if self.journal is not None:
            self.journal.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the image, its sidecar and its journal link."""
        for path in (self.image, self.sidecar, self.journal):
            if path is not None:
                path.unlink(missing_ok=True)


def journal_token(file_name: str) -> str | None:
    """The token of a journal link's file name (see `write_image`), else None."""
    if not (file_name.startswith(JOURNAL_PREFIX) and file_name.endswith(TEMP_SUFFIX)):
        return None
    token, separator, _random = file_name[len(JOURNAL_PREFIX) :].rpartition("-")
    return token if separator and token else None


def write_image(
    directory: Path,
    name: PurePosixPath,
    image: bytes,
    mime_type: str,
    *,
    text_chunks: Mapping[str, str],
    sidecar: Mapping[str, Any] | None,
    journal: str | None = None,
) -> Written:
    """Write `image` as `directory/name` plus the extension of `mime_type`.

    `name` comes from `naming.render_name`. PNGs get `text_chunks` embedded;
    other types are written as they are. When `sidecar` is not None, it is saved
    as JSON beside the image (`a.png` -> `a.json`), exactly as given: the pipeline
    passes the record it embeds as the PNG's `imagen` chunk, so the two match.
    With a `journal` token (letters, digits and dashes), the image's hidden
    temp file stays as a second link, `Written.journal` (see the module doc).

    Raises ValueError for an unknown MIME type or a PNG that is not one,
    InputError when the name would land outside `directory`, and OSError when
    the disk refuses (its `filename` the folder, when a folder refused a new
    file or folder); in every case nothing new is left behind.
    """
    extension = EXTENSIONS.get(mime_type.split(";")[0].strip().lower())
    if extension is None:
        known = ", ".join(EXTENSIONS)
        raise ValueError(f"cannot save images of type {mime_type!r}; known types: {known}")
    data = add_png_text(image, text_chunks) if extension == ".png" else image
    folder = _target_folder(directory, name)

    created_folders: list[Path] = []
    image_path: Path | None = None
    sidecar_file: Path | None = None
    journal_path: Path | None = None
    try:
        _make_folders(folder, created_folders)
        image_path, journal_path = _claim_free_name(folder, name.name, extension, data, journal)
        if sidecar is not None:
            sidecar_file = sidecar_path(image_path)
            _write_sidecar(sidecar_file, dict(sidecar), journal)
        return Written(image=image_path, sidecar=sidecar_file, journal=journal_path)
    except BaseException:
        # Both names were free when the image claimed its own, so they are ours to remove.
        for path in (image_path, sidecar_file, journal_path):
            if path is not None:
                path.unlink(missing_ok=True)
        _remove_empty_folders(created_folders)
        raise


def _target_folder(directory: Path, name: PurePosixPath) -> Path:
    """The resolved folder the image goes into; InputError if it is outside `directory`.

    Only the folder is resolved: the file itself is never followed, since the
    final name is claimed with os.link / os.replace, which replace or refuse a
    symlink rather than write through it.
    """
    if name.is_absolute() or not name.name or ".." in name.parts:
        raise InputError(
            "output.naming",
            f"{str(name)!r} is not a relative file name; use a template such as {{date}}/{{slug}}",
        )
    root = directory.resolve()
    try:
        folder = (root / name).parent.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise InputError("output.naming", f"cannot resolve {str(name)!r}: {error}") from None
    if not folder.is_relative_to(root):
        raise InputError(
            "output.naming",
            f"{str(name)!r} resolves outside the output directory {root} "
            f"(to {folder}, through a symlink); remove the symlink or change the template",
        )
    return folder


def _make_folders(folder: Path, created: list[Path]) -> None:
    """Create `folder` and any missing parents, recording in `created` each one made here."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():  # a file holds a folder's place: name it, not a temp file inside
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # another process made it just now: not ours to remove
            continue
        except OSError as error:  # name the folder that refused, not the one asked for
            raise OSError(error.errno, error.strerror, str(path.parent)) from error
        created.append(path)


def _remove_empty_folders(created: list[Path]) -> None:
    """Remove the folders made by `_make_folders`, deepest first, if still empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):  # not empty: someone else has written there
            path.rmdir()


def _claim_free_name(
    folder: Path, stem: str, extension: str, data: bytes, journal: str | None = None
) -> tuple[Path, Path | None]:
    """Write `data` under the first free name of `stem`, `stem-2`, ...; return that
    path and, with a `journal` token, the temp file kept as its second link."""
    temp = _write_temp_file(folder, data, prefix=_temp_prefix(journal))
    kept: Path | None = None
    try:
        number = 1
        while True:
            suffix = "" if number == 1 else f"-{number}"
            candidate = folder / f"{stem}{suffix}{extension}"
            number += 1
            if _is_taken(candidate):
                continue
            try:
                os.link(temp, candidate)  # fails rather than overwrite: race-safe
            except FileExistsError:
                continue  # another process claimed it between our check and now
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                os.replace(temp, candidate)  # no hard links here: rely on the check above
                return candidate, None  # (and no journal link either)
            kept = temp if journal else None
            return candidate, kept
    finally:
        if kept is None:
            temp.unlink(missing_ok=True)  # after os.replace it is already gone


def _is_taken(image_path: Path) -> bool:
    """A name is taken when its image or its sidecar exists (even as a broken symlink)."""
    return os.path.lexists(image_path) or os.path.lexists(sidecar_path(image_path))


def _write_sidecar(path: Path, payload: Mapping[str, Any], journal: str | None = None) -> None:
    """Write `payload` as JSON to `path`, atomically (temp file, then os.replace).

    With a `journal` token, the temp file is named after it too, so a sweep can
    tell whose it is if the process dies before the rename.
    """
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    temp = _write_temp_file(path.parent, text.encode("utf-8"), prefix=_temp_prefix(journal))
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _temp_prefix(journal: str | None) -> str:
    """Hidden temp files: `.<random>.part`, or `.imagen-journal-<token>-<random>.part`."""
    return f"{JOURNAL_PREFIX}{journal}-" if journal else "."


def _write_temp_file(folder: Path, data: bytes, prefix: str = ".") -> Path:
    """Write `data` to a new hidden `.part` file in `folder`, flushed to disk.

    mkstemp makes the file 0o600; it gets ordinary permissions (0o666 minus
    the umask) so the final image is readable like any other file.
    """
    try:
        descriptor, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX)
    except OSError as error:  # name the folder, not the hidden temp file it refused
        raise OSError(error.errno, error.strerror, str(folder)) from error
    temp = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temp.chmod(0o666 & ~_umask())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _umask() -> int:
    """The process umask.

    Read from /proc on Linux; elsewhere by setting and restoring it, which is
    process-wide, so a file another thread creates in that instant could get
    loose permissions.
    """
    try:
        with open("/proc/self/status", encoding="latin-1") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
