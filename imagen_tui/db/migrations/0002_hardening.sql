-- 0002: hardening after a fault-injection run and a security review.
--
-- * jobs.lease_id: a token set at each claim; workers fence every write on it
--   (a lost-then-repeated claim can no longer pass the fence twice).
-- * options must be a JSON object (an array or a number crashed workers);
--   series carry options too, like every other request field.
-- * priority, max_attempts and attempts are bounded.
-- * ids are assigned by the database alone (GENERATED ALWAYS), and sequences
--   move past any id a user inserted by hand.
-- * Users (role `authenticated`) get column-level rights: they insert request
--   fields, cancel or retry their own jobs (transitions a trigger checks) and
--   pick their series' winner; nothing else. No rights on sequences.
-- * Job event payloads no longer carry the owner's user id; a running job
--   that is canceled is announced on `imagen_job_cancels` for its worker.
-- Bounds here must agree with imagen_tui/limits.py (tests/test_limits.py).

-- ---------------------------------------------------------------- lease tokens

ALTER TABLE imagen.jobs ADD COLUMN lease_id uuid;

-- ---------------------------------------------------------------- options

-- A pending job whose options are not an object can never run: fail it with
-- the reason (it can be fixed and retried). Then every row gets an object.
UPDATE imagen.jobs
   SET status = 'failed', finished_at = now(), updated_at = now(),
       error = 'options: must be a JSON object (names to values); use {} for none'
 WHERE jsonb_typeof(options) <> 'object' AND status = 'pending';
UPDATE imagen.jobs SET options = '{}' WHERE jsonb_typeof(options) <> 'object';
ALTER TABLE imagen.jobs
    ADD CONSTRAINT jobs_options_object CHECK (jsonb_typeof(options) = 'object');

ALTER TABLE imagen.series
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT series_options_object CHECK (jsonb_typeof(options) = 'object');

-- ---------------------------------------------------------------- scheduling bounds

UPDATE imagen.jobs SET priority = least(greatest(priority, -100), 100)
 WHERE priority NOT BETWEEN -100 AND 100;
UPDATE imagen.jobs SET max_attempts = 10 WHERE max_attempts > 10;
UPDATE imagen.jobs SET attempts = 0 WHERE attempts < 0;
ALTER TABLE imagen.jobs
    DROP CONSTRAINT jobs_max_attempts_check,
    ADD CONSTRAINT jobs_priority_range CHECK (priority BETWEEN -100 AND 100),
    ADD CONSTRAINT jobs_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 10),
    ADD CONSTRAINT jobs_attempts_not_negative CHECK (attempts >= 0);

-- ---------------------------------------------------------------- ids

ALTER TABLE imagen.series ALTER COLUMN id SET GENERATED ALWAYS;
ALTER TABLE imagen.jobs   ALTER COLUMN id SET GENERATED ALWAYS;
ALTER TABLE imagen.images ALTER COLUMN id SET GENERATED ALWAYS;
ALTER TABLE imagen.usage  ALTER COLUMN id SET GENERATED ALWAYS;

DO $$
DECLARE
    tbl text;
    seq regclass;
    top bigint;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['series', 'jobs', 'images', 'usage'] LOOP
        seq := pg_get_serial_sequence('imagen.' || tbl, 'id')::regclass;
        EXECUTE format('SELECT max(id) FROM imagen.%I', tbl) INTO top;
        IF top IS NOT NULL AND top > coalesce(pg_sequence_last_value(seq), 0) THEN
            PERFORM setval(seq, top);
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------- status transitions

-- Who may move a job between statuses. Cancel and retry are checked for
-- everyone and tidy the row the same way whoever asks; any other change of
-- status is a worker's (the schema owner's) or service_role's business.
CREATE FUNCTION imagen.check_job_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF NEW.status = 'canceled' THEN
        IF OLD.status NOT IN ('pending', 'running') THEN
            RAISE EXCEPTION 'job %: it is %; only pending or running jobs can be canceled',
                OLD.id, OLD.status USING ERRCODE = 'check_violation';
        END IF;
        NEW.finished_at := now();
        NEW.lease_expires_at := NULL;
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    IF NEW.status = 'pending' AND OLD.status IN ('failed', 'canceled') THEN
        -- A retry: the same parameters (and seed, once one was chosen), fresh attempts.
        NEW.attempts := 0;
        NEW.error := NULL;
        NEW.run_at := now();
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
        NEW.worker_id := NULL;
        NEW.lease_id := NULL;
        NEW.lease_expires_at := NULL;
        NEW.progress := NULL;
        NEW.image_id := NULL;
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    IF NOT (pg_has_role((SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
            OR pg_has_role('service_role', 'MEMBER')) THEN
        RAISE EXCEPTION 'job %: % -> % is a worker''s transition; users may only cancel '
            'a pending or running job or retry a failed or canceled one',
            OLD.id, OLD.status, NEW.status USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_check_status
    BEFORE UPDATE OF status ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.check_job_status();

-- ---------------------------------------------------------------- job events

-- Payloads are hints to re-read a row (any session may NOTIFY any channel):
-- they carry no owner id.
CREATE OR REPLACE FUNCTION imagen.notify_job_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('imagen_job_events', json_build_object(
        'id', NEW.id,
        'series_id', NEW.series_id,
        'series_idx', NEW.series_idx,
        'status', NEW.status,
        'progress', NEW.progress,
        'image_id', NEW.image_id
    )::text);
    RETURN NULL;
END
$$;

-- A running job canceled: its worker stops the generation. A channel of its
-- own, so workers do not wake for every progress step of every job (the
-- payload, the job id, is a hint: the worker re-reads the row).
CREATE FUNCTION imagen.notify_job_cancel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('imagen_job_cancels', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_cancel_running
    AFTER UPDATE OF status ON imagen.jobs
    FOR EACH ROW WHEN (NEW.status = 'canceled' AND OLD.status = 'running')
    EXECUTE FUNCTION imagen.notify_job_cancel();

-- ---------------------------------------------------------------- rights of users

REVOKE INSERT, UPDATE ON imagen.series, imagen.jobs, imagen.images FROM authenticated;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA imagen FROM authenticated;

GRANT INSERT (prompt, negative_prompt, style, width, height, steps, seed, backend, options,
              count)
    ON imagen.series TO authenticated;
GRANT UPDATE (selected_image_id) ON imagen.series TO authenticated;

GRANT INSERT (series_id, series_idx, prompt, negative_prompt, style, width, height, steps, seed,
              backend, options)
    ON imagen.jobs TO authenticated;
GRANT UPDATE (status) ON imagen.jobs TO authenticated;

-- Images are written by workers only.
DROP POLICY images_insert ON imagen.images;
DROP POLICY images_update ON imagen.images;
