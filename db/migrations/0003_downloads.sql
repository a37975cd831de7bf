-- Model pulls from the Hugging Face Hub (daemon/pull.c): one row per model, kept after the
-- pull ends so that the console can show how it ended. files is a JSON array of
-- {"name", "size", "done"}, the per-file progress.
CREATE TABLE downloads (
    model_id INTEGER PRIMARY KEY REFERENCES models (id) ON DELETE CASCADE,
    sha TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'downloading', 'done', 'failed', 'cancelled')),
    bytes_done INTEGER NOT NULL DEFAULT 0 CHECK (bytes_done >= 0),
    bytes_total INTEGER NOT NULL DEFAULT 0 CHECK (bytes_total >= 0),
    files_done INTEGER NOT NULL DEFAULT 0 CHECK (files_done >= 0),
    files_total INTEGER NOT NULL DEFAULT 0 CHECK (files_total >= 0),
    load_after INTEGER NOT NULL DEFAULT 0 CHECK (load_after IN (0, 1)),
    error TEXT NOT NULL DEFAULT '',
    files TEXT NOT NULL DEFAULT '[]',
    started INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0
);
