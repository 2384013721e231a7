"""Every bound ImaGen enforces, in one place.

The front ends (argument parsers, form fields), the core checks and the
database schema all use these numbers; `tests/test_limits.py` checks that the
schema's CHECK constraints agree with them. This module imports nothing, so
anything (`imagen --help` included) may read it for free.
"""

from __future__ import annotations

# Image size: each side, in pixels.
MIN_SIDE = 64
MAX_SIDE = 2048
DEFAULT_SIZE = (1024, 1024)

MIN_STEPS = 1
MAX_STEPS = 500

# Tries of one prompt (a series; `--count`, the TUI's slider).
MIN_COUNT = 1
MAX_COUNT = 10

# Seeds fit PostgreSQL's bigint; random seeds stay below 2**32, which every
# backend accepts.
MIN_SEED = 0
MAX_SEED = 2**63 - 1
RANDOM_SEED_BOUND = 2**32

# Database ids are bigint identities.
MAX_ID = 2**63 - 1

# Job statuses, and the transitions a user (not a worker) may ask for.
JOB_STATUSES = ("pending", "running", "done", "failed", "canceled")
CANCELABLE_STATUSES = ("pending", "running")
RETRYABLE_STATUSES = ("failed", "canceled")
# A job in one of these will not change again unless a user retries it.
FINISHED_STATUSES = frozenset({"done", "failed", "canceled"})

# How `imagen usage` and the Usage screen may group the ledger.
USAGE_GROUPS = ("backend", "model", "caller", "day")

# How the TUI draws pictures (`tui.image_protocol`): `auto` is what the
# terminal supports. The config loader checks a value against these names;
# the TUI (imagen_tui.tui.pictures.protocol) maps them to widgets.
IMAGE_PROTOCOLS = ("auto", "tgp", "sixel", "halfcell", "unicode")

# Scheduling columns of a job (higher priority runs first).
MIN_PRIORITY = -100
MAX_PRIORITY = 100
DEFAULT_MAX_ATTEMPTS = 3
MIN_MAX_ATTEMPTS = 1
MAX_MAX_ATTEMPTS = 10

# The worker.
MAX_CONCURRENCY = 64
DEFAULT_LEASE_S = 60.0
MIN_LEASE_S = 1.0
MAX_LEASE_S = 86_400.0  # a day
DEFAULT_POLL_S = 5.0
MIN_POLL_S = 0.1
MAX_POLL_S = 3_600.0
PROGRESS_INTERVAL_S = 0.5  # at most two progress writes per second per job
# Live previews (imagen.previews, migration 0008): the latest one per job, at most
# this many pixels a side, JPEG, at most this many bytes, at most one per interval
# per job (more are dropped, never queued).
PREVIEW_MAX_SIDE = 256
PREVIEW_MAX_BYTES = 256 * 1024
PREVIEW_INTERVAL_S = 0.5
PREVIEW_JPEG_QUALITY = 75
# A worker is online while its presence row was refreshed within its lease; the
# row of one that died is deleted by the next worker start after this much more.
STALE_WORKER_KEEP_S = 3_600.0
# A job that ran out of GPU memory is handed back without using up an attempt at
# most this many times; after that each one counts (jobs/gpu.py, docs/worker.md).
MAX_OOM_HANDBACKS = 5
MAX_WORKER_NOTE_CHARS = 200  # the presence row's note ("waiting for GPU memory: ...")

# Listings.
MAX_LIST_LIMIT = 10_000

# An environment variable's name (a `*_env` key, `$NAME` in a path, a
# credentials line); use it with re.fullmatch.
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"

# Untrusted bodies (docs/security.md). No backend makes an image above ~16 Mpx:
# anything larger is refused before it is decoded (a decompression bomb).
MAX_IMAGE_PIXELS = 40_000_000
# A response body (an output image, a JSON answer) is refused past this many
# bytes, on its Content-Length first, else while it streams in. The backends
# take `max_download_mb` to change it (MIN/MAX_DOWNLOAD_MB).
MAX_BODY_BYTES = 64 * 2**20
MIN_DOWNLOAD_MB = 1
MAX_DOWNLOAD_MB = 1024
# One HTTP call (its tries and waits included) ends after this long at most,
# however slowly the server drips its answer; a download inside a generation
# gets what is left of the generation's own timeout, at least MIN_TRANSFER_S.
TRANSFER_DEADLINE_S = 300.0
MIN_TRANSFER_S = 5.0
# Keeping one image in remote storage (the image, its sidecar, every retry).
UPLOAD_DEADLINE_S = 300.0
# One queued job, generation and upload together, ends after the backend's own
# timeout (`timeout_s`; DEFAULT_GENERATION_S for a backend that has none) plus
# JOB_SLACK_S plus UPLOAD_DEADLINE_S; past it the job fails (jobs/worker.py).
DEFAULT_GENERATION_S = 1800.0
JOB_SLACK_S = TRANSFER_DEADLINE_S
# Figures a server reports are checked before they are priced or recorded: a
# token count outside 0..MAX_USAGE_TOKENS (one call; a real image costs a few
# thousand) makes the cost unknown, and so does a cost outside
# 0..MAX_IMAGE_COST_USD for one image: recorded as unpriced (NULL), never dropped.
MAX_USAGE_TOKENS = 10_000_000
MAX_IMAGE_COST_USD = 100
