"""The front ends' statements, run as a live view runs them (async) and as the CLI
does (sync): the same results either way, typed rows, and all-or-nothing writes."""

from __future__ import annotations

import io

import psycopg
import pytest
from PIL import Image

from imagen_tui.core.spec import RequestSpec
from imagen_tui.core.thumbnails import make_thumbnail
from imagen_tui.db import repositories as repo
from imagen_tui.errors import InputError
from tests.helpers import sql


def finish(db_url: str, job_id: int, series_id: int, idx: int, thumbnail: bytes) -> int:
    """Record job `job_id` as done with an image, as a worker would."""
    ((image_id,),) = sql(
        db_url,
        """INSERT INTO imagen.images (job_id, series_id, series_idx, seed, width, height,
                                      backend, model, mime_type, sha256, bytes, storage_uri,
                                      thumbnail, thumbnail_mime)
           VALUES (%s, %s, %s, 7, 64, 64, 'mock', 'mock-v1', 'image/png', 'ab', 10, %s, %s,
                   'image/jpeg')
           RETURNING id""",
        (job_id, series_id, idx, f"file:///out/{idx}.png", thumbnail),
    )
    sql(
        db_url,
        """UPDATE imagen.jobs SET status = 'running', worker_id = 'w',
                  lease_expires_at = now() + interval '1 minute' WHERE id = %s""",
        (job_id,),
    )
    sql(
        db_url,
        "UPDATE imagen.jobs SET status = 'done', image_id = %s, seed = 7 WHERE id = %s",
        (image_id, job_id),
    )
    return int(image_id)


@pytest.fixture
def series(db_url) -> dict[str, object]:
    """A series of three tries: try 1 done (with a thumbnail), try 2 failed, try 3 pending."""
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(png, "PNG")
    thumbnail = make_thumbnail(png.getvalue())
    with psycopg.connect(db_url, autocommit=True) as conn:
        submitted = repo.fetch(conn, repo.submit_series(RequestSpec("a fox").checked(), 3))
    first, second, _third = submitted.job_ids
    image = finish(db_url, first, submitted.series_id, 1, thumbnail)
    sql(db_url, "UPDATE imagen.jobs SET status = 'canceled' WHERE id = %s", (second,))
    return {
        "id": submitted.series_id,
        "jobs": submitted.job_ids,
        "image": image,
        "thumb": thumbnail,
    }


def test_the_queries_read_what_a_live_view_needs(db_url, series):
    with psycopg.connect(db_url, autocommit=True) as conn:
        page = repo.fetch(conn, repo.jobs_page(limit=10))
        one = repo.fetch(conn, repo.jobs_by_id([series["jobs"][0]]))
        detail = repo.fetch(conn, repo.series_detail(series["id"]))
        images = repo.fetch(conn, repo.series_images(series["id"]))
        picked = repo.fetch(conn, repo.pick_winner(series["id"], 1))
    assert [job.id for job in page] == sorted(series["jobs"], reverse=True)  # newest first
    assert [(job.status, job.image_id) for job in one] == [("done", series["image"])]
    assert [(t.idx, t.status) for t in detail.tries] == [
        (1, "done"),
        (2, "canceled"),
        (3, "pending"),
    ]
    (image,) = images
    assert image.thumbnail == series["thumb"]  # a grid needs nothing but the database
    assert image.thumbnail is not None
    with Image.open(io.BytesIO(image.thumbnail)) as preview:
        assert preview.format == "JPEG"
    assert picked == series["image"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert repo.fetch(conn, repo.series_detail(series["id"])).tries[0].winner


def test_jobs_page_filters_and_pages(db_url, series):
    with psycopg.connect(db_url, autocommit=True) as conn:
        pending = repo.fetch(conn, repo.jobs_page(status="pending"))
        older = repo.fetch(conn, repo.jobs_page(limit=5, before_id=series["jobs"][2]))
    assert [job.id for job in pending] == [series["jobs"][2]]
    assert [job.id for job in older] == [series["jobs"][1], series["jobs"][0]]
    with pytest.raises(InputError, match="'bogus' is not a job status"):
        repo.jobs_page(status="bogus")


def test_picking_can_be_undone(db_url, series):
    with psycopg.connect(db_url, autocommit=True) as conn:
        repo.fetch(conn, repo.pick_winner(series["id"], 1))
        assert repo.fetch(conn, repo.pick_winner(series["id"], None)) is None
        detail = repo.fetch(conn, repo.series_detail(series["id"]))
    assert detail.selected_image_id is None and not any(t.winner for t in detail.tries)


def test_cancel_and_retry_are_all_or_nothing(db_url, series):
    done, canceled, pending = series["jobs"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(InputError, match=f"job {done} is done; only pending or running"):
            repo.fetch(conn, repo.cancel_jobs([pending, done]))
        with pytest.raises(InputError, match="no job 999999"):
            repo.fetch(conn, repo.cancel_jobs([pending, 999999]))
        assert repo.fetch(conn, repo.jobs_by_id([pending]))[0].status == "pending"  # untouched

        changes = repo.fetch(conn, repo.retry_jobs([canceled]))
        assert [(c.id, c.status, c.was) for c in changes] == [(canceled, "pending", "canceled")]
        changes = repo.fetch(conn, repo.cancel_jobs([pending, canceled, pending]))
        assert [(c.id, c.status, c.was) for c in changes] == [
            (canceled, "canceled", "pending"),
            (pending, "canceled", "pending"),
        ]
