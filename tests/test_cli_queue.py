"""The queue commands as scripts and people use them: `imagen submit`, `imagen jobs
[cancel | retry]` and `imagen series list | show | pick`, run as real processes
against the suite's real PostgreSQL (a fresh database per test).

Jobs are rendered (or failed) by a real `imagen worker --once`; the database is
read and written with plain SQL as its owner, as psql or a web UI would.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.conftest import Home
from tests.helpers import job_row, sql
from tests.terminal import HOSTILE, SHOWN, raw_controls

MAX_SEED = 2**63 - 1
QUEUED_ANYWAY = {
    "--style": (
        "(queued anyway: the worker's config decides, and the job fails there if it lacks it too)"
    ),
    "--backend": "(queued anyway: it waits for a worker that has this backend)",
}


# --------------------------------------------------------------------------- helpers


def statuses(url: str) -> dict[int, str]:
    return dict(sql(url, "SELECT id, status FROM imagen.jobs ORDER BY id"))


def selected(url: str, series_id: int) -> int | None:
    [(image_id,)] = sql(
        url, "SELECT selected_image_id FROM imagen.series WHERE id = %s", (series_id,)
    )
    return image_id


@pytest.fixture
def queue(home: Home, db_url: str) -> Home:
    """`home` pointed at a fresh database; the mock backend fails prompts with 'storm'."""
    home.env["IMAGEN_DATABASE_URL"] = db_url
    write_config(home, fail_on="storm")
    return home


def write_config(home: Home, fail_on: str | None = None) -> None:
    backend = "backends:\n  mock:\n    type: mock\n"
    if fail_on:
        backend += f"    fail_if_prompt_contains: {fail_on}\n"
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n{backend}")


def submit(home: Home, *args: str) -> tuple[int, list[int]]:
    """Queue a series; (its id, its job ids)."""
    done = home.imagen("submit", *args, "--size", "64x64", "--json")
    assert done.returncode == 0, done.stderr
    submitted = json.loads(done.stdout)
    return submitted["series_id"], submitted["job_ids"]


def run_worker_once(home: Home) -> None:
    """Render (or fail) every pending job, then exit."""
    done = home.imagen("worker", "--once", "--poll-interval", "0.5", timeout=120)
    assert done.returncode == 0, done.stderr


def one_refusal(done: Any) -> str:
    """The single stderr line of a command refused as bad input (exit 2, no stdout)."""
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    return line


# --------------------------------------------------------------------------- cancel


def test_cancel_pending_jobs_prints_each_change_and_cancels_them(queue, db_url):
    _, (first, second, third) = submit(queue, "a red fox", "--count", "3")

    done = queue.imagen("jobs", "cancel", str(first), str(second))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{first} canceled (was pending)",
        f"{second} canceled (was pending)",
    ]
    assert done.stderr == ""
    assert statuses(db_url) == {first: "canceled", second: "canceled", third: "pending"}
    assert job_row(db_url, first)["finished_at"] is not None


def test_cancel_json_prints_one_object_per_job(queue, db_url):
    _, (first, second) = submit(queue, "a red fox", "--count", "2")

    done = queue.imagen("jobs", "cancel", str(first), str(second), "--json")

    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"id": first, "status": "canceled", "was": "pending"},
        {"id": second, "status": "canceled", "was": "pending"},
    ]
    assert statuses(db_url) == {first: "canceled", second: "canceled"}


def test_cancel_is_refused_whole_when_one_job_is_done(queue, db_url):
    _, [finished] = submit(queue, "a calm sea")
    run_worker_once(queue)
    _, [waiting] = submit(queue, "a red fox")
    assert statuses(db_url) == {finished: "done", waiting: "pending"}

    line = one_refusal(queue.imagen("jobs", "cancel", str(waiting), str(finished)))

    assert line == (
        f"imagen: ID: job {finished} is done; only pending or running jobs can be canceled"
    )
    assert statuses(db_url) == {finished: "done", waiting: "pending"}


def test_cancel_is_refused_whole_when_one_job_is_unknown(queue, db_url):
    _, [waiting] = submit(queue, "a red fox")
    unknown = waiting + 1000

    line = one_refusal(queue.imagen("jobs", "cancel", str(waiting), str(unknown), "--json"))

    assert line == f"imagen: ID: no job {unknown}; list them with `imagen jobs`"
    assert statuses(db_url) == {waiting: "pending"}


# --------------------------------------------------------------------------- retry


def test_retry_queues_failed_and_canceled_jobs_again_with_their_seed(queue, db_url):
    _, [stormy] = submit(queue, "a storm at sea", "--seed", "77")
    _, [dropped] = submit(queue, "a calm sea", "--seed", "5")
    assert queue.imagen("jobs", "cancel", str(dropped)).returncode == 0
    run_worker_once(queue)
    failed = job_row(db_url, stormy)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "fail_if_prompt_contains" in failed["error"]

    done = queue.imagen("jobs", "retry", str(stormy), str(dropped))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{stormy} pending (was failed)",
        f"{dropped} pending (was canceled)",
    ]
    for job_id, seed in ((stormy, 77), (dropped, 5)):
        row = job_row(db_url, job_id)
        assert (row["status"], row["attempts"], row["seed"]) == ("pending", 0, seed)
        assert (row["error"], row["finished_at"], row["image_id"]) == (None, None, None)

    # Queued for real: a worker whose backend no longer fails renders both, same seeds.
    write_config(queue)
    run_worker_once(queue)
    assert statuses(db_url) == {stormy: "done", dropped: "done"}
    images = sql(db_url, "SELECT job_id, seed FROM imagen.images ORDER BY job_id")
    assert images == [(stormy, 77), (dropped, 5)]


def test_retry_json_prints_one_object_per_job(queue, db_url):
    _, [stormy] = submit(queue, "a storm at sea")
    run_worker_once(queue)

    done = queue.imagen("jobs", "retry", str(stormy), "--json")

    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"id": stormy, "status": "pending", "was": "failed"}
    ]
    assert statuses(db_url) == {stormy: "pending"}


def test_retry_is_refused_whole_on_a_pending_or_done_job(queue, db_url):
    _, [stormy] = submit(queue, "a storm at sea")
    _, [finished] = submit(queue, "a calm sea")
    run_worker_once(queue)
    _, [waiting] = submit(queue, "a red fox")
    before = {stormy: "failed", finished: "done", waiting: "pending"}
    assert statuses(db_url) == before

    refused = one_refusal(queue.imagen("jobs", "retry", str(stormy), str(finished)))
    assert refused == (
        f"imagen: ID: job {finished} is done; only failed or canceled jobs can be retried"
    )
    refused = one_refusal(queue.imagen("jobs", "retry", str(stormy), str(waiting)))
    assert refused == (
        f"imagen: ID: job {waiting} is pending; only failed or canceled jobs can be retried"
    )
    assert statuses(db_url) == before
    assert job_row(db_url, stormy)["attempts"] == 1


# --------------------------------------------------------------------------- series pick


def test_pick_marks_a_winner_and_none_clears_it(queue, db_url):
    series_id, _ = submit(queue, "a calm sea", "--count", "2")
    run_worker_once(queue)
    [(image_id,)] = sql(
        db_url, "SELECT id FROM imagen.images WHERE series_id = %s AND series_idx = 2", (series_id,)
    )

    picked = queue.imagen("series", "pick", str(series_id), "--idx", "2")
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout == ""
    assert picked.stderr.splitlines() == [
        f"imagen: series {series_id}: try 2 (image {image_id}) is the winner"
    ]
    assert selected(db_url, series_id) == image_id

    # A try the series does not have is refused, and the winner stays.
    refused = one_refusal(queue.imagen("series", "pick", str(series_id), "--idx", "3"))
    assert refused == f"imagen: --idx: series {series_id} has tries 1 to 2, not 3"
    assert selected(db_url, series_id) == image_id

    cleared = queue.imagen("series", "pick", str(series_id), "--none")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stderr.splitlines() == [f"imagen: series {series_id}: no winner"]
    assert selected(db_url, series_id) is None
    shown = json.loads(queue.imagen("series", "show", str(series_id), "--json").stdout)
    assert shown["selected_image_id"] is None
    assert [attempt["winner"] for attempt in shown["tries"]] == [False, False]


def test_pick_refuses_a_try_without_an_image_and_says_why(queue, db_url):
    stormy, [stormy_job] = submit(queue, "a storm at sea")
    dropped, [dropped_job] = submit(queue, "a calm sea")
    assert queue.imagen("jobs", "cancel", str(dropped_job)).returncode == 0
    run_worker_once(queue)
    waiting, _ = submit(queue, "a red fox")
    unknown = waiting + 1000

    def refusal(series_id: int) -> str:
        return one_refusal(queue.imagen("series", "pick", str(series_id), "--idx", "1"))

    assert refusal(stormy) == (
        f"imagen: --idx: try 1 of series {stormy} has no image: it failed; "
        f"retry it with `imagen jobs retry {stormy_job}`"
    )
    assert refusal(dropped) == (
        f"imagen: --idx: try 1 of series {dropped} has no image: it was canceled; "
        f"retry it with `imagen jobs retry {dropped_job}`"
    )
    assert refusal(waiting) == (
        f"imagen: --idx: try 1 of series {waiting} has no image yet (it is pending)"
    )
    assert refusal(unknown) == (
        f"imagen: ID: no series {unknown}; list them with `imagen series list`"
    )
    assert sql(
        db_url, "SELECT count(*) FROM imagen.series WHERE selected_image_id IS NOT NULL"
    ) == [(0,)]


# --------------------------------------------------------------------------- submit


@pytest.mark.parametrize(
    ("seed", "count", "largest"),
    [(MAX_SEED - 1, 3, MAX_SEED - 2), (MAX_SEED, 2, MAX_SEED - 1)],
    ids=["max-1x3", "maxx2"],
)
def test_submit_refuses_a_seed_with_no_room_for_its_tries(queue, db_url, seed, count, largest):
    done = queue.imagen("submit", "x", "--seed", str(seed), "--count", str(count))

    line = one_refusal(done)
    assert line == (
        f"imagen: --seed: {seed} leaves no room for {count} tries (the last would be "
        f"{seed + count - 1}); use a seed of at most {largest}"
    )
    assert sql(db_url, "SELECT count(*) FROM imagen.series") == [(0,)]
    assert sql(db_url, "SELECT count(*) FROM imagen.jobs") == [(0,)]


def test_submit_accepts_the_largest_seed_that_fits(queue, db_url):
    series_id, job_ids = submit(queue, "x", "--seed", str(MAX_SEED - 1), "--count", "2")
    seeds = sql(db_url, "SELECT seed FROM imagen.jobs WHERE series_id = %s ORDER BY series_idx",
                (series_id,))  # fmt: skip
    assert seeds == [(MAX_SEED - 1,), (MAX_SEED,)]
    assert len(job_ids) == 2


@pytest.mark.parametrize(
    ("flag", "warning"),
    [
        ("--style", "imagen: warning: --style: unknown style 'nope'; known styles: "),
        ("--backend", "imagen: warning: --backend: no backend named 'nope'; configured: mock "),
    ],
    ids=["style", "backend"],
)
def test_submit_queues_an_unknown_style_or_backend_with_one_warning(queue, db_url, flag, warning):
    done = queue.imagen("submit", "a red fox", flag, "nope")

    assert done.returncode == 0, done.stderr
    [(series_id, style, backend)] = sql(db_url, "SELECT id, style, backend FROM imagen.series")
    assert done.stdout == f"{series_id}\n"
    first, last = done.stderr.splitlines()
    assert first.startswith(warning)
    assert first.endswith(QUEUED_ANYWAY[flag])
    assert (
        last == f"imagen: series {series_id}: 1 try queued (see `imagen series show {series_id}`)"
    )
    assert (style if flag == "--style" else backend) == "nope"
    assert sql(db_url, "SELECT count(*) FROM imagen.jobs WHERE series_id = %s", (series_id,)) == [
        (1,)
    ]


def test_submit_names_the_default_backend_when_none_is_chosen(queue, db_url):
    """The job and its series record the submitter's default instance, so only a
    worker that has it claims them (a NULL backend would go to any worker)."""
    queue.write_config(
        f"default_backend: quick\noutput:\n  directory: {queue.root / 'out'}\n"
        "backends:\n  quick:\n    type: mock\n"
    )
    submit(queue, "a red fox", "--count", "2")
    submit(queue, "a blue fox", "--backend", "mock")
    assert sql(db_url, "SELECT backend FROM imagen.series ORDER BY id") == [("quick",), ("mock",)]
    assert sql(db_url, "SELECT backend FROM imagen.jobs ORDER BY id") == [
        ("quick",),
        ("quick",),
        ("mock",),
    ]


def test_submit_with_both_unknown_warns_once_for_each(queue, db_url):
    done = queue.imagen("submit", "a red fox", "--style", "nope", "--backend", "nope")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("imagen: warning:")]
    assert [line.split(":")[2].strip() for line in warnings] == ["--style", "--backend"]
    assert sql(db_url, "SELECT style, backend FROM imagen.series") == [("nope", "nope")]


# --------------------------------------------------------------------------- user text


@pytest.fixture
def hostile_series(queue: Home, db_url: str) -> tuple[int, int, int]:
    """A series written with plain SQL whose prompt, style and error hold control
    characters: (series id, its pending job, its failed job)."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO imagen.series (prompt, style, count) VALUES (%s, %s, 2) RETURNING id",
            (HOSTILE, HOSTILE),
        ).fetchone()
        assert row is not None
        jobs = conn.execute(
            """INSERT INTO imagen.jobs (series_id, series_idx, prompt, style)
               SELECT %s, i, %s, %s FROM generate_series(1, 2) AS i ORDER BY i RETURNING id""",
            (row[0], HOSTILE, HOSTILE),
        ).fetchall()
        pending, failed = sorted(j for (j,) in jobs)
        conn.execute(
            "UPDATE imagen.jobs SET status = 'failed', error = %s WHERE id = %s",
            (HOSTILE, failed),
        )
    return row[0], pending, failed


def test_user_text_from_the_database_is_shown_literally(queue, hostile_series, db_url):
    series_id, pending, failed = hostile_series
    # A worker with a default is online, so the pending job shows its prompt
    # (one no worker can take shows what it waits for instead).
    sql(
        db_url,
        "INSERT INTO imagen.workers (id, host, pid, backends, default_backend, concurrency,"
        " lease_s) VALUES ('box:1:a', 'box', 1, '{mock}', 'mock', 1, 600)",
    )
    for args in (
        ["series", "show", str(series_id)],
        ["series", "list"],
        ["jobs"],
        ["jobs", "--status", "failed"],
    ):
        done = queue.imagen(*args)
        assert done.returncode == 0, done.stderr
        assert raw_controls(done.stdout + done.stderr) == [], args
        assert SHOWN in done.stdout, args

    shown = queue.imagen("series", "show", str(series_id)).stdout.splitlines()
    assert shown[0] == f"series {series_id}: {SHOWN} (style {SHOWN})"
    jobs = queue.imagen("jobs").stdout.splitlines()
    assert any(line.startswith(f"{failed} ") and line.endswith(SHOWN) for line in jobs)
    assert any(line.startswith(f"{pending} ") and line.endswith(SHOWN) for line in jobs)


def json_lines(done: Any) -> list[dict[str, Any]]:
    """stdout of a --json command: no raw control characters, one JSON value a line."""
    assert done.returncode == 0, done.stderr
    assert raw_controls(done.stdout) == []
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_json_output_escapes_user_text_and_decodes_to_it(queue, hostile_series):
    series_id, pending, failed = hostile_series

    [detail] = json_lines(queue.imagen("series", "show", str(series_id), "--json"))
    assert (detail["id"], detail["prompt"], detail["style"]) == (series_id, HOSTILE, HOSTILE)
    assert [(t["job_id"], t["status"], t["error"]) for t in detail["tries"]] == [
        (pending, "pending", None),
        (failed, "failed", HOSTILE),
    ]
    created = datetime.fromisoformat(detail["created_at"])  # ISO 8601, with its zone
    assert created.tzinfo is not None

    [listed] = json_lines(queue.imagen("series", "list", "--json"))
    assert (listed["id"], listed["prompt"], listed["style"]) == (series_id, HOSTILE, HOSTILE)
    assert datetime.fromisoformat(listed["created_at"]) == created

    rows = json_lines(queue.imagen("jobs", "--json"))
    assert [(r["id"], r["prompt"], r["error"]) for r in rows] == [
        (failed, HOSTILE, HOSTILE),
        (pending, HOSTILE, None),
    ]
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo is not None for r in rows)


def test_submit_keeps_hostile_text_and_shows_it_literally(queue, db_url):
    done = queue.imagen("submit", HOSTILE, "--style", HOSTILE, "--json")

    [submitted] = json_lines(done)
    (warning, _queued) = done.stderr.splitlines()
    assert raw_controls(done.stderr) == []
    assert warning.startswith(f"imagen: warning: --style: unknown style '{SHOWN}'")
    [(prompt, style)] = sql(
        db_url, "SELECT prompt, style FROM imagen.series WHERE id = %s", (submitted["series_id"],)
    )
    assert (prompt, style) == (HOSTILE, HOSTILE)
    [detail] = json_lines(queue.imagen("series", "show", str(submitted["series_id"]), "--json"))
    assert [t["job_id"] for t in detail["tries"]] == submitted["job_ids"]
    assert detail["prompt"] == HOSTILE


def test_series_without_an_action_lists_series_as_jobs_does(queue, hostile_series):
    series_id = hostile_series[0]
    listed = queue.imagen("series", "list")
    assert listed.returncode == 0, listed.stderr
    bare = queue.imagen("series")
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, listed.stdout, listed.stderr)
    assert any(line.startswith(f"{series_id} ") for line in bare.stdout.splitlines())
    assert queue.imagen("series", "--limit", "1", "--json").stdout == (
        queue.imagen("series", "list", "--limit", "1", "--json").stdout
    )
