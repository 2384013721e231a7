-- 0008: live previews of running jobs.
--
-- A backend that can show a generation in progress (ComfyUI's latent
-- previews, the mock's blurred picture) hands its worker a picture per step;
-- the worker keeps only the latest one per job, downsized to at most 256 px
-- and re-encoded as JPEG, at most twice a second per job, here. Front ends on
-- any machine that reaches the database read it after a job event that says
-- a new preview exists (a notification on imagen_job_events with a
-- `preview` object: the step, the size, the byte count).
--
-- UNLOGGED: a preview is worth nothing after a crash (the table is emptied),
-- and its writes skip the WAL. The row goes when its job stops running
-- (done, failed, canceled, or handed back by a release, a retry or a
-- rescue), by the trigger below, and with its job (ON DELETE CASCADE).

CREATE UNLOGGED TABLE imagen.previews (
    job_id     bigint PRIMARY KEY REFERENCES imagen.jobs (id) ON DELETE CASCADE,
    step       int CHECK (step >= 0),
    total      int CHECK (total >= 1),
    width      int NOT NULL CHECK (width BETWEEN 1 AND 256),
    height     int NOT NULL CHECK (height BETWEEN 1 AND 256),
    jpeg       bytea NOT NULL CHECK (octet_length(jpeg) <= 262144),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Whoever ends a job (a worker, a user canceling their own job, a rescue)
-- removes its preview. SECURITY DEFINER: users may not delete previews
-- themselves, and a cancel must still take the row with it.
CREATE FUNCTION imagen.drop_job_preview() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    DELETE FROM imagen.previews WHERE job_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_drop_preview
    AFTER UPDATE OF status ON imagen.jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION imagen.drop_job_preview();

REVOKE ALL ON FUNCTION imagen.drop_job_preview() FROM PUBLIC;

-- ---------------------------------------------------------------- rights of users

-- A user reads the previews of their own jobs (the rule of jobs_select), and
-- writes none. service_role may do anything (as on every table).
ALTER TABLE imagen.previews ENABLE ROW LEVEL SECURITY;
CREATE POLICY previews_select ON imagen.previews FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM imagen.jobs j
                    WHERE j.id = job_id AND j.owner_user_id = auth.uid()));
GRANT SELECT ON imagen.previews TO authenticated;
GRANT ALL ON imagen.previews TO service_role;
