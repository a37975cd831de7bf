/* json_validate: a JSON Schema validator for single values (see json_validate.h).
 *
 * A plain recursive evaluator: each keyword of a schema object is an assertion on the instance,
 * all of which must hold. Keywords it does not know are annotations and ignored, as validators
 * do; those it knows but cannot decide are FOLIO_EUNSUP, never a guess. */
#include "grammar/json_validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_regex.h"

#define REGEX_COST 256 /* budget units per regex run, beyond its size: a compile plus a match */

struct fmt {
    const char *name, *re;
};

/* days per month; February 29 is accepted in every year */
#define RE_DATE "\\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\\d|3[01])|(0[469]|11)-(0[1-9]|[12]\\d|30)|02-(0[1-9]|1\\d|2\\d))"
#define RE_TIME "([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d+)?([zZ]|[+-]([01]\\d|2[0-3]):[0-5]\\d)"
#define RE_URI_CH "(%[0-9A-Fa-f]{2}|[A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=])"
#define RE_LABEL "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#define RE_OCTET "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"
#define RE_ATEXT "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"

/* The formats we enforce, as anchored regexes over the decoded string (the grammar and this
 * validator both use them, so the two agree on what a date-time is). */
static const struct fmt formats[] = {
    {"date-time", "^" RE_DATE "[Tt]" RE_TIME "$"},
    {"date", "^" RE_DATE "$"},
    {"time", "^" RE_TIME "$"},
    {"email", "^" RE_ATEXT "+(\\." RE_ATEXT "+)*@" RE_LABEL "(\\." RE_LABEL ")*$"},
    {"idn-email", "^[^@\\s]+@[^@\\s]+$"},
    {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
    {"uri", "^[A-Za-z][A-Za-z0-9+.\\-]*:" RE_URI_CH "*$"},
    {"uri-reference", "^([A-Za-z][A-Za-z0-9+.\\-]*:)?" RE_URI_CH "*$"},
    {"ipv4", "^(" RE_OCTET "\\.){3}" RE_OCTET "$"},
    {"hostname", "^" RE_LABEL "(\\." RE_LABEL ")*$"},
};

const char *json_format_regex(const char *name) {
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcmp(name, formats[i].name) == 0) return formats[i].re;
    return NULL;
}

struct jv {
    const struct json_validate_doc *doc;
    long *budget;
    int depth;
};

static int check(struct jv *v, const cJSON *s, const cJSON *x);

const cJSON *json_ref_target(const struct json_validate_doc *doc, const char *ref, int *err) {
    const char *frag = ref;
    if (ref[0] != '#') {
        const char *id = doc->root_id;
        size_t idl = id ? strlen(id) : 0;
        const char *h = strchr(ref, '#');
        size_t base = h ? (size_t)(h - ref) : strlen(ref);
        /* the document's own URI (with or without a trailing '#') */
        if (!(idl && (base == idl || (base + 1 == idl && id[idl - 1] == '#')) && strncmp(ref, id, base) == 0)) {
            *err = FOLIO_EUNSUP;
            return NULL;
        }
        frag = h ? h : "#";
    }
    const cJSON *cur = doc->root;
    const char *p = frag + 1;
    if (*p && *p != '/') {
        *err = FOLIO_EUNSUP;
        return NULL;
    }
    char seg[512];
    while (*p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof(seg)) {
            if (*p == '~' && (p[1] == '0' || p[1] == '1')) {
                seg[n++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else if (*p == '%' && p[1] && p[2] && strchr("0123456789abcdefABCDEF", p[1]) && strchr("0123456789abcdefABCDEF", p[2])) {
                char hx[3] = {p[1], p[2], 0};
                seg[n++] = (char)strtol(hx, NULL, 16);
                p += 3;
            } else {
                seg[n++] = *p++;
            }
        }
        seg[n] = '\0';
        if (cJSON_IsArray(cur)) {
            char *end;
            long idx = strtol(seg, &end, 10);
            cur = *end || !*seg ? NULL : cJSON_GetArrayItem(cur, (int)idx);
        } else if (cJSON_IsObject(cur)) {
            cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
        } else {
            cur = NULL;
        }
        if (!cur) {
            *err = FOLIO_EINVAL;
            return NULL;
        }
    }
    return cur;
}

static const cJSON *kw(const cJSON *s, const char *k) { return cJSON_GetObjectItemCaseSensitive(s, k); }

static int spend(struct jv *v, long n) {
    if (*v->budget < n) {
        *v->budget = 0; /* spent: the caller can tell this from an undecidable keyword */
        return folio_err(FOLIO_EUNSUP, "JSON Schema too costly to check its enum values against");
    }
    *v->budget -= n;
    return 0;
}

/* A value's node count, capped: what comparing it with another costs at most. */
static long size_of(const cJSON *x) {
    long n = 1;
    for (const cJSON *e = x->child; e && n < (1L << 20); e = e->next) n += size_of(e);
    return n;
}

static int is_integer(const cJSON *x) {
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) && x->valuedouble == floor(x->valuedouble);
}

static int type_matches(const char *t, const cJSON *x) {
    if (strcmp(t, "null") == 0) return cJSON_IsNull(x);
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(x);
    if (strcmp(t, "object") == 0) return cJSON_IsObject(x);
    if (strcmp(t, "array") == 0) return cJSON_IsArray(x);
    if (strcmp(t, "string") == 0) return cJSON_IsString(x);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(x);
    if (strcmp(t, "integer") == 0) return is_integer(x);
    return -1;
}

static int check_type(const cJSON *s, const cJSON *x) {
    const cJSON *t = kw(s, "type");
    if (!t) return 1;
    if (cJSON_IsTrue(kw(s, "nullable")) && cJSON_IsNull(x)) return 1; /* OpenAPI 3.0 */
    if (cJSON_IsString(t)) {
        int m = type_matches(t->valuestring, x);
        return m < 0 ? folio_err(FOLIO_EINVAL, "JSON Schema type '%s' is unknown", t->valuestring) : m;
    }
    if (!cJSON_IsArray(t)) return folio_err(FOLIO_EINVAL, "JSON Schema 'type' is not a string or array");
    for (const cJSON *e = t->child; e; e = e->next) {
        int m = cJSON_IsString(e) ? type_matches(e->valuestring, x) : -1;
        if (m < 0) return folio_err(FOLIO_EINVAL, "JSON Schema 'type' lists an unknown type");
        if (m) return 1;
    }
    return 0;
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int search(struct jv *v, const char *re, const char *str) {
    size_t n = strlen(str), m = strlen(re);
    if (n > JSON_VALIDATE_MAX_PATTERN_INPUT) return folio_err(FOLIO_EUNSUP, "JSON Schema pattern checked on a string over %d bytes", JSON_VALIDATE_MAX_PATTERN_INPUT);
    /* the reference recognizer's work grows with the regex times the string (and more): charge
     * that, so a huge pattern against many values runs out of budget, not of time */
    int rc = spend(v, REGEX_COST + (long)m * (long)(n + 1));
    return rc ? rc : gram_regex_search(re, strlen(re), str, n);
}

/* draft 4's boolean exclusiveMinimum/Maximum modify minimum/maximum; later drafts' are numbers */
static int check_number(const cJSON *s, double d) {
    const cJSON *mn = kw(s, "minimum"), *mx = kw(s, "maximum");
    const cJSON *emn = kw(s, "exclusiveMinimum"), *emx = kw(s, "exclusiveMaximum"), *mo = kw(s, "multipleOf");
    if (cJSON_IsNumber(mn) && (cJSON_IsTrue(emn) ? d <= mn->valuedouble : d < mn->valuedouble)) return 0;
    if (cJSON_IsNumber(mx) && (cJSON_IsTrue(emx) ? d >= mx->valuedouble : d > mx->valuedouble)) return 0;
    if (cJSON_IsNumber(emn) && d <= emn->valuedouble) return 0;
    if (cJSON_IsNumber(emx) && d >= emx->valuedouble) return 0;
    if (cJSON_IsNumber(mo)) {
        if (!(mo->valuedouble > 0)) return folio_err(FOLIO_EINVAL, "JSON Schema 'multipleOf' is not positive");
        double q = d / mo->valuedouble;
        if (!isfinite(q) || q != floor(q)) return 0;
    }
    return 1;
}

static int check_string(struct jv *v, const cJSON *s, const char *str) {
    const cJSON *mn = kw(s, "minLength"), *mx = kw(s, "maxLength"), *pat = kw(s, "pattern");
    if (cJSON_IsNumber(mn) || cJSON_IsNumber(mx)) {
        double n = (double)utf8_len(str);
        if (cJSON_IsNumber(mn) && n < mn->valuedouble) return 0;
        if (cJSON_IsNumber(mx) && n > mx->valuedouble) return 0;
    }
    const cJSON *fmt = kw(s, "format");
    const char *fre = cJSON_IsString(fmt) ? json_format_regex(fmt->valuestring) : NULL;
    int rc;
    if (fre && (rc = search(v, fre, str)) != 1) return rc;
    if (cJSON_IsString(pat)) return search(v, pat->valuestring, str);
    return 1;
}

static int check_array(struct jv *v, const cJSON *s, const cJSON *x) {
    const cJSON *items = kw(s, "items"), *prefix = kw(s, "prefixItems"), *addl = kw(s, "additionalItems");
    const cJSON *mn = kw(s, "minItems"), *mx = kw(s, "maxItems"), *cont = kw(s, "contains");
    double n = (double)cJSON_GetArraySize(x);
    if (cJSON_IsNumber(mn) && n < mn->valuedouble) return 0;
    if (cJSON_IsNumber(mx) && n > mx->valuedouble) return 0;
    /* positional schemas: prefixItems (2020-12) or an items array (drafts 4-2019), then the rest
     * take items (2020-12) or additionalItems */
    const cJSON *tuple = cJSON_IsArray(prefix) ? prefix : cJSON_IsArray(items) ? items : NULL;
    const cJSON *rest = cJSON_IsArray(prefix) ? items : cJSON_IsArray(items) ? addl : items;
    const cJSON *ts = tuple ? tuple->child : NULL;
    int rc;
    for (const cJSON *e = x->child; e; e = e->next) {
        const cJSON *es = ts ? ts : rest;
        if (ts) ts = ts->next;
        if (es && (rc = check(v, es, e)) != 1) return rc;
    }
    if (cJSON_IsTrue(kw(s, "uniqueItems")))
        for (const cJSON *a = x->child; a; a = a->next) {
            const long cost = size_of(a);
            for (const cJSON *b = a->next; b; b = b->next) {
                if ((rc = spend(v, cost))) return rc;
                if (cJSON_Compare(a, b, 1)) return 0;
            }
        }
    if (cont) {
        const cJSON *mnc = kw(s, "minContains"), *mxc = kw(s, "maxContains");
        double lo = cJSON_IsNumber(mnc) ? mnc->valuedouble : 1, hits = 0;
        for (const cJSON *e = x->child; e; e = e->next) {
            if ((rc = check(v, cont, e)) < 0) return rc;
            hits += rc;
        }
        if (hits < lo || (cJSON_IsNumber(mxc) && hits > mxc->valuedouble)) return 0;
    }
    return 1;
}

/* dependencies (drafts 4-7: a name list or a schema per name), dependentRequired and
 * dependentSchemas (2019-09 on): what a present property demands of the whole object */
static int check_dependencies(struct jv *v, const cJSON *deps, const cJSON *x) {
    int rc;
    for (const cJSON *d = cJSON_IsObject(deps) ? deps->child : NULL; d; d = d->next) {
        if (!kw(x, d->string)) continue;
        if (cJSON_IsArray(d)) {
            for (const cJSON *r = d->child; r; r = r->next)
                if (cJSON_IsString(r) && !kw(x, r->valuestring)) return 0;
        } else if ((rc = check(v, d, x)) != 1) {
            return rc;
        }
    }
    return 1;
}

static int check_object(struct jv *v, const cJSON *s, const cJSON *x) {
    const cJSON *props = kw(s, "properties"), *pp = kw(s, "patternProperties"), *ap = kw(s, "additionalProperties");
    const cJSON *req = kw(s, "required"), *mn = kw(s, "minProperties"), *mx = kw(s, "maxProperties");
    const cJSON *names = kw(s, "propertyNames");
    double n = (double)cJSON_GetArraySize(x);
    int rc;
    if (cJSON_IsNumber(mn) && n < mn->valuedouble) return 0;
    if (cJSON_IsNumber(mx) && n > mx->valuedouble) return 0;
    for (const cJSON *r = cJSON_IsArray(req) ? req->child : NULL; r; r = r->next)
        if (cJSON_IsString(r) && !kw(x, r->valuestring)) return 0;
    for (const cJSON *e = x->child; e; e = e->next) {
        int matched = 0;
        const cJSON *ps = cJSON_IsObject(props) ? kw(props, e->string) : NULL;
        if (ps) {
            matched = 1;
            if ((rc = check(v, ps, e)) != 1) return rc;
        }
        for (const cJSON *p = cJSON_IsObject(pp) ? pp->child : NULL; p; p = p->next) {
            if ((rc = search(v, p->string, e->string)) < 0) return rc;
            if (!rc) continue;
            matched = 1;
            if ((rc = check(v, p, e)) != 1) return rc;
        }
        if (!matched && ap && (rc = check(v, ap, e)) != 1) return rc;
        if (names) {
            /* the name as a string instance; check only reads it */
            cJSON key = {.type = cJSON_String, .valuestring = e->string};
            if ((rc = check(v, names, &key)) != 1) return rc;
        }
    }
    if ((rc = check_dependencies(v, kw(s, "dependencies"), x)) != 1) return rc;
    if ((rc = check_dependencies(v, kw(s, "dependentRequired"), x)) != 1) return rc;
    return check_dependencies(v, kw(s, "dependentSchemas"), x);
}

/* allOf, anyOf, oneOf, not, if/then/else */
static int check_logic(struct jv *v, const cJSON *s, const cJSON *x) {
    const cJSON *all = kw(s, "allOf"), *any = kw(s, "anyOf"), *one = kw(s, "oneOf"), *neg = kw(s, "not");
    int rc;
    for (const cJSON *e = cJSON_IsArray(all) ? all->child : NULL; e; e = e->next)
        if ((rc = check(v, e, x)) != 1) return rc;
    if (any) {
        int hit = 0;
        for (const cJSON *e = cJSON_IsArray(any) ? any->child : NULL; e && !hit; e = e->next)
            if ((hit = check(v, e, x)) < 0) return hit;
        if (!hit) return 0;
    }
    if (one) {
        int hits = 0;
        for (const cJSON *e = cJSON_IsArray(one) ? one->child : NULL; e && hits < 2; e = e->next) {
            if ((rc = check(v, e, x)) < 0) return rc;
            hits += rc;
        }
        if (hits != 1) return 0;
    }
    if (neg) {
        if ((rc = check(v, neg, x)) < 0) return rc;
        if (rc) return 0;
    }
    const cJSON *cond = kw(s, "if");
    if (cond) {
        if ((rc = check(v, cond, x)) < 0) return rc;
        const cJSON *branch = kw(s, rc ? "then" : "else");
        if (branch && (rc = check(v, branch, x)) != 1) return rc;
    }
    return 1;
}

static int check_body(struct jv *v, const cJSON *s, const cJSON *x) {
    static const char *const undecided[] = {"unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef"};
    int rc;
    for (size_t i = 0; i < sizeof(undecided) / sizeof(undecided[0]); i++)
        if (kw(s, undecided[i])) return folio_err(FOLIO_EUNSUP, "JSON Schema '%s' is not checked on values", undecided[i]);
    const cJSON *ref = kw(s, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) return folio_err(FOLIO_EINVAL, "JSON Schema '$ref' is not a string");
        int err = 0;
        const cJSON *t = json_ref_target(v->doc, ref->valuestring, &err);
        if (!t) return folio_err(err, "JSON Schema $ref '%s' does not resolve locally", ref->valuestring);
        if ((rc = check(v, t, x)) != 1 || v->doc->ref_alone) return rc;
    }
    if ((rc = check_type(s, x)) != 1) return rc;
    const cJSON *en = kw(s, "enum"), *cst = kw(s, "const");
    if (cst && ((rc = spend(v, size_of(x))) || !cJSON_Compare(cst, x, 1))) return rc;
    if (en) {
        /* each comparison costs up to the instance's size: an enum's values checked against the
         * enum itself would otherwise be quadratic, unbudgeted */
        const long cost = size_of(x);
        int hit = 0;
        for (const cJSON *e = cJSON_IsArray(en) ? en->child : NULL; e && !hit; e = e->next) {
            if ((rc = spend(v, cost))) return rc;
            hit = cJSON_Compare(e, x, 1);
        }
        if (!hit) return 0;
    }
    if (cJSON_IsNumber(x) && (rc = check_number(s, x->valuedouble)) != 1) return rc;
    if (cJSON_IsString(x) && (rc = check_string(v, s, x->valuestring)) != 1) return rc;
    if (cJSON_IsArray(x) && (rc = check_array(v, s, x)) != 1) return rc;
    if (cJSON_IsObject(x) && (rc = check_object(v, s, x)) != 1) return rc;
    return check_logic(v, s, x);
}

static int check(struct jv *v, const cJSON *s, const cJSON *x) {
    if (cJSON_IsBool(s)) return cJSON_IsTrue(s);
    if (!cJSON_IsObject(s)) return folio_err(FOLIO_EINVAL, "JSON Schema is not an object or boolean");
    int rc = spend(v, 1);
    if (rc) return rc;
    if (v->depth >= JSON_VALIDATE_MAX_DEPTH) return folio_err(FOLIO_EUNSUP, "JSON Schema nested too deeply to check a value against");
    v->depth++;
    rc = check_body(v, s, x);
    v->depth--;
    return rc;
}

int json_validate(const struct json_validate_doc *doc, const cJSON *schema, const cJSON *instance, long *budget) {
    struct jv v = {.doc = doc, .budget = budget};
    return check(&v, schema, instance);
}
