-- 0003: workers announce themselves, so front ends can say who is online.
--
-- One row per running worker process, written by the worker itself (the
-- schema owner, or service_role): inserted when it starts, its last_seen
-- refreshed by the heartbeat thread every lease/3 seconds, deleted when it
-- exits cleanly. A worker that dies (SIGKILL, a crash, a lost machine) leaves
-- its row, which goes stale:
--
--   online  <=>  last_seen >= now() - lease_s
--
-- i.e. the worker renewed its presence within one lease period (three missed
-- heartbeats): the same span after which its jobs are rescued, so a worker
-- counted online still holds whatever it claimed. Stale rows are shown as
-- such and deleted by the next worker start once they are stale for an hour.
-- Bounds here must agree with imagen_tui/limits.py (tests/test_limits.py).

CREATE TABLE imagen.workers (
    id          text PRIMARY KEY,                -- the worker id: host:pid:token (jobs.worker_id)
    host        text NOT NULL,
    pid         int NOT NULL CHECK (pid > 0),
    backends    text[] NOT NULL DEFAULT '{}',    -- the backend instances it can render
    concurrency int NOT NULL CHECK (concurrency BETWEEN 1 AND 64),
    lease_s     double precision NOT NULL CHECK (lease_s BETWEEN 1 AND 86400),
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- rights of users

-- Users (Supabase's `authenticated`) may see that workers are online and what
-- they render, not which machines and processes they are: no id, host or pid.
-- They write nothing here. service_role may do anything (as on every table).
ALTER TABLE imagen.workers ENABLE ROW LEVEL SECURITY;
CREATE POLICY workers_select ON imagen.workers FOR SELECT TO authenticated USING (true);
GRANT SELECT (backends, concurrency, lease_s, started_at, last_seen)
    ON imagen.workers TO authenticated;
GRANT ALL ON imagen.workers TO service_role;
