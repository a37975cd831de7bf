/* ct_value: runtime values, their lifetimes, and how they print.
 *
 * Values are small tagged structs; strings, arrays, objects and functions are refcounted heap
 * objects owned by one render (never shared between threads), except the template's literal
 * strings, which are immortal and never counted. Namespaces are the only containers that change
 * after creation, so they are the only way to build a cycle: the render keeps a list of them
 * and empties each one at the end.
 *
 * Printing follows the reference's JavaScript to the byte: numbers print as JS's String(x)
 * (shortest round-trip digits, "1e+21"), floats that are whole print with ".0", booleans as
 * true/false, arrays and objects as JSON with ", " and ": " separators; `~` and string `+` use
 * String(value) instead (so 2.0 ~ "" is "2"), and tojson uses JSON.stringify's escapes. */
#include "chat_template/ct_internal.h"

#include <math.h>
#include <stdio.h>
#include <utf8proc.h>

int ct_fail(const struct ct_node *n, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n) return folio_err(FOLIO_EINVAL, "chat template line %u: %s", (unsigned)n->line, msg);
    return folio_err(FOLIO_EINVAL, "chat template: %s", msg);
}

int ct_charge(struct ct_render *r, uint64_t steps) {
    if (!r) return 0;
    r->steps += steps;
    if (r->steps > CT_MAX_STEPS)
        return ct_fail(NULL, "render exceeded %llu steps (a runaway loop?)", (unsigned long long)CT_MAX_STEPS);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Construction and lifetimes */

struct ct_str *ct_str_new(const char *s, size_t len) {
    struct ct_str *p = malloc(sizeof(*p) + len + 1);
    if (!p) return NULL;
    p->rc = 1;
    p->len = len;
    if (len) memcpy(p->s, s, len);
    p->s[len] = '\0';
    return p;
}

struct ct_str *ct_str_immortal(struct arena *a, const char *s, size_t len) {
    struct ct_str *p = arena_alloc(a, sizeof(*p) + len + 1);
    if (!p) return NULL;
    p->rc = CT_IMMORTAL;
    p->len = len;
    if (len) memcpy(p->s, s, len);
    p->s[len] = '\0';
    return p;
}

int ct_mkstr(struct ct_render *r, const char *s, size_t len, struct ct_value *out) {
    int rc;
    if (len > CT_MAX_OUTPUT) return ct_fail(NULL, "a string exceeds %u bytes", CT_MAX_OUTPUT);
    if ((rc = ct_charge(r, len / 16 + 1))) return rc;
    struct ct_str *p = ct_str_new(s, len);
    if (!p) return FOLIO_ENOMEM;
    out->t = V_STR;
    out->u.s = p;
    return 0;
}

int ct_mkstr_buf(struct ct_render *r, struct sbuf *b, struct ct_value *out) {
    int rc = ct_mkstr(r, b->p ? b->p : "", b->n, out);
    sbuf_free(b);
    return rc;
}

void ct_retain(struct ct_value v) {
    switch (v.t) {
    case V_STR: if (v.u.s->rc != CT_IMMORTAL) v.u.s->rc++; break;
    case V_ARR: v.u.a->rc++; break;
    case V_OBJ: v.u.o->rc++; break;
    case V_FN: v.u.f->rc++; break;
    default: break;
    }
}

struct ct_value ct_ref(struct ct_value v) {
    ct_retain(v);
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Hash index: open addressing over entry numbers, built once a map has CT_HASH_MIN keys. */

uint64_t ct_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static void hash_insert(uint32_t *h, size_t hcap, size_t i, const char *s, size_t len) {
    size_t mask = hcap - 1, p = (size_t)ct_hash(s, len) & mask;
    while (h[p]) p = (p + 1) & mask;
    h[p] = (uint32_t)(i + 1);
}

int ct_hash_add(uint32_t **h, size_t *hcap, size_t n,
                void (*get)(const void *ctx, size_t i, const char **s, size_t *len), const void *ctx) {
    const char *s;
    size_t len;
    if (n < CT_HASH_MIN) return 0;
    if (*h && n * 2 <= *hcap) {
        get(ctx, n - 1, &s, &len);
        hash_insert(*h, *hcap, n - 1, s, len);
        return 0;
    }
    size_t cap = 64;
    while (cap < n * 4) cap *= 2;
    uint32_t *nh = calloc(cap, sizeof(*nh));
    if (!nh) return FOLIO_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        get(ctx, i, &s, &len);
        hash_insert(nh, cap, i, s, len);
    }
    free(*h);
    *h = nh;
    *hcap = cap;
    return 0;
}

long ct_hash_find(const uint32_t *h, size_t hcap, const char *s, size_t len,
                  void (*get)(const void *ctx, size_t i, const char **s, size_t *len), const void *ctx) {
    size_t mask = hcap - 1, p = (size_t)ct_hash(s, len) & mask;
    while (h[p]) {
        const char *ks;
        size_t kl;
        get(ctx, h[p] - 1, &ks, &kl);
        if (kl == len && !memcmp(ks, s, len)) return (long)h[p] - 1;
        p = (p + 1) & mask;
    }
    return -1;
}

static void obj_key(const void *ctx, size_t i, const char **s, size_t *len) {
    const struct ct_obj *o = ctx;
    *s = o->k[i]->s;
    *len = o->k[i]->len;
}

static void obj_free(struct ct_obj *o) {
    for (size_t i = 0; i < o->n; i++) {
        if (--o->k[i]->rc == 0) free(o->k[i]);
        ct_release(o->v[i]);
    }
    free(o->k);
    free(o->v);
    free(o->h);
    free(o);
}

void ct_release(struct ct_value v) {
    switch (v.t) {
    case V_STR:
        if (v.u.s->rc != CT_IMMORTAL && --v.u.s->rc == 0) free(v.u.s);
        break;
    case V_ARR:
        if (--v.u.a->rc == 0) {
            for (size_t i = 0; i < v.u.a->n; i++) ct_release(v.u.a->it[i]);
            free(v.u.a);
        }
        break;
    case V_OBJ:
        if (--v.u.o->rc == 0) obj_free(v.u.o);
        break;
    case V_FN:
        if (--v.u.f->rc == 0) {
            ct_release(v.u.f->self);
            free(v.u.f);
        }
        break;
    default:
        break;
    }
}

static int vdepth(struct ct_value v) {
    switch (v.t) {
    case V_ARR: return v.u.a->depth;
    case V_OBJ: return v.u.o->kind == O_NAMESPACE ? 1 : v.u.o->depth;
    case V_FN: return 1 + vdepth(v.u.f->self);
    default: return 0;
    }
}

int ct_arr_new(struct ct_render *r, size_t n, struct ct_value *out) {
    int rc;
    if (n > CT_MAX_ITEMS) return ct_fail(NULL, "a list exceeds %u items", CT_MAX_ITEMS);
    if ((rc = ct_charge(r, n + 1))) return rc;
    struct ct_arr *a = calloc(1, sizeof(*a) + n * sizeof(struct ct_value));
    if (!a) return FOLIO_ENOMEM;
    a->rc = 1;
    a->n = n;
    a->depth = 1;
    out->t = V_ARR;
    out->u.a = a;
    return 0;
}

int ct_arr_finish(struct ct_value arr) {
    int d = 0;
    for (size_t i = 0; i < arr.u.a->n; i++) {
        int k = vdepth(arr.u.a->it[i]);
        if (k > d) d = k;
    }
    if (d + 1 > CT_MAX_VALUE_DEPTH) return ct_fail(NULL, "values nest deeper than %d levels", CT_MAX_VALUE_DEPTH);
    arr.u.a->depth = (uint16_t)(d + 1);
    return 0;
}

int ct_obj_new(struct ct_render *r, int kind, struct ct_value *out) {
    int rc;
    if ((rc = ct_charge(r, 1))) return rc;
    struct ct_obj *o = calloc(1, sizeof(*o));
    if (!o) return FOLIO_ENOMEM;
    o->rc = 1;
    o->kind = (uint8_t)kind;
    o->depth = 1;
    if (kind == O_NAMESPACE && r) {
        /* the render's list holds one reference until the end (cycle breaking) */
        if (r->n_ns == r->cap_ns) {
            size_t cap = r->cap_ns ? r->cap_ns * 2 : 16;
            struct ct_obj **nn = realloc(r->ns, cap * sizeof(*nn));
            if (!nn) { free(o); return FOLIO_ENOMEM; }
            r->ns = nn;
            r->cap_ns = cap;
        }
        r->ns[r->n_ns++] = o;
        o->rc++;
    }
    out->t = V_OBJ;
    out->u.o = o;
    return 0;
}

struct ct_value *ct_obj_get(const struct ct_obj *o, const char *k, size_t klen) {
    if (o->h) {
        long i = ct_hash_find(o->h, o->hcap, k, klen, obj_key, o);
        return i < 0 ? NULL : &o->v[i];
    }
    for (size_t i = 0; i < o->n; i++)
        if (o->k[i]->len == klen && !memcmp(o->k[i]->s, k, klen)) return &o->v[i];
    return NULL;
}

int ct_obj_set(struct ct_render *r, struct ct_obj *o, const char *k, size_t klen, struct ct_value v) {
    int rc;
    if (o->kind != O_NAMESPACE) {
        int d = vdepth(v) + 1;
        if (d > CT_MAX_VALUE_DEPTH) {
            ct_release(v);
            return ct_fail(NULL, "values nest deeper than %d levels", CT_MAX_VALUE_DEPTH);
        }
        if (d > o->depth) o->depth = (uint16_t)d;
    }
    struct ct_value *cur = ct_obj_get(o, k, klen);
    if (cur) {
        ct_release(*cur);
        *cur = v;
        return 0;
    }
    if ((rc = ct_charge(r, 1))) goto fail;
    if (o->n >= CT_MAX_ITEMS) { rc = ct_fail(NULL, "an object exceeds %u keys", CT_MAX_ITEMS); goto fail; }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct ct_str **nk = realloc(o->k, cap * sizeof(*nk));
        if (!nk) { rc = FOLIO_ENOMEM; goto fail; }
        o->k = nk;
        struct ct_value *nv = realloc(o->v, cap * sizeof(*nv));
        if (!nv) { rc = FOLIO_ENOMEM; goto fail; }
        o->v = nv;
        o->cap = cap;
    }
    struct ct_str *ks = ct_str_new(k, klen);
    if (!ks) { rc = FOLIO_ENOMEM; goto fail; }
    o->k[o->n] = ks;
    o->v[o->n] = v;
    o->n++;
    return ct_hash_add(&o->h, &o->hcap, o->n, obj_key, o);
fail:
    ct_release(v);
    return rc;
}

int ct_fn_new(struct ct_render *r, int kind, int id, struct ct_value *out) {
    int rc;
    if ((rc = ct_charge(r, 1))) return rc;
    struct ct_fn *f = calloc(1, sizeof(*f));
    if (!f) return FOLIO_ENOMEM;
    f->rc = 1;
    f->kind = (uint8_t)kind;
    f->id = (uint8_t)id;
    f->self = ct_undef();
    out->t = V_FN;
    out->u.f = f;
    return 0;
}

/* __bool__: Python truthiness for arrays/objects, JS's !!value for the rest (so a namespace,
 * a Map in JS, is always true). */
int ct_truthy(struct ct_value v) {
    switch (v.t) {
    case V_BOOL: return v.u.b;
    case V_INT: case V_FLOAT: return v.u.n != 0 && !isnan(v.u.n);
    case V_STR: return v.u.s->len > 0;
    case V_ARR: return v.u.a->n > 0;
    case V_OBJ: return v.u.o->kind == O_NAMESPACE ? 1 : v.u.o->n > 0;
    case V_FN: return 1;
    default: return 0;
    }
}

const char *ct_type_name(struct ct_value v) {
    switch (v.t) {
    case V_UNDEF: return "UndefinedValue";
    case V_NULL: return "NullValue";
    case V_BOOL: return "BooleanValue";
    case V_INT: return "IntegerValue";
    case V_FLOAT: return "FloatValue";
    case V_STR: return "StringValue";
    case V_ARR: return v.u.a->tuple ? "TupleValue" : "ArrayValue";
    case V_OBJ:
        return v.u.o->kind == O_NAMESPACE ? "NamespaceValue"
               : v.u.o->kind == O_KWARGS  ? "KeywordArgumentsValue"
                                          : "ObjectValue";
    default: return "FunctionValue";
    }
}

/* ------------------------------------------------------------------------------------------
 * Buffers */

int ct_buf_put(struct ct_render *r, struct sbuf *b, const char *s, size_t n) {
    int rc;
    if (n > CT_MAX_OUTPUT || b->n + n > CT_MAX_OUTPUT)
        return ct_fail(NULL, "output exceeds %u bytes", CT_MAX_OUTPUT);
    if ((rc = ct_charge(r, n / 16))) return rc;
    return sbuf_put(b, s, n);
}

int ct_buf_puts(struct ct_render *r, struct sbuf *b, const char *s) {
    return ct_buf_put(r, b, s, strlen(s));
}

/* ------------------------------------------------------------------------------------------
 * Numbers, as JavaScript prints them */

void ct_js_number(double x, char out[40]) {
    if (isnan(x)) { strcpy(out, "NaN"); return; }
    if (isinf(x)) { strcpy(out, x < 0 ? "-Infinity" : "Infinity"); return; }
    if (x == 0) { strcpy(out, "0"); return; }
    char buf[40];
    /* the shortest digits that read back as x: what JS's Number::toString produces */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    char digits[24];
    int k = 0, neg = 0;
    const char *p = buf;
    if (*p == '-') { neg = 1; p++; }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && k < 20) digits[k++] = *p;
    int e = atoi(p + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    int n = e + 1;
    char *o = out;
    if (neg) *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k); o += k;
        for (int i = 0; i < n - k; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n); o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n)); o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0'; *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k); o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) { *o++ = '.'; memcpy(o, digits + 1, (size_t)(k - 1)); o += k - 1; }
        o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *o = '\0';
}

/* FloatValue.toString(): whole numbers keep a ".0" (toFixed(1)), -0 is "-0.0". */
static void float_display(double x, char out[64]) {
    if (x == 0 && signbit(x)) { strcpy(out, "-0.0"); return; }
    if (isfinite(x) && x == floor(x)) {
        if (fabs(x) < 1e21) snprintf(out, 64, "%.1f", x);
        else ct_js_number(x, out);
        return;
    }
    ct_js_number(x, out);
}

/* ------------------------------------------------------------------------------------------
 * Printing */

#define CT_MAX_PRINT_DEPTH (2 * CT_MAX_VALUE_DEPTH)

static int display_d(struct ct_render *r, struct ct_value v, struct sbuf *b, int depth);

int ct_display(struct ct_render *r, struct ct_value v, struct sbuf *b) {
    return display_d(r, v, b, 0);
}

static int display_d(struct ct_render *r, struct ct_value v, struct sbuf *b, int depth) {
    char num[64];
    switch (v.t) {
    case V_UNDEF: return ct_buf_puts(r, b, "undefined");
    case V_NULL: return ct_buf_puts(r, b, "null");
    case V_BOOL: return ct_buf_puts(r, b, v.u.b ? "true" : "false");
    case V_INT: ct_js_number(v.u.n, num); return ct_buf_puts(r, b, num);
    case V_FLOAT: float_display(v.u.n, num); return ct_buf_puts(r, b, num);
    case V_STR: return ct_buf_put(r, b, v.u.s->s, v.u.s->len);
    case V_ARR: case V_OBJ: return ct_json(r, v, NULL, depth, 0, b);
    default: return ct_fail(NULL, "cannot print a function");
    }
}

int ct_print(struct ct_render *r, struct ct_value v, struct sbuf *b) {
    if (v.t == V_UNDEF || v.t == V_NULL) return 0;
    return ct_display(r, v, b);
}

/* String(value.value): what `~`, string `+` and `join` see. */
int ct_raw(struct ct_render *r, struct ct_value v, struct sbuf *b) {
    char num[40];
    int rc;
    switch (v.t) {
    case V_INT: case V_FLOAT: ct_js_number(v.u.n, num); return ct_buf_puts(r, b, num);
    case V_ARR: /* Array.prototype.toString: elements' toString() joined by "," */
        for (size_t i = 0; i < v.u.a->n; i++) {
            if (i && (rc = ct_buf_put(r, b, ",", 1))) return rc;
            if ((rc = display_d(r, v.u.a->it[i], b, 1))) return rc;
        }
        return 0;
    case V_OBJ: return ct_buf_puts(r, b, "[object Map]");
    default: return display_d(r, v, b, 0);
    }
}

static int json_string(struct ct_render *r, const char *s, size_t n, int ascii, struct sbuf *b) {
    int rc;
    char esc[16];
    if ((rc = ct_buf_put(r, b, "\"", 1))) return rc;
    size_t run = 0; /* bytes copied verbatim, flushed in runs */
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        size_t adv = 1;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                e = esc;
            } else if (ascii && c >= 0x7f) {
                size_t j = i;
                int cp = ct_utf8_next(s, n, &j);
                adv = j - i;
                if (cp < 0) cp = 0xFFFD;
                if (cp >= 0x10000) {
                    unsigned hi = 0xD800 + (((unsigned)cp - 0x10000) >> 10), lo = 0xDC00 + (((unsigned)cp - 0x10000) & 0x3FF);
                    snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", hi, lo);
                } else {
                    snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                }
                e = esc;
            }
        }
        if (e) {
            if (run && (rc = ct_buf_put(r, b, s + i - run, run))) return rc;
            run = 0;
            if ((rc = ct_buf_puts(r, b, e))) return rc;
        } else {
            run += adv;
        }
        i += adv;
    }
    if (run && (rc = ct_buf_put(r, b, s + n - run, run))) return rc;
    return ct_buf_put(r, b, "\"", 1);
}

/* ICU-like ordering for sort_keys (localeCompare): punctuation < digits < letters,
 * letters compared case-blind first, then lowercase before uppercase. */
static int collate_weight(unsigned char c) {
    static const char order[] = "\t\n\v\f\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz";
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    const char *p = c ? strchr(order, c) : NULL;
    return p ? (int)(p - order) : 256 + c;
}

static int locale_compare(const struct ct_str *a, const struct ct_str *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        int wa = collate_weight((unsigned char)a->s[i]), wb = collate_weight((unsigned char)b->s[i]);
        if (wa != wb) return wa < wb ? -1 : 1;
    }
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = (unsigned char)a->s[i], cb = (unsigned char)b->s[i];
        if (ca != cb) {
            int la = ca >= 'a' && ca <= 'z', lb = cb >= 'a' && cb <= 'z';
            if (la != lb) return la ? -1 : 1;
            return ca < cb ? -1 : 1;
        }
    }
    return 0;
}

static int json_pad(struct ct_render *r, struct sbuf *b, int indent, int depth) {
    int rc;
    if ((rc = ct_buf_put(r, b, "\n", 1))) return rc;
    for (long i = 0; i < (long)indent * depth; i++)
        if ((rc = ct_buf_put(r, b, " ", 1))) return rc;
    return 0;
}

int ct_json(struct ct_render *r, struct ct_value v, const struct ct_json_opts *o, int depth,
            int undef_to_null, struct sbuf *b) {
    static const struct ct_json_opts defaults = {0};
    int rc;
    char num[40];
    if (!o) o = &defaults;
    if (depth > CT_MAX_PRINT_DEPTH) return ct_fail(NULL, "values nest too deeply to print");
    const char *isep = o->item_sep, *ksep = o->key_sep;
    size_t isl = o->item_sep_len, ksl = o->key_sep_len;
    if (!isep) {
        isep = o->indent ? "," : ", ";
        isl = strlen(isep);
        ksep = ": ";
        ksl = 2;
    }
    switch (v.t) {
    case V_NULL: return ct_buf_puts(r, b, "null");
    case V_UNDEF: return ct_buf_puts(r, b, undef_to_null ? "null" : "undefined");
    case V_BOOL: return ct_buf_puts(r, b, v.u.b ? "true" : "false");
    case V_INT: case V_FLOAT:
        if (!isfinite(v.u.n)) return ct_buf_puts(r, b, "null");
        ct_js_number(v.u.n, num);
        return ct_buf_puts(r, b, num);
    case V_STR: return json_string(r, v.u.s->s, v.u.s->len, o->ensure_ascii, b);
    case V_ARR:
        if (v.u.a->tuple) return ct_fail(NULL, "cannot convert to JSON: TupleValue");
        if ((rc = ct_buf_put(r, b, "[", 1))) return rc;
        for (size_t i = 0; i < v.u.a->n; i++) {
            if (i && (rc = ct_buf_put(r, b, isep, isl))) return rc;
            if (o->indent && (rc = json_pad(r, b, o->indent, depth + 1))) return rc;
            if ((rc = ct_json(r, v.u.a->it[i], o, depth + 1, undef_to_null, b))) return rc;
        }
        if (o->indent && v.u.a->n && (rc = json_pad(r, b, o->indent, depth))) return rc;
        return ct_buf_put(r, b, "]", 1);
    case V_OBJ: {
        const struct ct_obj *ob = v.u.o;
        size_t *order = NULL;
        if (ob->kind == O_KWARGS) return ct_fail(NULL, "cannot convert to JSON: KeywordArgumentsValue");
        if (o->sort_keys && ob->n > 1) {
            if ((rc = ct_charge(r, (uint64_t)ob->n * ob->n / 4))) return rc;
            order = malloc(ob->n * sizeof(*order));
            if (!order) return FOLIO_ENOMEM;
            for (size_t i = 0; i < ob->n; i++) order[i] = i;
            /* insertion sort: stable, like Array.prototype.sort; objects are small */
            for (size_t i = 1; i < ob->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && locale_compare(ob->k[order[j - 1]], ob->k[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        rc = ct_buf_put(r, b, "{", 1);
        for (size_t i = 0; !rc && i < ob->n; i++) {
            size_t k = order ? order[i] : i;
            if (i && (rc = ct_buf_put(r, b, isep, isl))) break;
            if (o->indent && (rc = json_pad(r, b, o->indent, depth + 1))) break;
            if ((rc = json_string(r, ob->k[k]->s, ob->k[k]->len, o->ensure_ascii, b))) break;
            if ((rc = ct_buf_put(r, b, ksep, ksl))) break;
            rc = ct_json(r, ob->v[k], o, depth + 1, undef_to_null, b);
        }
        free(order);
        if (rc) return rc;
        if (o->indent && ob->n && (rc = json_pad(r, b, o->indent, depth))) return rc;
        return ct_buf_put(r, b, "}", 1);
    }
    default:
        return ct_fail(NULL, "cannot convert to JSON: FunctionValue");
    }
}

/* ------------------------------------------------------------------------------------------
 * Equality and ordering */

static int str_eq(const struct ct_str *a, const struct ct_str *b) {
    return a->len == b->len && !memcmp(a->s, b->s, a->len);
}

/* JS StringToNumber, for `==` between a number and a string. */
static double js_to_number(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = ct_js_space(s + i, s + n)) > 0) i += k;
    while (n > i) {
        size_t w = 0;
        for (size_t t = 1; t <= 3 && t <= n - i; t++)
            if (ct_js_space(s + n - t, s + n) == t) { w = t; break; }
        if (!w) break;
        n -= w;
    }
    if (i == n) return 0;
    s += i;
    n -= i;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X' || s[1] == 'o' || s[1] == 'O' || s[1] == 'b' || s[1] == 'B')) {
        int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        double v = 0;
        for (size_t j = 2; j < n; j++) {
            int d = s[j] >= '0' && s[j] <= '9' ? s[j] - '0'
                    : s[j] >= 'a' && s[j] <= 'f' ? s[j] - 'a' + 10
                    : s[j] >= 'A' && s[j] <= 'F' ? s[j] - 'A' + 10 : 99;
            if (d >= base) return NAN;
            v = v * base + d;
        }
        return v;
    }
    size_t j = 0;
    if (s[j] == '+' || s[j] == '-') j++;
    if (n - j == 8 && !memcmp(s + j, "Infinity", 8)) return s[0] == '-' ? -INFINITY : INFINITY;
    size_t digits = 0;
    while (j < n && s[j] >= '0' && s[j] <= '9') { j++; digits++; }
    if (j < n && s[j] == '.') {
        j++;
        while (j < n && s[j] >= '0' && s[j] <= '9') { j++; digits++; }
    }
    if (!digits) return NAN;
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        size_t ed = 0;
        while (j < n && s[j] >= '0' && s[j] <= '9') { j++; ed++; }
        if (!ed) return NAN;
    }
    if (j != n) return NAN;
    char *tmp = malloc(n + 1);
    if (!tmp) return NAN;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double v = strtod(tmp, NULL);
    free(tmp);
    return v;
}

int ct_strict_eq(struct ct_value a, struct ct_value b) {
    if (ct_is_num(a) && ct_is_num(b)) return a.u.n == b.u.n;
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF: case V_NULL: return 1;
    case V_BOOL: return a.u.b == b.u.b;
    case V_STR: return str_eq(a.u.s, b.u.s);
    case V_ARR: return a.u.a == b.u.a;
    case V_OBJ: return a.u.o == b.u.o;
    default: return a.u.f == b.u.f;
    }
}

/* JS `left.value == right.value` (IsLooselyEqual); an array or Map meets a primitive as its
 * String(). */
int ct_loose_eq(struct ct_render *r, struct ct_value a, struct ct_value b) {
    int an = ct_is_num(a), bn = ct_is_num(b);
    if (an && bn) return a.u.n == b.u.n;
    if (a.t == V_STR && b.t == V_STR) return str_eq(a.u.s, b.u.s);
    if (a.t == V_BOOL && b.t == V_BOOL) return a.u.b == b.u.b;
    int anil = a.t == V_UNDEF || a.t == V_NULL, bnil = b.t == V_UNDEF || b.t == V_NULL;
    if (anil || bnil) return anil && bnil;
    int aobj = a.t >= V_ARR, bobj = b.t >= V_ARR;
    if (aobj && bobj) return ct_strict_eq(a, b);
    if (a.t == V_BOOL) return ct_loose_eq(r, ct_int(a.u.b), b);
    if (b.t == V_BOOL) return ct_loose_eq(r, a, ct_int(b.u.b));
    if (an && b.t == V_STR) return a.u.n == js_to_number(b.u.s->s, b.u.s->len);
    if (bn && a.t == V_STR) return b.u.n == js_to_number(a.u.s->s, a.u.s->len);
    /* one object, one number or string: compare with the object's String() */
    struct sbuf buf = {0};
    struct ct_value obj = aobj ? a : b, prim = aobj ? b : a;
    int eq = 0;
    if (obj.t != V_FN && ct_raw(r, obj, &buf) == 0) {
        const char *s = buf.p ? buf.p : "";
        if (prim.t == V_STR) eq = buf.n == prim.u.s->len && !memcmp(s, prim.u.s->s, buf.n);
        else eq = prim.u.n == js_to_number(s, buf.n);
    }
    free(buf.p);
    return eq;
}

/* JS `<` on strings: UTF-16 code unit order. */
static int utf16_cmp(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        int ca = ct_utf8_next(a, an, &i), cb = ct_utf8_next(b, bn, &j);
        if (ca < 0) ca = 0xFFFD;
        if (cb < 0) cb = 0xFFFD;
        if (ca == cb) continue;
        long ka = ca, kb = cb;
        if ((ca >= 0x10000) != (cb >= 0x10000)) {
            if (ca >= 0x10000) ka = 0xD800 + ((ca - 0x10000) >> 10);
            if (cb >= 0x10000) kb = 0xD800 + ((cb - 0x10000) >> 10);
        }
        return ka < kb ? -1 : 1;
    }
    if (i < an) return 1;
    if (j < bn) return -1;
    return 0;
}

int ct_compare(const struct ct_node *n, struct ct_value a, struct ct_value b, int case_sensitive,
               int *out) {
    int rc = 0;
    *out = 0;
    if (a.t == V_NULL && b.t == V_NULL) return 0;
    if (a.t == V_NULL || b.t == V_NULL || a.t == V_UNDEF || b.t == V_UNDEF) {
        if (a.t == V_UNDEF && b.t == V_UNDEF) return 0;
        return ct_fail(n, "cannot compare %s with %s", ct_type_name(a), ct_type_name(b));
    }
    int an = ct_is_num(a) || a.t == V_BOOL, bn = ct_is_num(b) || b.t == V_BOOL;
    if (an && bn) {
        double x = a.t == V_BOOL ? a.u.b : a.u.n, y = b.t == V_BOOL ? b.u.b : b.u.n;
        *out = x < y ? -1 : x > y ? 1 : 0;
        return 0;
    }
    if (a.t != b.t || (a.t == V_ARR && a.u.a->tuple != b.u.a->tuple) ||
        (a.t == V_OBJ && a.u.o->kind != b.u.o->kind))
        return ct_fail(n, "cannot compare different types: %s and %s", ct_type_name(a), ct_type_name(b));
    if (a.t != V_STR) return ct_fail(n, "cannot compare type: %s", ct_type_name(a));
    if (case_sensitive) {
        *out = utf16_cmp(a.u.s->s, a.u.s->len, b.u.s->s, b.u.s->len);
        return 0;
    }
    struct sbuf la = {0}, lb = {0};
    if (!(rc = ct_case_map(NULL, a.u.s->s, a.u.s->len, 0, &la)) &&
        !(rc = ct_case_map(NULL, b.u.s->s, b.u.s->len, 0, &lb)))
        *out = utf16_cmp(la.p ? la.p : "", la.n, lb.p ? lb.p : "", lb.n);
    free(la.p);
    free(lb.p);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * JS string helpers over UTF-8 */

size_t ct_js_space(const char *p, const char *end) {
    const unsigned char *s = (const unsigned char *)p;
    size_t n = (size_t)(end - p);
    if (n == 0) return 0;
    if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0D)) return 1;
    if (s[0] < 0x80) return 0;
    if (n >= 2 && s[0] == 0xC2 && s[1] == 0xA0) return 2;
    if (n < 3) return 0;
    if (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3;
    if (s[0] == 0xE2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;
    if (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3;
    if (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;
    if (s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) return 3;
    return 0;
}

size_t ct_utf16_len(const char *s, size_t n) {
    size_t i = 0, units = 0;
    while (i < n) {
        int cp = ct_utf8_next(s, n, &i);
        units += cp >= 0x10000 ? 2 : 1;
    }
    return units;
}

int ct_put_cp(struct ct_render *r, struct sbuf *b, uint32_t cp) {
    char u[4];
    return ct_buf_put(r, b, u, utf8_encode(cp, u));
}

static size_t skip_js_space(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = ct_js_space(s + i, s + n)) > 0) i += k;
    return i;
}

static double strtod_n(const char *s, size_t n) {
    char small[64];
    char *tmp = n < sizeof(small) ? small : malloc(n + 1);
    if (!tmp) return NAN;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double v = strtod(tmp, NULL);
    if (tmp != small) free(tmp);
    return v;
}

double ct_parse_int(const char *s, size_t n) {
    size_t i = skip_js_space(s, n), st = i;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t d = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == d) return NAN;
    return strtod_n(s + st, i - st);
}

double ct_parse_float(const char *s, size_t n) {
    size_t i = skip_js_space(s, n), st = i;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (n - i >= 8 && !memcmp(s + i, "Infinity", 8)) return s[st] == '-' ? -INFINITY : INFINITY;
    size_t digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') { i++; digits++; }
    if (i < n && s[i] == '.') {
        size_t j = i + 1, fd = 0;
        while (j < n && s[j] >= '0' && s[j] <= '9') { j++; fd++; }
        if (digits || fd) { i = j; digits += fd; }
    }
    if (!digits) return NAN;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        size_t ed = j;
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
        if (j > ed) i = j;
    }
    return strtod_n(s + st, i - st);
}

int ct_case_map(struct ct_render *r, const char *s, size_t n, int upper, struct sbuf *b) {
    int rc;
    size_t i = 0;
    while (i < n) {
        size_t st = i;
        int cp = ct_utf8_next(s, n, &i);
        if (cp < 0) {
            if ((rc = ct_buf_put(r, b, s + st, 1))) return rc;
            continue;
        }
        if (cp < 0x80) {
            char c = (char)cp;
            if (upper && c >= 'a' && c <= 'z') c = (char)(c - 32);
            if (!upper && c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if ((rc = ct_buf_put(r, b, &c, 1))) return rc;
            continue;
        }
        if (upper && cp == 0xDF) { /* JS's full mapping: "ß".toUpperCase() is "SS" */
            if ((rc = ct_buf_put(r, b, "SS", 2))) return rc;
            continue;
        }
        int m = upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        if ((rc = ct_put_cp(r, b, (uint32_t)m))) return rc;
    }
    return 0;
}
