// The JSON client for foliod's /api/. The session is an HttpOnly cookie the browser sends
// on its own (same origin), so nothing here stores a secret. Errors carry foliod's message
// ({"error":{"message"}}) so a view can show it as it is.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0: foliod could not be reached
    this.body = body;
  }
}

let onUnauthorized = null;

/** Called on any 401 from /api/ (other than the login itself): the session is gone. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** The message in foliod's error shape, or the raw text, or the status line. */
export function errorMessage(status, text, data) {
  const m = data && data.error && (data.error.message || data.error);
  if (typeof m === 'string' && m) return m;
  if (text && text.length < 300) return text;
  return `HTTP ${status}`;
}

export async function request(method, path, body, { signal, noAuthRedirect = false } = {}) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach foliod (is it running?)');
  }
  const text = await r.text().catch(() => '');
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    if (r.status === 401 && !noAuthRedirect && onUnauthorized) onUnauthorized();
    throw new ApiError(r.status, errorMessage(r.status, text, data), data);
  }
  return data;
}

export const api = {
  get: (path, opts) => request('GET', path, undefined, opts),
  post: (path, body = {}, opts) => request('POST', path, body, opts),
  put: (path, body = {}, opts) => request('PUT', path, body, opts),
  patch: (path, body = {}, opts) => request('PATCH', path, body, opts),
  del: (path, opts) => request('DELETE', path, undefined, opts),
};

/** /api/models/{id}/...: ids are numbers; names may hold '/', so the views use ids. */
export const modelPath = (m, action = '') => `/api/models/${encodeURIComponent(m.id)}${action ? `/${action}` : ''}`;
