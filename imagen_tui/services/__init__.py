"""What the front ends (the `imagen` CLI, the TUI) call.

A front end parses what the user typed, calls one of these, and shows the
result its own way. It never writes SQL, opens a database connection or
checks a request itself: the checks live in `core` (raising `InputError`
naming the field), the statements in `db.repositories`, and this package puts
them together. Database failures arrive as one-line `DatabaseError`s.

One module per concern:

- `requests`: `check_submission`, `spec_from_form` (the checks `imagen submit`
  and the TUI's form run, with field-tagged warnings for names only the
  worker's config can settle).
- `sessions`: the `Session` protocol front ends are typed against, and
  `session(workbench)` / `open_session` giving the real one, a `DbSession`,
  whose methods submit a series, list and show jobs and series, pick a
  winner, cancel and retry jobs, read the usage ledger; `workers`,
  `workers_online`.
- `database`: `db_status`, `db_migrate`, `db_stop`.
- `configuration`: `config_rows`, `check_config`, `write_sample_config`,
  `backend_rows`.
- `state`: the TUI's remembered state, `load_tui_state`, `save_tui_state`.
- `worker`: `WorkerSettings`, `run_worker`.
- `local_worker`: the TUI's own worker, `ensure_worker` -> `LocalWorker`.
- `ledger`: `UsageLedger` (the usage rows of `imagen generate`).
- `feed`: `JobFeed`, job events turned into fresh rows and news (the TUI's
  live views; no Textual code).
- `follow`: `follow_jobs`, a few jobs' events until they end (`imagen jobs
  follow`).

Importing this package imports none of them: each name below is loaded from
its module on first use (PEP 562), so `imagen --help` pays only for what it
touches, and a module may import what it needs at its top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagen_tui.config.credentials import load_credentials as load_credentials
    from imagen_tui.services.configuration import BackendRow as BackendRow
    from imagen_tui.services.configuration import ConfigCheck as ConfigCheck
    from imagen_tui.services.configuration import ConfigRow as ConfigRow
    from imagen_tui.services.configuration import backend_rows as backend_rows
    from imagen_tui.services.configuration import check_config as check_config
    from imagen_tui.services.configuration import config_env_names as config_env_names
    from imagen_tui.services.configuration import config_rows as config_rows
    from imagen_tui.services.configuration import write_sample_config as write_sample_config
    from imagen_tui.services.database import WORKERS_SCHEMA as WORKERS_SCHEMA
    from imagen_tui.services.database import DbStatus as DbStatus
    from imagen_tui.services.database import db_migrate as db_migrate
    from imagen_tui.services.database import db_status as db_status
    from imagen_tui.services.database import db_stop as db_stop
    from imagen_tui.services.feed import JobFeed as JobFeed
    from imagen_tui.services.feed import JobsUpdate as JobsUpdate
    from imagen_tui.services.feed import Notice as Notice
    from imagen_tui.services.follow import FollowEvent as FollowEvent
    from imagen_tui.services.follow import follow_jobs as follow_jobs
    from imagen_tui.services.ledger import UsageLedger as UsageLedger
    from imagen_tui.services.local_worker import BACKENDS_ENV as BACKENDS_ENV
    from imagen_tui.services.local_worker import PARENT_PIPE_ENV as PARENT_PIPE_ENV
    from imagen_tui.services.local_worker import WORKER_LOG_FILENAME as WORKER_LOG_FILENAME
    from imagen_tui.services.local_worker import LocalWorker as LocalWorker
    from imagen_tui.services.local_worker import WorkerKeeper as WorkerKeeper
    from imagen_tui.services.local_worker import WorkerNeed as WorkerNeed
    from imagen_tui.services.local_worker import WorkerNotStarted as WorkerNotStarted
    from imagen_tui.services.local_worker import WorkerReport as WorkerReport
    from imagen_tui.services.local_worker import ensure_worker as ensure_worker
    from imagen_tui.services.local_worker import open_worker_log as open_worker_log
    from imagen_tui.services.local_worker import worker_env as worker_env
    from imagen_tui.services.local_worker import worker_log_path as worker_log_path
    from imagen_tui.services.local_worker import worker_need as worker_need
    from imagen_tui.services.requests import Submission as Submission
    from imagen_tui.services.requests import check_submission as check_submission
    from imagen_tui.services.requests import spec_from_form as spec_from_form
    from imagen_tui.services.sessions import DbSession as DbSession
    from imagen_tui.services.sessions import Session as Session
    from imagen_tui.services.sessions import open_session as open_session
    from imagen_tui.services.sessions import session as session
    from imagen_tui.services.sessions import workers as workers
    from imagen_tui.services.sessions import workers_online as workers_online
    from imagen_tui.services.state import load_tui_state as load_tui_state
    from imagen_tui.services.state import save_tui_state as save_tui_state
    from imagen_tui.services.worker import WorkerSettings as WorkerSettings
    from imagen_tui.services.worker import run_worker as run_worker

# Each public name and the module that defines it.
_HOMES: dict[str, str] = {
    # Front ends call this first: secrets from systemd's LoadCredential=.
    "load_credentials": "imagen_tui.config.credentials",
    **dict.fromkeys(
        ("BackendRow", "ConfigCheck", "ConfigRow", "backend_rows", "check_config"),
        "imagen_tui.services.configuration",
    ),
    **dict.fromkeys(
        ("config_env_names", "config_rows", "write_sample_config"),
        "imagen_tui.services.configuration",
    ),
    **dict.fromkeys(
        ("WORKERS_SCHEMA", "DbStatus", "db_migrate", "db_status", "db_stop"),
        "imagen_tui.services.database",
    ),
    **dict.fromkeys(("JobFeed", "JobsUpdate", "Notice"), "imagen_tui.services.feed"),
    **dict.fromkeys(("FollowEvent", "follow_jobs"), "imagen_tui.services.follow"),
    "UsageLedger": "imagen_tui.services.ledger",
    **dict.fromkeys(
        (
            "BACKENDS_ENV",
            "PARENT_PIPE_ENV",
            "WORKER_LOG_FILENAME",
            "LocalWorker",
            "WorkerKeeper",
            "WorkerNeed",
            "WorkerNotStarted",
            "WorkerReport",
            "ensure_worker",
            "open_worker_log",
            "worker_env",
            "worker_log_path",
            "worker_need",
        ),
        "imagen_tui.services.local_worker",
    ),
    **dict.fromkeys(
        ("Submission", "check_submission", "spec_from_form"), "imagen_tui.services.requests"
    ),
    **dict.fromkeys(
        ("DbSession", "Session", "open_session", "session", "workers", "workers_online"),
        "imagen_tui.services.sessions",
    ),
    **dict.fromkeys(("load_tui_state", "save_tui_state"), "imagen_tui.services.state"),
    **dict.fromkeys(("WorkerSettings", "run_worker"), "imagen_tui.services.worker"),
}

__all__ = sorted(_HOMES)


# No module may be named like a name it defines: importing `services.<module>`
# sets that attribute of this package to the module (hence `sessions`, which
# defines `session`).


def __getattr__(name: str) -> Any:
    """Load `name` from its module on first use (and keep it: later uses are plain)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
