// Helpers over foliod's status snapshot (GET /api/status and the SSE `status` events).

/**
 * status.engines with one entry per model name. foliod keeps the record of a stopped engine
 * after its model is deleted, so a name deleted and added again appears twice: the engine
 * that is not stopped wins, else the newest (highest model_id). Order is kept.
 */
export function enginesOf(st) {
  const byName = new Map();
  for (const e of (st && st.engines) || []) {
    const prev = byName.get(e.model);
    const better = !prev || (prev.state === 'stopped' && e.state !== 'stopped') ||
      ((prev.state === 'stopped') === (e.state === 'stopped') && e.model_id > prev.model_id);
    if (better) byName.set(e.model, e);
  }
  return [...byName.values()];
}
