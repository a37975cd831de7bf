-- 0002_events_model_index: index the events' model_id. It is the child key of a foreign key
-- (ON DELETE SET NULL), so without an index every model delete scans the whole event log;
-- it also serves the console's per-model event view.
CREATE INDEX events_model_id ON events (model_id);
