// The live connection: GET /api/events as Server-Sent Events. foliod sends an `event:
// status` snapshot at once, then every second (sooner on a change), and an `event: event`
// for each new log entry.
//
// Reconnection is ours, not EventSource's: its built-in retry differs between browsers and
// cannot tell a restarted foliod that forgot our session (401) from one that is down. So on
// any error the stream is closed, and /api/status is probed with backoff: 401 means log in
// again, 200 means reopen the stream (and that answer is the first fresh snapshot), anything
// else means try again later. A watchdog also drops a stream that went quiet (a half-open
// TCP connection never errors on its own).

const QUIET_MS = 6000; // snapshots come every second; six missed ones mean the stream is dead
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 5000;

export class Live {
  constructor() {
    this.status = null; // the latest snapshot
    this.state = 'idle'; // idle | connecting | live | reconnecting
    this.handlers = { status: new Set(), event: new Set(), conn: new Set(), unauthorized: new Set() };
    this.es = null;
    this.backoff = BACKOFF_MIN;
    this.retryTimer = null;
    this.quietTimer = null;
    this.running = false;
  }

  /** Subscribes to 'status' | 'event' | 'conn' | 'unauthorized'; returns the unsubscribe. */
  on(kind, fn) {
    this.handlers[kind].add(fn);
    return () => this.handlers[kind].delete(fn);
  }

  emit(kind, arg) {
    for (const fn of [...this.handlers[kind]]) {
      try {
        fn(arg);
      } catch (e) {
        console.warn('live handler failed', e); // one broken view must not stop the others
      }
    }
  }

  setState(st) {
    if (this.state === st) return;
    this.state = st;
    this.emit('conn', st);
  }

  /** Starts the stream; `snapshot` (from the login check) is shown until the first event. */
  start(snapshot) {
    if (this.running) return;
    this.running = true;
    this.backoff = BACKOFF_MIN;
    if (snapshot) this.publish(snapshot);
    this.setState('connecting');
    this.open();
  }

  stop() {
    this.running = false;
    this.closeStream();
    clearTimeout(this.retryTimer);
    this.setState('idle');
  }

  publish(snapshot) {
    this.status = snapshot;
    this.emit('status', snapshot);
  }

  open() {
    this.closeStream();
    const es = new EventSource('/api/events', { withCredentials: true });
    this.es = es;
    es.addEventListener('open', () => {
      if (this.es !== es) return;
      this.backoff = BACKOFF_MIN;
      this.setState('live');
      this.armWatchdog();
    });
    es.addEventListener('status', (m) => {
      if (this.es !== es) return;
      this.armWatchdog();
      this.setState('live');
      try {
        this.publish(JSON.parse(m.data));
      } catch {
        /* a torn snapshot: the next one comes within a second */
      }
    });
    es.addEventListener('event', (m) => {
      if (this.es !== es) return;
      try {
        this.emit('event', JSON.parse(m.data));
      } catch {
        /* ignore */
      }
    });
    es.addEventListener('error', () => {
      if (this.es === es) this.drop();
    });
  }

  closeStream() {
    clearTimeout(this.quietTimer);
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  armWatchdog() {
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.drop(), QUIET_MS);
  }

  /** The stream broke: show it, then probe until foliod answers. */
  drop() {
    this.closeStream();
    if (!this.running) return;
    this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.probe(), this.backoff);
  }

  async probe() {
    if (!this.running) return;
    try {
      const r = await fetch('/api/status', { credentials: 'same-origin', cache: 'no-store' });
      if (!this.running) return;
      if (r.status === 401) {
        this.stop();
        this.emit('unauthorized');
        return;
      }
      if (r.ok) {
        this.publish(await r.json());
        this.open();
        return;
      }
    } catch {
      /* foliod is down or restarting */
    }
    if (!this.running) return;
    // Exponential backoff with jitter, so many open consoles do not retry in lockstep.
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.probe(), this.backoff * (0.8 + Math.random() * 0.4));
  }
}
