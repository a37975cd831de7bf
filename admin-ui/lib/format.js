// Number, size, time and rate formatting shared by the views.

const KiB = 1024;
const MiB = 1024 * 1024;
const GiB = 1024 * 1024 * 1024;

export const DASH = '\u2014';
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** 2.3 GiB, 512.0 MiB, 12 KiB */
export function bytes(b) {
  if (!isNum(b)) return DASH;
  if (b >= GiB) return `${(b / GiB).toFixed(b >= 100 * GiB ? 0 : b >= 10 * GiB ? 1 : 2)} GiB`;
  if (b >= MiB) return `${(b / MiB).toFixed(1)} MiB`;
  if (b >= KiB) return `${Math.round(b / KiB)} KiB`;
  return `${Math.round(b)} B`;
}

/** MiB with one decimal: download progress reads best in one unit. */
export const mib = (b) => (isNum(b) ? (b / MiB).toFixed(1) : DASH);

/** A rate in MiB/s: two decimals below 10, so a slow link does not read as 0.1. */
export function mibRate(bps) {
  if (!isNum(bps)) return DASH;
  const v = bps / MiB;
  return v.toFixed(v < 10 ? 2 : 1);
}

/** 0.423 -> "42%" (digits after the point optional). */
export function pct(x, digits = 0) {
  if (!isNum(x)) return DASH;
  return `${(x * 100).toFixed(digits)}%`;
}

/** A plain number: 1234.5 -> "1,234.5" with `digits` decimals. */
export function num(v, digits = 0) {
  if (!isNum(v)) return DASH;
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Seconds as "42 s", "3 m 12 s", "2 h 05 m", "3 d 4 h". */
export function duration(sec) {
  if (!isNum(sec) || sec < 0) return DASH;
  sec = Math.floor(sec);
  if (sec < 60) return `${sec} s`;
  const m = Math.floor(sec / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (m < 60) return `${m} m ${sec % 60} s`;
  if (h < 24) return `${h} h ${String(m % 60).padStart(2, '0')} m`;
  return `${d} d ${h % 24} h`;
}

/** Milliseconds: "12 ms", "1.25 s". */
export function ms(v) {
  if (!isNum(v)) return DASH;
  return v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`;
}

/** The API mixes seconds (models, keys) and milliseconds (events, downloads) since the
 * epoch; anything past 1e11 is taken as milliseconds (1e11 s is the year 5138). */
export function toMs(ts) {
  if (!isNum(ts) || ts <= 0) return null;
  return ts > 1e11 ? ts : ts * 1000;
}

const pad = (n) => String(n).padStart(2, '0');

/** 14:03:22 */
export function clock(ts) {
  const t = toMs(ts);
  if (t === null) return DASH;
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 2026-11-26 14:03 */
export function dateTime(ts) {
  const t = toMs(ts);
  if (t === null) return DASH;
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "just now", "3 min ago", "2 h ago", "5 d ago" */
export function ago(ts, now = Date.now()) {
  const t = toMs(ts);
  if (t === null) return DASH;
  const s = Math.max(0, (now - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
