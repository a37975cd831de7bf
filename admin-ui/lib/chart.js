// A small SVG line chart for the dashboard's time series: a fixed time window ending now,
// a y axis from 0 to a rounded maximum, gaps where data is missing (a dropped connection),
// a legend with the latest values, and a hover read-out. Colours come from CSS classes, so
// the chart follows the light or dark theme.
import { h, s, setText, show } from './dom.js';
import { clock } from './format.js';

const M = { left: 46, right: 12, top: 10, bottom: 22 };
const GAP_MS = 5000; // no sample for 5 s: the line breaks instead of bridging the hole

/** A step of 1, 2 or 5 times a power of ten, so that about `count` steps cover max. */
function niceStep(max, count, integer) {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  if (integer) step = Math.max(1, Math.round(step));
  return step;
}

/**
 * lineChart(host, {series: [{key, label}], format, emptyText, height, windowMs, integer})
 * returns {update(samples, now), destroy()}. Samples are objects with `t` (ms) and a number
 * or null under each series key.
 */
export function lineChart(host, opts) {
  const { series, format = (v) => String(v), emptyText = 'No data yet', height = 170, windowMs, integer = false } = opts;
  const values = series.map(() => h('span', { class: 'legend-value' }, '\u2014'));
  const legend = h('div', { class: 'chart-legend' },
    series.map((se, i) => h('span', { class: 'legend-item' },
      h('span', { class: `swatch series-${i}` }), h('span', { class: 'legend-label' }, se.label), values[i])));
  const svg = s('svg', { class: 'chart-svg', height, role: 'img', 'aria-label': series.map((x) => x.label).join(', ') });
  const tip = h('div', { class: 'chart-tip', hidden: true });
  const empty = h('div', { class: 'chart-empty' }, emptyText);
  const plot = h('div', { class: 'chart-plot', style: { height: `${height}px` } }, svg, tip, empty);
  host.replaceChildren(legend, plot);

  let samples = [];
  let now = Date.now();
  let width = 0;
  let geom = null; // what the hover read-out needs from the last render
  let pointer = null; // the last pointer position while hovering, to redraw the read-out

  function render() {
    width = plot.clientWidth || 600;
    svg.setAttribute('width', width);
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const x0 = now - windowMs;
    const shown = samples.filter((p) => p.t >= x0 - GAP_MS);
    let max = 0;
    let any = false;
    for (const p of shown)
      for (const se of series) {
        const v = p[se.key];
        if (Number.isFinite(v)) {
          any = true;
          if (v > max) max = v;
        }
      }
    show(empty, !any);
    const step = niceStep(max > 0 ? max : 1, 4, integer);
    const top = Math.max(step, Math.ceil((max * 1.05) / step) * step);
    const pw = Math.max(10, width - M.left - M.right);
    const ph = height - M.top - M.bottom;
    const X = (t) => M.left + ((t - x0) / windowMs) * pw;
    const Y = (v) => M.top + ph - (v / top) * ph;
    geom = { X, Y, x0, pw };

    const nodes = [];
    for (let v = 0; v <= top + step / 2; v += step) {
      const y = Math.round(Y(v)) + 0.5;
      nodes.push(s('line', { class: 'chart-grid', x1: M.left, x2: M.left + pw, y1: y, y2: y }));
      nodes.push(s('text', { class: 'chart-axis', x: M.left - 6, y: y + 4, 'text-anchor': 'end' }, format(v)));
    }
    const mins = Math.round(windowMs / 60000);
    for (let m = mins; m >= 0; m -= 5) {
      const x = X(now - m * 60000);
      const anchor = m === mins ? 'start' : m === 0 ? 'end' : 'middle';
      nodes.push(s('text', { class: 'chart-axis', x, y: height - 6, 'text-anchor': anchor }, m ? `\u2212${m} min` : 'now'));
    }
    series.forEach((se, i) => {
      // Segments of consecutive samples with a value; each becomes a line and (for the
      // first series) a faint area under it.
      const segs = [];
      let cur = null;
      let prevT = -Infinity;
      for (const p of shown) {
        const v = p[se.key];
        if (!Number.isFinite(v) || p.t - prevT > GAP_MS) cur = null;
        if (Number.isFinite(v)) {
          if (!cur) segs.push((cur = []));
          cur.push([Math.max(M.left, X(p.t)), Y(v)]);
        }
        prevT = p.t;
      }
      for (const seg of segs) {
        const line = seg.map(([x, y], k) => `${k ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
        if (i === 0 && seg.length > 1) {
          const base = Y(0).toFixed(1);
          nodes.push(s('path', { class: `chart-area series-${i}`,
            d: `${line}L${seg[seg.length - 1][0].toFixed(1)},${base}L${seg[0][0].toFixed(1)},${base}Z` }));
        }
        nodes.push(s('path', { class: `chart-line series-${i}`, d: line }));
        if (seg.length === 1) nodes.push(s('circle', { class: `chart-dot series-${i}`, cx: seg[0][0], cy: seg[0][1], r: 2.5 }));
      }
    });
    nodes.push(s('line', { class: 'chart-cursor', x1: 0, x2: 0, y1: M.top, y2: M.top + ph, visibility: 'hidden' }));
    svg.replaceChildren(...nodes);

    const last = samples[samples.length - 1];
    series.forEach((se, i) => setText(values[i], last && Number.isFinite(last[se.key]) ? format(last[se.key]) : '\u2014'));
    if (pointer) hover(pointer);
  }

  // The hover read-out: the sample nearest the pointer, its time and values.
  function hover(ev) {
    if (!geom || !samples.length) return;
    pointer = { clientX: ev.clientX };
    const rect = svg.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const t = geom.x0 + ((px - M.left) / geom.pw) * windowMs;
    let lo = 0;
    let hi = samples.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (samples[mid].t < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(samples[lo - 1].t - t) < Math.abs(samples[lo].t - t)) lo--;
    const p = samples[lo];
    if (!p || p.t < geom.x0) return leave();
    const x = geom.X(p.t);
    const cursor = svg.querySelector('.chart-cursor');
    if (cursor) {
      cursor.setAttribute('x1', x);
      cursor.setAttribute('x2', x);
      cursor.setAttribute('visibility', 'visible');
    }
    tip.replaceChildren(h('div', { class: 'tip-time' }, clock(p.t)),
      ...series.map((se, i) => h('div', { class: 'tip-row' }, h('span', { class: `swatch series-${i}` }), `${se.label}: `,
        h('strong', null, Number.isFinite(p[se.key]) ? format(p[se.key]) : '\u2014'))));
    tip.hidden = false;
    const left = x + 12 + tip.offsetWidth > width ? x - 12 - tip.offsetWidth : x + 12;
    tip.style.left = `${Math.max(0, left)}px`;
  }
  function leave() {
    pointer = null;
    tip.hidden = true;
    const cursor = svg.querySelector('.chart-cursor');
    if (cursor) cursor.setAttribute('visibility', 'hidden');
  }
  svg.addEventListener('pointermove', hover);
  svg.addEventListener('pointerleave', leave);

  const ro = new ResizeObserver(() => {
    if (plot.clientWidth && plot.clientWidth !== width) render();
  });
  ro.observe(plot);

  return {
    update(next, t = Date.now()) {
      samples = next;
      now = t;
      render();
    },
    destroy() {
      ro.disconnect();
    },
  };
}
