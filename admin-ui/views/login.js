// The login form: POST /api/login {password} sets the HttpOnly session cookie. A wrong
// password is a 401 after a deliberate ~250 ms delay on the server.
import { api, ApiError } from '../lib/api.js';
import { h } from '../lib/dom.js';

export const title = 'Log in';

export function mount(root, { reason, onLoggedIn }) {
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true, placeholder: 'Admin password', 'aria-describedby': 'login-error' });
  const error = h('p', { id: 'login-error', class: 'login-error', role: 'alert' }, reason || '');
  if (reason) error.classList.add('is-info');
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Log in');
  const form = h('form', { id: 'login-form', class: 'login-card', novalidate: true },
    h('div', { class: 'login-brand' }, h('img', { src: 'favicon.svg', alt: '', width: 40, height: 40 }),
      h('div', null, h('div', { class: 'login-title' }, 'Folio'), h('div', { class: 'login-sub' }, 'LLM serving appliance'))),
    h('label', { class: 'field-label', for: 'password' }, 'Admin password'),
    password,
    error,
    submit,
    h('p', { class: 'login-hint' }, 'The password was printed by foliod on its first start, or set with FOLIO_ADMIN_PASSWORD.'));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.classList.remove('is-info');
    if (!password.value) {
      error.textContent = 'Enter the admin password.';
      password.focus();
      return;
    }
    submit.disabled = true;
    submit.classList.add('is-busy');
    error.textContent = '';
    try {
      await api.post('/api/login', { password: password.value }, { noAuthRedirect: true });
      // The cookie is set; the first snapshot both proves it and fills the dashboard at once.
      const st = await api.get('/api/status', { noAuthRedirect: true });
      onLoggedIn(st);
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? 'Wrong password.' : e.message || 'Login failed.';
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.classList.remove('is-busy');
    }
  });

  root.replaceChildren(h('div', { class: 'login-wrap' }, form));
  password.focus();
  return () => {};
}
