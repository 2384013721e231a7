"""Writing images safely, and the metadata they carry (PNG text chunks, sidecars)."""

from __future__ import annotations

import errno
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image, PngImagePlugin

from imagen_tui.core import output
from imagen_tui.core.metadata import (
    add_png_text,
    parameters_text,
    read_png_text,
    sidecar_path,
)
from imagen_tui.core.naming import render_name
from imagen_tui.core.output import Written, write_image
from imagen_tui.errors import InputError

WHEN = datetime(2026, 11, 23, 15, 30, 12)


def make_png(
    color: tuple[int, int, int] = (200, 30, 60), size: tuple[int, int] = (16, 12)
) -> bytes:
    image = Image.new("RGB", size, color)
    image.putpixel((3, 4), (1, 2, 3))  # not a flat image, so a re-encode would show
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(directory: Path, name: str, png: bytes | None = None, **kwargs: object) -> Written:
    options: dict = {"text_chunks": {}, "sidecar": {"prompt": "x"}} | kwargs
    return write_image(directory, PurePosixPath(name), png or make_png(), "image/png", **options)


def all_files(root: Path) -> list[str]:
    """Every file and folder under `root` (hidden ones included), relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


class _OsView:
    """The `os` module with some functions replaced, for `output`'s eyes only."""

    def __init__(self, overrides: Mapping[str, Callable[..., object]]) -> None:
        self._overrides = overrides

    def __getattr__(self, name: str) -> object:
        return self._overrides[name] if name in self._overrides else getattr(os, name)


def break_os_calls_of_output(
    monkeypatch: pytest.MonkeyPatch, **overrides: Callable[..., object]
) -> None:
    """Make `output`'s own calls to these `os` functions fail.

    Used only for failures no public input can cause: a filesystem without
    hard links (FAT, some network mounts), a disk that fails fsync, an
    interrupt in the middle of a rename. Only the output module's name `os` is
    replaced; `os` itself stays whole for tempfile, pathlib and pytest.
    """
    monkeypatch.setattr(output, "os", _OsView(overrides))


class InterruptedMapping(Mapping[str, object]):
    """A sidecar whose values cannot be read: reading one is a Ctrl-C."""

    def __getitem__(self, key: str) -> object:
        raise KeyboardInterrupt

    def __iter__(self) -> Iterator[str]:
        return iter(["prompt"])

    def __len__(self) -> int:
        return 1


UNSERIALIZABLE = {"prompt": "x", "handle": object()}  # json cannot write an object()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output directory two levels down, so `../..` would land in tmp_path."""
    return tmp_path / "home" / "out"


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


# --- parameters_text -------------------------------------------------------


def test_parameters_text_with_negative_prompt() -> None:
    text = parameters_text(
        "a lighthouse at dusk",
        "blurry, low quality",
        steps=20,
        seed=42,
        width=512,
        height=512,
        model="mock-v1",
        extra={"Backend": "mock", "Style": "photo"},
    )
    assert text == (
        "a lighthouse at dusk\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 20, Seed: 42, Size: 512x512, Model: mock-v1, Backend: mock, Style: photo"
    )


def test_parameters_text_without_negative_prompt_or_steps() -> None:
    text = parameters_text(
        "a cat", "", steps=None, seed=7, width=1024, height=768, model="dall-e-3"
    )
    assert text == "a cat\nSeed: 7, Size: 1024x768, Model: dall-e-3"


def test_parameters_text_quotes_values_with_commas_and_colons() -> None:
    text = parameters_text(
        "p",
        "",
        steps=4,
        seed=1,
        width=64,
        height=64,
        model="stabilityai/sdxl:1.0",
        extra={"Style": 'film, "grainy"'},
    )
    assert text.splitlines()[-1] == (
        'Steps: 4, Seed: 1, Size: 64x64, Model: "stabilityai/sdxl:1.0", Style: "film, \\"grainy\\""'
    )


# --- PNG text chunks -------------------------------------------------------


def test_png_metadata_round_trip(out: Path) -> None:
    original = make_png()
    prompt = "東京の夜 — café"
    parameters = parameters_text(
        prompt, "", steps=20, seed=42, width=16, height=12, model="mock-v1"
    )
    record = {"prompt": prompt, "seed": 42, "model": "mock-v1"}
    chunks = {"parameters": parameters, "imagen": json.dumps(record, ensure_ascii=False)}

    written = write_image(
        out,
        render_name("{slug}", {"prompt": prompt, "when": WHEN}),
        original,
        "image/png",
        text_chunks=chunks,
        sidecar=record,
    )

    assert written.image == out.resolve() / "東京の夜-café.png"
    assert read_png_text(written.image) == chunks
    with Image.open(written.image) as image:
        assert image.info["parameters"] == parameters  # seen without loading pixels
        assert json.loads(image.info["imagen"]) == record
        assert image.text == chunks  # type: ignore[attr-defined]  # a PNG's, read lazily
        image.load()
        with Image.open(io.BytesIO(original)) as before:
            assert image.tobytes() == before.tobytes()
            assert image.size == before.size

    # The image data itself was copied, not re-encoded.
    stored = written.image.read_bytes()
    assert stored[:33] == original[:33]  # signature + IHDR
    assert stored.endswith(original[33:])

    assert written.sidecar == out.resolve() / "東京の夜-café.json"
    assert json.loads(written.sidecar.read_text(encoding="utf-8")) == record
    assert prompt in written.sidecar.read_text(encoding="utf-8")  # not \u-escaped


def test_latin1_text_is_plain_text_and_other_text_is_utf8() -> None:
    png = add_png_text(make_png(), {"Comment": "café", "Title": "東京"})
    assert b"tEXtComment\x00caf\xe9" in png
    assert b"iTXtTitle\x00\x00\x00\x00\x00" + "東京".encode() in png
    assert read_png_text(png) == {"Comment": "café", "Title": "東京"}


def test_add_png_text_replaces_an_existing_chunk_with_the_same_key() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "old")
    info.add_text("other", "kept")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)

    png = add_png_text(buffer.getvalue(), {"parameters": "new"})

    assert png.count(b"parameters") == 1
    assert read_png_text(png) == {"parameters": "new", "other": "kept"}
    with Image.open(io.BytesIO(png)) as image:
        assert image.text == {"parameters": "new", "other": "kept"}  # type: ignore[attr-defined]


def test_read_png_text_reads_compressed_chunks_written_by_pillow() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("ztext", "squeezed " * 50, zip=True)  # zTXt
    info.add_itxt("itext", "東京 " * 50, zip=True)  # compressed iTXt
    info.add_itxt("plain", "ü", lang="de", tkey="schlicht")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    assert b"zTXt" in buffer.getvalue()

    assert read_png_text(buffer.getvalue()) == {
        "ztext": "squeezed " * 50,
        "itext": "東京 " * 50,
        "plain": "ü",
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + bytes(40),
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",  # cut short
    ],
)
def test_add_png_text_rejects_non_png(data: bytes) -> None:
    with pytest.raises(ValueError):
        add_png_text(data, {"a": "b"})


def test_add_png_text_rejects_a_png_that_does_not_start_with_ihdr() -> None:
    png = make_png()
    text = b"tEXta\x00b"
    swapped = png[:8] + len(text[4:]).to_bytes(4, "big") + text
    swapped += zlib.crc32(text).to_bytes(4, "big") + png[8:]
    with pytest.raises(ValueError, match="IHDR"):
        add_png_text(swapped, {"a": "b"})


def test_add_png_text_rejects_a_corrupt_chunk() -> None:
    png = bytearray(make_png())
    png[40] ^= 0xFF  # inside the IDAT data
    with pytest.raises(ValueError, match="CRC"):
        add_png_text(bytes(png), {"a": "b"})


@pytest.mark.parametrize("key", ["", "k" * 80, "東京", "a\x00b"])
def test_add_png_text_rejects_unusable_keys(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        add_png_text(make_png(), {key: "value"})


def test_sidecar_path() -> None:
    assert sidecar_path(Path("out/a.png")) == Path("out/a.json")
    assert sidecar_path(Path("out/v1.5.webp")) == Path("out/v1.5.json")


# --- write_image: basics ---------------------------------------------------


def test_writes_into_new_subfolders(out: Path, umask_022: None) -> None:
    written = write_png(out, "2026-11-23/153012_cat_42")
    assert written.image == out.resolve() / "2026-11-23" / "153012_cat_42.png"
    assert written.image.is_file()
    assert all_files(out) == [
        "2026-11-23",
        "2026-11-23/153012_cat_42.json",
        "2026-11-23/153012_cat_42.png",
    ]
    assert written.image.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    assert written.sidecar is not None
    assert written.sidecar.stat().st_mode & 0o777 == 0o644


def test_other_types_are_written_as_given_without_text(out: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0 pretend jpeg"
    written = write_image(
        out, PurePosixPath("x"), jpeg, "image/jpeg", text_chunks={"a": "b"}, sidecar=None
    )
    assert written == Written(image=out.resolve() / "x.jpg", sidecar=None)
    assert written.image.read_bytes() == jpeg
    assert all_files(out) == ["x.jpg"]


def test_a_dotted_name_keeps_its_dots(out: Path) -> None:
    written = write_png(out, "model-v1.5")
    assert written.image.name == "model-v1.5.png"
    assert written.sidecar is not None
    assert written.sidecar.name == "model-v1.5.json"


def test_unknown_mime_type_writes_nothing(out: Path) -> None:
    with pytest.raises(ValueError, match="image/gif"):
        write_image(out, PurePosixPath("x"), b"GIF89a", "image/gif", text_chunks={}, sidecar=None)
    assert not out.exists()


def test_png_type_with_non_png_bytes_writes_nothing(out: Path) -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        write_image(out, PurePosixPath("x"), b"nope", "image/png", text_chunks={}, sidecar={})
    assert not out.exists()


# --- write_image: staying inside the output directory ----------------------


def test_prompt_and_backend_paths_stay_inside(tmp_path: Path, out: Path) -> None:
    outside_before = sorted(tmp_path.parent.iterdir())
    fields = {"prompt": "../../etc/x", "backend": "../..", "model": "/etc/x\x00", "when": WHEN}

    first = write_png(out, str(render_name("{slug}", fields)))
    second = write_png(out, str(render_name("{backend}/{slug}", fields)))
    third = write_png(out, str(render_name("{backend}/{model}/{slug}", fields)))

    root = out.resolve()
    for written in (first, second, third):
        assert written.image.resolve().is_relative_to(root)
    assert first.image == root / "etc-x.png"
    assert second.image == root / "etc-x-2.png"  # the empty backend folder was dropped
    assert third.image == root / "etc-x" / "etc-x.png"  # "/etc/x" became one folder name
    assert sorted(tmp_path.parent.iterdir()) == outside_before
    assert all_files(tmp_path) == ["home", "home/out", *(f"home/out/{f}" for f in all_files(out))]


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", ".", ""])
def test_a_name_that_climbs_out_is_refused(tmp_path: Path, out: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"^output\.naming: "):
        write_png(out, name)
    assert all_files(tmp_path) == []


def test_a_symlinked_folder_pointing_outside_is_refused(tmp_path: Path, out: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir(parents=True)
    (out / "2026-11-23").symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(InputError) as caught:
        write_png(out, "2026-11-23/cat")

    message = str(caught.value)
    assert message.startswith("output.naming: ")
    assert "resolves outside the output directory" in message
    assert list(elsewhere.iterdir()) == []
    assert all_files(out) == ["2026-11-23"]


def test_a_symlinked_folder_pointing_inside_is_fine(out: Path) -> None:
    (out / "real").mkdir(parents=True)
    (out / "alias").symlink_to(out / "real", target_is_directory=True)
    written = write_png(out, "alias/cat")
    assert written.image == out.resolve() / "real" / "cat.png"


def test_a_symlinked_output_directory_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "big-disk"
    target.mkdir()
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    written = write_png(link, "cat")
    assert written.image == target.resolve() / "cat.png"


def test_a_dangling_symlink_is_never_written_through(tmp_path: Path, out: Path) -> None:
    out.mkdir(parents=True)
    victim = tmp_path / "victim.png"
    (out / "cat.png").symlink_to(victim)

    written = write_png(out, "cat")

    assert written.image.name == "cat-2.png"
    assert not victim.exists()


# --- write_image: never overwriting ----------------------------------------


def test_same_name_three_times_gets_numbered(out: Path) -> None:
    pngs = [make_png((i * 80, 0, 0)) for i in range(3)]
    results = [
        write_png(out, "x", png, sidecar={"n": i}, text_chunks={"n": str(i)})
        for i, png in enumerate(pngs)
    ]

    assert [r.image.name for r in results] == ["x.png", "x-2.png", "x-3.png"]
    for i, result in enumerate(results):
        assert read_png_text(result.image) == {"n": str(i)}  # each kept its own bytes
        with Image.open(result.image) as image, Image.open(io.BytesIO(pngs[i])) as source:
            assert image.tobytes() == source.tobytes()
        assert result.sidecar is not None
        assert json.loads(result.sidecar.read_text()) == {"n": i}
    assert all_files(out) == ["x-2.json", "x-2.png", "x-3.json", "x-3.png", "x.json", "x.png"]


def test_a_lone_sidecar_takes_the_name(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "x.json").write_text('{"mine": true}')

    written = write_png(out, "x")

    assert written.image.name == "x-2.png"
    assert (out / "x.json").read_text() == '{"mine": true}'
    assert not (out / "x.png").exists()


def test_an_existing_image_of_another_type_with_a_sidecar_takes_the_name(out: Path) -> None:
    first = write_image(
        out, PurePosixPath("x"), b"jpeg", "image/jpeg", text_chunks={}, sidecar={"a": 1}
    )
    second = write_png(out, "x")
    assert first.sidecar is not None
    assert second.image.name == "x-2.png"
    assert json.loads(first.sidecar.read_text()) == {"a": 1}


def test_concurrent_writers_never_clobber_each_other(out: Path) -> None:
    def write(n: int) -> Written:
        data = f"image number {n}".encode()
        return write_image(
            out, PurePosixPath("x"), data, "image/webp", text_chunks={}, sidecar={"n": n}
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(write, range(16)))

    assert len({r.image for r in results}) == 16
    for n, result in enumerate(results):
        assert result.image.read_bytes() == f"image number {n}".encode()
        assert result.sidecar is not None
        assert json.loads(result.sidecar.read_text())["n"] == n
    assert not [f for f in all_files(out) if f.endswith(".part")]


def test_without_hard_links_names_still_never_collide(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    break_os_calls_of_output(monkeypatch, link=no_links)
    results = [write_png(out, "x", make_png((i, 0, 0)), sidecar=None) for i in range(3)]

    assert [r.image.name for r in results] == ["x.png", "x-2.png", "x-3.png"]
    assert len({r.image.read_bytes() for r in results}) == 3
    assert not [f for f in all_files(out) if f.endswith(".part")]


# --- write_image: nothing half-written --------------------------------------


@pytest.mark.parametrize(
    ("sidecar", "error"),
    [(UNSERIALIZABLE, TypeError), (InterruptedMapping(), KeyboardInterrupt)],
    ids=["unserializable", "interrupted"],
)
def test_sidecar_failure_leaves_nothing(
    tmp_path: Path, out: Path, sidecar: Mapping[str, object], error: type[BaseException]
) -> None:
    # The image is written first; a sidecar that fails after that takes it away again.
    with pytest.raises(error):
        write_png(out, "2026-11-23/cat", sidecar=sidecar)
    assert all_files(tmp_path) == []  # no image, sidecar, .part file or new folder


def test_interrupt_while_renaming_the_sidecar_leaves_nothing(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    break_os_calls_of_output(monkeypatch, replace=interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_png(out, "sub/cat")
    assert all_files(tmp_path) == []


def test_failure_keeps_folders_that_already_existed(out: Path) -> None:
    (out / "2026-11-23").mkdir(parents=True)
    (out / "2026-11-23" / "earlier.png").write_bytes(b"earlier")

    with pytest.raises(TypeError):
        write_png(out, "2026-11-23/new/cat", sidecar=UNSERIALIZABLE)
    assert all_files(out) == ["2026-11-23", "2026-11-23/earlier.png"]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left"), KeyboardInterrupt()])
def test_image_write_failure_leaves_nothing(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def broken_fsync(fd: int) -> None:
        raise error

    break_os_calls_of_output(monkeypatch, fsync=broken_fsync)
    with pytest.raises(type(error)):
        write_png(out, "2026-11-23/cat")
    assert all_files(tmp_path) == []


def test_failure_to_claim_a_name_leaves_nothing(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_link(source: object, target: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    break_os_calls_of_output(monkeypatch, link=broken_link)
    with pytest.raises(OSError, match="I/O error"):
        write_png(out, "cat")
    assert all_files(tmp_path) == []


def test_a_file_where_a_folder_should_be_is_named_in_the_error(tmp_path: Path, out: Path) -> None:
    out.mkdir(parents=True)
    (out / "2026-11-23").write_text("a file, not a folder")

    with pytest.raises(NotADirectoryError) as caught:
        write_png(out, "2026-11-23/cat")

    assert caught.value.filename == str(out.resolve() / "2026-11-23")
    assert all_files(out) == ["2026-11-23"]
    assert (out / "2026-11-23").read_text() == "a file, not a folder"


def test_a_file_where_a_parent_folder_should_be_is_named_in_the_error(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "by-day").write_text("a file, not a folder")

    with pytest.raises(NotADirectoryError) as caught:
        write_png(out, "by-day/2026-11-23/cat")

    assert caught.value.filename == str(out.resolve() / "by-day")
    assert all_files(out) == ["by-day"]
