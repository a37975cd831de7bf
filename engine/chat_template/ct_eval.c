/* ct_eval: the interpreter, a port of @huggingface/jinja's Interpreter.
 *
 * Semantics kept from the reference because outputs depend on them:
 *   - scopes: `for` opens one scope for the whole loop (a `set` in the body survives into the
 *     next iteration, not past the loop); `if` opens none; macros run in a child of the
 *     *caller's* scope (dynamic scoping), call blocks' `caller` in a child of the call site;
 *   - a loop body cut short by break/continue contributes no output for that iteration, and a
 *     loop whose every iteration was cut short runs its `else` block;
 *   - operators: `==` is JavaScript's loose equality on the raw values, `+` of a string and
 *     anything concatenates String(value), comparisons other than ==/!= need numbers,
 *     undefined/none operands are errors (except `x in undefined`, which is false).
 * Every evaluation step is counted and nesting is bounded, so a hostile template ends with an
 * error instead of hanging. */
#include "chat_template/ct_internal.h"

#include <math.h>
#include <stdio.h>

/* ------------------------------------------------------------------------------------------
 * Scopes */

static void env_key(const void *ctx, size_t i, const char **s, size_t *len) {
    const struct ct_env *e = ctx;
    *s = e->vars[i].name;
    *len = e->vars[i].len;
}

static struct ct_var *env_find(const struct ct_env *env, const char *name, size_t len) {
    if (env->h) {
        long i = ct_hash_find(env->h, env->hcap, name, len, env_key, env);
        return i < 0 ? NULL : &env->vars[i];
    }
    for (size_t i = 0; i < env->n; i++)
        if (env->vars[i].len == len && !memcmp(env->vars[i].name, name, len)) return &env->vars[i];
    return NULL;
}

struct ct_value ct_lookup(struct ct_env *env, const char *name, size_t len) {
    for (; env; env = env->parent) {
        struct ct_var *v = env_find(env, name, len);
        if (v) return v->v;
    }
    return ct_undef();
}

int ct_env_set(struct ct_render *r, struct ct_env *env, const char *name, size_t len, struct ct_value v) {
    (void)r;
    struct ct_var *cur = env_find(env, name, len);
    if (cur) {
        ct_release(cur->v);
        cur->v = v;
        return 0;
    }
    if (env->n == env->cap) {
        size_t cap = env->cap ? env->cap * 2 : 8;
        struct ct_var *nv = realloc(env->vars, cap * sizeof(*nv));
        if (!nv) {
            ct_release(v);
            return FOLIO_ENOMEM;
        }
        env->vars = nv;
        env->cap = cap;
    }
    env->vars[env->n].name = name;
    env->vars[env->n].len = len;
    env->vars[env->n].v = v;
    env->n++;
    return ct_hash_add(&env->h, &env->hcap, env->n, env_key, env);
}

void ct_env_clear(struct ct_env *env) {
    for (size_t i = 0; i < env->n; i++) ct_release(env->vars[i].v);
    free(env->vars);
    free(env->h);
    env->vars = NULL;
    env->h = NULL;
    env->n = env->cap = env->hcap = 0;
}

/* ------------------------------------------------------------------------------------------
 * Arguments */

void ct_args_free(struct ct_args *a) {
    for (size_t i = 0; i < a->npos; i++) ct_release(a->pos[i]);
    free(a->pos);
    ct_release(a->kw);
    memset(a, 0, sizeof(*a));
    a->kw = ct_undef();
}

static int args_push(struct ct_render *r, struct ct_args *a, struct ct_value v) {
    int rc;
    if ((rc = ct_charge(r, 1))) { ct_release(v); return rc; }
    if (a->npos >= CT_MAX_ITEMS) {
        ct_release(v);
        return ct_fail(NULL, "too many arguments");
    }
    if (a->npos == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        struct ct_value *np = realloc(a->pos, cap * sizeof(*np));
        if (!np) { ct_release(v); return FOLIO_ENOMEM; }
        a->pos = np;
        a->cap = cap;
    }
    a->pos[a->npos++] = v;
    return 0;
}

static int kw_add(struct ct_render *r, const struct ct_node *at, struct ct_args *a, const char *k,
                  size_t kl, struct ct_value v) {
    int rc;
    if (a->kw.t == V_UNDEF && (rc = ct_obj_new(r, O_KWARGS, &a->kw))) { ct_release(v); return rc; }
    if (ct_obj_get(a->kw.u.o, k, kl)) {
        ct_release(v);
        return ct_fail(at, "got multiple values for keyword argument '%.*s'", (int)kl, k);
    }
    return ct_obj_set(r, a->kw.u.o, k, kl, v);
}

int ct_eval_args(struct ct_render *r, struct ct_node *const *args, size_t n, struct ct_env *env,
                 struct ct_args *out) {
    int rc = 0;
    memset(out, 0, sizeof(*out));
    out->kw = ct_undef();
    /* positional arguments first, then keyword arguments, as evaluateArguments does */
    for (size_t i = 0; i < n; i++) {
        const struct ct_node *a = args[i];
        struct ct_value v;
        if (a->kind == N_KWARG || a->kind == N_KWSPREAD) continue;
        if ((rc = ct_eval(r, a->kind == N_SPREAD ? a->a : a, env, &v))) goto fail;
        if (a->kind == N_SPREAD) {
            if (v.t != V_ARR) {
                rc = ct_fail(a, "cannot unpack non-iterable type: %s", ct_type_name(v));
                ct_release(v);
                goto fail;
            }
            for (size_t k = 0; k < v.u.a->n && !rc; k++) rc = args_push(r, out, ct_ref(v.u.a->it[k]));
            ct_release(v);
            if (rc) goto fail;
        } else if ((rc = args_push(r, out, v))) {
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct ct_node *a = args[i];
        struct ct_value v;
        if (a->kind != N_KWARG && a->kind != N_KWSPREAD) continue;
        if ((rc = ct_eval(r, a->a, env, &v))) goto fail;
        if (a->kind == N_KWARG) {
            if ((rc = kw_add(r, a, out, a->name, a->name_len, v))) goto fail;
            continue;
        }
        if (!ct_is_objval(v)) {
            rc = ct_fail(a, "argument after ** must be a mapping, not %s", ct_type_name(v));
            ct_release(v);
            goto fail;
        }
        for (size_t k = 0; k < v.u.o->n && !rc; k++)
            rc = kw_add(r, a, out, v.u.o->k[k]->s, v.u.o->k[k]->len, ct_ref(v.u.o->v[k]));
        ct_release(v);
        if (rc) goto fail;
    }
    return 0;
fail:
    ct_args_free(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Macros and call blocks */

static int enter(struct ct_render *r, const struct ct_node *n) {
    int rc;
    if (++r->depth > CT_MAX_EVAL_DEPTH) return ct_fail(n, "template evaluation nests too deeply (recursion?)");
    if ((rc = ct_charge(r, 1))) return rc;
    return 0;
}

/* bindMacroArguments(): parameters from positional, then keyword arguments; defaults are
 * evaluated last, in the macro's scope (so they may use earlier parameters). */
static int bind_params(struct ct_render *r, const struct ct_node *at, const char *display,
                       struct ct_node *const *params, size_t np, int flags, struct ct_args *args,
                       struct ct_env *scope) {
    int rc = 0;
    size_t nkw = args->kw.t == V_OBJ ? args->kw.u.o->n : 0;
    unsigned char *used = nkw ? calloc(nkw, 1) : NULL;
    if (nkw && !used) return FOLIO_ENOMEM;
    for (size_t i = 0; i < np; i++) {
        const struct ct_node *p = params[i];
        struct ct_value v = ct_undef();
        if (i < args->npos) {
            v = ct_ref(args->pos[i]);
        } else {
            for (size_t k = 0; k < nkw; k++)
                if (!used[k] && args->kw.u.o->k[k]->len == p->name_len &&
                    !memcmp(args->kw.u.o->k[k]->s, p->name, p->name_len)) {
                    used[k] = 1;
                    v = ct_ref(args->kw.u.o->v[k]);
                    break;
                }
        }
        if ((rc = ct_env_set(r, scope, p->name, p->name_len, v))) goto out;
    }
    if (flags & CT_USES_KWARGS) {
        struct ct_value kw;
        if ((rc = ct_obj_new(r, O_OBJECT, &kw))) goto out;
        for (size_t k = 0; k < nkw && !rc; k++)
            if (!used[k])
                rc = ct_obj_set(r, kw.u.o, args->kw.u.o->k[k]->s, args->kw.u.o->k[k]->len,
                                ct_ref(args->kw.u.o->v[k]));
        if (rc) { ct_release(kw); goto out; }
        if ((rc = ct_env_set(r, scope, "kwargs", 6, kw))) goto out;
    } else {
        for (size_t k = 0; k < nkw; k++)
            if (!used[k]) {
                rc = ct_fail(at, "macro %s takes no keyword argument '%s'", display, args->kw.u.o->k[k]->s);
                goto out;
            }
    }
    if (flags & CT_USES_VARARGS) {
        struct ct_value va;
        size_t extra = args->npos > np ? args->npos - np : 0;
        if ((rc = ct_arr_new(r, extra, &va))) goto out;
        for (size_t k = 0; k < extra; k++) va.u.a->it[k] = ct_ref(args->pos[np + k]);
        if ((rc = ct_arr_finish(va)) || (rc = ct_env_set(r, scope, "varargs", 7, va))) {
            if (rc != FOLIO_ENOMEM) ct_release(va);
            goto out;
        }
    } else if (args->npos > np) {
        rc = ct_fail(at, "macro %s takes not more than %zu argument(s)", display, np);
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        const struct ct_node *p = params[i];
        if (p->kind != N_KWARG) continue;
        int given = i < args->npos;
        for (size_t k = 0; !given && k < nkw; k++)
            if (used[k] && args->kw.u.o->k[k]->len == p->name_len &&
                !memcmp(args->kw.u.o->k[k]->s, p->name, p->name_len))
                given = 1;
        if (given) continue;
        struct ct_value v;
        if ((rc = ct_eval(r, p->a, scope, &v))) goto out;
        if ((rc = ct_env_set(r, scope, p->name, p->name_len, v))) goto out;
    }
out:
    free(used);
    return rc;
}

static int render_body(struct ct_render *r, struct ct_node *const *body, size_t n, struct ct_env *env,
                       struct ct_value *out) {
    struct sbuf b = {0};
    int rc = ct_exec_block(r, body, n, env, &b);
    if (rc) {
        free(b.p);
        return rc;
    }
    return ct_mkstr_buf(r, &b, out);
}

static int call_macro(struct ct_render *r, const struct ct_node *at, const struct ct_fn *f,
                      struct ct_args *args, struct ct_env *env, struct ct_value *out) {
    int rc;
    const struct ct_node *m = f->node;
    struct ct_env scope = {.parent = env};
    if (++r->macro_depth > CT_MAX_MACRO_DEPTH) {
        rc = ct_fail(at, "macro calls nest deeper than %d (infinite recursion?)", CT_MAX_MACRO_DEPTH);
        goto out;
    }
    char display[80];
    if (f->kind == F_MACRO) {
        snprintf(display, sizeof(display), "'%.*s'", (int)(m->name_len > 60 ? 60 : m->name_len), m->name);
        if ((rc = bind_params(r, at, display, m->v, m->nv, m->flags, args, &scope))) goto out;
        rc = render_body(r, m->w, m->nw, &scope, out);
    } else {
        /* caller(): valid only while its call block runs */
        struct ct_call_frame *fr = r->frames;
        while (fr && fr->serial != f->serial) fr = fr->prev;
        if (!fr) {
            rc = ct_fail(at, "'caller' used outside its call block");
            goto out;
        }
        scope.parent = f->env;
        if ((rc = bind_params(r, at, "None", m->v, m->nv, m->flags, args, &scope))) goto out;
        rc = render_body(r, m->w, m->nw, &scope, out);
    }
out:
    r->macro_depth--;
    ct_env_clear(&scope);
    return rc;
}

int ct_call(struct ct_render *r, const struct ct_node *at, struct ct_value fn, struct ct_args *args,
            struct ct_env *env, struct ct_value *out) {
    if (fn.t != V_FN)
        return ct_fail(at, "cannot call something that is not a function: got %s", ct_type_name(fn));
    switch (fn.u.f->kind) {
    case F_MACRO: case F_CALLER: return call_macro(r, at, fn.u.f, args, env, out);
    default: return ct_call_builtin(r, at, fn.u.f, args, out);
    }
}

static int exec_callblock(struct ct_render *r, const struct ct_node *n, struct ct_env *env,
                          struct ct_value *out) {
    int rc;
    struct ct_args args;
    struct ct_value callee = ct_undef(), caller;
    struct ct_env scope = {.parent = env};
    struct ct_call_frame frame = {.serial = ++r->next_serial, .prev = r->frames};
    if ((rc = ct_fn_new(r, F_CALLER, 0, &caller))) return rc;
    caller.u.f->node = n;
    caller.u.f->env = env;
    caller.u.f->serial = frame.serial;
    if ((rc = ct_eval_args(r, n->a->v, n->a->nv, env, &args))) {
        ct_release(caller);
        return rc;
    }
    /* the reference always passes the keyword-arguments object, even when empty */
    if (args.kw.t == V_UNDEF && (rc = ct_obj_new(r, O_KWARGS, &args.kw))) goto out;
    if ((rc = ct_eval(r, n->a->a, env, &callee))) goto out;
    if (callee.t != V_FN) {
        rc = ct_fail(n, "cannot call something that is not a function: got %s", ct_type_name(callee));
        goto out;
    }
    if ((rc = ct_env_set(r, &scope, "caller", 6, caller))) {
        caller = ct_undef();
        goto out;
    }
    caller = ct_undef();
    r->frames = &frame;
    rc = ct_call(r, n, callee, &args, &scope, out);
    r->frames = frame.prev;
out:
    ct_release(caller);
    ct_release(callee);
    ct_args_free(&args);
    ct_env_clear(&scope);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Expressions */

static int index_value(struct ct_render *r, struct ct_value obj, double idx, struct ct_value *out) {
    /* Array.prototype.at / String.prototype.at: truncated index, negative from the end */
    if (isnan(idx)) idx = 0;
    idx = trunc(idx);
    if (obj.t == V_ARR) {
        double len = (double)obj.u.a->n;
        if (idx < 0) idx += len;
        if (idx < 0 || idx >= len) { *out = ct_undef(); return 0; }
        *out = ct_ref(obj.u.a->it[(size_t)idx]);
        return 0;
    }
    const char *s = obj.u.s->s;
    size_t n = obj.u.s->len;
    double len = (double)ct_utf16_len(s, n);
    if (idx < 0) idx += len;
    if (idx < 0 || idx >= len) { *out = ct_undef(); return 0; }
    size_t want = (size_t)idx, unit = 0, i = 0;
    while (i < n) {
        size_t st = i;
        int cp = ct_utf8_next(s, n, &i);
        size_t w = cp >= 0x10000 ? 2 : 1;
        if (want < unit + w) {
            if (cp >= 0x10000) return ct_mkstr(r, "\xEF\xBF\xBD", 3, out); /* half a surrogate pair */
            return ct_mkstr(r, s + st, i - st, out);
        }
        unit += w;
    }
    *out = ct_undef();
    return 0;
}

static int eval_slice(struct ct_render *r, const struct ct_node *sl, struct ct_value obj,
                      struct ct_env *env, struct ct_value *out) {
    int rc;
    struct ct_value v[3] = {ct_undef(), ct_undef(), ct_undef()};
    const struct ct_node *parts[3] = {sl->a, sl->b, sl->c};
    size_t *offs = NULL, count;
    if (obj.t != V_ARR && obj.t != V_STR) return ct_fail(sl, "slice object must be an array or string");
    for (int i = 0; i < 3; i++) {
        if (parts[i] && (rc = ct_eval(r, parts[i], env, &v[i]))) goto out;
        if (v[i].t != V_UNDEF && v[i].t != V_INT) {
            rc = ct_fail(sl, "slice %s must be numeric or undefined", i == 0 ? "start" : i == 1 ? "stop" : "step");
            goto out;
        }
    }
    if (obj.t == V_ARR) {
        count = obj.u.a->n;
    } else { /* Array.from(string): code points */
        const char *s = obj.u.s->s;
        size_t n = obj.u.s->len, i = 0;
        offs = malloc((n + 1) * sizeof(*offs));
        if (!offs) { rc = FOLIO_ENOMEM; goto out; }
        count = 0;
        while (i < n) {
            offs[count++] = i;
            ct_utf8_next(s, n, &i);
        }
        offs[count] = n;
    }
    double len = (double)count, step = v[2].t == V_INT ? v[2].u.n : 1;
    double start, stop;
    int has_start = v[0].t == V_INT, has_stop = v[1].t == V_INT;
    double dir = step > 0 ? 1 : step < 0 ? -1 : 0;
    if (isnan(step)) dir = NAN;
    if (dir >= 0) {
        start = !has_start ? 0 : v[0].u.n < 0 ? fmax(len + v[0].u.n, 0) : fmin(v[0].u.n, len);
        stop = !has_stop ? len : v[1].u.n < 0 ? fmax(len + v[1].u.n, 0) : fmin(v[1].u.n, len);
    } else {
        start = !has_start ? len - 1 : v[0].u.n < 0 ? fmax(len + v[0].u.n, -1) : fmin(v[0].u.n, len - 1);
        stop = !has_stop ? -1 : v[1].u.n < -1 ? fmax(len + v[1].u.n, -1) : fmin(v[1].u.n, len - 1);
    }
    if (has_start && isnan(v[0].u.n)) start = NAN;
    if (has_stop && isnan(v[1].u.n)) stop = NAN;
    size_t nout = 0;
    if (!isnan(start) && !isnan(stop) && !isnan(dir) && dir != 0)
        for (double i = start; dir * i < dir * stop; i += step) nout++;
    if (obj.t == V_ARR) {
        if ((rc = ct_arr_new(r, nout, out))) goto out;
        size_t k = 0;
        if (nout)
            for (double i = start; dir * i < dir * stop; i += step) out->u.a->it[k++] = ct_ref(obj.u.a->it[(size_t)i]);
        out->u.a->depth = obj.u.a->depth;
    } else {
        struct sbuf b = {0};
        if (nout)
            for (double i = start; dir * i < dir * stop; i += step) {
                size_t ci = (size_t)i;
                if ((rc = ct_buf_put(r, &b, obj.u.s->s + offs[ci], offs[ci + 1] - offs[ci]))) {
                    free(b.p);
                    goto out;
                }
            }
        rc = ct_mkstr_buf(r, &b, out);
    }
out:
    free(offs);
    for (int i = 0; i < 3; i++) ct_release(v[i]);
    return rc;
}

static int eval_member(struct ct_render *r, const struct ct_node *n, struct ct_env *env, struct ct_value *out) {
    int rc;
    struct ct_value obj, prop = ct_undef();
    const char *pname = NULL;
    size_t plen = 0;
    double pidx = 0;
    int ptype; /* V_STR, V_INT or other */
    if ((rc = ct_eval(r, n->a, env, &obj))) return rc;
    if (n->op) {
        if (n->b->kind == N_SLICE) {
            rc = eval_slice(r, n->b, obj, env, out);
            ct_release(obj);
            return rc;
        }
        if ((rc = ct_eval(r, n->b, env, &prop))) goto out;
        ptype = prop.t;
        if (prop.t == V_STR) { pname = prop.u.s->s; plen = prop.u.s->len; }
        if (prop.t == V_INT) pidx = prop.u.n;
    } else if (n->b->kind == N_INT) {
        ptype = V_INT;
        pidx = n->b->num;
    } else {
        ptype = V_STR;
        pname = n->b->name;
        plen = n->b->name_len;
    }
    *out = ct_undef();
    if (obj.t == V_OBJ) {
        if (ptype != V_STR) {
            rc = ct_fail(n, "cannot access property with non-string: got %s", ct_type_name(prop));
            goto out;
        }
        struct ct_value *v = ct_obj_get(obj.u.o, pname, plen);
        if (v) *out = ct_ref(*v);
        else if (ct_is_objval(obj)) rc = ct_member_builtin(r, obj, pname, plen, out);
    } else if (obj.t == V_ARR || obj.t == V_STR) {
        if (ptype == V_INT) rc = index_value(r, obj, pidx, out);
        else if (ptype == V_STR) rc = ct_member_builtin(r, obj, pname, plen, out);
        else rc = ct_fail(n, "cannot access property with non-string/non-number: got %s", ct_type_name(prop));
    } else if (ptype != V_STR) {
        rc = ct_fail(n, "cannot access property with non-string: got %s", ct_type_name(prop));
    }
out:
    ct_release(obj);
    ct_release(prop);
    return rc;
}

static int str_concat(struct ct_render *r, struct ct_value a, struct ct_value b, struct ct_value *out) {
    struct sbuf buf = {0};
    int rc;
    if ((rc = ct_raw(r, a, &buf)) || (rc = ct_raw(r, b, &buf))) {
        free(buf.p);
        return rc;
    }
    return ct_mkstr_buf(r, &buf, out);
}

static int contains(const struct ct_str *hay, const struct ct_str *needle) {
    if (needle->len == 0) return 1;
    if (needle->len > hay->len) return 0;
    return memmem(hay->s, hay->len, needle->s, needle->len) != NULL;
}

static const char *op_name(int op) {
    static const char *names[] = {
        [OP_AND] = "and", [OP_OR] = "or", [OP_EQ] = "==", [OP_NE] = "!=", [OP_LT] = "<",
        [OP_GT] = ">", [OP_LE] = "<=", [OP_GE] = ">=", [OP_IN] = "in", [OP_NOTIN] = "not in",
        [OP_ADD] = "+", [OP_SUB] = "-", [OP_CONCAT] = "~", [OP_MUL] = "*", [OP_DIV] = "/",
        [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "**",
    };
    return op < (int)(sizeof(names) / sizeof(names[0])) && names[op] ? names[op] : "?";
}

static int binary(struct ct_render *r, const struct ct_node *n, struct ct_value a, struct ct_value b,
                  struct ct_value *out) {
    int op = n->op;
    switch (op) {
    case OP_EQ: *out = ct_bool(ct_loose_eq(r, a, b)); return 0;
    case OP_NE: *out = ct_bool(!ct_loose_eq(r, a, b)); return 0;
    default: break;
    }
    if (a.t == V_UNDEF || b.t == V_UNDEF) {
        if (b.t == V_UNDEF && (op == OP_IN || op == OP_NOTIN)) {
            *out = ct_bool(op == OP_NOTIN);
            return 0;
        }
        return ct_fail(n, "cannot perform operation %s on undefined values", op_name(op));
    }
    if (a.t == V_NULL || b.t == V_NULL) return ct_fail(n, "cannot perform operation %s on none values", op_name(op));
    if (op == OP_CONCAT) return str_concat(r, a, b, out);
    int anl = ct_is_num(a) || a.t == V_BOOL, bnl = ct_is_num(b) || b.t == V_BOOL;
    if (op == OP_POW && anl && bnl) {
        double x = a.t == V_BOOL ? a.u.b : a.u.n, y = b.t == V_BOOL ? b.u.b : b.u.n;
        if (x == 0 && y < 0) return ct_fail(n, "0.0 cannot be raised to a negative power");
        double res = pow(x, y);
        if (isnan(x) || isnan(y) || (fabs(x) == 1 && isinf(y))) res = NAN; /* JS, unlike C */
        if (!isfinite(res)) return ct_fail(n, "exponentiation result is not a finite real number");
        *out = (a.t == V_FLOAT || b.t == V_FLOAT || y < 0) ? ct_float(res) : ct_int(res);
        return 0;
    }
    if (ct_is_num(a) && ct_is_num(b)) {
        double x = a.u.n, y = b.u.n;
        int fl = a.t == V_FLOAT || b.t == V_FLOAT;
        switch (op) {
        case OP_ADD: *out = fl ? ct_float(x + y) : ct_int(x + y); return 0;
        case OP_SUB: *out = fl ? ct_float(x - y) : ct_int(x - y); return 0;
        case OP_MUL: *out = fl ? ct_float(x * y) : ct_int(x * y); return 0;
        case OP_DIV: *out = ct_float(x / y); return 0;
        case OP_FLOORDIV: *out = fl ? ct_float(floor(x / y)) : ct_int(floor(x / y)); return 0;
        case OP_MOD: *out = fl ? ct_float(fmod(x, y)) : ct_int(fmod(x, y)); return 0;
        case OP_LT: *out = ct_bool(x < y); return 0;
        case OP_GT: *out = ct_bool(x > y); return 0;
        case OP_GE: *out = ct_bool(x >= y); return 0;
        case OP_LE: *out = ct_bool(x <= y); return 0;
        default: break;
        }
    } else if (a.t == V_ARR && b.t == V_ARR) {
        if (op == OP_ADD) {
            int rc;
            size_t na = a.u.a->n, nb = b.u.a->n;
            if (na + nb > CT_MAX_ITEMS) return ct_fail(n, "a list exceeds %u items", CT_MAX_ITEMS);
            if ((rc = ct_arr_new(r, na + nb, out))) return rc;
            for (size_t i = 0; i < na; i++) out->u.a->it[i] = ct_ref(a.u.a->it[i]);
            for (size_t i = 0; i < nb; i++) out->u.a->it[na + i] = ct_ref(b.u.a->it[i]);
            out->u.a->depth = a.u.a->depth > b.u.a->depth ? a.u.a->depth : b.u.a->depth;
            return 0;
        }
    } else if (b.t == V_ARR) {
        if (op == OP_IN || op == OP_NOTIN) {
            int found = 0;
            for (size_t i = 0; i < b.u.a->n && !found; i++) found = ct_strict_eq(b.u.a->it[i], a);
            *out = ct_bool(op == OP_IN ? found : !found);
            return 0;
        }
    }
    if ((a.t == V_STR || b.t == V_STR) && op == OP_ADD) return str_concat(r, a, b, out);
    if (a.t == V_STR && b.t == V_STR && (op == OP_IN || op == OP_NOTIN)) {
        int c = contains(b.u.s, a.u.s);
        *out = ct_bool(op == OP_IN ? c : !c);
        return 0;
    }
    if (a.t == V_STR && ct_is_objval(b) && (op == OP_IN || op == OP_NOTIN)) {
        int c = ct_obj_get(b.u.o, a.u.s->s, a.u.s->len) != NULL;
        *out = ct_bool(op == OP_IN ? c : !c);
        return 0;
    }
    return ct_fail(n, "unknown operator \"%s\" between %s and %s", op_name(op), ct_type_name(a), ct_type_name(b));
}

int ct_eval(struct ct_render *r, const struct ct_node *n, struct ct_env *env, struct ct_value *out) {
    int rc;
    struct ct_value a = ct_undef(), b = ct_undef();
    *out = ct_undef();
    if (!n) return 0;
    if ((rc = enter(r, n))) goto out;
    switch (n->kind) {
    case N_STR:
        out->t = V_STR;
        out->u.s = n->str;
        break;
    case N_INT: *out = ct_int(n->num); break;
    case N_FLOAT: *out = ct_float(n->num); break;
    case N_IDENT: *out = ct_ref(ct_lookup(env, n->name, n->name_len)); break;
    case N_ARRAY: case N_TUPLE:
        if ((rc = ct_arr_new(r, n->nv, &a))) goto out;
        a.u.a->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->nv; i++)
            if ((rc = ct_eval(r, n->v[i], env, &a.u.a->it[i]))) goto out;
        if ((rc = ct_arr_finish(a))) goto out;
        *out = a;
        a = ct_undef();
        break;
    case N_OBJECT:
        if ((rc = ct_obj_new(r, O_OBJECT, &a))) goto out;
        for (size_t i = 0; i < n->nv; i++) {
            struct ct_value k, v;
            if ((rc = ct_eval(r, n->v[i], env, &k))) goto out;
            if (k.t != V_STR) {
                rc = ct_fail(n, "object keys must be strings: got %s", ct_type_name(k));
                ct_release(k);
                goto out;
            }
            if ((rc = ct_eval(r, n->w[i], env, &v))) { ct_release(k); goto out; }
            rc = ct_obj_set(r, a.u.o, k.u.s->s, k.u.s->len, v);
            ct_release(k);
            if (rc) goto out;
        }
        *out = a;
        a = ct_undef();
        break;
    case N_MEMBER: rc = eval_member(r, n, env, out); break;
    case N_CALL: {
        struct ct_args args;
        if ((rc = ct_eval_args(r, n->v, n->nv, env, &args))) goto out;
        if ((rc = ct_eval(r, n->a, env, &a)) == 0) rc = ct_call(r, n, a, &args, env, out);
        ct_args_free(&args);
        break;
    }
    case N_UNARY:
        if ((rc = ct_eval(r, n->a, env, &a))) goto out;
        if (n->op == OP_NOT) {
            *out = ct_bool(!ct_truthy(a));
        } else if (ct_is_num(a) || a.t == V_BOOL) {
            double x = a.t == V_BOOL ? a.u.b : a.u.n, y = n->op == OP_NEG ? -1 * x : x;
            *out = a.t == V_FLOAT ? ct_float(y) : ct_int(y);
        } else {
            rc = ct_fail(n, "unknown operator \"%s\" for %s", n->op == OP_NEG ? "-" : "+", ct_type_name(a));
        }
        break;
    case N_BINARY:
        if ((rc = ct_eval(r, n->a, env, &a))) goto out;
        if (n->op == OP_AND || n->op == OP_OR) {
            int t = ct_truthy(a);
            if ((n->op == OP_AND) == !!t) {
                rc = ct_eval(r, n->b, env, out);
            } else {
                *out = a;
                a = ct_undef();
            }
            break;
        }
        if ((rc = ct_eval(r, n->b, env, &b))) goto out;
        rc = binary(r, n, a, b, out);
        break;
    case N_FILTER:
        if ((rc = ct_eval(r, n->a, env, &a))) goto out;
        rc = ct_apply_filter(r, a, n->b, env, out);
        break;
    case N_TEST: {
        int res;
        if ((rc = ct_eval(r, n->a, env, &a))) goto out;
        rc = ct_run_test(n, n->name, n->name_len, a, NULL, &res);
        if (rc == 1) rc = ct_fail(n, "unknown test: %.*s", (int)n->name_len, n->name);
        if (!rc) *out = ct_bool(n->op ? !res : res);
        break;
    }
    case N_SELECT:
        if ((rc = ct_eval(r, n->b, env, &a))) goto out;
        if (ct_truthy(a)) rc = ct_eval(r, n->a, env, out);
        break;
    case N_TERNARY:
        if ((rc = ct_eval(r, n->a, env, &a))) goto out;
        rc = ct_eval(r, ct_truthy(a) ? n->b : n->c, env, out);
        break;
    default:
        rc = ct_fail(n, "unexpected expression here");
        break;
    }
out:
    ct_release(a);
    ct_release(b);
    r->depth--;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Statements */

/* Binds a loop / set target: a name, or a tuple of names unpacking an array. */
static int check_unpack(const struct ct_node *at, const struct ct_node *target, struct ct_value v, int for_loop) {
    if (target->kind != N_TUPLE) return 0;
    if (for_loop ? (v.t != V_ARR || v.u.a->tuple) : v.t != V_ARR)
        return ct_fail(at, "cannot unpack non-iterable type: %s", ct_type_name(v));
    if (v.u.a->n != target->nv)
        return ct_fail(at, "too %s items to unpack", target->nv > v.u.a->n ? "few" : "many");
    return 0;
}

static int bind_target(struct ct_render *r, const struct ct_node *at, const struct ct_node *target,
                       struct ct_value v, struct ct_env *env) {
    int rc;
    if (target->kind == N_IDENT) return ct_env_set(r, env, target->name, target->name_len, ct_ref(v));
    for (size_t j = 0; j < target->nv; j++) {
        const struct ct_node *e = target->v[j];
        if (e->kind != N_IDENT) return ct_fail(at, "cannot unpack to a non-identifier");
        if ((rc = ct_env_set(r, env, e->name, e->name_len, ct_ref(v.u.a->it[j])))) return rc;
    }
    return 0;
}

static int make_loop(struct ct_render *r, struct ct_value *items, size_t n, size_t i, struct ct_value *out) {
    int rc;
    if ((rc = ct_obj_new(r, O_OBJECT, out))) return rc;
    struct ct_obj *o = out->u.o;
    if ((rc = ct_obj_set(r, o, "index", 5, ct_int((double)i + 1))) ||
        (rc = ct_obj_set(r, o, "index0", 6, ct_int((double)i))) ||
        (rc = ct_obj_set(r, o, "revindex", 8, ct_int((double)(n - i)))) ||
        (rc = ct_obj_set(r, o, "revindex0", 9, ct_int((double)(n - i - 1)))) ||
        (rc = ct_obj_set(r, o, "first", 5, ct_bool(i == 0))) ||
        (rc = ct_obj_set(r, o, "last", 4, ct_bool(i == n - 1))) ||
        (rc = ct_obj_set(r, o, "length", 6, ct_int((double)n))) ||
        (rc = ct_obj_set(r, o, "previtem", 8, i > 0 ? ct_ref(items[i - 1]) : ct_undef())) ||
        (rc = ct_obj_set(r, o, "nextitem", 8, i + 1 < n ? ct_ref(items[i + 1]) : ct_undef()))) {
        ct_clear(out);
        return rc;
    }
    return 0;
}

static int exec_for(struct ct_render *r, const struct ct_node *n, struct ct_env *env, struct sbuf *buf) {
    int rc;
    struct ct_env scope = {.parent = env};
    struct ct_value it = ct_undef();
    const struct ct_node *test = NULL;
    struct ct_value *items = NULL;
    size_t nitems = 0;
    if (n->b->kind == N_SELECT) {
        rc = ct_eval(r, n->b->a, &scope, &it);
        test = n->b->b;
    } else {
        rc = ct_eval(r, n->b, &scope, &it);
    }
    if (rc) goto out;
    if (!(it.t == V_ARR || ct_is_objval(it))) {
        rc = ct_fail(n, "expected iterable or object type in for loop: got %s", ct_type_name(it));
        goto out;
    }
    size_t total = it.t == V_ARR ? it.u.a->n : it.u.o->n;
    items = malloc((total ? total : 1) * sizeof(*items));
    if (!items) { rc = FOLIO_ENOMEM; goto out; }
    for (size_t i = 0; i < total; i++) {
        struct ct_value cur;
        if (it.t == V_ARR) {
            cur = ct_ref(it.u.a->it[i]);
        } else {
            cur.t = V_STR;
            cur.u.s = it.u.o->k[i];
            ct_retain(cur);
        }
        if ((rc = ct_charge(r, 1)) || (rc = check_unpack(n, n->a, cur, 1))) {
            ct_release(cur);
            goto out;
        }
        if (test) {
            struct ct_env ls = {.parent = &scope};
            struct ct_value tv;
            if ((rc = bind_target(r, n, n->a, cur, &ls)) == 0 && (rc = ct_eval(r, test, &ls, &tv)) == 0) {
                int keep = ct_truthy(tv);
                ct_release(tv);
                ct_env_clear(&ls);
                if (!keep) {
                    ct_release(cur);
                    continue;
                }
            } else {
                ct_env_clear(&ls);
                ct_release(cur);
                goto out;
            }
        }
        items[nitems++] = cur;
    }
    int no_iteration = 1;
    for (size_t i = 0; i < nitems; i++) {
        struct ct_value loop;
        if ((rc = ct_charge(r, 1)) || (rc = make_loop(r, items, nitems, i, &loop))) goto out;
        if ((rc = ct_env_set(r, &scope, "loop", 4, loop))) goto out;
        if ((rc = bind_target(r, n, n->a, items[i], &scope))) goto out;
        size_t mark = buf->n;
        rc = ct_exec_block(r, n->v, n->nv, &scope, buf);
        if (rc == CT_CONTINUE || rc == CT_BREAK) {
            /* the reference throws: the iteration's partial output is lost */
            buf->n = mark;
            if (buf->p) buf->p[mark] = '\0';
            if (rc == CT_BREAK) { rc = 0; break; }
            rc = 0;
            continue;
        }
        if (rc) goto out;
        no_iteration = 0;
    }
    if (no_iteration) rc = ct_exec_block(r, n->w, n->nw, &scope, buf);
out:
    for (size_t i = 0; i < nitems; i++) ct_release(items[i]);
    free(items);
    ct_release(it);
    ct_env_clear(&scope);
    return rc;
}

static int exec_set(struct ct_render *r, const struct ct_node *n, struct ct_env *env) {
    int rc;
    struct ct_value rhs, obj = ct_undef();
    const struct ct_node *t = n->a;
    if (n->b) rc = ct_eval(r, n->b, env, &rhs);
    else rc = render_body(r, n->v, n->nv, env, &rhs);
    if (rc) return rc;
    if (t->kind == N_IDENT) return ct_env_set(r, env, t->name, t->name_len, rhs);
    if (t->kind == N_TUPLE) {
        if ((rc = check_unpack(n, t, rhs, 0)) == 0) rc = bind_target(r, n, t, rhs, env);
        ct_release(rhs);
        return rc;
    }
    if (t->kind != N_MEMBER) {
        ct_release(rhs);
        return ct_fail(n, "invalid left-hand side of assignment");
    }
    if ((rc = ct_eval(r, t->a, env, &obj))) goto out;
    if (!ct_is_ns(obj)) {
        rc = ct_fail(n, "cannot assign attribute on non-namespace object");
        goto out;
    }
    if (t->b->kind != N_IDENT) {
        rc = ct_fail(n, "cannot assign to member with non-identifier property");
        goto out;
    }
    rc = ct_obj_set(r, obj.u.o, t->b->name, t->b->name_len, rhs);
    rhs = ct_undef();
out:
    ct_release(rhs);
    ct_release(obj);
    return rc;
}

static int exec_stmt(struct ct_render *r, const struct ct_node *n, struct ct_env *env, struct sbuf *buf) {
    int rc;
    struct ct_value v = ct_undef(), t;
    switch (n->kind) {
    case S_COMMENT: return 0;
    case S_BREAK: return CT_BREAK;
    case S_CONTINUE: return CT_CONTINUE;
    case N_STR: /* text: the hot path */
        return ct_buf_put(r, buf, n->str->s, n->str->len);
    default: break;
    }
    if ((rc = enter(r, n))) goto out;
    switch (n->kind) {
    case S_IF:
        if ((rc = ct_eval(r, n->a, env, &t))) goto out;
        rc = ct_truthy(t) ? ct_exec_block(r, n->v, n->nv, env, buf) : ct_exec_block(r, n->w, n->nw, env, buf);
        ct_release(t);
        break;
    case S_FOR: rc = exec_for(r, n, env, buf); break;
    case S_SET: rc = exec_set(r, n, env); break;
    case S_MACRO:
        if ((rc = ct_fn_new(r, F_MACRO, 0, &v))) goto out;
        v.u.f->node = n;
        rc = ct_env_set(r, env, n->name, n->name_len, v);
        v = ct_undef();
        break;
    case S_CALLBLOCK:
        if ((rc = exec_callblock(r, n, env, &v))) goto out;
        rc = ct_print(r, v, buf);
        break;
    case S_FILTERBLOCK: {
        struct ct_value body;
        if ((rc = render_body(r, n->v, n->nv, env, &body))) goto out;
        rc = ct_apply_filter(r, body, n->a, env, &v);
        ct_release(body);
        if (!rc) rc = ct_print(r, v, buf);
        break;
    }
    default: /* {{ expression }} */
        if ((rc = ct_eval(r, n, env, &v))) goto out;
        rc = ct_print(r, v, buf);
        break;
    }
out:
    ct_release(v);
    r->depth--;
    return rc;
}

int ct_exec_block(struct ct_render *r, struct ct_node *const *body, size_t n, struct ct_env *env,
                  struct sbuf *out) {
    int rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = exec_stmt(r, body[i], env, out))) return rc;
    return 0;
}
