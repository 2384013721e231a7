"""The request spec is declared once: the tables carry it, the submit path stores
it, and the worker and the views read the same spec back."""

from __future__ import annotations

import psycopg
import pytest

from imagen_tui.core.spec import REQUEST_FIELDS, RequestSpec, try_seeds
from imagen_tui.db.queue import job_from_row
from imagen_tui.db.repositories import fetch, series_detail, submit_series
from imagen_tui.errors import InputError
from imagen_tui.limits import MAX_SEED

EXPECTED_TYPES = {
    "prompt": "text",
    "negative_prompt": "text",
    "style": "text",
    "width": "integer",
    "height": "integer",
    "steps": "integer",
    "seed": "bigint",
    "backend": "text",
    "options": "jsonb",
}


@pytest.mark.parametrize("table", ["series", "jobs"])
def test_both_tables_carry_every_request_field(db_url, table):
    assert set(REQUEST_FIELDS) == set(EXPECTED_TYPES)  # a new field needs a column here
    with psycopg.connect(db_url) as conn:
        columns: dict[str, str] = dict(
            conn.execute(
                """SELECT column_name, data_type FROM information_schema.columns
                    WHERE table_schema = 'imagen' AND table_name = %s""",
                (table,),
            ).fetchall()
        )
    assert {name: columns.get(name) for name in REQUEST_FIELDS} == EXPECTED_TYPES


def test_a_submitted_series_reads_back_as_the_same_spec(db_url):
    spec = RequestSpec(
        prompt="  a red fox  ",
        negative_prompt=" dogs ",
        style="watercolor",
        width=512,
        height=768,
        steps=30,
        seed=41,
        backend="mock",
        options={"sampler": "euler", "cfg": 3.5},
    ).checked()
    with psycopg.connect(db_url, autocommit=True) as conn:
        submitted = fetch(conn, submit_series(spec, 3))
        detail = fetch(conn, series_detail(submitted.series_id))
        rows = conn.execute(
            "SELECT *, NULL AS lease, NULL AS series_created_at FROM imagen.jobs "
            "WHERE series_id = %s ORDER BY series_idx",
            (submitted.series_id,),
        )
        names = [c.name for c in rows.description or []]
        jobs = [job_from_row(dict(zip(names, row, strict=True))) for row in rows.fetchall()]
    assert spec.prompt == "a red fox" and spec.negative_prompt == "dogs"
    assert detail.spec == spec
    assert [t.idx for t in detail.tries] == [1, 2, 3]
    # Each try carries the spec, its seed counting up from the series' seed.
    assert [job.spec for job in jobs] == [
        RequestSpec(**{**spec.to_row(), "seed": 41 + i}) for i in range(3)
    ]
    assert [job.series_idx for job in jobs] == [1, 2, 3]


def test_a_series_without_a_seed_gives_each_try_its_own(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        submitted = fetch(conn, submit_series(RequestSpec("a fox").checked(), 2))
        seeds = conn.execute(
            "SELECT seed FROM imagen.jobs WHERE series_id = %s", (submitted.series_id,)
        ).fetchall()
    assert seeds == [(None,), (None,)]  # random, chosen (and recorded) by the worker


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (RequestSpec(" \t "), "prompt", "the prompt is empty; say what the image should show"),
        (RequestSpec("x", width=512), "size", "give both width and height, or neither"),
        (RequestSpec("x", width=32, height=32), "size", "32x32 is out of range"),
        (RequestSpec("x", steps=0), "steps", "0 is out of range; use 1 to 500"),
        (RequestSpec("x", seed=-1), "seed", "-1 is out of range"),
        (RequestSpec("x", options=[1, 2]), "options", "must be a JSON object"),  # type: ignore[arg-type]
        (RequestSpec("x", steps="20"), "steps", "'20' is not a whole number"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_spec_names_its_field(spec, field, message):
    with pytest.raises(InputError) as caught:
        spec.checked()
    assert caught.value.field == field
    assert caught.value.message.startswith(message)


def test_the_seeds_of_a_series_must_fit_and_the_error_says_which_seed_does():
    assert try_seeds(MAX_SEED - 1, 2) == [MAX_SEED - 1, MAX_SEED]
    with pytest.raises(InputError) as caught:
        try_seeds(MAX_SEED - 1, 3)
    assert caught.value.field == "seed"
    assert caught.value.message.endswith(f"use a seed of at most {MAX_SEED - 2}")
