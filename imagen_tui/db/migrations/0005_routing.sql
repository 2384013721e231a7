-- 0005: jobs go only to workers that can render them.
--
-- (Other versions are other changes'; the migrator applies any version not applied yet.)
--
-- * jobs.backend names the backend instance a job is for: `imagen submit` and
--   the workbench write the instance they resolved (the submitter's
--   default_backend when none was chosen). NULL (a plain SQL insert) still
--   means "the default of whichever worker takes it".
-- * A worker claims only jobs whose backend is one of its instances, or NULL
--   when it has a default. Its presence row now says which instance that
--   default is (`default_backend`, NULL when the worker has none), so front ends
--   can tell a job no online worker serves ("waiting for a worker with X").
--
-- The claim still walks jobs_pending (priority DESC, id) in claim order, skipping
-- other backends' rows, when its backends have pending jobs. When they have none
-- but other backends do (a mock worker beside a queue of GPU jobs), that walk
-- would read every pending row at every wake-up and poll (8 ms for 20,000 rows);
-- jobs_pending_backend answers "none of mine" from the index (0.1 ms). The
-- planner picks per claim (docs/performance.md, "Routing").

ALTER TABLE imagen.workers ADD COLUMN default_backend text;

CREATE INDEX jobs_pending_backend ON imagen.jobs (backend, priority DESC, id)
    WHERE status = 'pending';

-- Users may see what a worker renders by default, like its backends.
GRANT SELECT (default_backend) ON imagen.workers TO authenticated;
