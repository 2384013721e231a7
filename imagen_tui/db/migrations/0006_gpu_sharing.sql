-- 0006: sharing the GPU (docs/worker.md, "Sharing the GPU").
--
-- jobs.oom_handbacks: how often a job was handed back because the GPU ran out
-- of memory (another server on the card held it). Such a hand-back does not
-- use up an attempt, at most MAX_OOM_HANDBACKS (limits.py) times per job;
-- after that each one counts as an attempt.
--
-- workers.note: what a worker says it is doing beyond being online, e.g.
-- "waiting for GPU memory: 3.1 of 16.0 GB free" (`imagen workers`, the TUI
-- header). NULL: nothing to say. Bounded as MAX_WORKER_NOTE_CHARS (limits.py).

ALTER TABLE imagen.jobs
    ADD COLUMN oom_handbacks int NOT NULL DEFAULT 0 CHECK (oom_handbacks >= 0);

ALTER TABLE imagen.workers
    ADD COLUMN note text CHECK (char_length(note) <= 200);

GRANT SELECT (note) ON imagen.workers TO authenticated;
