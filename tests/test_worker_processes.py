"""`imagen worker` as it runs in production: real processes on a real PostgreSQL.

Every test starts the installed `imagen` console script in subprocesses,
talks to the database only through its own short-lived connections (as a web
UI or psql would), and checks what a user would notice: rows, files, exit
codes and log lines. What the database knows (which worker ran a job, which
jobs are done, which images were recorded) is read from the database; a log
is checked only for the lines that are the point (a job's `done` line, an
outage, a rescue, a stop), by fixed substrings. Waits poll the database (or a
log, for an outage) with a bounded deadline; nothing asserts on wall-clock
durations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from imagen_tui.db import embedded
from imagen_tui.db.repositories import uri_to_path
from tests.conftest import IMAGEN, Home
from tests.helpers import job_row, scalar, sql, status_of
from tests.processes import (
    DONE,
    count_status,
    insert_jobs,
    listening_sessions,
    wait_until,
    write_config,
)

OUTAGE = "database unavailable, retrying"

FAST = ("--poll-interval", "0.5")


# --------------------------------------------------------------------------- helpers


def pid_of(worker_id: str) -> int:
    """The process id in a worker id (`HOST:PID:TOKEN`, as jobs.worker_id and
    usage.worker_id record it)."""
    return int(worker_id.rsplit(":", 2)[1])


def done_line(image_id: int, uri: str) -> str:
    """What a worker's `done` log line says about the image it recorded."""
    return f"{DONE}{image_id} {uri_to_path(uri)} in "


# A test-only audit trail of every status change, so transitions that last
# microseconds (a rescued job is claimed again at once) can still be checked.
HISTORY_SQL = """
CREATE TABLE public.job_history (
    n bigserial PRIMARY KEY, job_id bigint, status text, worker_id text, attempts int, error text
);
CREATE FUNCTION public.record_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.job_history (job_id, status, worker_id, attempts, error)
    VALUES (NEW.id, NEW.status, NEW.worker_id, NEW.attempts, NEW.error);
    RETURN NULL;
END
$$;
CREATE TRIGGER zz_job_history AFTER INSERT OR UPDATE OF status ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION public.record_job_status();
"""


def install_history(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HISTORY_SQL)


def history(url: str, job_id: int) -> list[tuple[str, str | None, int, str | None]]:
    rows = sql(
        url,
        "SELECT status, worker_id, attempts, error FROM public.job_history"
        " WHERE job_id = %s ORDER BY n",
        (job_id,),
    )
    return [(status, worker, attempts, error) for status, worker, attempts, error in rows]


def pngs(out: Path) -> list[Path]:
    return sorted(out.rglob("*.png")) if out.exists() else []


def part_files(out: Path) -> list[Path]:
    return sorted(out.rglob("*.part")) if out.exists() else []


def run_imagen(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IMAGEN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def series_show(env: dict[str, str], series_id: int | str) -> dict[str, Any]:
    """A series and its tries, as `imagen series show ID --json` prints them."""
    shown = run_imagen(env, "series", "show", str(series_id), "--json")
    assert shown.returncode == 0, shown.stderr
    detail: dict[str, Any] = json.loads(shown.stdout)
    assert detail["id"] == int(series_id)
    return detail


# --------------------------------------------------------------------------- worker processes


# --------------------------------------------------------------------------- 1. draining


@pytest.mark.parametrize("n_workers", [2, 4])
def test_workers_drain_500_jobs_each_done_exactly_once(home, db_url, workers, n_workers):
    out = write_config(home)
    job_ids = insert_jobs(db_url, 500)
    assert len(job_ids) == 500

    procs = [workers.start(db_url, "--once", *FAST, "--lease", "5") for _ in range(n_workers)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.log()

    # Every job done once, first attempt, with its image recorded.
    rows = sql(db_url, "SELECT status, attempts, count(*) FROM imagen.jobs GROUP BY 1, 2")
    assert rows == [("done", 1, 500)]
    images = sql(db_url, "SELECT id, job_id, storage_uri FROM imagen.images")
    assert len(images) == 500
    assert {job_id for _, job_id, _ in images} == set(job_ids)
    linked = scalar(
        db_url,
        """SELECT count(*) FROM imagen.jobs j JOIN imagen.images i
             ON i.id = j.image_id AND i.job_id = j.id""",
    )
    assert linked == 500  # every job's image_id set, pointing at its own image
    usage = sql(db_url, "SELECT job_id, worker_id FROM imagen.usage")
    assert len(usage) == 500
    assert {job_id for job_id, _ in usage} == set(job_ids)

    # 500 files on disk, exactly the recorded ones, no leftovers.
    files = pngs(out)
    assert len(files) == 500
    assert {uri_to_path(uri) for _, _, uri in images} == set(files)
    assert part_files(out) == []

    # Each job's usage row names the worker that claimed it (its worker_id, as the job's),
    # and every such worker is one of ours, told apart by the pid in its id.
    claimed_by = dict(sql(db_url, "SELECT id, worker_id FROM imagen.jobs"))
    assert {job_id: caller for job_id, caller in usage} == claimed_by
    callers = {caller for _, caller in usage}
    assert {pid_of(caller) for caller in callers} <= {proc.pid for proc in procs}
    assert len({pid_of(caller) for caller in callers}) == len(callers)  # one id a process

    # Each worker logged one `done` line per job it finished, naming the image it
    # recorded; 500 in all. Nothing was dropped or retried.
    uri_of = {job_id: (image_id, uri) for image_id, job_id, uri in images}
    for proc in procs:
        mine = [job_id for job_id, caller in usage if pid_of(caller) == proc.pid]
        log = proc.log()
        assert proc.done_count() == len(mine)
        for job_id in mine:
            assert done_line(*uri_of[job_id]) in log, job_id
        assert " dropped: " not in log and " retry: " not in log
    assert sum(proc.done_count() for proc in procs) == 500


# --------------------------------------------------------------------------- 2. SIGKILL


def test_sigkilled_worker_job_is_rescued_after_lease_and_done_once(home, db_url, workers):
    out = write_config(home, delay_ms=3000)
    install_history(db_url)
    [job_id] = insert_jobs(db_url, 1, prompt="rescue me")

    doomed = workers.start(db_url, *FAST, "--lease", "2")
    wait_until(
        lambda: status_of(db_url, job_id) == "running", "the job to be running", workers=[doomed]
    )
    doomed_id = job_row(db_url, job_id)["worker_id"]
    assert pid_of(doomed_id) == doomed.pid
    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    rescuer = workers.start(db_url, *FAST, "--lease", "2")
    wait_until(
        lambda: status_of(db_url, job_id) == "done",
        "the rescued job to be done",
        workers=[rescuer],
    )
    rescuer_id = job_row(db_url, job_id)["worker_id"]
    assert pid_of(rescuer_id) == rescuer.pid
    assert rescuer.terminate() == 0, rescuer.log()

    # The row's life: claimed by the dead worker, handed back by the lease
    # rescue (attempt counted, error naming the lease), claimed and finished
    # by the second worker.
    trail = history(db_url, job_id)
    assert [(status, worker, attempts) for status, worker, attempts, _ in trail] == [
        ("pending", None, 0),
        ("running", doomed_id, 1),
        ("pending", None, 1),
        ("running", rescuer_id, 2),
        ("done", rescuer_id, 2),
    ]
    rescue_error = trail[2][3]
    assert rescue_error is not None and "lease" in rescue_error
    assert doomed_id not in rescue_error  # its owner reads it: no host:pid (issue 17 point 14)
    rescued = f"job {job_id}: lease expired, its worker is gone; now pending"
    assert rescuer.log().count("lease expired") == rescuer.log().count(rescued) == 1

    row = job_row(db_url, job_id)
    assert (row["status"], row["attempts"], row["error"]) == ("done", 2, None)
    images = sql(db_url, "SELECT id, storage_uri FROM imagen.images WHERE job_id = %s", (job_id,))
    assert len(images) == 1
    assert scalar(db_url, "SELECT count(*) FROM imagen.images") == 1
    assert row["image_id"] == images[0][0]
    assert pngs(out) == [uri_to_path(images[0][1])]
    assert part_files(out) == []
    assert sql(db_url, "SELECT worker_id FROM imagen.usage") == [(rescuer_id,)]
    assert rescuer.done_count() == 1
    assert done_line(*images[0]) in rescuer.log()
    assert doomed.done_count() == 0


def journal_links(out: Path) -> list[Path]:
    return sorted(out.rglob(".imagen-journal-*.part")) if out.exists() else []


def test_a_worker_killed_before_recording_its_image_leaves_no_orphan(home, db_url, workers):
    """SIGKILL after the image is written but before its row is committed: the
    file has no row. The next worker start finds it through its journal link,
    asks the database, removes it, and renders the rescued job again."""
    out = write_config(home, delay_ms=2000)
    [job_id] = insert_jobs(db_url, 1, prompt="killed before recording")
    doomed = workers.start(db_url, *FAST, "--lease", "2")
    wait_until(lambda: status_of(db_url, job_id) == "running", "a claim", workers=[doomed])

    # Hold the job's row: the finished render's recording waits on the lock.
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM imagen.jobs WHERE id = %s FOR UPDATE", (job_id,))
        wait_until(lambda: pngs(out) and journal_links(out), "the image and its journal link")
        orphan = pngs(out)
        os.kill(doomed.pid, signal.SIGKILL)
        assert doomed.wait() == -signal.SIGKILL
        holder.rollback()
    assert orphan and journal_links(out)  # what the killed worker left: no row refers to it
    assert scalar(db_url, "SELECT count(*) FROM imagen.images") == 0

    # The next worker rescues the job once its lease has run out, cleans up what
    # the dead one left (at its start, or right after the rescue: the dead
    # worker's server sessions may still renew the lease once) and re-runs it.
    rescuer = workers.start(db_url, *FAST, "--lease", "2")
    wait_until(lambda: status_of(db_url, job_id) == "done", "the re-run", workers=[rescuer])
    wait_until(lambda: not any(p.exists() for p in orphan), "the orphan to go", workers=[rescuer])
    assert rescuer.terminate() == 0, rescuer.log()

    ((uri,),) = sql(db_url, "SELECT storage_uri FROM imagen.images WHERE job_id = %s", (job_id,))
    assert pngs(out) == [uri_to_path(uri)]  # only the recorded image, not the orphan
    assert not set(orphan) & set(pngs(out))
    assert journal_links(out) == [] and part_files(out) == []
    assert rescuer.log().count("1 image(s) no job recorded (left by a killed run)") == 1


# --------------------------------------------------------------------------- 3-4. restarts


def test_worker_idle_through_database_restart_reconnects(home, db_url, restartable, workers):
    out = write_config(home)
    worker = workers.start_and_wait(db_url, *FAST, "--lease", "5")
    assert "waiting for jobs" in worker.log()

    restartable.stop()
    wait_until(lambda: OUTAGE in worker.log(), "the worker to notice the outage", workers=[worker])
    restartable.start_again()

    # A fresh server: a LISTEN session on it can only be the worker's new one.
    wait_until(lambda: listening_sessions(db_url), "the worker to LISTEN again", workers=[worker])
    job_ids = insert_jobs(db_url, 3, prompt="after restart")
    wait_until(lambda: count_status(db_url, "done") == 3, "3 jobs done", workers=[worker])

    assert worker.alive()
    assert "database back after" in worker.log()
    ran = sql(
        db_url,
        "SELECT j.id, j.worker_id, u.worker_id"
        "  FROM imagen.jobs j JOIN imagen.usage u ON u.job_id = j.id",
    )
    assert {job_id for job_id, _, _ in ran} == set(job_ids)
    assert all(pid_of(claimer) == worker.pid == pid_of(caller) for _, claimer, caller in ran)
    images = sql(db_url, "SELECT id, storage_uri FROM imagen.images")
    assert len(images) == 3
    assert worker.done_count() == 3
    assert all(done_line(*image) in worker.log() for image in images)
    assert len(pngs(out)) == 3
    assert worker.terminate() == 0, worker.log()


def test_job_in_flight_survives_database_restart(home, db_url, restartable, workers):
    out = write_config(home, delay_ms=2000)
    install_history(db_url)
    [job_id] = insert_jobs(db_url, 1, prompt="through the outage")
    worker = workers.start_and_wait(db_url, *FAST, "--lease", "10")
    wait_until(
        lambda: status_of(db_url, job_id) == "running", "the job to be running", workers=[worker]
    )
    worker_id = job_row(db_url, job_id)["worker_id"]
    assert pid_of(worker_id) == worker.pid
    restartable.stop()  # mid-job: the simulated GPU time is 2 s
    # A real outage, not a blip: the server comes back only once the worker saw it gone.
    wait_until(lambda: OUTAGE in worker.log(), "the worker to notice the outage", workers=[worker])
    restartable.start_again()

    wait_until(lambda: status_of(db_url, job_id) == "done", "the job to be done", workers=[worker])
    assert worker.alive()

    # The lease (10 s) never ran out: nobody rescued or retried it.
    assert [(s, w, a) for s, w, a, _ in history(db_url, job_id)] == [
        ("pending", None, 0),
        ("running", worker_id, 1),
        ("done", worker_id, 1),
    ]
    row = job_row(db_url, job_id)
    assert (row["status"], row["attempts"]) == ("done", 1)
    images = sql(db_url, "SELECT id, storage_uri FROM imagen.images")
    assert len(images) == 1 and images[0][0] == row["image_id"]
    assert pngs(out) == [uri_to_path(images[0][1])]
    assert part_files(out) == []
    assert sql(db_url, "SELECT worker_id FROM imagen.usage") == [(worker_id,)]
    assert worker.done_count() == 1
    assert done_line(*images[0]) in worker.log()
    recovered = "database back after"
    wait_until(lambda: recovered in worker.log(), "the recovery line", workers=[worker])
    assert worker.terminate() == 0, worker.log()


# --------------------------------------------------------------------------- 5. SIGTERM


def test_sigterm_finishes_the_running_job_and_claims_no_more(home, db_url, workers):
    out = write_config(home, delay_ms=1500)
    first, *rest = insert_jobs(db_url, 3, prompt="graceful")
    worker = workers.start(db_url, *FAST, "--lease", "5")
    wait_until(
        lambda: status_of(db_url, first) == "running", "the first job to run", workers=[worker]
    )
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()

    assert "stopping: no new claims; waiting for 1 job(s)" in worker.log()
    assert status_of(db_url, first) == "done"
    for job_id in rest:
        row = job_row(db_url, job_id)
        assert (row["status"], row["attempts"], row["worker_id"]) == ("pending", 0, None)
    assert worker.done_count() == 1
    [(image_id, uri)] = sql(db_url, "SELECT id, storage_uri FROM imagen.images")
    assert done_line(image_id, uri) in worker.log()
    assert len(pngs(out)) == 1
    assert part_files(out) == []


def test_two_sigterms_stop_a_worker_whose_backend_is_stuck(home, db_url, workers):
    """The backend blocks in a thread (like a GPU library call) for a minute: the
    second SIGTERM still ends the worker at once, handing the job back."""
    out = write_config(home, delay_ms=60_000, delay_blocks=True)
    ((job_id,),) = sql(
        db_url, "INSERT INTO imagen.jobs (prompt, width, height, steps) "
        "VALUES ('stuck', 64, 64, 50) RETURNING id",
    )  # fmt: skip
    worker = workers.start(db_url, *FAST, "--lease", "30")
    # Progress past the claim's 0: the backend is inside its blocking sleep.
    wait_until(
        lambda: (job_row(db_url, job_id)["progress"] or 0) > 0,
        "the backend to be busy",
        workers=[worker],
    )
    worker.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: "stopping: no new claims" in worker.log(), "the first stop", workers=[worker]
    )
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 130, worker.log()  # not the minute the backend wants

    row = job_row(db_url, job_id)
    assert (row["status"], row["attempts"], row["lease_id"]) == ("pending", 0, None)
    assert "released: stopped before it finished" in worker.log()
    assert pngs(out) == [] and part_files(out) == []


# --------------------------------------------------------------------------- 6. plain SQL


def test_series_inserted_with_plain_sql_is_rendered_and_picked(home, db_url, workers):
    out = write_config(home)
    worker = workers.start_and_wait(db_url, *FAST, "--lease", "5")

    # What a web UI would do: one transaction, series row plus its tries, prompt only.
    with psycopg.connect(db_url) as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO imagen.series (prompt, count) VALUES ('a lighthouse', 3) RETURNING id"
        ).fetchone()
        assert row is not None
        series_id = row[0]
        conn.execute(
            """INSERT INTO imagen.jobs (series_id, series_idx, prompt)
               SELECT %s, i, 'a lighthouse' FROM generate_series(1, 3) AS i""",
            (series_id,),
        )

    wait_until(lambda: count_status(db_url, "done") == 3, "3 tries done", workers=[worker])
    images = sql(
        db_url,
        "SELECT series_idx, id FROM imagen.images WHERE series_id = %s ORDER BY series_idx",
        (series_id,),
    )
    assert [idx for idx, _ in images] == [1, 2, 3]
    image_of = dict(images)
    assert len(pngs(out)) == 3

    env = {**home.env, "IMAGEN_DATABASE_URL": db_url}
    shown = series_show(env, series_id)
    assert shown["prompt"] == "a lighthouse"
    tries = shown["tries"]
    assert [(t["idx"], t["status"], t["winner"]) for t in tries] == [
        (1, "done", False),
        (2, "done", False),
        (3, "done", False),
    ]
    assert [t["image_id"] for t in tries] == [image_of[1], image_of[2], image_of[3]]
    for attempt in tries:
        assert isinstance(attempt["seed"], int)
        assert Path(attempt["path"]).is_file()
    assert {Path(t["path"]) for t in tries} == set(pngs(out))

    picked = run_imagen(env, "series", "pick", str(series_id), "--idx", "2")
    assert picked.returncode == 0, picked.stderr
    selected = scalar(
        db_url, "SELECT selected_image_id FROM imagen.series WHERE id = %s", (series_id,)
    )
    assert selected == image_of[2]
    assert [t["winner"] for t in series_show(env, series_id)["tries"]] == [False, True, False]
    assert worker.terminate() == 0, worker.log()


# --------------------------------------------------------------------------- 7. embedded


@pytest.fixture
def data_home(home: Home) -> Iterator[Path]:
    """XDG_DATA_HOME in a directory of the test's own: as root the embedded server runs
    as its own account, which cannot pass pytest's 0700 temp dir (nor /root), and
    without XDG_DATA_HOME root's data would go to /var/lib/imagen."""
    root = Path(tempfile.mkdtemp(prefix="imagen-e2e-"))
    root.chmod(0o711)
    home.env["XDG_DATA_HOME"] = str(root)
    try:
        yield root
    finally:
        embedded.stop(root / "imagen" / "pgdata")  # stopped by the test unless it failed
        shutil.rmtree(root, ignore_errors=True)


def test_embedded_default_end_to_end(home, data_home, workers):
    out = write_config(home)
    env = {k: v for k, v in home.env.items() if k != "IMAGEN_DATABASE_URL"}
    try:
        submitted = run_imagen(env, "submit", "a red fox", "--count", "3", "--size", "64x64")
        assert submitted.returncode == 0, submitted.stderr
        series_id = submitted.stdout.strip()
        assert series_id.isdigit(), submitted.stdout
        assert (data_home / "imagen" / "pgdata" / "PG_VERSION").is_file()

        worker = workers.start(None, "--once")
        assert worker.wait(timeout=120) == 0, worker.log()
        assert "(embedded): draining the queue once" in worker.log()
        assert worker.done_count() == 3

        tries = series_show(env, series_id)["tries"]
        assert [(t["idx"], t["status"]) for t in tries] == [(1, "done"), (2, "done"), (3, "done")]
        paths = {Path(t["path"]) for t in tries}
        for attempt in tries:
            assert isinstance(attempt["seed"], int)
            assert Path(attempt["path"]).is_file()
        assert paths == set(pngs(out))

        picked = run_imagen(env, "series", "pick", series_id, "--idx", "2")
        assert picked.returncode == 0, picked.stderr
        assert f"series {series_id}: try 2 " in picked.stderr
    finally:
        stopped = run_imagen(env, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "embedded PostgreSQL stopped" in stopped.stderr
