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

Against a real ComfyUI (`--url http://127.0.0.1:8188 --workflow graph_api.json
--size 128x128`) the bench cannot switch the server's previews: it reads
whether they are on from the server's own command line (`/system_stats`:
`--preview-method` other than `none`) and measures that mode only, so
alternate by restarting the server with and without `--preview-method`.
Each run's seeds differ from the last ones' so ComfyUI's cache serves none.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from imagen_tui.db import embedded, migrate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.comfyui_fake import FakeComfy  # noqa: E402


def worker_cpu(
    env: dict[str, str], url: str, tries: int, steps: int, seed: int, size: tuple[int, int]
) -> tuple[float, int]:
    """Queue `tries` jobs and render them with a worker process; its CPU seconds and
    the previews it wrote (counted from their notifications)."""
    listener = psycopg.connect(url, autocommit=True)
    listener.execute("LISTEN imagen_job_events")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO imagen.jobs (prompt, width, height, steps, seed, backend) "
            "SELECT 'a heron', %s, %s, %s, %s + i, 'flux' FROM generate_series(1, %s) i",
            (size[0], size[1], steps, seed, tries),
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
    with listener:
        written = sum(
            "preview" in json.loads(note.payload) for note in listener.notifies(timeout=0.5)
        )
    return usage.ru_utime + usage.ru_stime, written


def server_previews(comfy_url: str) -> tuple[bool, str]:
    """Whether a real ComfyUI sends previews (from its command line), and its version."""
    stats = httpx.get(f"{comfy_url}/system_stats", timeout=10).raise_for_status().json()
    argv = [str(a) for a in stats["system"]["argv"]]
    method = "none"
    for i, arg in enumerate(argv):
        if arg == "--preview-method" and i + 1 < len(argv):
            method = argv[i + 1]
        elif arg.startswith("--preview-method="):
            method = arg.split("=", 1)[1]
    return method != "none", str(stats["system"].get("comfyui_version", "?"))


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=parse_size, default=(512, 512), help="WxH of each try")
    parser.add_argument("--url", help="a real ComfyUI to render on instead of the fake")
    parser.add_argument("--workflow", help="API-format graph for the real ComfyUI (workflow:)")
    args = parser.parse_args()
    if args.url:
        return real_server(args)
    root = Path(tempfile.mkdtemp(prefix="imagen-bench-previews-"))
    root.chmod(0o711)
    fake = FakeComfy().start()
    fake.scenario, fake.step_delay = "progress", 0.05
    pgdata = root / "pgdata"
    try:
        url, env = worker_home(root, fake.url)
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        written = 0
        seed = 0
        for _ in range(args.runs):
            for mode in ("off", "on"):
                fake.preview_method = "auto" if mode == "on" else None
                seed += 1000
                used, kept = worker_cpu(env, url, args.tries, args.steps, seed, args.size)
                cpu[mode].append(used)
                written += kept
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
        f"preview received, {sent} sent in all, {written} kept and written)"
    )
    return 0


def worker_home(root: Path, comfy_url: str, extra: str = "") -> tuple[str, dict[str, str]]:
    """A migrated database in `root/pgdata` and a worker's environment: its own
    HOME and a config whose default backend `flux` is the ComfyUI at `comfy_url`
    (`extra`: more lines of that backend's block)."""
    url = embedded.server_url(root / "pgdata", database="imagen_bench")
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.migrate(conn)
    (root / "home").mkdir()
    config = root / "imagen.yaml"
    config.write_text(
        f"output:\n  directory: {root / 'out'}\ndefault_backend: flux\n"
        f"backends:\n  flux:\n    type: comfyui\n    url: {comfy_url}\n{extra}",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "IMAGEN_CONFIG": str(config),
        "IMAGEN_DATABASE_URL": url,
    }
    return url, env


def real_server(args: argparse.Namespace) -> int:
    """`--runs` runs of the mode the real server at `--url` is in."""
    comfy_url = args.url.rstrip("/")
    previews, version = server_previews(comfy_url)
    mode = "on" if previews else "off"
    root = Path(tempfile.mkdtemp(prefix="imagen-bench-previews-"))
    root.chmod(0o711)
    pgdata = root / "pgdata"
    workflow = f"    workflow: {Path(args.workflow).resolve()}\n" if args.workflow else ""
    cpu: list[float] = []
    wall: list[float] = []
    written: list[int] = []
    try:
        url, env = worker_home(root, comfy_url, workflow)
        seed = int(time.time()) * 1000  # never a graph ComfyUI has cached
        for _ in range(args.runs):
            seed += 1000
            start = time.monotonic()
            used, kept = worker_cpu(env, url, args.tries, args.steps, seed, args.size)
            wall.append(time.monotonic() - start)
            cpu.append(used)
            written.append(kept)
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)
    width, height = args.size
    print(
        f"ComfyUI {version} at {comfy_url}, previews {mode}: {args.tries} tries x "
        f"{args.steps} steps of {width}x{height}, {args.runs} runs"
    )
    print(
        f"worker CPU, previews {mode}: {statistics.median(cpu):6.2f} s   "
        f"({', '.join(f'{v:.2f}' for v in cpu)}; wall {', '.join(f'{v:.1f}' for v in wall)} s)"
    )
    print(
        f"previews kept and written: {', '.join(map(str, written))} "
        f"(the server sends one per step when on: {args.tries * args.steps} a run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
