"""The worker's extra CPU for live previews, against the fake ComfyUI.

A real `imagen worker --once` (a child process) renders 10 tries one after
another on the fake ComfyUI server (tests/comfyui_fake.py, in this process),
which sends a `progress` frame per sampler step and, when its
`--preview-method` is on, a 512x512 JPEG preview per step as ComfyUI does
(about 40 KB on a real server; the fake's is a flat colour, so cheaper to
decode). The worker's CPU time (user + system, from wait4) with previews on
and off, alternating, so the difference is what previews cost: reading the
frames, shrinking the kept ones (at most two a second) and writing them.

Run: .venv/bin/python bench/previews_cpu.py [--runs 3] [--tries 10] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from imagen_tui.db import embedded, migrate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.comfyui_fake import FakeComfy  # noqa: E402


def worker_cpu(env: dict[str, str], url: str, tries: int, steps: int, seed: int) -> float:
    """Queue `tries` jobs and render them with a worker process; its CPU seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO imagen.jobs (prompt, width, height, steps, seed, backend) "
            "SELECT 'a heron', 512, 512, %s, %s + i, 'flux' FROM generate_series(1, %s) i",
            (steps, seed, tries),
        )
    child = subprocess.Popen(
        [str(Path(sys.executable).parent / "imagen"), "worker", "--once"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        assert child.stderr is not None
        raise RuntimeError(child.stderr.read().decode().strip().splitlines()[-1])
    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute("SELECT count(*) FROM imagen.jobs WHERE status = 'done'").fetchone()
        conn.execute("DELETE FROM imagen.jobs")
    assert done is not None and done[0] == tries, done
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imagen-bench-previews-"))
    root.chmod(0o711)
    fake = FakeComfy().start()
    fake.scenario, fake.step_delay = "progress", 0.05
    pgdata = root / "pgdata"
    try:
        url = embedded.server_url(pgdata, database="imagen_bench")
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.migrate(conn)
        (root / "home").mkdir()
        config = root / "imagen.yaml"
        config.write_text(
            f"output:\n  directory: {root / 'out'}\ndefault_backend: flux\n"
            f"backends:\n  flux:\n    type: comfyui\n    url: {fake.url}\n",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "HOME": str(root / "home"),
            "IMAGEN_CONFIG": str(config),
            "IMAGEN_DATABASE_URL": url,
        }
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        seed = 0
        for _ in range(args.runs):
            for mode in ("off", "on"):
                fake.preview_method = "auto" if mode == "on" else None
                seed += 1000
                cpu[mode].append(worker_cpu(env, url, args.tries, args.steps, seed))
        sent = fake.previews_sent
    finally:
        fake.stop()
        embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    per = args.tries * args.steps
    print(f"{args.tries} tries x {args.steps} steps, {args.runs} runs each (median)")
    print(f"worker CPU, previews off: {off:6.2f} s   ({', '.join(f'{v:.2f}' for v in cpu['off'])})")
    print(f"worker CPU, previews on:  {on:6.2f} s   ({', '.join(f'{v:.2f}' for v in cpu['on'])})")
    print(
        f"extra for previews:       {on - off:6.2f} s   ({(on - off) / per * 1000:.1f} ms per "
        f"preview received, {sent} sent in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
