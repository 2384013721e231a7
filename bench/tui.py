"""How fast and lean the workbench app is, each figure next to a baseline from the same run.

Run:  .venv/bin/python bench/tui.py [--events 200] [--launches 5] [--previews 4] [--only-previews]

A private embedded PostgreSQL is started in a temp dir (stopped at the end);
the app runs headless (Textual's `run_test`, or `App.run(headless=True)` in a
child process for the launch time), with the mock backend.

Figures:

1. launch: a new process, from just before it is spawned to the first
   frame painted after the database session opened (the Compose screen is
   up and a submit would go through), with the database already running.
   Baseline: a process that only does `import textual`.
2. event to cell: the parent's clock just before an `UPDATE imagen.jobs SET
   progress` commits -> the moment the job table has rewritten that row's
   cells (NOTIFY delivered, row re-read, cells updated), one event at a time,
   p50/p95. Baseline: the same UPDATE -> the notification arriving on a bare
   psycopg LISTEN connection.
3. per-event cost by table size: the same, with 10 and with 1,000 jobs in
   the table, plus the CPU time spent inside `JobTable.upsert`.
4. grid: first paint of a 10-image series grid: cold (the Series screen
   built for it, asked for on the app's first interactive frame), moving to
   it from a 1-try series (nine tiles to mount) and from another 10-try
   series (the tiles stay, their pictures change); and the process RSS with
   it open (see `grid_phase`).

5. preview to tile: a real `imagen worker --once` (a child process) renders
   a few 512x512 tries on the mock, slowed down so it sends a preview per
   step (`delay_ms`); for each preview the worker takes (the throttle keeps
   two a second), the time from the backend handing it to the worker (the
   worker's clock, CLOCK_MONOTONIC is system-wide) to the frame where the
   app's Series tile has drawn that step's preview: shrinking, the previews
   row, NOTIFY, the feed, the read, the decode and the paint. p50/p95.
   Baseline: the same path up to the NOTIFY arriving on a bare LISTEN
   connection.
6. the loop: the Compose form submitted (a 10-try series, mock, 256x256)
   with the app's own worker (`imagen-tui --headless-worker`, started by
   the app as `imagen-tui` does) -> the first frame that draws the new
   series' first tile on the Series screen (p50; the end of the first
   compositor refresh that starts with the tile mounted), and -> every tile
   showing its final picture. Beside the first, the app's next idle frame
   after it (`call_after_refresh`), which the worker's events delay.
   Baselines: a bare `Session.submit` of the same series (the database's
   share of the first figure), and the worker's own span for each series
   (its first job created to its last finished, from the database: the
   rendering the second figure waits for).

Every app of the events, grid and loop phases is built on a collected heap
(see `fresh_heap`): a real `imagen-tui` runs one app a process.

Targets (issue 8): start < 1.0 s, event-to-cell p95 < 30 ms, per-event cost
flat from 10 to 1,000 rows, grid paint < 300 ms, RSS < 200 MB; (issue 18)
preview to tile p95 < 150 ms, submit to the first tile p50 <= 100 ms, a
10-try series fully shown <= 1.5 s. Missed targets are reported; the process
exits non-zero only on errors. `--only previews`, `--only loop` or `--only
grid` runs that phase alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from imagen_tui.db import embedded, migrate

ROOT = Path(__file__).resolve().parent.parent
TARGET_LAUNCH_S = 1.0
TARGET_EVENT_P95_MS = 30.0
TARGET_GRID_MS = 300.0
TARGET_RSS_MB = 200.0
TARGET_PREVIEW_P95_MS = 150.0

# `imagen worker --once`, noting the clock when each preview it takes reaches it.
PREVIEW_WORKER_CHILD = """
import sys, time
from imagen_tui.jobs import progress

log = open(sys.argv[1], "a", buffering=1)
original = progress.ProgressWriter.report

def report(self, fraction, preview=None):
    now = time.monotonic()
    taken = self.previews_taken
    original(self, fraction, preview)
    if preview is not None and self.previews_taken > taken:
        log.write(f"{self._job.id} {preview.step} {now}\\n")

progress.ProgressWriter.report = report
from imagen_tui.cli import main
sys.argv = ["imagen", "worker", "--once"]
sys.exit(main())
"""
TARGET_FIRST_TILE_MS = 100.0
TARGET_SERIES_SHOWN_MS = 1500.0
LOOP_TRIES = 10

LAUNCH_CHILD = """
import time
from imagen_tui.core.workbench import open_workbench
from imagen_tui.tui.app import WorkbenchApp

class Timed(WorkbenchApp):
    def on_database_ready(self, message):
        super().on_database_ready(message)
        self.call_after_refresh(self.painted)  # the frame after the database opened

    def painted(self):
        print(time.monotonic(), flush=True)
        self.exit()

Timed(open_workbench(None)).run(headless=True, size=(100, 34))
"""


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


async def next_frame(app: Any) -> None:
    """Until the app has drawn its next frame with nothing left to do
    (`call_after_refresh`: after all pending messages and a refresh)."""
    drawn = asyncio.Event()
    app.call_after_refresh(drawn.set)
    await drawn.wait()


async def interactive(app: Any, pilot: Any) -> None:
    """Until the database is open and the frame after it is drawn: where the
    launch figure ends, the app as a user's first key press finds it."""
    while app.session is None:
        await pilot.pause(0.01)
    await next_frame(app)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fresh_heap() -> None:
    """Collect what the apps of earlier phases left, as a new process would not
    have it: each app runs alone in its process, and this one's figures should
    not include a collection of another app's garbage in the middle of a paint."""
    gc.collect()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="imagen-bench-tui-"))
        self.root.chmod(0o711)
        self.pgdata = self.root / "pgdata"
        self.home = self.root / "home"
        self.home.mkdir()
        self.url = ""
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "IMAGEN_CONFIG": str(self.home / "imagen.yaml"),
        }
        (self.home / "imagen.yaml").write_text(
            "default_backend: mock\ntui:\n  image_protocol: halfcell\n", encoding="utf-8"
        )

    def start(self) -> None:
        self.url = embedded.server_url(self.pgdata, database="imagen_bench")
        with psycopg.connect(self.url, autocommit=True) as conn:
            migrate.migrate(conn)
        self.env["IMAGEN_DATABASE_URL"] = self.url
        os.environ.update(
            {k: self.env[k] for k in ("HOME", "IMAGEN_CONFIG", "IMAGEN_DATABASE_URL")}
        )

    def stop(self) -> None:
        embedded.stop(self.pgdata)
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    # ------------------------------------------------------------------ 1. launch

    def _spawn_timed(self, code: str, *, until_line: bool) -> float:
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        ended = time.monotonic()
        if child.returncode != 0:
            raise RuntimeError(
                child.stderr.strip().splitlines()[-1] if child.stderr else "child failed"
            )
        if until_line:
            return float(child.stdout.strip().splitlines()[-1]) - started
        return ended - started

    def launch_phase(self) -> dict[str, float]:
        baseline = [
            self._spawn_timed("import textual", until_line=False) for _ in range(self.args.launches)
        ]
        ours = [self._spawn_timed(LAUNCH_CHILD, until_line=True) for _ in range(self.args.launches)]
        return {"baseline_s": statistics.median(baseline), "launch_s": statistics.median(ours)}

    # ------------------------------------------------------------------ 2, 3. events

    async def _bare_listen(self, job_id: int, count: int) -> list[float]:
        """UPDATE commit -> notification on a plain LISTEN connection."""
        samples = []
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listener:
            await listener.execute("LISTEN imagen_job_events")
            with psycopg.connect(self.url, autocommit=True) as writer:
                for i in range(count):
                    started = time.monotonic()
                    await asyncio.to_thread(
                        writer.execute,
                        "UPDATE imagen.jobs SET progress = %s WHERE id = %s",
                        ((i + 1) / (count + 1), job_id),
                    )
                    async for _note in listener.notifies(timeout=10, stop_after=1):
                        samples.append((time.monotonic() - started) * 1000)
        return samples

    async def _app_events(self, rows: int, count: int) -> tuple[list[float], list[float]]:
        from imagen_tui.core.workbench import open_workbench
        from imagen_tui.tui.app import WorkbenchApp
        from imagen_tui.tui.screens.jobs import JobsScreen
        from imagen_tui.tui.widgets.job_table import JobTable

        self.sql("TRUNCATE imagen.jobs, imagen.series CASCADE")
        ids = [
            r[0]
            for r in self.sql(
                "INSERT INTO imagen.jobs (prompt, seed) SELECT 'a lighthouse at dusk', g "
                "FROM generate_series(1, %s) g RETURNING id",
                rows,
            )
        ]
        target = ids[len(ids) // 2]
        arrived = asyncio.Event()
        upsert_cpu: list[float] = []
        original: Callable[..., None] = JobTable.upsert

        def timed_upsert(table: JobTable, job_rows: Any) -> None:
            job_rows = list(job_rows)
            began = time.thread_time()
            original(table, job_rows)
            upsert_cpu.append((time.thread_time() - began) * 1000)
            if any(r.id == target for r in job_rows):
                arrived.set()

        JobTable.upsert = timed_upsert  # type: ignore[method-assign]
        latencies: list[float] = []
        fresh_heap()
        app = WorkbenchApp(open_workbench(None))
        try:
            async with app.run_test(size=(140, 40)) as pilot:
                while app.session is None:
                    await pilot.pause(0.01)
                await pilot.press("f2")
                deadline = time.monotonic() + 60
                while not (
                    isinstance(app.screen, JobsScreen)
                    and app.screen.query_one(JobTable).row_count == rows
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the job table never showed {rows} rows")
                    await pilot.pause(0.01)
                with psycopg.connect(self.url, autocommit=True) as writer:
                    for i in range(count):
                        arrived.clear()
                        started = time.monotonic()
                        await asyncio.to_thread(
                            writer.execute,
                            "UPDATE imagen.jobs SET progress = %s WHERE id = %s",
                            ((i + 1) / (count + 1), target),
                        )
                        await asyncio.wait_for(arrived.wait(), 10)
                        latencies.append((time.monotonic() - started) * 1000)
        finally:
            JobTable.upsert = original  # type: ignore[method-assign]
        return latencies, upsert_cpu

    # ------------------------------------------------------------------ 4. grid

    def grid_phase(self) -> dict[str, float]:
        """Two series rendered by a real worker (512x512): one of 10 tries and one
        of 1. Cold: the Series screen opened for the first time on the 10-image
        series (the screen is built too). Warm: the screen is up on the small
        series and the user moves to the big one. Each from the request to the
        frame where every tile has its picture; then the process RSS."""
        from imagen_tui import services
        from imagen_tui.core.spec import RequestSpec
        from imagen_tui.core.workbench import open_workbench

        workbench = open_workbench(None)
        with services.session(workbench) as session:
            spec = RequestSpec(prompt="a lighthouse at dusk", width=512, height=512, seed=1)
            big = session.submit(workbench, spec, 10).series_id
            small = session.submit(workbench, spec, 1).series_id
            other = session.submit(workbench, spec._replace(seed=100), 10).series_id
        worker = subprocess.run(
            [str(Path(sys.executable).parent / "imagen"), "worker", "--once"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if worker.returncode != 0:
            raise RuntimeError(worker.stderr.strip().splitlines()[-1])
        return asyncio.run(self._grid(big, small, other))

    async def _grid(self, big: int, small: int, other: int) -> dict[str, float]:
        from imagen_tui.core.workbench import open_workbench
        from imagen_tui.tui.app import WorkbenchApp
        from imagen_tui.tui.pictures import protocol
        from imagen_tui.tui.screens.series import SeriesScreen
        from imagen_tui.tui.widgets.image_tile import ImageTile

        workbench = open_workbench(None)
        protocol.configure(workbench.config)
        fresh_heap()
        app = WorkbenchApp(workbench)
        rss_before = rss_mb()

        def pictures(count: int, series_id: int) -> bool:
            screen = app.screen
            if not isinstance(screen, SeriesScreen) or screen.series_id != series_id:
                return False
            tiles = list(screen.query(ImageTile))
            return len(tiles) == count and all(
                t._image is not None and t._shown is t.picture for t in tiles
            )

        async def painted(pilot: Any, count: int, series_id: int, started: float) -> float:
            while not pictures(count, series_id):
                await pilot.pause(0.001)
            await next_frame(app)
            return (time.monotonic() - started) * 1000

        async with app.run_test(size=(200, 60)) as pilot:
            await interactive(app, pilot)  # timed from there, as a key press would be
            started = time.monotonic()
            app.show_series(big)
            cold = await painted(pilot, 10, big, started)
            app.show_series(small)
            await painted(pilot, 1, small, time.monotonic())
            started = time.monotonic()
            app.show_series(big)
            warm = await painted(pilot, 10, big, started)
            started = time.monotonic()
            app.show_series(other)  # same tiles, new pictures
            same = await painted(pilot, 10, other, started)
            await pilot.pause(0.2)
            rss = rss_mb()
        return {
            "cold_ms": cold,
            "warm_ms": warm,
            "same_ms": same,
            "rss_mb": rss,
            "rss_before_app_mb": rss_before,
        }

    # ------------------------------------------------------------------ 5. previews

    def preview_phase(self) -> dict[str, list[float]]:
        """Preview handed to the worker -> the tile painted with it (see the module doc)."""
        return asyncio.run(self._previews(self.args.previews))

    async def _previews(self, tries: int) -> dict[str, list[float]]:
        from imagen_tui import services
        from imagen_tui.core.spec import RequestSpec
        from imagen_tui.core.workbench import open_workbench
        from imagen_tui.tui.app import WorkbenchApp
        from imagen_tui.tui.pictures import protocol
        from imagen_tui.tui.screens.series import SeriesScreen
        from imagen_tui.tui.widgets.image_tile import ImageTile

        config = self.home / "previews.yaml"
        config.write_text(
            "default_backend: mock\ntui:\n  image_protocol: halfcell\n"
            "backends:\n  mock:\n    type: mock\n    delay_ms: 4000\n",
            encoding="utf-8",
        )
        env = {**self.env, "IMAGEN_CONFIG": str(config)}
        workbench = open_workbench(config)
        protocol.configure(workbench.config)
        with services.session(workbench) as session:
            spec = RequestSpec(prompt="a heron at dawn", width=512, height=512, seed=1, steps=20)
            submitted = session.submit(workbench, spec, tries)
        painted: dict[tuple[int, int], float] = {}  # (job, step) -> first frame showing it
        fresh_heap()
        app = WorkbenchApp(workbench)
        original = ImageTile._apply

        def apply(tile: ImageTile) -> None:
            shown = tile._shown
            original(tile)
            step = tile._preview_step[0]
            if tile.previewing and tile._shown is not shown and step is not None:
                key = (submitted.job_ids[int(tile.info.key) - 1], step)
                app.call_after_refresh(lambda: painted.setdefault(key, time.monotonic()))

        ImageTile._apply = apply  # type: ignore[method-assign]
        bare: list[float] = []
        log = self.root / "previews.log"
        try:
            async with app.run_test(size=(200, 60)) as pilot:
                await interactive(app, pilot)
                app.show_series(submitted.series_id)
                while not (
                    isinstance(app.screen, SeriesScreen)
                    and app.screen.query("#series-grid")
                    and app.screen.grid.keys
                ):
                    await pilot.pause(0.01)
                listener = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                await listener.execute("LISTEN imagen_job_events")
                noted: dict[tuple[int, int], float] = {}

                async def listen() -> None:
                    import json

                    async for note in listener.notifies():
                        event = json.loads(note.payload)
                        if event.get("preview"):
                            key = (event["id"], event["preview"]["step"])
                            noted.setdefault(key, time.monotonic())

                listening = asyncio.create_task(listen())
                worker = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", PREVIEW_WORKER_CHILD, str(log), env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                while worker.returncode is None:
                    await pilot.pause(0.05)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(worker.wait(), 0.001)
                await pilot.pause(0.5)
                listening.cancel()
                await listener.close()
        finally:
            ImageTile._apply = original  # type: ignore[method-assign]
        latencies = []
        for line in log.read_text().splitlines():
            job, step, at = line.split()
            key = (int(job), int(step))
            if key in painted:
                latencies.append((painted[key] - float(at)) * 1000)
            if key in noted:
                bare.append((noted[key] - float(at)) * 1000)
        return {"tile": latencies, "bare": bare}

    # ------------------------------------------------------------------ 6. the loop

    def loop_phase(self) -> dict[str, list[float]]:
        from imagen_tui import services
        from imagen_tui.core.spec import RequestSpec
        from imagen_tui.core.workbench import open_workbench

        workbench = open_workbench(None)
        spec = RequestSpec(prompt="a lighthouse at dusk", width=256, height=256)
        bare = []
        with services.session(workbench) as session:  # no worker yet: removed unrendered
            for _ in range(self.args.submits):
                started = time.monotonic()
                series_id = session.submit(workbench, spec, LOOP_TRIES).series_id
                bare.append((time.monotonic() - started) * 1000)
                self.sql("DELETE FROM imagen.jobs WHERE series_id = %s", series_id)
                self.sql("DELETE FROM imagen.series WHERE id = %s", series_id)
        results = asyncio.run(self._loop(self.args.submits))
        return {"bare_submit_ms": bare, **results}

    async def _loop(self, submits: int) -> dict[str, list[float]]:
        from textual.screen import Screen

        from imagen_tui import services
        from imagen_tui.core.spec import RequestSpec
        from imagen_tui.core.workbench import open_workbench
        from imagen_tui.tui.app import WorkbenchApp
        from imagen_tui.tui.messages import SeriesSubmitted
        from imagen_tui.tui.pictures import protocol
        from imagen_tui.tui.screens.compose import ComposeScreen
        from imagen_tui.tui.screens.series import SeriesScreen
        from imagen_tui.tui.widgets.image_grid import ImageGrid
        from imagen_tui.tui.widgets.tries_slider import TriesSlider

        workbench = open_workbench(None)
        protocol.configure(workbench.config)
        submitted: list[int] = []

        def hook(message: Any) -> None:
            if isinstance(message, SeriesSubmitted):
                submitted.append(message.series_id)

        async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out waiting for {what}")
                await asyncio.sleep(0.001)

        def series_screen(series_id: int) -> SeriesScreen | None:
            screen = app.screen
            if isinstance(screen, SeriesScreen) and screen.series_id == series_id:
                return screen
            return None

        def first_tile(series_id: int) -> bool:
            screen = series_screen(series_id)  # on its first visit, maybe not composed yet
            grids = screen.query(ImageGrid) if screen is not None else []
            return any(grid.tiles and grid.tiles[0].is_mounted for grid in grids)

        # The first frame that draws the new series' first tile: the first
        # compositor refresh of the Series screen that starts with the tile
        # mounted on it, timed when that refresh has drawn.
        drawn: dict[int, float] = {}
        original_refresh = Screen._compositor_refresh

        def compositor_refresh(screen: Screen[Any]) -> None:
            wanted = submitted[-1] if submitted else None
            drawing = wanted is not None and wanted not in drawn and first_tile(wanted)
            original_refresh(screen)
            if drawing and screen is app.screen and wanted is not None:
                drawn[wanted] = time.monotonic()

        Screen._compositor_refresh = compositor_refresh  # type: ignore[method-assign]

        def all_final(series_id: int) -> bool:
            screen = series_screen(series_id)
            if screen is None or len(screen.grid.tiles) != LOOP_TRIES:
                return False
            return all(t._image is not None and t._shown is t.picture for t in screen.grid.tiles)

        first: list[float] = []
        idle: list[float] = []
        shown: list[float] = []
        spans: list[float] = []
        fresh_heap()
        keeper = services.WorkerKeeper(workbench, None)
        app = WorkbenchApp(workbench, worker_keeper=keeper)
        # A job first, so the app's keeper starts its worker before the timed submits.
        with services.session(workbench) as session:
            warm_up = session.submit(workbench, RequestSpec(prompt="warm-up"), 1).series_id
        async with app.run_test(size=(200, 60), message_hook=hook) as pilot:
            await until(lambda: bool(keeper.running()), "the app's worker", 120)
            await until(
                lambda: (
                    self.sql(
                        "SELECT count(*) FROM imagen.jobs WHERE series_id = %s AND status = 'done'",
                        warm_up,
                    )
                    == [(1,)]
                ),
                "the warm-up job",
                120,
            )
            for index in range(submits):
                await pilot.press("f1")
                await until(lambda: isinstance(app.screen, ComposeScreen), "the Compose screen")
                compose = app.screen
                assert isinstance(compose, ComposeScreen)
                compose.query_one("#prompt").text = f"a lighthouse at dusk, take {index}"  # type: ignore[attr-defined]
                compose.query_one("#size").value = "256x256"  # type: ignore[attr-defined]
                compose.query_one("#tries", TriesSlider).value = LOOP_TRIES
                await next_frame(app)
                count = len(submitted)
                started = time.monotonic()
                compose.action_submit()
                await until(lambda n=count: len(submitted) > n, "the submit")
                series_id = submitted[-1]
                await until(lambda s=series_id: s in drawn, "the first tile drawn")
                first.append((drawn[series_id] - started) * 1000)
                await next_frame(app)  # the app idle again: the worker's events keep it busy
                idle.append((time.monotonic() - started) * 1000)
                await until(lambda s=series_id: all_final(s), "every tile final")
                await next_frame(app)
                shown.append((time.monotonic() - started) * 1000)
                [(span,)] = self.sql(
                    "SELECT extract(epoch FROM max(finished_at) - min(created_at)) * 1000 "
                    "FROM imagen.jobs WHERE series_id = %s",
                    series_id,
                )
                spans.append(float(span))
        Screen._compositor_refresh = original_refresh  # type: ignore[method-assign]
        return {
            "first_tile_ms": first,
            "idle_after_first_ms": idle,
            "shown_ms": shown,
            "worker_span_ms": spans,
        }

    def event_phase(self) -> dict[str, Any]:
        count = self.args.events
        (job,) = self.sql("INSERT INTO imagen.jobs (prompt) VALUES ('baseline') RETURNING id")
        bare = asyncio.run(self._bare_listen(job[0], count))
        results: dict[str, Any] = {"bare": bare}
        for rows in (10, 1000):
            latencies, cpu = asyncio.run(self._app_events(rows, count))
            results[rows] = (latencies, cpu)
        return results


def report_loop(loop: dict[str, list[float]]) -> None:
    first, shown = loop["first_tile_ms"], loop["shown_ms"]
    bare, spans = loop["bare_submit_ms"], loop["worker_span_ms"]
    p50 = percentile(first, 0.5)
    print(
        f"submit -> first tile, p50 / max         {p50:5.0f} / {max(first):4.0f} ms  "
        f"bare Session.submit p50 {percentile(bare, 0.5):4.1f} ms"
        f"   <= {TARGET_FIRST_TILE_MS:.0f} ms  {verdict(p50 <= TARGET_FIRST_TILE_MS)}"
    )
    idle = loop["idle_after_first_ms"]
    print(
        f"  and the app idle again, p50 / max     {percentile(idle, 0.5):5.0f} / "
        f"{max(idle):4.0f} ms  (its first idle frame after that: the worker's events keep it busy)"
    )
    print(
        f"10-try series fully shown, p50 / max    {percentile(shown, 0.5):5.0f} / "
        f"{max(shown):4.0f} ms  worker's span p50 {percentile(spans, 0.5):5.0f} ms"
        f"   <= {TARGET_SERIES_SHOWN_MS:.0f} ms  {verdict(max(shown) <= TARGET_SERIES_SHOWN_MS)}"
    )


def report(
    launch: dict[str, float],
    events: dict[str, Any],
    grid: dict[str, float],
    previews: dict[str, list[float]],
) -> None:
    print()
    print("figure                                  ours        baseline (same run)   target")
    print(
        f"launch to first frame                   {launch['launch_s'] * 1000:7.0f} ms  "
        f"import textual {launch['baseline_s'] * 1000:5.0f} ms   < {TARGET_LAUNCH_S * 1000:.0f} ms"
        f"  {'met' if launch['launch_s'] < TARGET_LAUNCH_S else 'MISSED'}"
    )
    bare = events["bare"]
    for rows in (10, 1000):
        latencies, cpu = events[rows]
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        print(
            f"NOTIFY -> cell, {rows:>4} rows: p50/p95   {p50:5.1f} / {p95:5.1f} ms  "
            f"bare LISTEN {percentile(bare, 0.5):4.1f} / {percentile(bare, 0.95):4.1f} ms"
            f"   p95 < {TARGET_EVENT_P95_MS:.0f} ms  {verdict(p95 < TARGET_EVENT_P95_MS)}"
        )
        print(
            f"  upsert CPU per event, {rows:>4} rows:    {statistics.median(cpu):6.3f} ms (median)"
        )
    ratio = percentile(events[1000][0], 0.5) / percentile(events[10][0], 0.5)
    print(f"per-event cost, 1,000 rows / 10 rows:   {ratio:5.2f}x  (flat: ~1x)")
    for name, key in (
        ("screen opened on it", "cold_ms"),
        ("from a 1-try series", "warm_ms"),
        ("from a 10-try one", "same_ms"),
    ):
        print(
            f"10-image grid paint, {name:<19}{grid[key]:7.0f} ms"
            f"{'':26}< {TARGET_GRID_MS:.0f} ms  {verdict(grid[key] < TARGET_GRID_MS)}"
        )
    print(
        f"RSS with the grid open                  {grid['rss_mb']:7.0f} MB  "
        f"this process before the app {grid['rss_before_app_mb']:4.0f} MB"
        f"   < {TARGET_RSS_MB:.0f} MB  {'met' if grid['rss_mb'] < TARGET_RSS_MB else 'MISSED'}"
    )
    report_previews(previews)


def report_previews(previews: dict[str, list[float]]) -> None:
    tile, bare = previews["tile"], previews["bare"]
    if tile:
        p50, p95 = percentile(tile, 0.5), percentile(tile, 0.95)
        print(
            f"preview at the worker -> tile, p50/p95 {p50:5.0f} / {p95:4.0f} ms  "
            f"NOTIFY {percentile(bare, 0.5):4.0f} / {percentile(bare, 0.95):3.0f} ms"
            f"   p95 < {TARGET_PREVIEW_P95_MS:.0f} ms  {verdict(p95 < TARGET_PREVIEW_P95_MS)}"
            f"  ({len(tile)} previews)"
        )
    else:
        print("preview at the worker -> tile: no preview reached a tile (MISSED)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--previews", type=int, default=4, help="tries rendered with previews")
    parser.add_argument(
        "--submits", type=int, default=10, help="series submitted in the loop phase"
    )
    parser.add_argument("--only", choices=["previews", "loop", "grid"], default=None)
    args = parser.parse_args()
    bench = Bench(args)
    try:
        bench.start()
        if args.only == "previews":
            report_previews(bench.preview_phase())
            return 0
        if args.only == "grid":
            grid = bench.grid_phase()
        elif args.only is None:
            launch = bench.launch_phase()
            events = bench.event_phase()
            grid = bench.grid_phase()
            previews = bench.preview_phase()
        if args.only != "grid":
            loop = bench.loop_phase()
    finally:
        bench.stop()
    print()
    if args.only == "grid":
        print(", ".join(f"{key} {value:.0f}" for key, value in grid.items()))
        return 0
    if args.only is None:
        report(launch, events, grid, previews)
    report_loop(loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
