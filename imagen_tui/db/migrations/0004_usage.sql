-- 0004: the cost ledger, backends without seeds, and cloud copies of images.
--
-- (0003 is another change's; the migrator applies any version not applied yet.)
--
-- * A backend may take no seed (OpenAI): images and usage rows record none.
-- * usage: the prompt is only ever stored as its SHA-256 (64 hex digits, checked);
--   costs are exact (numeric) and never negative; `source` says which front end
--   made the image (`cli` for `imagen generate`, `worker` for a queued job);
--   `caller` is who ran it ($IMAGEN_CALLER, else user@host) and `worker_id`
--   the worker process that did (NULL for `imagen generate`, whose rows have
--   no job either).
-- * images.object_uri: where a worker uploaded the image (Supabase Storage,
--   `supabase://bucket/path`); storage_uri stays the local file.
-- Rights are unchanged: users read their own usage rows (usage_select) and
-- images (images_select, every column); only workers and service_role write.

ALTER TABLE imagen.images ALTER COLUMN seed DROP NOT NULL;
ALTER TABLE imagen.usage  ALTER COLUMN seed DROP NOT NULL;

ALTER TABLE imagen.usage
    ADD CONSTRAINT usage_prompt_sha256_hex CHECK (prompt_sha256 ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT usage_cost_not_negative CHECK (cost_usd >= 0),
    ADD CONSTRAINT usage_latency_not_negative CHECK (latency_ms >= 0),
    ADD COLUMN source text NOT NULL DEFAULT 'worker'
        CONSTRAINT usage_source_known CHECK (source IN ('cli', 'worker', 'tui')),
    ADD COLUMN worker_id text;

-- Rows written before this version: the caller was the worker's id.
UPDATE imagen.usage SET worker_id = caller WHERE job_id IS NOT NULL;

CREATE INDEX usage_backend_created ON imagen.usage (backend, created_at);

ALTER TABLE imagen.images ADD COLUMN object_uri text;
