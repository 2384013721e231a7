"""Generation metadata inside PNG files and in JSON sidecars.

- `parameters_text` writes the settings in the AUTOMATIC1111 "parameters" form
  that other image tools read.
- `add_png_text` puts text chunks into existing PNG bytes without re-encoding
  the pixels; `read_png_text` reads them back (tEXt, zTXt and iTXt) by walking
  the chunk list itself.
- `sidecar_path` names the JSON file kept beside an image.

PNG layout used here: an 8-byte signature, then chunks of
`length (4 bytes, big-endian) | type (4 bytes) | data | CRC32 of type+data`,
starting with IHDR and ending with IEND.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNK_TYPES = frozenset({b"tEXt", b"zTXt", b"iTXt"})

# A compressed text chunk may not inflate past this: guards against zip bombs.
MAX_TEXT_BYTES = 16 * 1024 * 1024

_NO_EXTRA: Mapping[str, str] = MappingProxyType({})


def parameters_text(
    prompt: str,
    negative_prompt: str,
    *,
    steps: int | None,
    seed: int | None,
    width: int,
    height: int,
    model: str,
    extra: Mapping[str, str] = _NO_EXTRA,
) -> str:
    """The settings as AUTOMATIC1111 writes them in a PNG's `parameters` chunk.

        a cat on a sofa
        Negative prompt: blurry
        Steps: 20, Seed: 42, Size: 512x512, Model: mock-v1, Backend: mock

    The negative prompt line is left out when it is empty, `Steps` when None,
    `Seed` when None (a backend that takes no seed), `Model` when empty.
    `extra` items follow in order. A value holding `,`, `:` or a newline is
    written as a JSON string, as A1111 does.
    """
    settings: dict[str, str] = {}
    if steps is not None:
        settings["Steps"] = str(steps)
    if seed is not None:
        settings["Seed"] = str(seed)
    settings["Size"] = f"{width}x{height}"
    if model:
        settings["Model"] = model
    settings.update(extra)

    lines = [prompt]
    if negative_prompt.strip():
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {_a1111_quote(value)}" for key, value in settings.items()))
    return "\n".join(lines)


def add_png_text(png: bytes, chunks: Mapping[str, str]) -> bytes:
    """Return `png` with a text chunk per item of `chunks`, placed right after IHDR.

    The pixel data is copied untouched. Each item becomes a `tEXt` chunk when
    key and value are Latin-1, otherwise an uncompressed UTF-8 `iTXt` chunk.
    Text chunks already in `png` under the same keys are dropped, so the new
    values are the only ones. Keys are 1-79 printable Latin-1 characters.
    Raises ValueError when `png` is not a well-formed PNG or a key/value is unusable.
    """
    new_chunks = b"".join(_text_chunk(key, value) for key, value in chunks.items())
    replaced_keys = {key.encode("latin-1") for key in chunks}

    existing = list(_walk_chunks(png))
    if not existing or existing[0].kind != b"IHDR":
        raise ValueError("not a PNG: the first chunk is not IHDR")
    header, rest = existing[0], existing[1:]
    kept = [
        chunk
        for chunk in rest
        if not (chunk.kind in TEXT_CHUNK_TYPES and _keyword(chunk.data) in replaced_keys)
    ]
    return PNG_SIGNATURE + header.raw + new_chunks + b"".join(chunk.raw for chunk in kept)


def read_png_text(data_or_path: bytes | Path) -> dict[str, str]:
    """Every text chunk (tEXt, zTXt, iTXt) of a PNG as {key: text}; the last one wins.

    Raises ValueError when the data is not a well-formed PNG.
    """
    data = data_or_path.read_bytes() if isinstance(data_or_path, Path) else data_or_path
    texts: dict[str, str] = {}
    for chunk in _walk_chunks(data):
        if chunk.kind in TEXT_CHUNK_TYPES:
            key, text = _decode_text_chunk(chunk.kind, chunk.data)
            texts[key] = text
    return texts


def sidecar_path(image_path: Path) -> Path:
    """The JSON sidecar beside an image: `out/a.png` -> `out/a.json`."""
    return image_path.with_suffix(".json")


class _Chunk(NamedTuple):
    kind: bytes  # the 4-byte chunk type, e.g. b"IHDR"
    data: bytes
    raw: bytes  # the whole chunk as stored: length, type, data and CRC


def _walk_chunks(png: bytes) -> Iterator[_Chunk]:
    """The chunks of `png` up to and including IEND, each checked against its CRC."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: the 8-byte signature is missing")
    position = len(PNG_SIGNATURE)
    while position < len(png):
        if position + 8 > len(png):
            raise ValueError("damaged PNG: a chunk header is cut short")
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        end = position + 12 + length  # header (8) + data + CRC (4)
        if end > len(png):
            raise ValueError(f"damaged PNG: the {kind!r} chunk is cut short")
        data = png[position + 8 : end - 4]
        (crc,) = struct.unpack(">I", png[end - 4 : end])
        if crc != zlib.crc32(kind + data):
            raise ValueError(f"damaged PNG: the {kind!r} chunk fails its CRC check")
        yield _Chunk(kind, data, png[position:end])
        if kind == b"IEND":
            return
        position = end


def _make_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    """A tEXt chunk when key and value are Latin-1, else an uncompressed iTXt chunk."""
    keyword = _encode_keyword(key)
    if "\0" in value:
        raise ValueError(f"PNG text {key!r}: the value holds a NUL character")
    try:
        return _make_chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # keyword NUL, compression flag 0, method 0, language "" NUL, translated keyword "" NUL
        header = keyword + b"\0" + b"\0\0" + b"\0" + b"\0"
        return _make_chunk(b"iTXt", header + value.encode("utf-8"))


def _encode_keyword(key: str) -> bytes:
    """A PNG keyword: 1-79 printable Latin-1 characters (spaces allowed)."""
    printable = all(32 <= ord(ch) <= 126 or 161 <= ord(ch) <= 255 for ch in key)
    if not 1 <= len(key) <= 79 or not printable:
        raise ValueError(f"PNG text key {key!r}: use 1-79 printable Latin-1 characters")
    return key.encode("latin-1")


def _keyword(data: bytes) -> bytes:
    """The keyword that starts every text chunk's data."""
    return data.split(b"\0", 1)[0]


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    """(key, text) of one tEXt, zTXt or iTXt chunk."""
    keyword, separator, body = data.partition(b"\0")
    if not separator:
        raise ValueError(f"damaged PNG: a {kind!r} chunk has no keyword separator")
    key = keyword.decode("latin-1")

    if kind == b"tEXt":
        return key, body.decode("latin-1")
    if kind == b"zTXt":  # method byte (0 = zlib), then compressed Latin-1 text
        return key, _inflate(body[1:]).decode("latin-1")

    # iTXt: compression flag, method, language tag NUL, translated keyword NUL, text
    compressed, text_part = body[:1] == b"\1", body[2:]
    fields = text_part.split(b"\0", 2)
    if len(body) < 2 or len(fields) != 3:
        raise ValueError(f"damaged PNG: the iTXt chunk {key!r} is malformed")
    text = _inflate(fields[2]) if compressed else fields[2]
    return key, text.decode("utf-8", errors="replace")


def _inflate(data: bytes) -> bytes:
    """zlib-decompress a text chunk, refusing to grow past MAX_TEXT_BYTES."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as error:
        raise ValueError(
            f"damaged PNG: a compressed text chunk does not inflate ({error})"
        ) from None
    if inflater.unconsumed_tail:
        raise ValueError(
            f"PNG text chunk inflates past {MAX_TEXT_BYTES} bytes; refusing to read it"
        )
    return text


def _a1111_quote(value: str) -> str:
    """Quote a value the way AUTOMATIC1111 does: as JSON when it holds `,`, `:` or a newline."""
    if any(ch in value for ch in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value
