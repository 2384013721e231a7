-- 0007: what users may put in a job, and what they may read back (issue 17).
--
-- (0005, 0006 and 0008 are other changes'; the migrator applies any version not
-- applied yet.) See docs/security.md.
--
-- * images.options: the job's own options the backend was given (only keys its
--   adapter lets a job set; the worker refuses the rest), as in the sidecar and
--   the PNG's `imagen` chunk.

ALTER TABLE imagen.images ADD COLUMN options jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT images_options_object CHECK (jsonb_typeof(options) = 'object');

-- ---------------------------------------------------------------- per-owner limits

-- What an operator may tune with one statement (schema owner or service_role):
--   UPDATE imagen.settings SET max_pending_per_owner = 5000;   -- NULL: no cap
-- One row only. Users may read it (so a refusal can be understood), not change it.
CREATE TABLE imagen.settings (
    id                    boolean PRIMARY KEY DEFAULT true CONSTRAINT settings_one_row CHECK (id),
    max_pending_per_owner int DEFAULT 1000
        CONSTRAINT settings_max_pending_positive CHECK (max_pending_per_owner > 0)
);
INSERT INTO imagen.settings DEFAULT VALUES;
GRANT SELECT ON imagen.settings TO authenticated;
GRANT SELECT, UPDATE ON imagen.settings TO service_role;

CREATE INDEX jobs_pending_owner ON imagen.jobs (owner_user_id) WHERE status = 'pending';

-- A user's job becoming pending (inserted, or retried) is refused past the cap.
-- Workers (the schema owner) and service_role are not capped: requeueing a job
-- they hold is theirs to do. Row by row, under a lock per owner, so neither one
-- INSERT ... SELECT generate_series(1, 10000) nor two sessions at once get past it
-- (each row sees the rows before it, in its statement and in committed sessions).
CREATE FUNCTION imagen.check_pending_cap() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cap int;
    pending bigint;
BEGIN
    IF NEW.status <> 'pending' OR (TG_OP = 'UPDATE' AND OLD.status = 'pending') THEN
        RETURN NEW;
    END IF;
    IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
       OR pg_has_role('service_role', 'MEMBER') THEN
        RETURN NEW;
    END IF;
    SELECT max_pending_per_owner INTO cap FROM imagen.settings;
    IF cap IS NULL THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('imagen.pending:' || NEW.owner_user_id::text, 0));
    SELECT count(*) INTO pending FROM imagen.jobs
     WHERE status = 'pending' AND owner_user_id IS NOT DISTINCT FROM NEW.owner_user_id;
    IF pending >= cap THEN
        RAISE EXCEPTION 'too many pending jobs: an owner may have at most % pending jobs '
            '(imagen.settings.max_pending_per_owner); wait for some to finish or cancel '
            'some, or ask the operator to raise the cap', cap
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'an operator raises it with: UPDATE imagen.settings SET '
                         'max_pending_per_owner = <n>';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_pending_cap_on_insert
    BEFORE INSERT ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.check_pending_cap();
CREATE TRIGGER jobs_pending_cap_on_retry
    BEFORE UPDATE OF status ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.check_pending_cap();

-- ---------------------------------------------------------------- what users may read

-- Users read their own rows (the policies of 0001), but not which machine and
-- account ran them: jobs.worker_id and lease_id, usage.caller and worker_id,
-- images.storage_uri (the worker's local path, with its home directory). Column
-- grants: every other column, as the table grant gave before. A later migration
-- that adds a column users should read grants it to authenticated itself.
-- service_role and the schema owner still read everything.
DO $$
DECLARE
    hidden CONSTANT text[] := ARRAY['jobs.worker_id', 'jobs.lease_id', 'usage.caller',
                                    'usage.worker_id', 'images.storage_uri'];
    t text;
    cols text;
BEGIN
    FOREACH t IN ARRAY ARRAY['jobs', 'images', 'usage'] LOOP
        EXECUTE format('REVOKE SELECT ON imagen.%I FROM authenticated', t);
        SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) INTO cols
          FROM information_schema.columns
         WHERE table_schema = 'imagen' AND table_name = t
           AND NOT (t || '.' || column_name) = ANY (hidden);
        EXECUTE format('GRANT SELECT (%s) ON imagen.%I TO authenticated', cols, t);
    END LOOP;
END
$$;
