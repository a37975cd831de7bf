// The console's shell: session (login/logout, any 401 back to login), the live connection
// and its indicator, and a hash router (#/dashboard, #/models, ...) that mounts one view at
// a time. Each view module exports `title` and `mount(root, ctx)`, which returns a cleanup
// function called when the user leaves the view.
import { api, ApiError, setUnauthorizedHandler } from './lib/api.js';
import { $, $$, setText } from './lib/dom.js';
import { History } from './lib/history.js';
import { Live } from './lib/live.js';
import { confirm, toast } from './lib/ui.js';
import * as dashboard from './views/dashboard.js';
import * as events from './views/events.js';
import * as keys from './views/keys.js';
import * as login from './views/login.js';
import * as models from './views/models.js';
import * as playground from './views/playground.js';

const ROUTES = { dashboard, models, playground, keys, events };
const DEFAULT_ROUTE = 'dashboard';

const live = new Live();
const history = new History();
// Charts need samples from before the dashboard was opened, so the history is fed here.
live.on('status', (st) => history.add(st));

/** What every view gets: the API, the live feed and the shared UI helpers. */
const ctx = { api, live, history, toast, confirm, navigate: (name) => { location.hash = `#/${name}`; } };

let authed = false;
let current = null; // { name, cleanup }

function routeName() {
  const name = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return ROUTES[name] ? name : null;
}

function unmountView() {
  if (!current) return;
  try {
    current.cleanup();
  } catch (e) {
    console.warn('view cleanup failed', e);
  }
  current = null;
}

function route() {
  if (!authed) return;
  const name = routeName();
  if (!name) {
    location.replace(`#/${DEFAULT_ROUTE}`);
    return; // the hashchange that follows mounts it
  }
  if (current && current.name === name) return;
  unmountView();
  for (const a of $$('[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = ROUTES[name];
  setText($('#page-title'), view.title);
  document.title = `${view.title} \u00b7 Folio`;
  const root = $('#view');
  root.replaceChildren();
  root.scrollTop = 0;
  current = { name, cleanup: view.mount(root, ctx) || (() => {}) };
}

function showConn(state) {
  const el = $('#conn-status');
  const text = { live: 'Live', reconnecting: 'Reconnecting\u2026', connecting: 'Connecting\u2026', idle: 'Offline' }[state] || state;
  el.className = `conn conn-${state}`;
  el.title = state === 'live' ? 'Receiving live updates from foliod' : state === 'reconnecting'
    ? 'The live stream dropped; retrying with backoff' : '';
  setText($('.conn-text', el), text);
  document.body.classList.toggle('is-stale', state === 'reconnecting');
}

function enterApp(snapshot) {
  authed = true;
  $('#boot').hidden = true;
  $('#login-screen').hidden = true;
  $('#login-screen').replaceChildren();
  $('#shell').hidden = false;
  live.start(snapshot);
  route();
}

/** Back to the login form; `reason` explains why when the session ended by itself. */
function showLogin(reason) {
  authed = false;
  live.stop();
  unmountView();
  $('#boot').hidden = true;
  $('#shell').hidden = true;
  $('#view').replaceChildren();
  const screen = $('#login-screen');
  screen.hidden = false;
  login.mount(screen, { reason, onLoggedIn: enterApp });
}

// Any 401 from /api/ or from the live probe: the session is gone (expired, logged out
// elsewhere, or foliod restarted and forgot it).
const sessionEnded = () => {
  if (authed) showLogin('Your session has ended. Log in again.');
};
setUnauthorizedHandler(sessionEnded);
live.on('unauthorized', sessionEnded);
live.on('conn', showConn);
live.on('status', (st) => setText($('#version'), st && st.version ? `foliod ${st.version}` : ''));

$('#logout').addEventListener('click', async () => {
  try {
    await api.post('/api/logout', {}, { noAuthRedirect: true });
  } catch {
    /* logged out either way */
  }
  history.clear();
  showLogin();
});

window.addEventListener('hashchange', route);

// First load: a valid session cookie (HttpOnly, so only the server can tell) goes straight
// to the console; otherwise the login form. This probe is the one expected 401 of a
// logged-out page load.
async function boot() {
  try {
    const st = await api.get('/api/status', { noAuthRedirect: true });
    enterApp(st);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showLogin();
    else showLogin(e instanceof ApiError ? e.message : 'Cannot reach foliod.');
  }
}
boot();
