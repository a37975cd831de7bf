/* ct_builtins: filters, tests, string and dict methods, and the global functions
 * (raise_exception, range, namespace, strftime_now), each as @huggingface/jinja defines it.
 *
 * The set is the reference's, not Python Jinja's: filters that the reference lacks (d, count,
 * select, reject, wordcount, batch, round, e/escape, ...) are errors here too, `strip`,
 * `lstrip` and `rstrip` ignore their argument and trim JS whitespace, `|int` floors, `|join`
 * joins String(value)s, and `|length` / `.length` count UTF-16 code units. A template that
 * renders under transformers.js renders the same here; one that fails there fails here. */
#include "chat_template/ct_internal.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * Argument access, JS style: args[i] counts the trailing keyword-arguments object as one more
 * positional argument, as the reference's function values see it. NULL means "not passed". */

static const struct ct_value *arg_js(const struct ct_args *a, size_t i) {
    if (i < a->npos) return &a->pos[i];
    if (i == a->npos && a->kw.t == V_OBJ) return &a->kw;
    return NULL;
}

static size_t nargs_js(const struct ct_args *a) { return a->npos + (a->kw.t == V_OBJ); }

static const struct ct_value *arg_pos(const struct ct_args *a, size_t i) {
    return i < a->npos ? &a->pos[i] : NULL;
}

static const struct ct_value *arg_kw(const struct ct_args *a, const char *name) {
    if (a->kw.t != V_OBJ) return NULL;
    return ct_obj_get(a->kw.u.o, name, strlen(name));
}

/* a ?? b ?? NULL */
static const struct ct_value *first_of(const struct ct_value *a, const struct ct_value *b) { return a ? a : b; }

/* JS truthiness of the raw .value (arrays and Maps are always true). */
static int js_truthy_raw(struct ct_value v) {
    if (v.t >= V_ARR) return 1;
    return ct_truthy(v);
}

static int mk_bool(int b, struct ct_value *out) {
    *out = ct_bool(b);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Strings */

static size_t trim_start(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = ct_js_space(s + i, s + n)) > 0) i += k;
    return i;
}

static size_t trim_end(const char *s, size_t n) {
    while (n > 0) {
        size_t w = 0;
        for (size_t t = 1; t <= 3 && t <= n; t++)
            if (ct_js_space(s + n - t, s + n) == t) { w = t; break; }
        if (!w) break;
        n -= w;
    }
    return n;
}

static int str_trim(struct ct_render *r, const struct ct_str *s, int start, int end, struct ct_value *out) {
    size_t b = start ? trim_start(s->s, s->len) : 0;
    size_t e = end ? trim_end(s->s, s->len) : s->len;
    if (e < b) e = b;
    return ct_mkstr(r, s->s + b, e - b, out);
}

static int is_word_ascii(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* value.replace(/\b\w/g, c => c.toUpperCase()): ASCII word starts only, the rest untouched. */
static int str_title(struct ct_render *r, const struct ct_str *s, struct ct_value *out) {
    struct sbuf b = {0};
    int rc;
    if ((rc = ct_buf_put(r, &b, s->s, s->len))) { free(b.p); return rc; }
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c >= 'a' && c <= 'z' && (i == 0 || !is_word_ascii((unsigned char)s->s[i - 1]))) b.p[i] = (char)(c - 32);
    }
    return ct_mkstr_buf(r, &b, out);
}

/* charAt(0).toUpperCase() + slice(1) */
static int str_capitalize(struct ct_render *r, const struct ct_str *s, struct ct_value *out) {
    struct sbuf b = {0};
    int rc = 0;
    if (s->len == 0) return ct_mkstr(r, "", 0, out);
    size_t i = 0;
    int cp = ct_utf8_next(s->s, s->len, &i);
    if (cp >= 0 && cp < 0x10000) rc = ct_case_map(r, s->s, i, 1, &b);
    else rc = ct_buf_put(r, &b, s->s, i); /* half of a surrogate pair: unchanged */
    if (!rc) rc = ct_buf_put(r, &b, s->s + i, s->len - i);
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int str_case(struct ct_render *r, const struct ct_str *s, int upper, struct ct_value *out) {
    struct sbuf b = {0};
    int rc = ct_case_map(r, s->s, s->len, upper, &b);
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int starts_ends(const struct ct_node *at, const struct ct_str *s, const struct ct_value *pat, int ends,
                       struct ct_value *out) {
    const char *fn = ends ? "endswith" : "startswith";
    if (!pat) return ct_fail(at, "%s() requires at least one argument", fn);
    if (pat->t == V_STR) {
        const struct ct_str *p = pat->u.s;
        int m = p->len <= s->len && !memcmp(s->s + (ends ? s->len - p->len : 0), p->s, p->len);
        return mk_bool(m, out);
    }
    if (pat->t == V_ARR) {
        for (size_t i = 0; i < pat->u.a->n; i++) {
            struct ct_value it = pat->u.a->it[i];
            if (it.t != V_STR) return ct_fail(at, "%s() tuple elements must be strings", fn);
            const struct ct_str *p = it.u.s;
            if (p->len <= s->len && !memcmp(s->s + (ends ? s->len - p->len : 0), p->s, p->len)) return mk_bool(1, out);
        }
        return mk_bool(0, out);
    }
    return ct_fail(at, "%s() argument must be a string or tuple of strings", fn);
}

static int push_str(struct ct_render *r, struct ct_value arr, size_t *n, const char *s, size_t len) {
    return ct_mkstr(r, s, len, &arr.u.a->it[(*n)++]);
}

/* Python's str.split(sep=None, maxsplit=-1) as the reference implements it. */
static int str_split(struct ct_render *r, const struct ct_node *at, const struct ct_str *s, const struct ct_args *a,
                     struct ct_value *out) {
    int rc;
    const struct ct_value *sepv = arg_js(a, 0), *msv = arg_js(a, 1);
    struct ct_value sep = sepv ? *sepv : ct_null();
    if (sep.t != V_STR && sep.t != V_NULL) return ct_fail(at, "sep argument must be a string or null");
    if (msv && msv->t != V_INT) return ct_fail(at, "maxsplit argument must be a number");
    double maxsplit = msv ? msv->u.n : -1;
    /* at most len+1 pieces */
    struct ct_value arr;
    size_t n = 0;
    if ((rc = ct_arr_new(r, s->len + 1, &arr))) return rc;
    if (sep.t == V_NULL) {
        size_t b = trim_start(s->s, s->len);
        const char *t = s->s + b;
        size_t tl = s->len - b, i = 0;
        while (i < tl) {
            size_t k;
            while (i < tl && (k = ct_js_space(t + i, t + tl)) > 0) i += k;
            if (i >= tl) break;
            size_t st = i;
            while (i < tl && ct_js_space(t + i, t + tl) == 0) i++;
            if (maxsplit != -1 && (double)n >= maxsplit) {
                if ((rc = push_str(r, arr, &n, t + st, tl - st))) goto fail;
                break;
            }
            if ((rc = push_str(r, arr, &n, t + st, i - st))) goto fail;
        }
    } else {
        const struct ct_str *p = sep.u.s;
        if (p->len == 0) { rc = ct_fail(at, "empty separator"); goto fail; }
        /* the JS split: every piece */
        size_t starts_cap = s->len / p->len + 2, npieces = 0;
        size_t *st = malloc(starts_cap * 2 * sizeof(size_t));
        if (!st) { rc = FOLIO_ENOMEM; goto fail; }
        size_t pos = 0;
        for (;;) {
            const char *f = p->len <= s->len - pos ? memmem(s->s + pos, s->len - pos, p->s, p->len) : NULL;
            size_t e = f ? (size_t)(f - s->s) : s->len;
            st[2 * npieces] = pos;
            st[2 * npieces + 1] = e;
            npieces++;
            if (!f) break;
            pos = e + p->len;
        }
        size_t keep = npieces;
        if (maxsplit != -1 && (double)npieces > maxsplit) {
            double k = maxsplit < 0 ? fmax((double)npieces + maxsplit, 0) : fmin(maxsplit, (double)npieces);
            keep = (size_t)k;
        }
        rc = 0;
        for (size_t i = 0; i < keep && !rc; i++) rc = push_str(r, arr, &n, s->s + st[2 * i], st[2 * i + 1] - st[2 * i]);
        if (!rc && keep < npieces) /* the rest, joined back with sep: the original text */
            rc = push_str(r, arr, &n, s->s + st[2 * keep], s->len - st[2 * keep]);
        free(st);
        if (rc) goto fail;
    }
    arr.u.a->n = n; /* the unused tail slots are undefined: nothing to release */
    *out = arr;
    return 0;
fail:
    arr.u.a->n = n;
    ct_release(arr);
    return rc;
}

static int str_replace(struct ct_render *r, const struct ct_node *at, const struct ct_str *s, const struct ct_args *a,
                       struct ct_value *out) {
    int rc = 0;
    if (nargs_js(a) < 2) return ct_fail(at, "replace() requires at least two arguments");
    const struct ct_value *ov = arg_js(a, 0), *nv = arg_js(a, 1);
    if (ov->t != V_STR || nv->t != V_STR) return ct_fail(at, "replace() arguments must be strings");
    struct ct_value count = ct_null();
    if (nargs_js(a) > 2) {
        const struct ct_value *c = arg_js(a, 2);
        if (c->t == V_OBJ && c->u.o->kind == O_KWARGS) {
            const struct ct_value *k = ct_obj_get(c->u.o, "count", 5);
            count = k ? *k : ct_null();
        } else {
            count = *c;
        }
    }
    if (count.t != V_INT && count.t != V_NULL) return ct_fail(at, "replace() count argument must be a number or null");
    if (count.t == V_INT && count.u.n == 0) return ct_mkstr(r, s->s, s->len, out);
    double remaining = count.t == V_NULL || count.u.n < 0 ? INFINITY : count.u.n;
    const struct ct_str *o = ov->u.s, *nw = nv->u.s;
    struct sbuf b = {0};
    if (o->len == 0) {
        /* /(?=)/gu: every code point boundary, both ends included */
        size_t i = 0;
        while (1) {
            if (remaining > 0) {
                remaining--;
                if ((rc = ct_buf_put(r, &b, nw->s, nw->len))) goto fail;
            }
            if (i >= s->len) break;
            size_t st = i;
            ct_utf8_next(s->s, s->len, &i);
            if ((rc = ct_buf_put(r, &b, s->s + st, i - st))) goto fail;
        }
    } else {
        size_t pos = 0;
        while (pos <= s->len) {
            const char *f = o->len <= s->len - pos ? memmem(s->s + pos, s->len - pos, o->s, o->len) : NULL;
            if (!f) break;
            size_t at_ = (size_t)(f - s->s);
            if ((rc = ct_buf_put(r, &b, s->s + pos, at_ - pos))) goto fail;
            if (remaining > 0) {
                remaining--;
                rc = ct_buf_put(r, &b, nw->s, nw->len);
            } else {
                rc = ct_buf_put(r, &b, o->s, o->len);
            }
            if (rc) goto fail;
            pos = at_ + o->len;
        }
        if ((rc = ct_buf_put(r, &b, s->s + pos, s->len - pos))) goto fail;
    }
    return ct_mkstr_buf(r, &b, out);
fail:
    free(b.p);
    return rc;
}

static int str_indent(struct ct_render *r, const struct ct_node *at, const struct ct_str *s, double width,
                      int first, int blank, struct ct_value *out) {
    int rc = 0;
    if (isnan(width)) width = 0;
    if (width < 0) return ct_fail(at, "invalid indent width");
    if (width > 4096) return ct_fail(at, "indent width too large");
    struct sbuf b = {0};
    size_t line = 0, st = 0;
    for (size_t i = 0; i <= s->len; i++) {
        if (i < s->len && s->s[i] != '\n') continue;
        size_t len = i - st;
        if (!((!first && line == 0) || (!blank && len == 0)))
            for (int k = 0; k < (int)width && !rc; k++) rc = ct_buf_put(r, &b, " ", 1);
        if (!rc) rc = ct_buf_put(r, &b, s->s + st, len);
        if (!rc && i < s->len) rc = ct_buf_put(r, &b, "\n", 1);
        if (rc) { free(b.p); return rc; }
        st = i + 1;
        line++;
    }
    return ct_mkstr_buf(r, &b, out);
}

/* ------------------------------------------------------------------------------------------
 * Sorting (stable merge sort, as V8's TimSort is stable) with a comparator that may fail */

struct sort_ctx {
    const struct ct_node *at;
    int case_sensitive, reverse;
    struct ct_render *r;
};

static int sort_cmp(struct sort_ctx *c, const struct ct_value *ka, const struct ct_value *kb, int *out) {
    int rc;
    if ((rc = ct_charge(c->r, 1))) return rc;
    if ((rc = ct_compare(c->at, *ka, *kb, c->case_sensitive, out))) return rc;
    if (c->reverse) *out = -*out;
    return 0;
}

/* sorts idx[0..n) by keys[idx[i]] */
static int merge_sort(struct sort_ctx *c, const struct ct_value *keys, size_t *idx, size_t *tmp, size_t n) {
    int rc;
    if (n < 2) return 0;
    size_t h = n / 2;
    if ((rc = merge_sort(c, keys, idx, tmp, h)) || (rc = merge_sort(c, keys, idx + h, tmp, n - h))) return rc;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int cmp;
        if ((rc = sort_cmp(c, &keys[idx[j]], &keys[idx[i]], &cmp))) return rc;
        tmp[k++] = cmp < 0 ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof(*idx));
    return 0;
}

/* A new array of items (references) ordered by keys. */
static int sorted(struct ct_render *r, struct sort_ctx *c, const struct ct_value *items,
                  const struct ct_value *keys, size_t n, struct ct_value *out) {
    int rc;
    size_t *idx = malloc((n ? n : 1) * sizeof(*idx)), *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!idx || !tmp) { rc = FOLIO_ENOMEM; goto out; }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    if ((rc = merge_sort(c, keys, idx, tmp, n))) goto out;
    if ((rc = ct_arr_new(r, n, out))) goto out;
    for (size_t i = 0; i < n; i++) out->u.a->it[i] = ct_ref(items[idx[i]]);
    rc = ct_arr_finish(*out);
    if (rc) ct_clear(out);
out:
    free(idx);
    free(tmp);
    return rc;
}

/* getAttributeValue(item, "a.b.0") */
static struct ct_value attr_path(struct ct_value item, const char *path, size_t len) {
    struct ct_value v = item;
    size_t st = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && path[i] != '.') continue;
        const char *part = path + st;
        size_t pl = i - st;
        st = i + 1;
        if (v.t == V_OBJ) {
            struct ct_value *x = ct_obj_get(v.u.o, part, pl);
            v = x ? *x : ct_undef();
        } else if (v.t == V_ARR) {
            double k = ct_parse_int(part, pl);
            if (isnan(k) || k < 0 || k >= (double)v.u.a->n) return ct_undef();
            v = v.u.a->it[(size_t)k];
        } else {
            return ct_undef();
        }
    }
    return v;
}

static int dictsort(struct ct_render *r, const struct ct_node *at, struct ct_obj *o, const struct ct_args *a,
                    struct ct_value *out) {
    int rc;
    const struct ct_value *cs = first_of(arg_pos(a, 0), arg_kw(a, "case_sensitive"));
    const struct ct_value *by = first_of(arg_pos(a, 1), arg_kw(a, "by"));
    const struct ct_value *rev = first_of(arg_pos(a, 2), arg_kw(a, "reverse"));
    if (cs && cs->t != V_BOOL) return ct_fail(at, "case_sensitive must be a boolean");
    if (by && by->t != V_STR) return ct_fail(at, "by must be a string");
    int by_value = 0;
    if (by) {
        if (by->u.s->len == 5 && !memcmp(by->u.s->s, "value", 5)) by_value = 1;
        else if (!(by->u.s->len == 3 && !memcmp(by->u.s->s, "key", 3))) return ct_fail(at, "by must be either 'key' or 'value'");
    }
    if (rev && rev->t != V_BOOL) return ct_fail(at, "reverse must be a boolean");
    struct ct_value *pairs = calloc(o->n ? o->n : 1, sizeof(*pairs)), *keys = calloc(o->n ? o->n : 1, sizeof(*keys));
    size_t made = 0;
    if (!pairs || !keys) { rc = FOLIO_ENOMEM; goto out; }
    for (; made < o->n; made++) {
        struct ct_value p;
        if ((rc = ct_arr_new(r, 2, &p))) goto out;
        p.u.a->it[0].t = V_STR;
        p.u.a->it[0].u.s = o->k[made];
        ct_retain(p.u.a->it[0]);
        p.u.a->it[1] = ct_ref(o->v[made]);
        pairs[made] = p;
        if ((rc = ct_arr_finish(p))) { made++; goto out; }
        keys[made] = p.u.a->it[by_value];
    }
    struct sort_ctx c = {at, cs ? cs->u.b : 0, rev ? rev->u.b : 0, r};
    rc = sorted(r, &c, pairs, keys, o->n, out);
out:
    for (size_t i = 0; i < made; i++) ct_release(pairs[i]);
    free(pairs);
    free(keys);
    return rc;
}

static int obj_listing(struct ct_render *r, struct ct_obj *o, int what, struct ct_value *out) {
    int rc;
    if ((rc = ct_arr_new(r, o->n, out))) return rc;
    for (size_t i = 0; i < o->n; i++) {
        struct ct_value k = {.t = V_STR, .u.s = o->k[i]};
        if (what == M_KEYS) {
            out->u.a->it[i] = ct_ref(k);
        } else if (what == M_VALUES) {
            out->u.a->it[i] = ct_ref(o->v[i]);
        } else {
            struct ct_value p;
            if ((rc = ct_arr_new(r, 2, &p))) { ct_clear(out); return rc; }
            p.u.a->it[0] = ct_ref(k);
            p.u.a->it[1] = ct_ref(o->v[i]);
            out->u.a->it[i] = p;
            if ((rc = ct_arr_finish(p))) { ct_clear(out); return rc; }
        }
    }
    if ((rc = ct_arr_finish(*out))) ct_clear(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Members and calls */

static const struct {
    const char *name;
    int id;
} STR_METHODS[] = {
    {"upper", M_UPPER}, {"lower", M_LOWER}, {"strip", M_STRIP}, {"title", M_TITLE},
    {"capitalize", M_CAPITALIZE}, {"rstrip", M_RSTRIP}, {"lstrip", M_LSTRIP},
    {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"split", M_SPLIT}, {"replace", M_REPLACE},
}, OBJ_METHODS[] = {
    {"get", M_GET}, {"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"dictsort", M_DICTSORT},
};

static int name_is(const char *name, size_t len, const char *w) { return len == strlen(w) && !memcmp(name, w, len); }

static int bind_method(struct ct_render *r, struct ct_value self, int id, struct ct_value *out) {
    int rc;
    if ((rc = ct_fn_new(r, F_METHOD, id, out))) return rc;
    out->u.f->self = ct_ref(self);
    return 0;
}

int ct_member_builtin(struct ct_render *r, struct ct_value obj, const char *name, size_t len,
                      struct ct_value *out) {
    *out = ct_undef();
    if (obj.t == V_STR) {
        if (name_is(name, len, "length")) {
            *out = ct_int((double)ct_utf16_len(obj.u.s->s, obj.u.s->len));
            return 0;
        }
        for (size_t i = 0; i < sizeof(STR_METHODS) / sizeof(STR_METHODS[0]); i++)
            if (name_is(name, len, STR_METHODS[i].name)) return bind_method(r, obj, STR_METHODS[i].id, out);
    } else if (obj.t == V_ARR) {
        if (name_is(name, len, "length")) *out = ct_int((double)obj.u.a->n);
    } else if (ct_is_objval(obj)) {
        for (size_t i = 0; i < sizeof(OBJ_METHODS) / sizeof(OBJ_METHODS[0]); i++)
            if (name_is(name, len, OBJ_METHODS[i].name)) return bind_method(r, obj, OBJ_METHODS[i].id, out);
    }
    return 0;
}

static int builtin_range(struct ct_render *r, const struct ct_node *at, const struct ct_args *a, struct ct_value *out) {
    int rc;
    const struct ct_value *p0 = arg_js(a, 0), *p1 = arg_js(a, 1), *p2 = arg_js(a, 2);
    struct ct_value s0 = p0 ? *p0 : ct_undef(), s1 = p1 ? *p1 : ct_undef(), s2 = p2 ? *p2 : ct_undef();
    struct ct_value start = s0, stop = s1;
    if (s1.t == V_UNDEF) {
        stop = s0;
        start = ct_int(0);
    }
    if ((start.t != V_UNDEF && !ct_is_num(start)) || (stop.t != V_UNDEF && !ct_is_num(stop)) ||
        (s2.t != V_UNDEF && !ct_is_num(s2)))
        return ct_fail(at, "range() arguments must be numbers");
    double step = s2.t == V_UNDEF ? 1 : s2.u.n;
    if (step == 0) return ct_fail(at, "range() step must not be zero");
    size_t n = 0;
    int empty = start.t == V_UNDEF || stop.t == V_UNDEF || isnan(step);
    double x0 = empty ? 0 : start.u.n, x1 = empty ? 0 : stop.u.n;
    if (!empty) {
        double cnt = step > 0 ? ceil((x1 - x0) / step) : ceil((x0 - x1) / -step);
        if (!(cnt > 0)) cnt = 0;
        if (cnt > CT_MAX_ITEMS) return ct_fail(at, "range() of more than %u items", CT_MAX_ITEMS);
        /* count exactly as the JS loop does (float steps accumulate rounding) */
        double i = x0;
        for (; step > 0 ? i < x1 : i > x1; i += step)
            if (++n > CT_MAX_ITEMS) return ct_fail(at, "range() of more than %u items", CT_MAX_ITEMS);
    }
    if ((rc = ct_arr_new(r, n, out))) return rc;
    double i = x0;
    for (size_t k = 0; k < n; k++, i += step) out->u.a->it[k] = i == floor(i) && isfinite(i) ? ct_int(i) : ct_float(i);
    return 0;
}

static int builtin_strftime(struct ct_render *r, const struct ct_node *at, const struct ct_args *a, struct ct_value *out) {
    static const char *const long_m[] = {"January", "February", "March", "April", "May", "June", "July",
                                         "August", "September", "October", "November", "December"};
    static const char *const short_m[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const struct ct_value *f = arg_js(a, 0);
    if (!f || f->t != V_STR) return ct_fail(at, "strftime_now() needs a format string");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    struct sbuf b = {0};
    int rc = 0;
    const char *s = f->u.s->s;
    size_t n = f->u.s->len;
    char tmp[32];
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] == '%' && i + 1 < n && strchr("YmdbBHM%", s[i + 1]) && s[i + 1]) {
            switch (s[++i]) {
            case 'Y': snprintf(tmp, sizeof(tmp), "%d", tm.tm_year + 1900); break;
            case 'm': snprintf(tmp, sizeof(tmp), "%02d", tm.tm_mon + 1); break;
            case 'd': snprintf(tmp, sizeof(tmp), "%02d", tm.tm_mday); break;
            case 'b': snprintf(tmp, sizeof(tmp), "%s", short_m[tm.tm_mon]); break;
            case 'B': snprintf(tmp, sizeof(tmp), "%s", long_m[tm.tm_mon]); break;
            case 'H': snprintf(tmp, sizeof(tmp), "%02d", tm.tm_hour); break;
            case 'M': snprintf(tmp, sizeof(tmp), "%02d", tm.tm_min); break;
            default: snprintf(tmp, sizeof(tmp), "%%"); break;
            }
            rc = ct_buf_puts(r, &b, tmp);
        } else {
            rc = ct_buf_put(r, &b, s + i, 1);
        }
    }
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int builtin_namespace(struct ct_render *r, const struct ct_node *at, const struct ct_args *a, struct ct_value *out) {
    int rc;
    if (a->npos > 1) return ct_fail(at, "namespace expected at most 1 argument, got %zu", a->npos);
    if ((rc = ct_obj_new(r, O_NAMESPACE, out))) return rc;
    struct ct_obj *ns = out->u.o;
    if (a->npos == 1) {
        struct ct_value src = a->pos[0];
        if (ct_is_objval(src)) {
            for (size_t i = 0; i < src.u.o->n; i++)
                if ((rc = ct_obj_set(r, ns, src.u.o->k[i]->s, src.u.o->k[i]->len, ct_ref(src.u.o->v[i])))) goto fail;
        } else if (src.t == V_ARR) {
            for (size_t i = 0; i < src.u.a->n; i++) {
                struct ct_value pair = src.u.a->it[i], k, v;
                if (pair.t == V_ARR && pair.u.a->n == 2) {
                    k = pair.u.a->it[0];
                    v = ct_ref(pair.u.a->it[1]);
                } else if (pair.t == V_STR) {
                    /* a two-character string is a pair too: Array.from("ab") */
                    size_t j = 0, e = 0;
                    const struct ct_str *ps = pair.u.s;
                    if (ps->len) ct_utf8_next(ps->s, ps->len, &j);
                    e = j;
                    if (e < ps->len) ct_utf8_next(ps->s, ps->len, &e);
                    if (j == 0 || e == j || e != ps->len) {
                        rc = ct_fail(at, "namespace expected an object or an iterable of [key, value] pairs");
                        goto fail;
                    }
                    if ((rc = ct_mkstr(r, ps->s + j, e - j, &v))) goto fail;
                    if ((rc = ct_obj_set(r, ns, ps->s, j, v))) goto fail;
                    continue;
                } else {
                    rc = ct_fail(at, "namespace expected an object or an iterable of [key, value] pairs");
                    goto fail;
                }
                if (k.t != V_STR) {
                    ct_release(v);
                    rc = ct_fail(at, "namespace keys must be strings");
                    goto fail;
                }
                if ((rc = ct_obj_set(r, ns, k.u.s->s, k.u.s->len, v))) goto fail;
            }
        } else {
            rc = ct_fail(at, "'%s' object is not iterable", ct_type_name(src));
            goto fail;
        }
    }
    if (a->kw.t == V_OBJ)
        for (size_t i = 0; i < a->kw.u.o->n; i++)
            if ((rc = ct_obj_set(r, ns, a->kw.u.o->k[i]->s, a->kw.u.o->k[i]->len, ct_ref(a->kw.u.o->v[i])))) goto fail;
    return 0;
fail:
    ct_clear(out);
    return rc;
}

int ct_call_builtin(struct ct_render *r, const struct ct_node *at, const struct ct_fn *f, struct ct_args *a,
                    struct ct_value *out) {
    int rc;
    *out = ct_undef();
    if (f->kind == F_BUILTIN) {
        switch (f->id) {
        case B_RAISE: {
            /* new Error(String(first argument)); no argument: an empty message */
            const struct ct_value *m = arg_js(a, 0);
            struct sbuf b = {0};
            if (m && m->t != V_UNDEF && (rc = ct_raw(r, *m, &b))) { free(b.p); return rc; }
            rc = folio_err(FOLIO_EINVAL, "%s", b.p ? b.p : "");
            free(b.p);
            return rc;
        }
        case B_RANGE: return builtin_range(r, at, a, out);
        case B_STRFTIME: return builtin_strftime(r, at, a, out);
        default: return builtin_namespace(r, at, a, out);
        }
    }
    struct ct_value self = f->self;
    if (self.t == V_STR) {
        const struct ct_str *s = self.u.s;
        switch (f->id) {
        case M_UPPER: return str_case(r, s, 1, out);
        case M_LOWER: return str_case(r, s, 0, out);
        case M_STRIP: return str_trim(r, s, 1, 1, out);
        case M_LSTRIP: return str_trim(r, s, 1, 0, out);
        case M_RSTRIP: return str_trim(r, s, 0, 1, out);
        case M_TITLE: return str_title(r, s, out);
        case M_CAPITALIZE: return str_capitalize(r, s, out);
        case M_STARTSWITH: return starts_ends(at, s, arg_js(a, 0), 0, out);
        case M_ENDSWITH: return starts_ends(at, s, arg_js(a, 0), 1, out);
        case M_SPLIT: return str_split(r, at, s, a, out);
        case M_REPLACE: return str_replace(r, at, s, a, out);
        default: break;
        }
    } else if (self.t == V_OBJ) {
        struct ct_obj *o = self.u.o;
        switch (f->id) {
        case M_GET: {
            const struct ct_value *k = arg_js(a, 0), *d = arg_js(a, 1);
            if (!k || k->t != V_STR) return ct_fail(at, "object key must be a string");
            struct ct_value *v = ct_obj_get(o, k->u.s->s, k->u.s->len);
            *out = v ? ct_ref(*v) : d ? ct_ref(*d) : ct_null();
            return 0;
        }
        case M_ITEMS: case M_KEYS: case M_VALUES: return obj_listing(r, o, f->id, out);
        case M_DICTSORT: return dictsort(r, at, o, a, out);
        default: break;
        }
    }
    return ct_fail(at, "bad method call");
}

/* ------------------------------------------------------------------------------------------
 * Tests */

int ct_run_test(const struct ct_node *at, const char *name, size_t len, struct ct_value a,
                const struct ct_value *b, int *res) {
#define IS(w) name_is(name, len, w)
    if (IS("boolean")) *res = a.t == V_BOOL;
    else if (IS("callable")) *res = a.t == V_FN;
    else if (IS("odd") || IS("even")) {
        if (a.t != V_INT) return ct_fail(at, "cannot %s on %s", IS("odd") ? "odd" : "even", ct_type_name(a));
        double m = fmod(a.u.n, 2);
        *res = IS("odd") ? m != 0 : m == 0;
    } else if (IS("false")) *res = a.t == V_BOOL && !a.u.b;
    else if (IS("true")) *res = a.t == V_BOOL && a.u.b;
    else if (IS("none")) *res = a.t == V_NULL;
    else if (IS("string")) *res = a.t == V_STR;
    else if (IS("number")) *res = ct_is_num(a);
    else if (IS("integer")) *res = a.t == V_INT;
    else if (IS("iterable")) *res = (a.t == V_ARR && !a.u.a->tuple) || a.t == V_STR;
    else if (IS("mapping")) *res = ct_is_objval(a);
    else if (IS("sequence")) *res = a.t == V_ARR || ct_is_objval(a) || a.t == V_STR;
    else if (IS("lower") || IS("upper")) {
        *res = 0;
        if (a.t == V_STR) {
            struct sbuf m = {0};
            int rc = ct_case_map(NULL, a.u.s->s, a.u.s->len, IS("upper"), &m);
            if (rc) { free(m.p); return rc; }
            *res = m.n == a.u.s->len && !memcmp(m.p ? m.p : "", a.u.s->s, m.n);
            free(m.p);
        }
    } else if (IS("defined")) *res = a.t != V_UNDEF;
    else if (IS("undefined")) *res = a.t == V_UNDEF;
    else if (IS("equalto") || IS("eq")) {
        if (!b) return ct_fail(at, "the '%.*s' test needs a value to compare with", (int)len, name);
        *res = ct_strict_eq(a, *b);
    } else {
        return 1;
    }
    return 0;
#undef IS
}

/* ------------------------------------------------------------------------------------------
 * Filters */

static int to_json_str(struct ct_render *r, struct ct_value v, const struct ct_json_opts *o, int undef_to_null,
                       struct ct_value *out) {
    struct sbuf b = {0};
    int rc = ct_json(r, v, o, 0, undef_to_null, &b);
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int join_values(struct ct_render *r, struct ct_value arr, const char *sep, size_t sl, struct ct_value *out) {
    struct sbuf b = {0};
    int rc = 0;
    for (size_t i = 0; i < arr.u.a->n && !rc; i++) {
        struct ct_value x = arr.u.a->it[i];
        if (i) rc = ct_buf_put(r, &b, sep, sl);
        if (!rc && x.t != V_UNDEF && x.t != V_NULL) rc = ct_raw(r, x, &b); /* [].join: null -> "" */
    }
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int join_chars(struct ct_render *r, const struct ct_str *s, const char *sep, size_t sl, struct ct_value *out) {
    struct sbuf b = {0};
    int rc = 0;
    size_t i = 0;
    while (i < s->len && !rc) {
        size_t st = i;
        if (st && (rc = ct_buf_put(r, &b, sep, sl))) break;
        ct_utf8_next(s->s, s->len, &i);
        rc = ct_buf_put(r, &b, s->s + st, i - st);
    }
    if (rc) { free(b.p); return rc; }
    return ct_mkstr_buf(r, &b, out);
}

static int unique(struct ct_render *r, struct ct_value arr, struct ct_value *out) {
    int rc;
    size_t n = arr.u.a->n, k = 0;
    if ((rc = ct_arr_new(r, n, out))) return rc;
    for (size_t i = 0; i < n; i++) {
        struct ct_value x = arr.u.a->it[i];
        int seen = 0;
        if ((rc = ct_charge(r, k / 16 + 1))) { out->u.a->n = k; ct_clear(out); return rc; }
        for (size_t j = 0; j < k && !seen; j++) {
            struct ct_value y = out->u.a->it[j];
            /* Set membership: SameValueZero on .value */
            seen = ct_strict_eq(x, y) || (ct_is_num(x) && ct_is_num(y) && isnan(x.u.n) && isnan(y.u.n));
        }
        if (!seen) out->u.a->it[k++] = ct_ref(x);
    }
    out->u.a->n = k;
    out->u.a->depth = arr.u.a->depth;
    return 0;
}

static int filter_sort(struct ct_render *r, const struct ct_node *at, struct ct_value arr, const struct ct_args *a,
                       struct ct_value *out) {
    int rc;
    const struct ct_value *rev = first_of(arg_pos(a, 0), arg_kw(a, "reverse"));
    const struct ct_value *cs = first_of(arg_pos(a, 1), arg_kw(a, "case_sensitive"));
    const struct ct_value *attr = first_of(arg_pos(a, 2), arg_kw(a, "attribute"));
    if (rev && rev->t != V_BOOL) return ct_fail(at, "reverse must be a boolean");
    if (cs && cs->t != V_BOOL) return ct_fail(at, "case_sensitive must be a boolean");
    if (attr && attr->t != V_STR && attr->t != V_INT && attr->t != V_NULL)
        return ct_fail(at, "attribute must be a string, integer, or null");
    size_t n = arr.u.a->n;
    struct ct_value *keys = malloc((n ? n : 1) * sizeof(*keys));
    if (!keys) return FOLIO_ENOMEM;
    char numbuf[40];
    const char *path = NULL;
    size_t pl = 0;
    if (attr && attr->t == V_STR) { path = attr->u.s->s; pl = attr->u.s->len; }
    if (attr && attr->t == V_INT) { ct_js_number(attr->u.n, numbuf); path = numbuf; pl = strlen(numbuf); }
    for (size_t i = 0; i < n; i++) keys[i] = path ? attr_path(arr.u.a->it[i], path, pl) : arr.u.a->it[i];
    struct sort_ctx c = {at, cs ? cs->u.b : 0, rev ? rev->u.b : 0, r};
    rc = sorted(r, &c, arr.u.a->it, keys, n, out);
    free(keys);
    return rc;
}

static int filter_selectattr(struct ct_render *r, const struct ct_node *filter, int select, struct ct_value arr,
                             struct ct_env *env, struct ct_value *out) {
    int rc;
    const char *fname = select ? "selectattr" : "rejectattr";
    for (size_t i = 0; i < arr.u.a->n; i++)
        if (arr.u.a->it[i].t != V_OBJ) return ct_fail(filter, "`%s` can only be applied to array of objects", fname);
    for (size_t i = 0; i < filter->nv; i++)
        if (filter->v[i]->kind != N_STR) return ct_fail(filter, "arguments of `%s` must be strings", fname);
    const struct ct_str *attr = filter->nv > 0 ? filter->v[0]->str : NULL;
    const struct ct_str *test = filter->nv > 1 ? filter->v[1]->str : NULL;
    struct ct_value val = {.t = V_STR};
    if (filter->nv > 2) val.u.s = filter->v[2]->str;
    if (!attr) return ct_fail(filter, "`%s` needs an attribute name", fname);
    if (test) {
        /* validate the test name up front, as the reference does */
        static const char *const known[] = {"boolean", "callable", "odd", "even", "false", "true", "none", "string",
                                            "number", "integer", "iterable", "mapping", "sequence", "lower",
                                            "upper", "defined", "undefined", "equalto", "eq", NULL};
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = name_is(test->s, test->len, known[i]);
        if (!ok) return ct_fail(filter, "unknown test: %s", test->s);
    }
    (void)env;
    if ((rc = ct_arr_new(r, arr.u.a->n, out))) return rc;
    size_t k = 0;
    for (size_t i = 0; i < arr.u.a->n; i++) {
        struct ct_value item = arr.u.a->it[i];
        struct ct_value *a = ct_obj_get(item.u.o, attr->s, attr->len);
        int res = 0;
        if (a) {
            if (test) {
                rc = ct_run_test(filter, test->s, test->len, *a, filter->nv > 2 ? &val : NULL, &res);
                if (rc) { out->u.a->n = k; ct_clear(out); return rc; }
            } else {
                res = ct_truthy(*a);
            }
        }
        if (select ? res : !res) out->u.a->it[k++] = ct_ref(item);
    }
    out->u.a->n = k;
    out->u.a->depth = arr.u.a->depth;
    return 0;
}

static int filter_map(struct ct_render *r, const struct ct_node *at, struct ct_value arr, const struct ct_args *a,
                      struct ct_value *out) {
    int rc;
    const struct ct_value *attr = arg_kw(a, "attribute"), *def = arg_kw(a, "default");
    if (!attr) return ct_fail(at, "`map` expressions without `attribute` set are not currently supported");
    if (attr->t != V_STR) return ct_fail(at, "attribute must be a string");
    if ((rc = ct_arr_new(r, arr.u.a->n, out))) return rc;
    for (size_t i = 0; i < arr.u.a->n; i++) {
        struct ct_value item = arr.u.a->it[i];
        if (item.t != V_OBJ) {
            ct_clear(out);
            return ct_fail(at, "items in map must be an object");
        }
        struct ct_value v = attr_path(item, attr->u.s->s, attr->u.s->len);
        out->u.a->it[i] = ct_ref(v.t == V_UNDEF && def ? *def : v);
    }
    if ((rc = ct_arr_finish(*out))) ct_clear(out);
    return rc;
}

static int filter_tojson(struct ct_render *r, const struct ct_node *at, struct ct_value v, const struct ct_args *a,
                         struct ct_value *out) {
    struct ct_json_opts o = {0};
    const struct ct_value *indent = arg_kw(a, "indent"), *ea = arg_kw(a, "ensure_ascii");
    const struct ct_value *sk = arg_kw(a, "sort_keys"), *sep = arg_kw(a, "separators");
    if (indent && indent->t != V_INT && indent->t != V_NULL) return ct_fail(at, "if set, indent must be a number");
    if (ea && ea->t != V_BOOL) return ct_fail(at, "if set, ensure_ascii must be a boolean");
    if (sk && sk->t != V_BOOL) return ct_fail(at, "if set, sort_keys must be a boolean");
    if (indent && indent->t == V_INT && !isnan(indent->u.n) && indent->u.n != 0) {
        if (indent->u.n < 0) return ct_fail(at, "invalid indent");
        if (indent->u.n > 4096) return ct_fail(at, "indent too large");
        o.indent = (int)indent->u.n;
        if (o.indent == 0) o.indent = 0;
    }
    o.ensure_ascii = ea && ea->u.b;
    o.sort_keys = sk && sk->u.b;
    if (sep && sep->t == V_ARR) {
        if (sep->u.a->n != 2 || sep->u.a->it[0].t != V_STR || sep->u.a->it[1].t != V_STR)
            return ct_fail(at, "separators must be a tuple of two strings");
        o.item_sep = sep->u.a->it[0].u.s->s;
        o.item_sep_len = sep->u.a->it[0].u.s->len;
        o.key_sep = sep->u.a->it[1].u.s->s;
        o.key_sep_len = sep->u.a->it[1].u.s->len;
    } else if (sep && sep->t != V_NULL) {
        return ct_fail(at, "if set, separators must be a tuple of two strings");
    }
    /* indent given but separators not: the indent defaults apply inside ct_json */
    return to_json_str(r, v, &o, 1, out);
}

static int filter_ident(struct ct_render *r, const struct ct_node *at, struct ct_value v, const char *name,
                        size_t len, struct ct_value *out) {
    int rc;
#define IS(w) name_is(name, len, w)
    if (IS("safe")) { *out = ct_ref(v); return 0; }
    if (IS("tojson")) return to_json_str(r, v, NULL, 1, out);
    if (v.t == V_ARR) {
        struct ct_arr *a = v.u.a;
        if (IS("list")) { *out = ct_ref(v); return 0; }
        if (IS("first") || IS("last")) {
            /* the reference yields a bare JS undefined that breaks whatever touches it */
            if (a->n == 0) return ct_fail(at, "%.*s of an empty list", (int)len, name);
            *out = ct_ref(a->it[IS("first") ? 0 : a->n - 1]);
            return 0;
        }
        if (IS("length")) { *out = ct_int((double)a->n); return 0; }
        if (IS("reverse")) {
            if ((rc = ct_arr_new(r, a->n, out))) return rc;
            for (size_t i = 0; i < a->n; i++) out->u.a->it[i] = ct_ref(a->it[a->n - 1 - i]);
            out->u.a->depth = a->depth;
            return 0;
        }
        if (IS("sort")) {
            struct ct_args none = {.kw = {.t = V_UNDEF}};
            return filter_sort(r, at, v, &none, out);
        }
        if (IS("join")) return join_values(r, v, "", 0, out);
        if (IS("string")) return to_json_str(r, v, NULL, 0, out);
        if (IS("unique")) return unique(r, v, out);
        return ct_fail(at, "unknown ArrayValue filter: %.*s", (int)len, name);
    }
    if (v.t == V_STR) {
        const struct ct_str *s = v.u.s;
        if (IS("length")) { *out = ct_int((double)ct_utf16_len(s->s, s->len)); return 0; }
        if (IS("upper")) return str_case(r, s, 1, out);
        if (IS("lower")) return str_case(r, s, 0, out);
        if (IS("title")) return str_title(r, s, out);
        if (IS("capitalize")) return str_capitalize(r, s, out);
        if (IS("trim")) return str_trim(r, s, 1, 1, out);
        if (IS("indent")) return str_indent(r, at, s, 4, 0, 0, out);
        if (IS("join") || IS("string")) { *out = ct_ref(v); return 0; }
        if (IS("int")) {
            double x = ct_parse_int(s->s, s->len);
            *out = ct_int(isnan(x) ? 0 : x);
            return 0;
        }
        if (IS("float")) {
            double x = ct_parse_float(s->s, s->len);
            *out = ct_float(isnan(x) ? 0 : x);
            return 0;
        }
        return ct_fail(at, "unknown StringValue filter: %.*s", (int)len, name);
    }
    if (ct_is_num(v)) {
        if (IS("abs")) { *out = v.t == V_INT ? ct_int(fabs(v.u.n)) : ct_float(fabs(v.u.n)); return 0; }
        if (IS("int")) { *out = ct_int(floor(v.u.n)); return 0; }
        if (IS("float")) { *out = ct_float(v.u.n); return 0; }
        if (IS("string")) {
            struct sbuf b = {0};
            if ((rc = ct_display(r, v, &b))) { free(b.p); return rc; }
            return ct_mkstr_buf(r, &b, out);
        }
        return ct_fail(at, "unknown NumericValue filter: %.*s", (int)len, name);
    }
    if (ct_is_objval(v)) {
        if (IS("items")) return obj_listing(r, v.u.o, M_ITEMS, out);
        if (IS("length")) { *out = ct_int((double)v.u.o->n); return 0; }
        for (size_t i = 0; i < sizeof(OBJ_METHODS) / sizeof(OBJ_METHODS[0]); i++)
            if (IS(OBJ_METHODS[i].name)) {
                struct ct_args none = {.kw = {.t = V_UNDEF}};
                struct ct_fn f = {.kind = F_METHOD, .id = (uint8_t)OBJ_METHODS[i].id, .self = v};
                return ct_call_builtin(r, at, &f, &none, out);
            }
        return ct_fail(at, "unknown ObjectValue filter: %.*s", (int)len, name);
    }
    if (v.t == V_BOOL) {
        if (IS("bool")) { *out = v; return 0; }
        if (IS("int")) { *out = ct_int(v.u.b); return 0; }
        if (IS("float")) { *out = ct_float(v.u.b); return 0; }
        if (IS("string")) return ct_mkstr(r, v.u.b ? "true" : "false", v.u.b ? 4 : 5, out);
        return ct_fail(at, "unknown BooleanValue filter: %.*s", (int)len, name);
    }
    return ct_fail(at, "cannot apply filter \"%.*s\" to type: %s", (int)len, name, ct_type_name(v));
#undef IS
}

static int filter_call(struct ct_render *r, const struct ct_node *fc, struct ct_value v, struct ct_env *env,
                       struct ct_value *out) {
    int rc;
    const char *name = fc->a->name;
    size_t len = fc->a->name_len;
    struct ct_args a;
#define IS(w) name_is(name, len, w)
    if (v.t == V_ARR && (IS("selectattr") || IS("rejectattr")))
        return filter_selectattr(r, fc, IS("selectattr"), v, env, out);
    if (IS("join") && v.t != V_STR && v.t != V_ARR)
        return ct_fail(fc, "cannot apply filter \"join\" to type: %s", ct_type_name(v));
    if ((rc = ct_eval_args(r, fc->v, fc->nv, env, &a))) return rc;
    if (IS("tojson")) {
        rc = filter_tojson(r, fc, v, &a, out);
    } else if (IS("join")) {
        const struct ct_value *sep = first_of(arg_pos(&a, 0), arg_kw(&a, "separator"));
        if (sep && sep->t != V_STR) rc = ct_fail(fc, "separator must be a string");
        else if (v.t == V_STR) rc = join_chars(r, v.u.s, sep ? sep->u.s->s : "", sep ? sep->u.s->len : 0, out);
        else rc = join_values(r, v, sep ? sep->u.s->s : "", sep ? sep->u.s->len : 0, out);
    } else if (IS("int") || IS("float")) {
        int is_int = IS("int");
        const struct ct_value *d = first_of(arg_pos(&a, 0), arg_kw(&a, "default"));
        struct ct_value def = d ? *d : is_int ? ct_int(0) : ct_float(0);
        if (v.t == V_STR) {
            double x = is_int ? ct_parse_int(v.u.s->s, v.u.s->len) : ct_parse_float(v.u.s->s, v.u.s->len);
            *out = isnan(x) ? ct_ref(def) : is_int ? ct_int(x) : ct_float(x);
        } else if (ct_is_num(v)) {
            *out = ct_ref(v);
        } else if (v.t == V_BOOL) {
            *out = is_int ? ct_int(v.u.b) : ct_float(v.u.b);
        } else {
            rc = ct_fail(fc, "cannot apply filter \"%.*s\" to type: %s", (int)len, name, ct_type_name(v));
        }
    } else if (IS("default")) {
        const struct ct_value *d = arg_pos(&a, 0);
        const struct ct_value *bo = first_of(arg_pos(&a, 1), arg_kw(&a, "boolean"));
        if (bo && bo->t != V_BOOL) {
            rc = ct_fail(fc, "`default` filter flag must be a boolean");
        } else if (v.t == V_UNDEF || (bo && bo->u.b && !ct_truthy(v))) {
            if (d) *out = ct_ref(*d);
            else rc = ct_mkstr(r, "", 0, out);
        } else {
            *out = ct_ref(v);
        }
    } else if (v.t == V_ARR) {
        if (IS("sort")) rc = filter_sort(r, fc, v, &a, out);
        else if (IS("map")) rc = filter_map(r, fc, v, &a, out);
        else rc = ct_fail(fc, "unknown ArrayValue filter: %.*s", (int)len, name);
    } else if (v.t == V_STR) {
        if (IS("indent")) {
            const struct ct_value *w = first_of(arg_pos(&a, 0), arg_kw(&a, "width"));
            const struct ct_value *fi = first_of(arg_pos(&a, 1), arg_kw(&a, "first"));
            const struct ct_value *bl = first_of(arg_pos(&a, 2), arg_kw(&a, "blank"));
            if (w && w->t != V_INT) rc = ct_fail(fc, "width must be a number");
            else rc = str_indent(r, fc, v.u.s, w ? w->u.n : 4, fi && js_truthy_raw(*fi), bl && js_truthy_raw(*bl), out);
        } else if (IS("replace")) {
            /* the filter passes its keyword arguments object along, even when empty */
            if (a.kw.t == V_UNDEF && (rc = ct_obj_new(r, O_KWARGS, &a.kw))) goto out;
            rc = str_replace(r, fc, v.u.s, &a, out);
        } else {
            rc = ct_fail(fc, "unknown StringValue filter: %.*s", (int)len, name);
        }
    } else if (ct_is_objval(v)) {
        rc = -100;
        for (size_t i = 0; i < sizeof(OBJ_METHODS) / sizeof(OBJ_METHODS[0]); i++)
            if (IS(OBJ_METHODS[i].name)) {
                struct ct_fn f = {.kind = F_METHOD, .id = (uint8_t)OBJ_METHODS[i].id, .self = v};
                rc = ct_call_builtin(r, fc, &f, &a, out);
                break;
            }
        if (rc == -100) rc = ct_fail(fc, "unknown ObjectValue filter: %.*s", (int)len, name);
    } else {
        rc = ct_fail(fc, "cannot apply filter \"%.*s\" to type: %s", (int)len, name, ct_type_name(v));
    }
out:
    ct_args_free(&a);
    return rc;
#undef IS
}

int ct_apply_filter(struct ct_render *r, struct ct_value operand, const struct ct_node *filter,
                    struct ct_env *env, struct ct_value *out) {
    *out = ct_undef();
    if (filter->kind == N_IDENT) return filter_ident(r, filter, operand, filter->name, filter->name_len, out);
    if (filter->kind == N_CALL && filter->a->kind == N_IDENT) return filter_call(r, filter, operand, env, out);
    return ct_fail(filter, "invalid filter");
}
