"""The mock backend's drawing: a prompt, size, steps and seed in, PNG bytes out.

The picture: a smooth gradient colour field, soft translucent shapes at three
depths, and the prompt's words on a translucent band above a
`seed · steps · size` caption.

Everything random comes from one `random.Random` seeded with a SHA-256 of the
prompt, negative prompt and seed, so one request gives byte-identical PNGs in
any process. Size and steps are deliberately not hashed, to behave like a real
model: the same seed keeps its palette and composition at another size (all
positions are relative), and more steps add detail and sharpen the shapes
rather than drawing a different picture. Size and steps still change the
pixels (and the caption names them).

`render` is pure and thread-safe; the adapter (`MockBackend`, in the package's
`__init__`) runs it off the event loop. The package re-exports it, so
`from imagen_tui.backends.mock import render` gives this function. Note that
the re-export shadows this submodule as an attribute of the package: reach the
module's other names with `from imagen_tui.backends.mock.render import ...`,
not through `imagen_tui.backends.mock.render.<name>`.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
import random
import unicodedata
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# The drawing's name, salted into every image's seed (changing it changes every
# picture); also the adapter's default model name.
MODEL_NAME = "mock-v1"

# The picture is painted at three resolutions, each as coarse as it can be:
# the far layer (gradient, glow, blurred discs, shadows) is pure blur, so it
# is painted at most BACKGROUND_MAX_SIDE pixels wide; the crisper shapes at
# most SHAPES_MAX_SIDE; then the result is scaled up and the text is drawn at
# full size so it stays sharp. This keeps a 2048x2048 render well under a
# second on a slow machine.
BACKGROUND_MAX_SIDE = 128
SHAPES_MAX_SIDE = 512
PNG_COMPRESS_LEVEL = 3  # as fast as 1 here and ~10% smaller; 6 is ~50% slower

SUPERSAMPLE = 3  # shapes are drawn this many times larger, then shrunk: smooth edges
MAX_DETAILS = 24  # small dots and rings; `steps` decides how many are drawn
MIN_TEXT_PX = 9  # text smaller than this is not drawn at all
CUT_FIRST_PROBE = 64  # characters: longer words are measured in growing prefixes

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Size = tuple[int, int]


# --------------------------------------------------------------------------
# Rendering


def render(
    prompt: str, negative_prompt: str, width: int, height: int, steps: int, seed: int
) -> bytes:
    """Draw one image and return it as PNG bytes (RGB, no metadata chunks)."""
    scene = _compose(random.Random(_seed_from(prompt, negative_prompt, seed)))

    image = _paint_background(scene, _fit_within((width, height), BACKGROUND_MAX_SIDE))
    image = image.resize(_fit_within((width, height), SHAPES_MAX_SIDE), Image.Resampling.BICUBIC)
    _paint_shapes(image, scene, steps)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    caption = f"seed {seed} · {steps} step{'s' if steps != 1 else ''} · {width}x{height}"
    _draw_text(image, prompt, caption, scene.palette)

    # Pillow picks the encoder by the file's name without loading its other format
    # plugins (with format="PNG" it first imports BMP, GIF, JPEG and PPM too).
    buffer = _NamedBuffer()
    image.save(buffer, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


PREVIEW_MAX_SIDE = 256  # the mock's previews: at most this many pixels a side
PREVIEW_BLUR = 12.0  # the first preview's blur radius (pixels); none at the end


def sketch(
    prompt: str, negative_prompt: str, width: int, height: int, steps: int, seed: int
) -> Image.Image:
    """The picture `render` draws (without its text), small: what previews show."""
    scene = _compose(random.Random(_seed_from(prompt, negative_prompt, seed)))
    size = _fit_within((width, height), PREVIEW_MAX_SIDE)
    image = _paint_background(scene, _fit_within(size, BACKGROUND_MAX_SIDE))
    image = image.resize(size, Image.Resampling.BICUBIC)
    _paint_shapes(image, scene, steps)
    return image


def preview_jpeg(picture: Image.Image, fraction: float) -> bytes:
    """`picture` as a sampler would show it `fraction` of the way: blurred, then
    sharper at each step (JPEG bytes)."""
    radius = PREVIEW_BLUR * (1.0 - min(max(fraction, 0.0), 1.0))
    shown = picture.filter(ImageFilter.GaussianBlur(radius)) if radius >= 0.5 else picture
    buffer = io.BytesIO()
    shown.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


class _NamedBuffer(io.BytesIO):
    """An in-memory `.png` file."""

    name = "image.png"


def _seed_from(prompt: str, negative_prompt: str, seed: int) -> int:
    """A stable integer for `random.Random` (never the salted built-in `hash`)."""
    canonical = json.dumps([MODEL_NAME, prompt, negative_prompt, seed], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest(), "big")


def _fit_within(size: Size, max_side: int) -> Size:
    """`size` scaled down (never up) so its longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


# --- The scene: every random choice, made once, independent of size and steps.
#
# Positions are fractions of the width and height; lengths are fractions of
# the image's "unit", sqrt(width * height), so shapes keep their look at any
# aspect ratio. (NamedTuples, not dataclasses: as immutable, and a fraction of the
# cost to define, which every `imagen generate` pays at start-up.)


class _Palette(NamedTuple):
    start: RGB  # gradient, light end
    end: RGB  # gradient, deep end
    glow: RGB  # soft radial light
    accents: tuple[RGB, ...]  # shape colours
    shade: RGB  # a deep tint for shadows and the text band


class _Shape(NamedTuple):
    kind: str  # "circle", "ellipse", "rounded", "polygon", "ring"
    x: float
    y: float
    size: float
    colour: RGBA
    aspect: float = 1.0  # height / width, for ellipses and rounded rectangles
    sides: int = 0  # for polygons
    rotation: float = 0.0  # degrees, for polygons


class _Scene(NamedTuple):
    palette: _Palette
    angle: float  # of the gradient, degrees
    glow: tuple[float, float, float]  # x, y, radius
    discs: tuple[_Shape, ...]  # far, heavily blurred
    heroes: tuple[_Shape, ...]  # middle, bold, with shadows
    details: tuple[_Shape, ...]  # near, small; `steps` decides how many


# Hue offsets (fractions of the colour wheel) of classic colour schemes.
_SCHEMES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.07, 0.14),  # analogous
    (0.0, -0.08, 0.5),  # complementary, with a neighbour
    (0.0, 0.42, 0.58),  # split complementary
    (0.0, 1 / 3, 2 / 3),  # triadic
    (0.0, 0.1, 0.55),  # analogous plus an accent
)


def _hls(hue: float, lightness: float, saturation: float) -> RGB:
    """An sRGB colour from hue, lightness and saturation (all 0..1)."""
    hue %= 1.0
    # Saturated yellow-greens look garish next to other hues at the same
    # lightness: tone them down, most at lime (hue ~0.25).
    saturation *= 1 - 0.4 * max(0.0, 1 - abs(hue - 0.25) / 0.12)
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def _compose(rng: random.Random) -> _Scene:
    """Make every random choice of one picture: palette, gradient and shapes."""
    # The backdrop uses two neighbouring hues (far-apart hues mix to grey in a
    # gradient); the shapes take their accents from a whole colour scheme.
    base = rng.random()
    neighbour = base + rng.choice((-1, 1)) * rng.uniform(0.06, 0.14)
    scheme = [base + offset for offset in rng.choice(_SCHEMES)]
    palette = _Palette(
        start=_hls(base, rng.uniform(0.56, 0.66), rng.uniform(0.5, 0.7)),
        end=_hls(neighbour, rng.uniform(0.2, 0.3), rng.uniform(0.45, 0.65)),
        glow=_hls((base + neighbour) / 2, rng.uniform(0.68, 0.78), rng.uniform(0.6, 0.8)),
        accents=tuple(
            _hls(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.55, 0.75), rng.uniform(0.6, 0.85))
            for hue in scheme * 2
        ),
        shade=_hls(neighbour, 0.1, 0.4),
    )

    def accent(low: int, high: int) -> RGBA:
        return (*rng.choice(palette.accents), rng.randint(low, high))

    backdrop = (base, neighbour, (base + neighbour) / 2)
    discs = tuple(
        _Shape(
            "circle",
            rng.uniform(-0.1, 1.1),
            rng.uniform(-0.1, 1.1),
            rng.uniform(0.15, 0.35),
            (*_hls(rng.choice(backdrop), rng.uniform(0.5, 0.75), 0.8), rng.randint(60, 120)),
        )
        for _ in range(rng.randint(3, 5))
    )
    heroes = tuple(
        _Shape(
            rng.choice(("circle", "ellipse", "rounded", "polygon")),
            rng.uniform(0.1, 0.9),
            rng.uniform(0.1, 0.7),  # keep clear of the text band at the bottom
            rng.uniform(0.07, 0.16),
            accent(150, 210),
            aspect=rng.uniform(0.55, 1.0),
            sides=rng.randint(3, 6),
            rotation=rng.uniform(0, 360),
        )
        for _ in range(rng.randint(2, 4))
    )
    details = tuple(
        _Shape(
            rng.choice(("ring", "circle", "circle")),
            rng.uniform(0.03, 0.97),
            rng.uniform(0.03, 0.78),  # mostly above the text band
            rng.uniform(0.006, 0.025),
            accent(140, 220) if rng.random() < 0.5 else (255, 255, 255, rng.randint(110, 190)),
        )
        for _ in range(MAX_DETAILS)
    )
    glow = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.5, 0.9))
    return _Scene(palette, rng.uniform(0, 360), glow, discs, heroes, details)


# --- Painting


def _paint_background(scene: _Scene, size: Size) -> Image.Image:
    """The far layer, at low resolution: gradient, glow, blurred discs, shadows."""
    width, height = size
    palette = scene.palette

    # A linear gradient at the scene's angle: rotate an oversized ramp, crop.
    diagonal = math.ceil(math.hypot(width, height))
    ramp = Image.linear_gradient("L").resize((diagonal, diagonal), Image.Resampling.BILINEAR)
    ramp = ramp.rotate(scene.angle, resample=Image.Resampling.BILINEAR)
    left, top = (diagonal - width) // 2, (diagonal - height) // 2
    ramp = ramp.crop((left, top, left + width, top + height))
    image = Image.composite(
        Image.new("RGB", size, palette.end), Image.new("RGB", size, palette.start), ramp
    )

    # A soft radial glow. radial_gradient is 0 at its centre and 255 at its
    # rim: invert it (and cap its strength) to get a light that fades out.
    glow_x, glow_y, glow_radius = scene.glow
    radius = max(1, round(glow_radius * max(size)))
    light = Image.radial_gradient("L").resize((2 * radius, 2 * radius), Image.Resampling.BILINEAR)
    light = light.point(lambda value: (255 - value) // 2)
    mask = Image.new("L", size, 0)
    mask.paste(light, (round(glow_x * width) - radius, round(glow_y * height) - radius))
    image = Image.composite(Image.new("RGB", size, palette.glow), image, mask)

    unit = math.sqrt(width * height)
    for disc in scene.discs:
        _draw_shape(image, disc)
    image = image.filter(ImageFilter.GaussianBlur(0.06 * unit))

    # Shadows: the heroes again, offset down-right in a deep translucent shade.
    for hero in scene.heroes:
        shadow = hero._replace(x=hero.x + 0.01, y=hero.y + 0.025, colour=(*palette.shade, 70))
        _draw_shape(image, shadow)
    return image.filter(ImageFilter.GaussianBlur(0.015 * unit))


def _paint_shapes(image: Image.Image, scene: _Scene, steps: int) -> None:
    """The middle and near layers, alpha-blended onto `image`.

    More steps draw more details and, below about a dozen steps, blur less:
    like a diffusion model that has had more time to refine its picture.
    """
    count = min(MAX_DETAILS, 3 + steps // 3)
    for shape in (*scene.heroes, *scene.details[:count]):
        _draw_shape(image, shape)
    unit = math.sqrt(image.size[0] * image.size[1])
    radius = 0.012 * unit / max(1, steps)
    if radius >= 0.5:
        image.paste(image.filter(ImageFilter.GaussianBlur(radius)))


def _draw_shape(image: Image.Image, shape: _Shape) -> None:
    """Alpha-blend one anti-aliased shape onto `image`.

    The shape is drawn into a mask of its bounding box at SUPERSAMPLE times
    the size, shrunk (which smooths its edges), and the colour is pasted
    through it. A mask also avoids the seams ImageDraw leaves where parts of
    a translucent rounded rectangle overlap.
    """
    width, height = image.size
    unit = math.sqrt(width * height)
    radius = shape.size * unit
    stretched = shape.kind in ("ellipse", "rounded")
    half_width, half_height = radius, radius * (shape.aspect if stretched else 1.0)
    left = math.floor(shape.x * width - half_width) - 1
    top = math.floor(shape.y * height - half_height) - 1
    box_width = math.ceil(2 * half_width) + 3
    box_height = math.ceil(2 * half_height) + 3

    ss = SUPERSAMPLE
    mask = Image.new("L", (box_width * ss, box_height * ss), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = (shape.x * width - left) * ss, (shape.y * height - top) * ss
    rx, ry = half_width * ss, half_height * ss
    *rgb, alpha = shape.colour
    if shape.kind in ("circle", "ellipse"):
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=alpha)
    elif shape.kind == "ring":
        line = max(1, round(rx * 0.2))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=alpha, width=line)
    elif shape.kind == "rounded":
        draw.rounded_rectangle((cx - rx, cy - ry, cx + rx, cy + ry), radius=ry * 0.4, fill=alpha)
    else:
        draw.regular_polygon((cx, cy, rx), shape.sides, rotation=shape.rotation, fill=alpha)
    image.paste(tuple(rgb), (left, top, left + box_width, top + box_height), mask.reduce(ss))


# --------------------------------------------------------------------------
# Text


def _draw_text(image: Image.Image, prompt: str, caption: str, palette: _Palette) -> None:
    """The prompt's words on a translucent band at the bottom, with a caption.

    Whatever cannot fit is dropped: on a tiny image only the caption, or
    nothing at all, is drawn.
    """
    width, height = image.size
    margin = max(3, round(min(width, height) * 0.035))
    text_px = round(min(width * 0.034, height * 0.06, 56))
    caption_px = max(MIN_TEXT_PX, round(text_px * 0.55))
    line_px = round(text_px * 1.28)
    caption_line_px = round(caption_px * 1.6)  # with a little gap above it
    max_band = height * 0.4

    lines: list[str] = []
    font: Font | None = None
    words = _printable(prompt).split()
    if words and text_px >= MIN_TEXT_PX:
        font = ImageFont.load_default(size=text_px)
        room = int((max_band - 3 * margin - caption_line_px) // line_px)
        lines = _wrap(words, font, width - 4 * margin, min(3, room))

    band_height = 2 * margin + len(lines) * line_px + caption_line_px
    band_top = height - margin - band_height
    if band_top < 0 or band_height > max_band:
        return
    caption_font = ImageFont.load_default(size=caption_px)
    if caption_font.getlength(caption) > width - 4 * margin:
        return

    draw = ImageDraw.Draw(image, "RGBA")
    draw.rounded_rectangle(
        (margin, band_top, width - margin, height - margin),
        radius=margin,
        fill=(*palette.shade, 140),
    )
    x, y = 2 * margin, band_top + margin
    for line in lines:
        draw.text((x, y), line, font=font, fill=(250, 248, 244, 255))
        y += line_px
    draw.text((x, y + caption_px * 0.3), caption, font=caption_font, fill=(250, 248, 244, 175))


def _printable(text: str) -> str:
    """What the built-in font can draw: ASCII, with accents folded away.

    The font Pillow ships has no accented or non-Latin glyphs; they would
    show as boxes, so they are dropped.
    """
    folded = unicodedata.normalize("NFKD", text)
    return "".join(
        c if c.isascii() and c.isprintable() else " " if c.isspace() else "" for c in folded
    )


def _wrap(words: list[str], font: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap into at most `max_lines`; an ellipsis marks dropped words.

    Every string measured is at most about two lines long, and the loop stops
    at the first word that finds the lines full, so the cost depends on the
    image's width, never on the prompt's length.
    """
    lines: list[str] = []
    if max_lines <= 0:
        return lines
    for word in words:
        word = _cut(word, font, max_width)  # a word wider than a line is cut
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        elif len(lines) < max_lines:
            lines.append(word)
        else:
            lines[-1] = _cut(lines[-1], font, max_width, suffix=" …")
            break
    return lines


def _cut(text: str, font: Font, max_width: float, suffix: str = "") -> str:
    """`text`, shortened until it fits `max_width` with `suffix` appended.

    The result is `text` whole when it fits, else its longest prefix that fits,
    without trailing blanks (or just `suffix` when not one character fits).
    A prefix is never narrower than a shorter one, so that prefix is found by
    galloping (CUT_FIRST_PROBE characters, then doubling) to the first length
    that does not fit, then bisecting: about 2 log2(k) measurements of at most
    2k characters for a k-character fit, however long `text` is. A word that
    fits (the usual case) is measured once.
    """

    def fits(length: int) -> bool:
        return font.getlength(text[:length] + suffix) <= max_width

    # Invariant: `fitting` fits (or is 0), `too_long` does not (or is past the end).
    fitting, too_long = 0, len(text) + 1
    probe = min(len(text), CUT_FIRST_PROBE)
    while probe > fitting:
        if not fits(probe):
            too_long = probe
            break
        fitting, probe = probe, min(len(text), 2 * probe)
    while too_long - fitting > 1:
        middle = (fitting + too_long) // 2
        if fits(middle):
            fitting = middle
        else:
            too_long = middle
    return (text if fitting == len(text) else text[:fitting].rstrip()) + suffix
