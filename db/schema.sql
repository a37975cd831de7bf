-- schema.sql: the current schema of foliod's store (daemon/store.c), applied in one
-- transaction to a new database file (user_version 0). An existing file is brought forward by
-- migrations/NNNN_name.sql instead, so this file must always equal the result of applying
-- every migration to an empty file: tests/unit/test_store.c compares the two routes'
-- sqlite_master. To change the schema, add a migration, then mirror its result here and
-- raise the user_version at the end (and STORE_SCHEMA_VERSION in store.c).

-- One row per registered model. Engine parameters: 0 or '' means the engine's default.
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (name <> '' AND name NOT GLOB '*[^A-Za-z0-9._:/-]*'),
    source TEXT NOT NULL CHECK (source IN ('local', 'hf')),
    repo_id TEXT NOT NULL DEFAULT '',
    revision TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    max_model_len INTEGER NOT NULL DEFAULT 0 CHECK (max_model_len >= 0),
    dtype TEXT NOT NULL DEFAULT '',
    gpu_memory_utilization REAL NOT NULL DEFAULT 0 CHECK (gpu_memory_utilization BETWEEN 0 AND 1),
    block_size INTEGER NOT NULL DEFAULT 0 CHECK (block_size >= 0),
    max_num_seqs INTEGER NOT NULL DEFAULT 0 CHECK (max_num_seqs >= 0),
    kv_cache_space REAL NOT NULL DEFAULT 0 CHECK (kv_cache_space >= 0),
    device TEXT NOT NULL DEFAULT '' CHECK (device IN ('', 'cpu', 'cuda')),
    chat_template TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'registered' CHECK (state <> ''),
    want_loaded INTEGER NOT NULL DEFAULT 0 CHECK (want_loaded IN (0, 1)),
    last_error TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    kv_cache_dtype TEXT NOT NULL DEFAULT ''
    CHECK (kv_cache_dtype IN ('', 'bfloat16', 'float32', 'fp8')),
    quantization TEXT NOT NULL DEFAULT ''
    CHECK (quantization IN ('', 'int8', 'int4', 'fp8'))
);

-- What foliod last knew of a model's engine process: at most one row per model.
CREATE TABLE engines (
    model_id INTEGER PRIMARY KEY REFERENCES models (id) ON DELETE CASCADE,
    pid INTEGER NOT NULL DEFAULT 0 CHECK (pid >= 0),
    port INTEGER NOT NULL DEFAULT 0 CHECK (port BETWEEN 0 AND 65535),
    state TEXT NOT NULL CHECK (state <> ''),
    started INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0 CHECK (restarts >= 0),
    log_path TEXT NOT NULL DEFAULT ''
);

-- API keys: only the SHA-256 of a key is kept, never the key.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL DEFAULT 0
);

-- The admin password as one crypt(3) string; a single row.
CREATE TABLE admin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash TEXT NOT NULL CHECK (password_hash <> ''),
    updated INTEGER NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL CHECK (key <> ''),
    value TEXT NOT NULL
);

-- The event log (newest 10000 kept). AUTOINCREMENT: ids never come back, so a console that
-- polls with since_id never skips or repeats an event.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    kind TEXT NOT NULL CHECK (kind <> ''),
    model_id INTEGER REFERENCES models (id) ON DELETE SET NULL,
    message TEXT NOT NULL
);

-- From 0002_events_model_index: the foreign key's child key, so a model delete need not scan
-- the event log.
CREATE INDEX events_model_id ON events (model_id);

-- From 0003_downloads: model pulls from the Hugging Face Hub (daemon/pull.c), one row per
-- model, kept after the pull ends so that the console can show how it ended. files is a JSON
-- array of {"name", "size", "done"}, the per-file progress.
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

-- From 0004_responses: the /v1/responses turns foliod keeps (daemon/responses.c), for
-- previous_response_id and GET/DELETE /v1/responses/{id}. request_items is the turn's whole
-- input conversation (earlier turns' items and outputs, then its own input), output its output
-- items, response the response object; JSON text. owner is the api_keys id of the key that
-- made it (0: the configured key, the console, or no keys). created_at in unix seconds,
-- expires_at in unix milliseconds. responses_usage keeps the sum of bytes (the triggers), so
-- that the size bound never scans the table.
CREATE TABLE responses (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^A-Za-z0-9_-]*'),
    owner INTEGER NOT NULL DEFAULT 0 CHECK (owner >= 0),
    model TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    request_items TEXT NOT NULL,
    output TEXT NOT NULL,
    response TEXT NOT NULL,
    bytes INTEGER NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX responses_expires_at ON responses (expires_at);
CREATE TABLE responses_usage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
);
INSERT INTO responses_usage (id, bytes) VALUES (1, 0);
CREATE TRIGGER responses_usage_insert AFTER INSERT ON responses
BEGIN
    UPDATE responses_usage SET bytes = bytes + new.bytes WHERE id = 1;
END;
CREATE TRIGGER responses_usage_delete AFTER DELETE ON responses
BEGIN
    UPDATE responses_usage SET bytes = bytes - old.bytes WHERE id = 1;
END;

PRAGMA user_version = 5;
