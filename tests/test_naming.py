"""File names from templates: slugs, token substitution and template checks."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath

import pytest

from imagen_tui.core.naming import DEFAULT_TEMPLATE, TOKENS, check_template, render_name, slugify
from imagen_tui.errors import ConfigError

WHEN = datetime(2026, 11, 23, 15, 30, 12)


def fields(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "prompt": "A cat on a sofa",
        "when": WHEN,
        "seed": 42,
        "backend": "mock",
        "model": "mock-v1",
        "width": 512,
        "height": 768,
        "idx": 1,
        "series": "",
        "style": "",
    }
    return base | overrides


# --- slugify ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Café à Paris", "café-à-paris"),
        ("東京の夜", "東京の夜"),
        ("Große Straße", "große-straße"),
        ("Hello, World!!", "hello-world"),
        ("a cat 🐈 on a sofa ❤️", "a-cat-on-a-sofa"),
        ("👋🏽 wave", "wave"),
        ("../../etc/x", "etc-x"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("file.tar.gz", "file-tar-gz"),
        ("a\x00b\nc\td\r\x1be", "a-b-c-d-e"),
        ("  --spaced__out--  ", "spaced-out"),
        ("हिन्दी भाषा", "हिन्दी-भाषा"),  # combining vowel signs stay with their letters
    ],
)
def test_slugify_keeps_words_readable_and_drops_the_rest(text: str, slug: str) -> None:
    assert slugify(text) == slug


@pytest.mark.parametrize("text", ["", "!!!", "🎨🖌️✨", "../..", "\x00\n", "   "])
def test_slugify_of_nothing_usable_is_untitled(text: str) -> None:
    assert slugify(text) == "untitled"


def test_slugify_is_nfc_normalised() -> None:
    decomposed = "Cafe\u0301"  # e + combining acute accent
    assert slugify(decomposed) == "caf\u00e9"


def test_slugify_bounds_a_long_prompt_at_a_word_boundary() -> None:
    prompt = " ".join(["lighthouse"] * 50)  # 549 characters
    slug = slugify(prompt)
    assert len(slug) <= 60
    assert slug == "-".join(["lighthouse"] * 5)  # whole words only, no "lightho"


def test_slugify_cuts_a_word_without_hyphens_hard() -> None:
    assert slugify("x" * 500) == "x" * 60
    assert slugify("x" * 500, max_chars=10) == "x" * 10


def test_slugify_bounds_utf8_bytes_without_splitting_characters() -> None:
    slug = slugify("東" * 500)
    assert len(slug.encode("utf-8")) <= 120
    assert slug == "東" * 40  # 3 bytes each: exactly 120 bytes, no broken character

    mixed = slugify("é東" * 250, max_chars=1000)
    assert len(mixed.encode("utf-8")) <= 120
    mixed.encode("utf-8").decode("utf-8")  # still valid UTF-8


def test_slugify_of_500_mixed_chars_respects_both_bounds() -> None:
    slug = slugify(("Ünïcödé ström 東京 " * 40)[:500])
    assert 0 < len(slug) <= 60
    assert len(slug.encode("utf-8")) <= 120
    assert not slug.startswith("-")
    assert not slug.endswith("-")


# --- render_name -----------------------------------------------------------


def test_default_template() -> None:
    assert render_name(DEFAULT_TEMPLATE, fields()) == PurePosixPath(
        "2026-11-23/153012_a-cat-on-a-sofa_42"
    )


def test_every_token_renders() -> None:
    template = "_".join(f"{{{token}}}" for token in sorted(TOKENS))
    name = render_name(
        template,
        fields(
            prompt="Red Fox", series="s7", style="photo", idx=3, backend="openai", model="gpt-1"
        ),
    )
    # backend, date, datetime, height, idx, model, seed, series, slug, style, time, width
    assert str(name) == (
        "openai_2026-11-23_20261123-153012_768_3_gpt-1_42_s7_red-fox_photo_153012_512"
    )


def test_template_folders_make_subdirectories() -> None:
    name = render_name("{backend}/{model}/{date}/{slug}", fields())
    assert name.parts == ("mock", "mock-v1", "2026-11-23", "a-cat-on-a-sofa")
    assert not name.is_absolute()
    assert name.suffix == ""


def test_number_tokens_take_zero_padding() -> None:
    assert str(render_name("{idx:03d}_{seed:08}", fields(idx=7, seed=42))) == "007_00000042"


def test_literal_braces() -> None:
    assert str(render_name("{{{slug}}}", fields(prompt="x"))) == "{x}"


@pytest.mark.parametrize(
    "evil",
    [
        "../..",
        "..",
        "a/../../b",
        "/etc/passwd",
        "..\\..\\windows",
        "x\x00y",
        "new\nline",
        ".hidden",
    ],
)
@pytest.mark.parametrize("token", ["backend", "model", "series", "style"])
def test_values_cannot_add_folders_or_escape(token: str, evil: str) -> None:
    name = render_name(f"out/{{{token}}}_{{slug}}", fields(**{token: evil}))
    assert len(name.parts) == 2  # only the template's own "/" makes a folder
    assert name.parts[0] == "out"
    assert ".." not in name.parts
    assert not name.is_absolute()
    file_name = name.parts[1]
    assert not file_name.startswith(".")
    assert all(ch not in file_name for ch in "/\\\x00\n")


def test_value_that_is_a_whole_folder_cannot_be_dot_dot() -> None:
    name = render_name("{backend}/{model}/{slug}", fields(backend="../..", model=".."))
    assert name == PurePosixPath("a-cat-on-a-sofa")  # empty folders are dropped


def test_separators_inside_a_value_become_dashes() -> None:
    name = render_name("{model}/{slug}", fields(model="stabilityai/sdxl:1.0"))
    assert name.parts == ("stabilityai-sdxl-1.0", "a-cat-on-a-sofa")


def test_a_prompt_path_stays_one_component() -> None:
    name = render_name("{slug}", fields(prompt="../../etc/x"))
    assert name == PurePosixPath("etc-x")


def test_empty_optional_values() -> None:
    assert render_name("{series}/{style}_{slug}", fields(prompt="x")) == PurePosixPath("_x")
    assert render_name("{series}", fields()) == PurePosixPath("untitled")


def test_every_component_is_bounded_to_200_bytes() -> None:
    name = render_name("{model}/{model}_{slug}", fields(model="模" * 300))
    for part in name.parts:
        assert len(part.encode("utf-8")) <= 200


def test_render_name_rejects_a_bad_template() -> None:
    with pytest.raises(ConfigError, match="unknown token"):
        render_name("{nope}", fields())


# --- check_template --------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [DEFAULT_TEMPLATE, "{slug}", "{date}/{backend}/{idx:03d}-{slug}", "fixed-name", "{{x}}_{seed}"],
)
def test_good_templates_pass(template: str) -> None:
    check_template(template)


@pytest.mark.parametrize(
    ("template", "fix"),
    [
        ("", "template is empty"),
        ("   ", "template is empty"),
        ("/abs/{slug}", "absolute path"),
        ("\\abs\\{slug}", "absolute path"),
        ("C:/images/{slug}", "absolute path"),
        ("{date}\\{slug}", "use / to separate folders"),
        ("../{slug}", "'..' as a folder"),
        ("a/../../{slug}", "'..' as a folder"),
        ("a//{slug}", "empty folder name"),
        ("{date}/", "empty folder name"),
        ("{slug", "malformed braces"),
        ("slug}", "malformed braces"),
        ("{slug!r}", "conversions are not supported"),
        ("{slug:>20}", "only zero-padding"),
        ("{seed:>20}", "only zero-padding"),
        ("{seed:099999999d}", "only zero-padding"),
        ("a\n{slug}", "control character"),
    ],
)
def test_bad_templates_are_rejected_with_a_fix(template: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_template(template)
    message = str(caught.value)
    assert message.startswith("output.naming: ")
    assert fix in message
    assert "\n" not in message


@pytest.mark.parametrize("template", ["{prompt}", "{Slug}", "{seed.real}", "{0}", "{}"])
def test_unknown_token_lists_the_known_ones(template: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_template(template)
    message = str(caught.value)
    assert message.startswith("output.naming: unknown token")
    for token in TOKENS:
        assert f"{{{token}}}" in message


def test_check_template_names_the_field_and_place() -> None:
    with pytest.raises(ConfigError) as caught:
        check_template("{nope}", field="profiles.fast.naming", where="imagen.yaml:7")
    assert caught.value.where == "imagen.yaml:7"
    assert str(caught.value).startswith("imagen.yaml:7: profiles.fast.naming: unknown token {nope}")
