// The "Add a model" form of #/models: a Hub repo id (+ revision) or a local directory, the
// engine parameters, validation as the user types, and a debounced fit estimate from
// POST /api/models/estimate. The server validates again; its 400 message is shown as is.
import { ApiError } from '../lib/api.js';
import { fill, h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';

const REPO_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NAME_RE = /^[A-Za-z0-9._:/-]+$/;

// Set once foliod answers that it has no estimate route, so the form stops asking.
let estimateMissing = false;

/** A number field's check: '' is fine (the engine's default); else a number in range. */
function numberCheck({ min, max, integer = false, pow2 = false, what }) {
  return (raw) => {
    if (raw === '') return '';
    const v = Number(raw);
    if (!Number.isFinite(v)) return `${what} must be a number`;
    if (integer && !Number.isInteger(v)) return `${what} must be a whole number`;
    if (v < min || v > max) return `${what} must be between ${min} and ${max}`;
    if (pow2 && v > 0 && (v & (v - 1)) !== 0) return `${what} must be a power of two (8, 16, 32, ...)`;
    return '';
  };
}

const NUMERIC = {
  max_model_len: numberCheck({ min: 0, max: 16777216, integer: true, what: 'Max model length' }),
  gpu_memory_utilization: numberCheck({ min: 0, max: 1, what: 'GPU memory utilization' }),
  kv_cache_space: numberCheck({ min: 0, max: 1048576, what: 'KV cache space' }),
  block_size: numberCheck({ min: 0, max: 1024, integer: true, pow2: true, what: 'Block size' }),
  max_num_seqs: numberCheck({ min: 0, max: 65536, integer: true, what: 'Max sequences' }),
};

/**
 * mountForm(ctx, {existingNames, onAdded}) -> {el, destroy}. existingNames() gives the
 * registered names, so a duplicate is flagged before the server's 409.
 */
export function mountForm(ctx, { existingNames, onAdded }) {
  const inputs = {};
  const errors = {};
  const touched = new Set();
  let nameEdited = false;

  function field(name, label, input, hint, cls = '') {
    input.name = name;
    input.id = `f-${name}`;
    inputs[name] = input;
    errors[name] = h('div', { class: 'field-error', id: `f-${name}-error`, 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', `f-${name}-error`);
    return h('div', { class: `field ${cls}` }, h('label', { class: 'field-label', for: input.id }, label), input,
      hint ? h('div', { class: 'field-hint' }, hint) : null, errors[name]);
  }
  const text = (placeholder, extra = {}) => h('input', { type: 'text', placeholder, autocomplete: 'off', spellcheck: 'false', ...extra });
  const number = (placeholder, step = 'any') => h('input', { type: 'number', placeholder, step, inputmode: 'decimal' });
  const select = (options) => h('select', null, options.map(([v, l]) => h('option', { value: v }, l)));

  const sourceHub = h('div', { class: 'source-box' },
    h('div', { class: 'source-title' }, 'From the Hugging Face Hub'),
    h('div', { class: 'field-row' },
      field('repo_id', 'Repo id', text('org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct'), null, 'grow'),
      field('revision', 'Revision', text('main', { value: 'main' }), null, 'narrow')));
  const sourceLocal = h('div', { class: 'source-box' },
    h('div', { class: 'source-title' }, 'Or from a local directory'),
    field('path', 'Path', text('/var/lib/folio/models/my-model'), 'An absolute path to a directory with config.json and *.safetensors'));

  const fitBox = h('div', { id: 'fit-estimate', class: 'fit', 'aria-live': 'polite' });
  const formError = h('div', { id: 'add-error', class: 'form-error', role: 'alert', hidden: true });
  const loadAfter = h('input', { type: 'checkbox', id: 'add-load' });
  const submit = h('button', { id: 'add-submit', class: 'btn btn-primary', type: 'submit' }, 'Add model');
  const reset = h('button', { class: 'btn', type: 'button' }, 'Reset');

  const form = h('form', { id: 'add-model', class: 'add-form', novalidate: true, autocomplete: 'off' },
    h('div', { class: 'source-grid' }, sourceHub, h('div', { class: 'source-or', 'aria-hidden': 'true' }, 'or'), sourceLocal),
    h('div', { class: 'form-grid' },
      field('name', 'Name', text('served model name, e.g. qwen-0.5b'), 'What clients send as "model". Letters, digits and . _ : / -', 'span-2'),
      field('max_model_len', 'Max model length', number('model\u2019s own', '1'), 'Tokens per sequence; empty: from config.json'),
      field('dtype', 'Dtype', select([['auto', 'auto'], ['float32', 'float32'], ['float16', 'float16'], ['bfloat16', 'bfloat16']])),
      field('kv_cache_dtype', 'KV cache dtype', select([['auto', 'auto'], ['bfloat16', 'bfloat16'], ['float32', 'float32'], ['fp8', 'fp8']]),
        'auto: the weights\u2019 (bfloat16 for 16-bit models); fp8 holds 4\u00d7 the tokens of float32'),
      field('quantization', 'Quantization', select([['none', 'none'], ['int8', 'int8'], ['int4', 'int4'], ['fp8', 'fp8']]),
        'Quantize a float checkpoint at load; AWQ, GPTQ and FP8 checkpoints are read as they are'),
      field('device', 'Device', select([['auto', 'auto'], ['cpu', 'cpu'], ['cuda', 'cuda']])),
      field('gpu_memory_utilization', 'GPU memory utilization', number('0.9', '0.05'), 'Share of the GPU for this model, 0\u20131'),
      field('kv_cache_space', 'KV cache space (GiB)', number('4', '0.25'), 'The KV pool on the CPU'),
      field('block_size', 'Block size', number('16', '1'), 'Tokens per KV block, a power of two'),
      field('max_num_seqs', 'Max sequences', number('default', '1'), 'Requests batched at once'),
      field('chat_template', 'Chat template', text('{% for m in messages %}… or template.jinja'), 'Jinja template text, or a file inside the model directory, when the model has no template of its own', 'span-2')),
    fitBox,
    formError,
    h('div', { class: 'form-actions' },
      h('label', { class: 'check' }, loadAfter, ' Load after adding'),
      h('span', { class: 'spacer' }), reset, submit));

  // ---- validation ----

  function check(name) {
    const v = inputs[name].value.trim();
    const repo = inputs.repo_id.value.trim();
    const path = inputs.path.value.trim();
    switch (name) {
      case 'name':
        if (!v) return 'Give the model a name';
        if (v.length > 127) return 'At most 127 characters';
        if (!NAME_RE.test(v)) return 'Only letters, digits and . _ : / - are allowed';
        if (v === 'default') return '"default" is the alias of the active model; pick another name';
        if (existingNames().includes(v)) return `A model named "${v}" already exists`;
        return '';
      case 'repo_id':
        if (v && !REPO_RE.test(v)) return 'A Hub repo id looks like org/name';
        if (v && path) return 'Give either a repo id or a local path, not both';
        return '';
      case 'revision':
        return repo && v && /\s/.test(v) ? 'A revision has no spaces' : '';
      case 'path':
        if (v && !v.startsWith('/')) return 'The path must be absolute (start with /)';
        if (v && repo) return 'Give either a repo id or a local path, not both';
        return '';
      case 'chat_template':
        // Text with {{ or {% is the template itself; anything else names a file inside the
        // model directory (foliod checks it stays there).
        return v && !/\{[{%]/.test(v) && v.split('/').includes('..') ? 'The template file must be inside the model directory' : '';
      default:
        return NUMERIC[name] ? NUMERIC[name](v) : '';
    }
  }

  /** Shows the messages of the touched fields (all of them on submit); true if all valid. */
  function validate(all = false) {
    let ok = true;
    for (const name of Object.keys(inputs)) {
      const msg = check(name);
      if (msg) ok = false;
      setText(errors[name], all || touched.has(name) ? msg : '');
      inputs[name].classList.toggle('is-invalid', !!msg && (all || touched.has(name)));
    }
    if (!inputs.repo_id.value.trim() && !inputs.path.value.trim()) {
      ok = false;
      if (all) setText(errors.repo_id, 'Give a Hub repo id or a local path');
    }
    return ok;
  }

  /** The POST body: only what the user set, numbers as numbers. */
  function body() {
    const b = {};
    const val = (n) => inputs[n].value.trim();
    if (val('name')) b.name = val('name');
    if (val('repo_id')) {
      b.repo_id = val('repo_id');
      b.revision = val('revision') || 'main';
    } else if (val('path')) b.path = val('path');
    for (const n of Object.keys(NUMERIC)) if (val(n) !== '') b[n] = Number(val(n));
    if (val('dtype') !== 'auto') b.dtype = val('dtype');
    if (val('kv_cache_dtype') !== 'auto') b.kv_cache_dtype = val('kv_cache_dtype');
    if (val('quantization') !== 'none') b.quantization = val('quantization');
    if (val('device') !== 'auto') b.device = val('device');
    if (val('chat_template')) b.chat_template = val('chat_template');
    return b;
  }

  // The name follows the source until the user types one of their own.
  function suggestName() {
    if (nameEdited) return;
    const repo = inputs.repo_id.value.trim();
    const path = inputs.path.value.trim().replace(/\/+$/, '');
    const guess = repo ? repo.split('/').pop() : path ? path.split('/').pop() : '';
    inputs.name.value = guess || '';
    if (guess) touched.add('name');
  }

  // ---- fit estimate ----

  let estTimer = null;
  let estSeq = 0;
  function estimateLater() {
    clearTimeout(estTimer);
    estTimer = setTimeout(estimate, 500);
  }
  function showFit(...children) {
    fill(fitBox, h('div', { class: 'fit-label' }, 'Fit estimate'), children); // fill skips nulls
  }
  async function estimate() {
    const seq = ++estSeq;
    const repo = inputs.repo_id.value.trim();
    const path = inputs.path.value.trim();
    const sourceOk = (repo && REPO_RE.test(repo) && !path) || (path && path.startsWith('/') && !repo);
    const numbersOk = Object.keys(NUMERIC).every((n) => !check(n));
    if (estimateMissing) return showFit(h('span', { class: 'muted' }, 'Fit estimate unavailable'));
    if (!sourceOk || !numbersOk) return showFit(h('span', { class: 'muted' }, 'Fill in a repo id or a path to see whether the model fits.'));
    showFit(h('span', { class: 'muted' }, 'Estimating\u2026'));
    try {
      // Without the name: the estimate does not need one, and a half-typed name is no reason to fail.
      const { name: _unused, ...spec } = body();
      const r = await ctx.api.post('/api/models/estimate', spec);
      if (seq !== estSeq) return; // the form changed meanwhile
      const tokens = r.max_model_len || Number(inputs.max_model_len.value) || 0;
      const kv = Number.isFinite(r.kv_bytes_needed) ? r.kv_bytes_needed : (r.kv_bytes_per_token || 0) * tokens;
      const kvType = r.kv_cache_dtype ? `${r.kv_cache_dtype} ` : '';
      const line = `weights ${f.bytes(r.weights_bytes)} + ${kvType}KV for ${f.num(tokens)} tokens ${f.bytes(kv)} vs ${f.bytes(r.free_bytes)} free: ` +
        `${r.fits ? 'fits' : 'does not fit'}${Number.isFinite(r.max_model_len_fits) ? `; up to ${f.num(r.max_model_len_fits)} tokens` : ''}`;
      showFit(h('span', { class: `badge badge-${r.fits ? 'green' : 'red'}` }, r.fits ? 'fits' : 'too big'),
        h('span', { class: 'fit-line' }, line),
        r.note ? h('div', { class: 'fit-note' }, r.note) : null);
    } catch (e) {
      if (seq !== estSeq) return;
      // 404 "no model estimate": this foliod has no estimate route (it took "estimate" for a
      // model name). Other errors (a repo the Hub does not know, a config it cannot read)
      // are shown, quietly.
      if (e instanceof ApiError && e.status === 404 && /no (model estimate|route)/.test(e.message)) estimateMissing = true;
      showFit(h('span', { class: 'muted' }, 'Fit estimate unavailable'),
        e instanceof ApiError && !estimateMissing && e.status !== 401 ? h('div', { class: 'fit-note' }, e.message) : null);
    }
  }

  // ---- events ----

  form.addEventListener('input', (ev) => {
    const name = ev.target.name;
    if (!name || !(name in inputs)) return;
    touched.add(name);
    if (name === 'name') nameEdited = inputs.name.value.trim() !== '';
    if (name === 'repo_id' || name === 'path') {
      suggestName();
      touched.add(name === 'repo_id' ? 'path' : 'repo_id'); // the pair checks each other
    }
    formError.hidden = true;
    validate();
    if (name !== 'name' && name !== 'chat_template') estimateLater();
  });
  form.addEventListener('change', (ev) => {
    if (ev.target === inputs.dtype || ev.target === inputs.kv_cache_dtype || ev.target === inputs.quantization ||
        ev.target === inputs.device)
      estimateLater();
  });

  function clear() {
    form.reset();
    inputs.revision.value = 'main';
    touched.clear();
    nameEdited = false;
    formError.hidden = true;
    validate();
    estimate();
  }
  reset.addEventListener('click', clear);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError.hidden = true;
    if (!validate(true)) {
      const bad = Object.keys(inputs).find((n) => check(n)) || 'repo_id';
      inputs[bad].focus();
      return;
    }
    submit.disabled = true;
    submit.classList.add('is-busy');
    const b = body();
    try {
      const m = await ctx.api.post('/api/models', b);
      let loaded = false;
      if (loadAfter.checked) {
        try {
          await ctx.api.post(`/api/models/${m.id}/load`);
          loaded = true;
        } catch (e) {
          ctx.toast(`Added ${m.name}, but loading failed: ${e.message}`, 'error');
        }
      }
      ctx.toast(loaded ? `Added ${m.name}; loading it now` : `Added ${m.name}`, 'ok');
      clear();
      onAdded(m);
    } catch (e) {
      setText(formError, e.message);
      formError.hidden = false;
    } finally {
      submit.disabled = false;
      submit.classList.remove('is-busy');
    }
  });

  validate();
  estimate();
  return { el: form, destroy: () => clearTimeout(estTimer) };
}
