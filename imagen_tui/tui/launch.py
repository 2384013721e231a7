"""`imagen-tui`: the workbench, or (`--headless-worker`) only its job worker.

`imagen-tui --headless-worker` is what systemd runs and what the app starts
as a child process when no worker is online: the same worker as `imagen
worker`, with the same flags, logs on stderr (for journald), exit codes and
signal handling. That path never imports Textual or Rich (a test checks it),
so a GPU box needs no terminal libraries loaded to render jobs.

Without it, the app: `--config PATH`, `--no-worker` (only submit and watch;
`tui.worker: never` in the config does the same), then
`imagen_tui.tui.app.run_app(args)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imagen_tui import __version__, services
from imagen_tui.cmdline import WORKER_FLAGS, Parser, add_worker_options, guarded

PROG = "imagen-tui"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="ImaGen's terminal workbench; --headless-worker runs only its job worker.",
        allow_abbrev=False,  # the worker flags are checked by name below
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="config file (default: $IMAGEN_CONFIG or $XDG_CONFIG_HOME/imagen.yaml)",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="never start a worker: only submit and watch (like tui.worker: never)",
    )
    parser.add_argument(
        "--headless-worker",
        action="store_true",
        help="no interface: run the job worker until stopped (what systemd runs); "
        "takes the flags of `imagen worker`",
    )
    add_worker_options(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed arguments; exits 2 with one line on a bad combination."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    if args.headless_worker and args.no_worker:
        parser.error("--no-worker: not with --headless-worker (which is only a worker)")
    if not args.headless_worker:
        given = [flag for flag in WORKER_FLAGS if any(w.split("=")[0] == flag for w in words)]
        if given:
            parser.error(f"{given[0]}: only with --headless-worker")
    return args


def watch_parent(grace_s: float) -> None:
    """If started by the app, stop when the app is gone.

    The app holds the pipe's write end; when its process ends in any way (quit,
    crash, SIGKILL, a closed terminal), the kernel closes it and the read here
    returns: the worker stops as on SIGTERM (no new claims, its presence row
    withdrawn at once, so the next app starts a worker), lets its jobs in
    flight finish for `grace_s` seconds (at most one lease), then stops as on a
    second SIGTERM (hands them back, exits), rather than running on unseen.
    Without the variable (systemd, a shell), nothing is done.
    """
    import os
    import signal
    import threading
    import time

    # Set by services.ensure_worker: an inherited pipe's read end, the app holding the other.
    value = os.environ.pop(services.PARENT_PIPE_ENV, "")
    if not value.isdigit():
        return
    fd = int(value)

    def wait_for_eof() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass  # not a pipe after all, or closed: treat as gone
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)  # a daemon thread: gone with the process if it exits first
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_eof, name="imagen-parent-watch", daemon=True).start()


def run_headless_worker(args: argparse.Namespace) -> int:
    """What `imagen worker` runs, with the same settings; started by the app,
    with only the backends it names (services.BACKENDS_ENV)."""
    import os

    from imagen_tui.core.workbench import open_workbench

    settings = services.WorkerSettings.from_flags(args)
    watch_parent(orphan_grace_s(settings.lease))
    workbench = open_workbench(args.config)
    named = os.environ.pop(services.BACKENDS_ENV, "")
    if named:
        workbench = workbench.only(named.split(","))
    return services.run_worker(workbench, settings)


def orphan_grace_s(lease_s: float) -> float:
    """How long a worker whose app is gone lets its jobs finish before it hands
    them back: half a lease, so they are pending again within one lease."""
    return lease_s / 2


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        services.load_credentials()  # secrets from systemd's LoadCredential=, before all else
        args = parse_args(argv)
        if args.headless_worker:
            return run_headless_worker(args)
        from imagen_tui.tui.app import run_app  # Textual: only for the app itself

        return run_app(args)

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
