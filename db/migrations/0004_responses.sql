-- 0004_responses: the /v1/responses turns foliod keeps (daemon/responses.c), for
-- previous_response_id and GET/DELETE /v1/responses/{id}. One row per stored response:
-- request_items is the whole input conversation of that turn (the earlier turns' items and
-- outputs, then its own input; instructions are not carried over, as OpenAI does), output its
-- output items, response the response object the client got; all three JSON text. bytes is
-- what the row counts against responses_max_mib; responses_usage keeps the sum, kept by the
-- triggers, so that making room never scans the table.
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
