// The dashboard's time series, accumulated in the browser from the live status snapshots
// (foliod keeps no history). It lives as long as the page, so switching views keeps the
// charts; a reload starts them again.
import { enginesOf } from './status.js';

export const WINDOW_MS = 15 * 60 * 1000;
const MIN_GAP_MS = 500; // snapshots sent on a change may come in bursts: keep one per half second

const sum = (xs) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);

/** The figures charted from one snapshot; ttft values are null when no engine has any. */
export function sampleOf(status, t = Date.now()) {
  const es = enginesOf(status);
  const p50 = es.map((e) => e.ttft_p50_s).filter(Number.isFinite);
  const p99 = es.map((e) => e.ttft_p99_s).filter(Number.isFinite);
  return {
    t,
    tps: sum(es.map((e) => e.tokens_per_s)),
    running: sum(es.map((e) => e.running)),
    waiting: sum(es.map((e) => e.waiting)),
    // The slowest engine: an operator cares about the worst latency a client sees.
    ttft_p50: p50.length ? Math.max(...p50) * 1000 : null,
    ttft_p99: p99.length ? Math.max(...p99) * 1000 : null,
  };
}

export class History {
  constructor(windowMs = WINDOW_MS) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  add(status, t = Date.now()) {
    const s = sampleOf(status, t);
    const last = this.samples[this.samples.length - 1];
    if (last && t - last.t < MIN_GAP_MS) this.samples[this.samples.length - 1] = s;
    else this.samples.push(s);
    const from = t - this.windowMs;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].t < from) drop++;
    if (drop) this.samples.splice(0, drop);
  }

  clear() {
    this.samples = [];
  }
}
