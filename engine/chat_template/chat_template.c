/* chat_template: the public API of the chat-template interpreter (see chat_template.h):
 * parsing, finding a model's template, and rendering with a cJSON context.
 *
 * The context arrives as cJSON, but the reference sees it after JSON.parse, so conversion
 * follows JavaScript: every number is a JS number (integral values are IntegerValues, so a
 * JSON 1.0 prints as "1"), and object keys that are array indices ("0", "1", ...) come first
 * in numeric order, as JS objects order them. The reference declares the context's keys next
 * to its globals (true, none, range, ...), so a context key with one of those names is an
 * error there and here. */
#include "chat_template/ct_internal.h"

#include <math.h>
#include <stdio.h>

int chat_template_create(const char *src, size_t len, struct chat_template **out) {
    int rc;
    *out = NULL;
    struct chat_template *t = calloc(1, sizeof(*t));
    if (!t) return folio_err(FOLIO_ENOMEM, "chat template: out of memory");
    if ((rc = ct_parse(t, src ? src : "", src ? len : 0))) {
        if (rc == FOLIO_ENOMEM) folio_err(FOLIO_ENOMEM, "chat template: out of memory");
        chat_template_free(t);
        return rc;
    }
    if (!(t->src = malloc(len + 1))) {
        chat_template_free(t);
        return folio_err(FOLIO_ENOMEM, "chat template: out of memory");
    }
    if (len) memcpy(t->src, src, len);
    t->src[len] = '\0';
    *out = t;
    return 0;
}

void chat_template_free(struct chat_template *t) {
    if (!t) return;
    arena_free(&t->arena);
    free(t->src);
    free(t);
}

const char *chat_template_source(const struct chat_template *t) { return t && t->src ? t->src : ""; }

int chat_template_load_model(const char *model_dir, struct chat_template **out) {
    int rc;
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    cJSON *cfg = NULL;
    *out = NULL;
    if ((rc = folio_path_join(path, sizeof(path), model_dir, "chat_template.jinja"))) return rc;
    if (folio_file_exists(path)) {
        if ((rc = folio_read_file(path, &text, &len))) return rc;
        rc = chat_template_create(text, len, out);
        goto out;
    }
    if ((rc = folio_path_join(path, sizeof(path), model_dir, "tokenizer_config.json"))) return rc;
    if (!folio_file_exists(path)) return 0;
    if ((rc = folio_read_file(path, &text, &len))) return rc;
    cfg = cJSON_ParseWithLength(text, len);
    if (!cfg) {
        rc = folio_err(FOLIO_EINVAL, "%s: invalid JSON", path);
        goto out;
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *src = NULL;
    if (cJSON_IsString(ct)) {
        src = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        /* named templates: "default", else the first */
        const cJSON *it, *first = NULL;
        cJSON_ArrayForEach(it, ct) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (!cJSON_IsString(tmpl)) continue;
            if (!first) first = tmpl;
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default")) {
                src = tmpl->valuestring;
                break;
            }
        }
        if (!src && first) src = first->valuestring;
    }
    if (src) rc = chat_template_create(src, strlen(src), out);
out:
    cJSON_Delete(cfg);
    free(text);
    return rc;
}

int chat_template_load_arg(const char *arg, struct chat_template **out) {
    int rc;
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    if (folio_file_exists(arg)) {
        if ((rc = folio_read_file(arg, &text, &len))) return rc;
        rc = chat_template_create(text, len, out);
        free(text);
        return rc;
    }
    if (strstr(arg, "{{") || strstr(arg, "{%")) return chat_template_create(arg, strlen(arg), out);
    return folio_err(FOLIO_EINVAL, "chat template: no such file: %s", arg);
}

/* ------------------------------------------------------------------------------------------
 * Rendering */

static int is_array_index(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0')) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return strtoull(s, NULL, 10) < 4294967295ull;
}

static int from_json(struct ct_render *r, const cJSON *j, int depth, struct ct_value *out);

struct index_key {
    unsigned long long value;
    size_t seq;
    const cJSON *item;
};

static int index_key_cmp(const void *a, const void *b) {
    const struct index_key *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq; /* stable: a duplicate key's last value wins */
}

static int obj_from_json(struct ct_render *r, const cJSON *j, int depth, struct ct_value *out) {
    int rc;
    const cJSON *it;
    size_t nidx = 0, k = 0;
    cJSON_ArrayForEach(it, j) if (it->string && is_array_index(it->string)) nidx++;
    struct index_key *keys = malloc((nidx ? nidx : 1) * sizeof(*keys));
    const cJSON **idx = malloc((nidx ? nidx : 1) * sizeof(*idx));
    if (!keys || !idx) {
        free(keys);
        free(idx);
        return FOLIO_ENOMEM;
    }
    cJSON_ArrayForEach(it, j) if (it->string && is_array_index(it->string)) {
        keys[k] = (struct index_key){strtoull(it->string, NULL, 10), k, it};
        k++;
    }
    /* index keys first, in numeric order, as JS orders an object's own keys */
    qsort(keys, nidx, sizeof(*keys), index_key_cmp);
    for (size_t i = 0; i < nidx; i++) idx[i] = keys[i].item;
    free(keys);
    if ((rc = ct_obj_new(r, O_OBJECT, out))) goto out;
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        const cJSON *c = pass == 0 ? (nidx ? idx[0] : NULL) : j->child;
        while (c) {
            if (pass == 1 && (!c->string || is_array_index(c->string))) {
                c = c->next;
                continue;
            }
            struct ct_value v;
            if ((rc = from_json(r, c, depth + 1, &v))) goto fail;
            if ((rc = ct_obj_set(r, out->u.o, c->string, strlen(c->string), v))) goto fail;
            if (pass == 0) c = ++i < nidx ? idx[i] : NULL;
            else c = c->next;
        }
    }
    goto out;
fail:
    ct_clear(out);
out:
    free(idx);
    return rc;
}

static int from_json(struct ct_render *r, const cJSON *j, int depth, struct ct_value *out) {
    int rc;
    *out = ct_undef();
    if (depth > CT_MAX_VALUE_DEPTH) return ct_fail(NULL, "context nests deeper than %d levels", CT_MAX_VALUE_DEPTH);
    if (cJSON_IsNull(j)) { *out = ct_null(); return 0; }
    if (cJSON_IsBool(j)) { *out = ct_bool(cJSON_IsTrue(j)); return 0; }
    if (cJSON_IsNumber(j)) {
        double x = j->valuedouble;
        *out = isfinite(x) && x == floor(x) ? ct_int(x) : ct_float(x);
        return 0;
    }
    if (cJSON_IsString(j)) return ct_mkstr(r, j->valuestring, strlen(j->valuestring), out);
    if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j), i = 0;
        const cJSON *it;
        if ((rc = ct_arr_new(r, n, out))) return rc;
        cJSON_ArrayForEach(it, j) {
            if (i >= n) break;
            if ((rc = from_json(r, it, depth + 1, &out->u.a->it[i++]))) goto fail;
        }
        if ((rc = ct_arr_finish(*out))) goto fail;
        return 0;
    fail:
        ct_clear(out);
        return rc;
    }
    if (cJSON_IsObject(j)) return obj_from_json(r, j, depth, out);
    return ct_fail(NULL, "context holds a value that is not JSON");
}

static const char *const GLOBAL_NAMES[] = {"namespace", "false", "true", "none", "raise_exception",
                                           "range", "strftime_now", "True", "False", "None"};

static int set_globals(struct ct_render *r, struct ct_env *g) {
    int rc;
    struct ct_value v;
    static const struct {
        const char *name;
        int id;
    } fns[] = {{"namespace", B_NAMESPACE}, {"raise_exception", B_RAISE}, {"range", B_RANGE},
               {"strftime_now", B_STRFTIME}};
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        if ((rc = ct_fn_new(r, F_BUILTIN, fns[i].id, &v))) return rc;
        if ((rc = ct_env_set(r, g, fns[i].name, strlen(fns[i].name), v))) return rc;
    }
    if ((rc = ct_env_set(r, g, "false", 5, ct_bool(0))) || (rc = ct_env_set(r, g, "true", 4, ct_bool(1))) ||
        (rc = ct_env_set(r, g, "none", 4, ct_null())) || (rc = ct_env_set(r, g, "True", 4, ct_bool(1))) ||
        (rc = ct_env_set(r, g, "False", 5, ct_bool(0))) || (rc = ct_env_set(r, g, "None", 4, ct_null())))
        return rc;
    return 0;
}

int chat_template_render(const struct chat_template *t, const cJSON *ctx, char **out, size_t *out_len) {
    int rc;
    struct ct_render r = {0};
    struct ct_env global = {0};
    struct sbuf buf = {0};
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t) return folio_err(FOLIO_EINVAL, "chat template: no template");
    if (ctx && !cJSON_IsObject(ctx)) return folio_err(FOLIO_EINVAL, "chat template: the context must be a JSON object");
    if ((rc = set_globals(&r, &global))) goto out;
    if (ctx) {
        const cJSON *it;
        cJSON_ArrayForEach(it, ctx) {
            struct ct_value v;
            if (!it->string) continue;
            for (size_t i = 0; i < sizeof(GLOBAL_NAMES) / sizeof(GLOBAL_NAMES[0]); i++)
                if (!strcmp(it->string, GLOBAL_NAMES[i])) {
                    rc = ct_fail(NULL, "variable already declared: %s", it->string);
                    goto out;
                }
            if ((rc = from_json(&r, it, 1, &v))) goto out;
            if ((rc = ct_env_set(&r, &global, it->string, strlen(it->string), v))) goto out;
        }
    }
    rc = ct_exec_block(&r, t->body, t->nbody, &global, &buf);
    if (rc == CT_BREAK || rc == CT_CONTINUE)
        rc = ct_fail(NULL, "'%s' outside of a loop", rc == CT_BREAK ? "break" : "continue");
out:
    if (rc == FOLIO_ENOMEM) folio_err(FOLIO_ENOMEM, "chat template: out of memory");
    ct_env_clear(&global);
    /* break any namespace cycles, then drop the list's references */
    for (size_t i = 0; i < r.n_ns; i++) {
        struct ct_obj *o = r.ns[i];
        size_t n = o->n;
        o->n = 0;
        for (size_t k = 0; k < n; k++) {
            if (--o->k[k]->rc == 0) free(o->k[k]);
            ct_release(o->v[k]);
        }
    }
    for (size_t i = 0; i < r.n_ns; i++) {
        struct ct_value v = {.t = V_OBJ, .u.o = r.ns[i]};
        ct_release(v);
    }
    free(r.ns);
    if (rc) {
        free(buf.p);
        return rc;
    }
    if (!buf.p) {
        buf.p = malloc(1);
        if (!buf.p) return folio_err(FOLIO_ENOMEM, "chat template: out of memory");
        buf.p[0] = '\0';
    }
    *out = buf.p;
    if (out_len) *out_len = buf.n;
    return 0;
}
