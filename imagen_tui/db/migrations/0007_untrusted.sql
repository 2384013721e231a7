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
