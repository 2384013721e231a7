"""What a user may read back (issue 17 point 14): their own rows, but not which
machine and account ran them (jobs.worker_id and lease_id, usage.caller and
worker_id, images.storage_uri). The workbench's own statements still work as a
user (those columns read as NULL) and service_role still sees everything."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from imagen_tui.db import repositories as q
from tests.helpers import acting

ALICE = str(uuid.uuid4())
HIDDEN = [
    ("jobs", "worker_id"),
    ("jobs", "lease_id"),
    ("usage", "caller"),
    ("usage", "worker_id"),
    ("images", "storage_uri"),
]


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def alices(api, admin) -> int:
    """Alice's series with one try, run and recorded by a worker on render-box."""
    with acting(api, ALICE):
        [(series,)] = api.execute(
            "INSERT INTO imagen.series (prompt, count) VALUES ('fox', 1) RETURNING id"
        ).fetchall()
        [(job,)] = api.execute(
            "INSERT INTO imagen.jobs (series_id, series_idx, prompt) VALUES (%s, 1, 'fox') "
            "RETURNING id",
            (series,),
        ).fetchall()
    [(image,)] = admin.execute(
        """INSERT INTO imagen.images (owner_user_id, job_id, series_id, series_idx, seed, width,
                                      height, backend, model, mime_type, sha256, bytes,
                                      storage_uri)
           VALUES (%s, %s, %s, 1, 7, 64, 64, 'mock', 'mock-v1', 'image/png', 'ab', 10,
                   'file:///home/operator/out/fox.png') RETURNING id""",
        (ALICE, job, series),
    ).fetchall()
    admin.execute(
        """UPDATE imagen.jobs SET status = 'done', image_id = %s,
                  worker_id = 'render-box:4242:abcd', lease_id = gen_random_uuid()
            WHERE id = %s""",
        (image, job),
    )
    admin.execute(
        """INSERT INTO imagen.usage (owner_user_id, job_id, backend, backend_type, model, seed,
                                     prompt_sha256, width, height, latency_ms, caller, worker_id)
           VALUES (%s, %s, 'mock', 'mock', 'mock-v1', 7, repeat('ab', 32), 64, 64, 5,
                   'operator@render-box', 'render-box:4242:abcd')""",
        (ALICE, job),
    )
    return int(series)


@pytest.mark.parametrize(("table", "column"), HIDDEN)
def test_users_cannot_read_which_machine_ran_their_job(api, alices, table, column):
    with pytest.raises(errors.InsufficientPrivilege), acting(api, ALICE):
        api.execute(f"SELECT {column} FROM imagen.{table}")


def test_users_still_read_the_rest_of_their_rows(api, alices):
    with acting(api, ALICE):
        rows = api.execute(
            "SELECT status, error, object_uri FROM imagen.jobs j "
            "JOIN imagen.images i ON i.id = j.image_id"
        ).fetchall()
        assert rows == [("done", None, None)]
        assert api.execute("SELECT cost_usd, source FROM imagen.usage").fetchall() == [
            (None, "worker")
        ]


def test_the_workbench_statements_work_as_a_user_without_those_columns(api, admin, alices):
    with acting(api, ALICE):
        [job] = q.fetch(api, q.jobs_page(None, 10))
        detail = q.fetch(api, q.series_detail(alices))
        [image] = q.fetch(api, q.series_images(alices))
        [card] = q.fetch(api, q.gallery(10))
        [row] = q.fetch(api, q.usage_rows())
        totals = q.fetch(api, q.usage_totals("caller"))
    assert job.status == "done" and job.storage_uri is None
    assert detail.tries[0].storage_uri is None
    assert image.storage_uri is None and card.image.storage_uri is None
    assert (row.caller, row.worker_id, row.backend) == (None, None, "mock")
    assert [(t.key, t.count) for t in totals] == [(None, 1), (None, 1)]
    # The operator (schema owner) and service_role read every column, as before.
    [job] = q.fetch(admin, q.jobs_page(None, 10))
    assert job.storage_uri == "file:///home/operator/out/fox.png"
    with acting(api, None, role="service_role"):
        [row] = q.fetch(api, q.usage_rows())
        hidden = api.execute(
            "SELECT j.worker_id, u.caller FROM imagen.jobs j JOIN imagen.usage u ON u.job_id = j.id"
        ).fetchall()
    assert row.caller == "operator@render-box"
    assert hidden == [("render-box:4242:abcd", "operator@render-box")]
