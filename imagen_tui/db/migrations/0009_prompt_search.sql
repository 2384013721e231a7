-- 0009: prompt search (the Gallery's and the Series list's `/`, Compose's history).
--
-- Searches are `prompt ILIKE '%text%'`, always limited to the user's own rows by
-- row-level security. Where the server offers pg_trgm (Supabase, a packaged
-- PostgreSQL) the prompts of series and jobs get trigram indexes, which serve
-- such patterns; where it does not (the embedded server ships without contrib
-- modules) the search scans the user's rows, which is fast enough for the
-- tens of thousands of prompts one person writes. Creating the extension needs
-- a right the migrating role may lack: then the indexes are skipped, with a
-- notice, and nothing else changes.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX IF NOT EXISTS series_prompt_trgm
                ON imagen.series USING gin (prompt gin_trgm_ops);
            CREATE INDEX IF NOT EXISTS jobs_prompt_trgm
                ON imagen.jobs USING gin (prompt gin_trgm_ops);
        EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
            RAISE NOTICE 'pg_trgm not usable (%): prompt search scans instead', SQLERRM;
        END;
    ELSE
        RAISE NOTICE 'pg_trgm is not available: prompt search scans instead';
    END IF;
END
$$;
