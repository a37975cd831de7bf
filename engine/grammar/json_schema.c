/* json_schema: JSON Schema to grammar (see json_schema.h for the contract).
 *
 * The schema is parsed with cJSON (after a nesting pre-scan, so a hostile document cannot
 * drive cJSON's recursion), then walked once: each subschema becomes an expression, each
 * $ref target a rule (declared before its body is built, so recursive schemas work).
 * Keywords that combine schemas (allOf, $ref with siblings, anyOf/oneOf with siblings) are
 * rewritten into one merged schema object first, so the generator only ever sees plain schemas.
 *
 * Deliberate relaxations (accepted, not enforced; json_schema_compile_ex reports which ones a
 * schema used, JSON_SCHEMA_RELAX_*):
 *  - oneOf is compiled as anyOf: an instance matching two branches is accepted.
 *  - uniqueItems is not enforced (a grammar cannot compare array elements).
 *  - number (not integer) bounds that are not whole numbers (minimum 0.5) are not enforced;
 *    whole-number bounds are exact, but a bounded number must then be written without an
 *    exponent (1e2 is refused where 100 is accepted): a restriction, not a relaxation.
 *    Integer bounds are exact.
 *  - a string's minLength/maxLength together with a pattern or format is enforced only when the
 *    regex is a single anchored run (^[a-z][a-z0-9-]*$ and the like); otherwise only the
 *    pattern is.
 *  - format: unknown formats are annotations (accepted as any string, as the spec's default);
 *    format together with pattern enforces the pattern only.
 *  - maxLength above GRAMMAR_MAX_REPEAT is not enforced.
 *  - enum/const values are matched in compact form, object keys in the order written, and
 *    numbers as printed by cJSON (%.17g round-trip): 1.0 for a const 1 is refused.
 *  - additional properties (additionalProperties not false) come after the listed ones; their
 *    keys are any JSON string but the listed names (as the spec requires), but a key spelled
 *    with a needless \uXXXX escape of a non-control character (\u0061 for a) is refused where
 *    it would decode to a prefix of a listed name.
 *  - patternProperties (supported with additionalProperties closed, or one catch-all pattern such
 *    as ".*", or trivial pattern schemas): a key matching two patterns, or a pattern and a
 *    listed name, must satisfy one of the schemas, not all of them.
 *  - allOf members' numeric/string bounds merge exactly; two different patterns or formats in
 *    one allOf are refused, not relaxed.
 *
 * Rewrites before generation (each exact): a schema with a finite domain (an enum or const at its
 * top or in an allOf member) beside other constraints becomes the domain's values that
 * json_validate accepts against the whole schema, whatever keywords it uses (`not`, `if`, ...);
 * property dependencies become the union of one variant per subset of their triggers (present:
 * required with its dependents; absent: properties.trigger false); `not` is merged as the schema
 * its negation is (De Morgan over keywords and anyOf/allOf, not required as properties false,
 * not type as the other types), or, beside type string, a string outside a set of names.
 *
 * $ref: in a schema whose $schema names draft 3 to 7, keywords beside $ref are ignored, as
 * those drafts say; otherwise (2019-09 on, or no $schema) they apply, merged with the target.
 *
 * Output order: listed properties in schema order (required ones present, optional ones
 * omissible), then additional ones. Strings: any JSON string (every escape) where
 * unconstrained; with pattern/format the escapes of gram_regex_json_expr.
 */
#include "grammar/json_schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_regex.h"
#include "grammar/json_validate.h"

#define MAX_GEN_DEPTH 256       /* generator recursion (nesting of inline subschemas) */
#define MAX_MERGE_DEPTH 32      /* $ref chains followed while merging allOf */
#define MAX_PROP_COUNT 256      /* minProperties/maxProperties handled up to this */
#define VALIDATE_BUDGET (1L << 20) /* json_validate work per compile (about 50 ms at worst) */

struct json_schema_params json_schema_default_params(void) {
    return (struct json_schema_params){.strict = 0, .whitespace = 1};
}

struct ref_entry {
    char *ptr;
    int rule;
};

/* Rules already generated, by a 128-bit hash of what they were generated from (a subschema's
 * constraint keywords): an open hash table, rule -1 marking an empty slot. */
struct memo_entry {
    uint64_t h0, h1;
    int rule;
};

struct ctx {
    struct grammar_builder *b;
    const struct json_schema_params *p;
    cJSON *root;
    struct json_validate_doc doc; /* the root, its $id, and whether $ref stands alone (drafts 3-7) */
    long validate_budget;         /* json_validate's work left for this compile (finite domains) */
    long negate_budget;           /* nodes `not` rewrites may still build (negate) */
    char path[1024];     /* JSON pointer of the schema being compiled, for messages */
    size_t plen;
    int depth;
    unsigned relaxed;
    grammar_expr ws, any_value, string, jchar, jchar_e, body_any;
    struct ref_entry *refs;
    int nrefs, refcap;
    cJSON **owned; /* merged schemas built here */
    int nowned, owncap;
    struct memo_entry *memo;
    size_t nmemo, memocap;
};

/* ---- small helpers ---- */

static void path_push(struct ctx *c, const char *seg, size_t *save) {
    *save = c->plen;
    size_t room = sizeof(c->path) - c->plen;
    if (room < 2) return;
    c->path[c->plen++] = '/';
    for (const char *s = seg; *s && c->plen + 3 < sizeof(c->path); s++) {
        if (*s == '~' || *s == '/') {
            c->path[c->plen++] = '~';
            c->path[c->plen++] = *s == '~' ? '0' : '1';
        } else {
            c->path[c->plen++] = *s;
        }
    }
    c->path[c->plen] = '\0';
}

static void path_pop(struct ctx *c, size_t save) {
    c->plen = save;
    c->path[save] = '\0';
}

static const char *here(struct ctx *c) { return c->plen ? c->path : "/"; }

static int unsup(struct ctx *c, const char *kw) {
    return folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword '%s' at %s", kw, here(c));
}

static int own(struct ctx *c, cJSON *j) {
    if (c->nowned == c->owncap) {
        int cap = c->owncap ? c->owncap * 2 : 16;
        cJSON **p = realloc(c->owned, (size_t)cap * sizeof(*p));
        if (!p) {
            cJSON_Delete(j);
            return FOLIO_ENOMEM;
        }
        c->owned = p;
        c->owncap = cap;
    }
    c->owned[c->nowned++] = j;
    return 0;
}

static grammar_expr lit(struct ctx *c, const char *s) { return grammar_literal(c->b, s, strlen(s)); }
static grammar_expr dead(struct ctx *c) { return grammar_alt(c->b, NULL, 0); }
static grammar_expr seq3(struct ctx *c, grammar_expr a, grammar_expr b2, grammar_expr d) {
    grammar_expr it[3] = {a, b2, d};
    return grammar_seq(c->b, it, 3);
}

/* A string as JSON writes it (the compact canonical spelling), into a malloc'd buffer. */
static char *json_quote(const char *s) {
    size_t n = strlen(s), cap = n * 6 + 3, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': out[o++] = '\\', out[o++] = '"'; break;
        case '\\': out[o++] = '\\', out[o++] = '\\'; break;
        case '\b': out[o++] = '\\', out[o++] = 'b'; break;
        case '\f': out[o++] = '\\', out[o++] = 'f'; break;
        case '\n': out[o++] = '\\', out[o++] = 'n'; break;
        case '\r': out[o++] = '\\', out[o++] = 'r'; break;
        case '\t': out[o++] = '\\', out[o++] = 't'; break;
        default:
            if (*p < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
            else out[o++] = (char)*p;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* Whitespace between tokens: a bounded run, or nothing in compact mode. The run past its first
 * byte is one shared rule: inline, its counter would add JSON_SCHEMA_MAX_WS automaton states
 * at every place whitespace may go. The first byte stays inline, so that the token sets of the
 * states before it are exact (compact output never enters the rule). */
grammar_expr json_schema_tight_ws(struct grammar_builder *b) {
    /* "" | " " | "\n" [ \t]{0,20}: one space, or a line break and its indent */
    uint32_t ind[8] = {0};
    ind[0] = 1u << '\t';
    ind[1] = 1u << (' ' - 32);
    grammar_expr nl = grammar_seq2(b, grammar_literal(b, "\n", 1),
                                   grammar_repeat(b, grammar_bytes(b, ind), 0, JSON_SCHEMA_TIGHT_INDENT));
    return grammar_repeat(b, grammar_alt2(b, grammar_literal(b, " ", 1), nl), 0, 1);
}

static grammar_expr ws(struct ctx *c) {
    if (c->ws == GRAMMAR_NONE) {
        if (!c->p->whitespace) {
            c->ws = grammar_empty(c->b);
        } else if (c->p->whitespace == JSON_SCHEMA_WS_TIGHT) {
            c->ws = json_schema_tight_ws(c->b);
        } else {
            uint32_t set[8] = {0};
            set[0] = (1u << '\t') | (1u << '\n') | (1u << '\r');
            set[1] = 1u << (' ' - 32);
            grammar_expr wb = grammar_bytes(c->b, set);
            int rule = grammar_rule_declare(c->b, "ws");
            grammar_rule_define(c->b, rule, grammar_repeat(c->b, wb, 0, JSON_SCHEMA_MAX_WS - 1));
            c->ws = grammar_repeat(c->b, grammar_seq2(c->b, wb, grammar_ref(c->b, rule)), 0, 1);
        }
    }
    return c->ws;
}

static grammar_expr hexset(struct ctx *c, const char *chars) {
    uint32_t set[8] = {0};
    for (const unsigned char *p = (const unsigned char *)chars; *p; p++) set[*p >> 5] |= 1u << (*p & 31);
    return grammar_bytes(c->b, set);
}

/* One character of a JSON string body, every spelling JSON allows, counted as one code point
 * (a surrogate pair in \u escapes is one). The expression, for rules that loop over it. */
static grammar_expr jchar_expr(struct ctx *c) {
    if (c->jchar_e != GRAMMAR_NONE) return c->jchar_e;
    static const uint32_t raw[][2] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
    grammar_expr hex = hexset(c, "0123456789abcdefABCDEF");
    grammar_expr nonsur = grammar_alt2(c->b, seq3(c, hexset(c, "0123456789abcABCefEF"), hex, grammar_seq2(c->b, hex, hex)),
                                       seq3(c, hexset(c, "dD"), hexset(c, "01234567"), grammar_seq2(c->b, hex, hex)));
    grammar_expr high = seq3(c, hexset(c, "dD"), hexset(c, "89abAB"), grammar_seq2(c->b, hex, hex));
    grammar_expr low = seq3(c, hexset(c, "dD"), hexset(c, "cdefCDEF"), grammar_seq2(c->b, hex, hex));
    grammar_expr u = lit(c, "u");
    grammar_expr esc_tail[3] = {
        hexset(c, "\"\\/bfnrt"),
        grammar_seq2(c->b, u, nonsur),
        grammar_seq(c->b, (grammar_expr[]){u, high, lit(c, "\\u"), low}, 4),
    };
    c->jchar_e = grammar_alt2(c->b, grammar_codepoints(c->b, raw, 3, 0),
                              grammar_seq2(c->b, lit(c, "\\"), grammar_alt(c->b, esc_tail, 3)));
    return c->jchar_e;
}

/* The same character as a rule, for counted runs (minLength/maxLength), where an inline copy
 * per count would multiply the automaton's states. */
static grammar_expr jchar(struct ctx *c) {
    if (c->jchar != GRAMMAR_NONE) return c->jchar;
    int rule = grammar_rule_declare(c->b, "json_char");
    grammar_rule_define(c->b, rule, jchar_expr(c));
    c->jchar = grammar_ref(c->b, rule);
    return c->jchar;
}

/* Any string body (jchar*): one rule, always followed by the closing quote, so its automaton
 * and FOLLOW are the same in every grammar and the compiler's token sets for it are computed
 * once per vocabulary (the cache in gram_compile.c), however many strings a schema has. */
static grammar_expr string_body(struct ctx *c) {
    if (c->body_any != GRAMMAR_NONE) return c->body_any;
    int rule = grammar_rule_declare(c->b, "json_string_body");
    grammar_rule_define(c->b, rule, grammar_repeat(c->b, jchar_expr(c), 0, -1));
    c->body_any = grammar_ref(c->b, rule);
    return c->body_any;
}

static grammar_expr any_string(struct ctx *c) {
    if (c->string == GRAMMAR_NONE) c->string = seq3(c, lit(c, "\""), string_body(c), lit(c, "\""));
    return c->string;
}

/* ---- the rule memo ---- */

static void hash_text(const char *t, size_t n, uint64_t *h0, uint64_t *h1) {
    *h0 = folio_mix64(*h0 ^ n);
    *h1 = folio_mix64(*h1 + n * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(&w, t + i, k);
        *h0 = folio_mix64(*h0 ^ w);
        *h1 = folio_mix64(*h1 + (w ^ 0x5851f42d4c957f2dULL));
    }
}

static int memo_find(struct ctx *c, uint64_t h0, uint64_t h1) {
    if (!c->memocap) return -1;
    for (size_t i = (size_t)h0 & (c->memocap - 1);; i = (i + 1) & (c->memocap - 1)) {
        const struct memo_entry *e = &c->memo[i];
        if (e->rule < 0) return -1;
        if (e->h0 == h0 && e->h1 == h1) return e->rule;
    }
}

static int memo_put(struct ctx *c, uint64_t h0, uint64_t h1, int rule) {
    if ((c->nmemo + 1) * 2 > c->memocap) {
        size_t cap = c->memocap ? c->memocap * 2 : 64;
        struct memo_entry *m = malloc(cap * sizeof(*m));
        if (!m) return FOLIO_ENOMEM;
        for (size_t i = 0; i < cap; i++) m[i].rule = -1;
        for (size_t i = 0; i < c->memocap; i++) {
            if (c->memo[i].rule < 0) continue;
            size_t j = (size_t)c->memo[i].h0 & (cap - 1);
            while (m[j].rule >= 0) j = (j + 1) & (cap - 1);
            m[j] = c->memo[i];
        }
        free(c->memo);
        c->memo = m;
        c->memocap = cap;
    }
    size_t i = (size_t)h0 & (c->memocap - 1);
    while (c->memo[i].rule >= 0) i = (i + 1) & (c->memocap - 1);
    c->memo[i] = (struct memo_entry){h0, h1, rule};
    c->nmemo++;
    return 0;
}

static grammar_expr digits(struct ctx *c, int min) {
    return grammar_repeat(c->b, grammar_byte_range(c->b, '0', '9'), min, -1);
}

static grammar_expr int_grammar(struct ctx *c) {
    grammar_expr nz = grammar_seq2(c->b, grammar_byte_range(c->b, '1', '9'), digits(c, 0));
    return grammar_seq2(c->b, grammar_repeat(c->b, lit(c, "-"), 0, 1), grammar_alt2(c->b, lit(c, "0"), nz));
}

static grammar_expr frac_exp(struct ctx *c) {
    grammar_expr frac = grammar_repeat(c->b, grammar_seq2(c->b, lit(c, "."), digits(c, 1)), 0, 1);
    grammar_expr exp = grammar_repeat(
        c->b, seq3(c, hexset(c, "eE"), grammar_repeat(c->b, hexset(c, "+-"), 0, 1), digits(c, 1)), 0, 1);
    return grammar_seq2(c->b, frac, exp);
}

static grammar_expr number_grammar(struct ctx *c) { return grammar_seq2(c->b, int_grammar(c), frac_exp(c)); }

/* Any JSON value: the rule behind {} and true. */
static grammar_expr any_value(struct ctx *c) {
    if (c->any_value != GRAMMAR_NONE) return c->any_value;
    int rule = grammar_rule_declare(c->b, "json_value");
    grammar_expr v = grammar_ref(c->b, rule), w = ws(c);
    c->any_value = v;
    grammar_expr member = grammar_seq(c->b, (grammar_expr[]){any_string(c), w, lit(c, ":"), w, v, w}, 6);
    grammar_expr members = grammar_seq2(c->b, member, grammar_repeat(c->b, seq3(c, lit(c, ","), w, member), 0, -1));
    grammar_expr obj = grammar_seq(c->b, (grammar_expr[]){lit(c, "{"), w, grammar_repeat(c->b, members, 0, 1), lit(c, "}")}, 4);
    grammar_expr elem = grammar_seq2(c->b, v, w);
    grammar_expr elems = grammar_seq2(c->b, elem, grammar_repeat(c->b, seq3(c, lit(c, ","), w, elem), 0, -1));
    grammar_expr arr = grammar_seq(c->b, (grammar_expr[]){lit(c, "["), w, grammar_repeat(c->b, elems, 0, 1), lit(c, "]")}, 4);
    grammar_expr alts[7] = {obj, arr, any_string(c), number_grammar(c), lit(c, "true"), lit(c, "false"), lit(c, "null")};
    grammar_rule_define(c->b, rule, grammar_alt(c->b, alts, 7));
    return v;
}

/* ---- constants (enum, const) ---- */

/* A number as JSON.stringify writes it: the shortest digits that round-trip, in plain decimal
 * notation from 1e-7 up to 1e21, with an exponent outside that. */
int json_schema_format_number(double d, char *buf, size_t n) {
    char e[40];
    int prec;
    if (d == 0) return snprintf(buf, n, "0");
    for (prec = 0; prec <= 16; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec, d);
        if (strtod(e, NULL) == d) break;
    }
    double a = fabs(d);
    if (a < 1e-7 || a >= 1e21) {
        for (prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, d);
            if (strtod(buf, NULL) == d) break;
        }
        return (int)strlen(buf);
    }
    /* e is [-]D[.DDD]e[+-]XX: rebuild it in positional form */
    char dig[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') dig[nd++] = *p;
    int x = atoi(p + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    size_t o = 0;
    if (neg) buf[o++] = '-';
    if (x >= 0) {
        for (int i = 0; i <= x || i < nd; i++) {
            if (i == x + 1) buf[o++] = '.';
            buf[o++] = i < nd ? dig[i] : '0';
        }
    } else {
        buf[o++] = '0', buf[o++] = '.';
        for (int i = 0; i < -x - 1; i++) buf[o++] = '0';
        for (int i = 0; i < nd; i++) buf[o++] = dig[i];
    }
    buf[o] = '\0';
    return (int)o;
}

static grammar_expr const_string(struct ctx *c, const char *s) {
    /* '/' and control characters have several spellings; the rest only one */
    int plain = 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '/' || *p < 0x20) plain = 0;
    if (plain) {
        char *q = json_quote(s);
        if (!q) return GRAMMAR_NONE;
        grammar_expr e = lit(c, q);
        free(q);
        return e;
    }
    size_t n = strlen(s);
    grammar_expr *it = malloc((n + 2) * sizeof(*it));
    if (!it) return GRAMMAR_NONE;
    int k = 0;
    it[k++] = lit(c, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p == '/' || *p < 0x20) {
            uint32_t r[1][2] = {{*p, *p}};
            it[k++] = gram_regex_json_class(c->b, (const uint32_t(*)[2])r, 1);
            p++;
            continue;
        }
        const unsigned char *q = p;
        while (*q && *q != '/' && *q >= 0x20) q++;
        char save[1];
        size_t len = (size_t)(q - p);
        char *tmp = malloc(len + 1);
        if (!tmp) {
            free(it);
            return GRAMMAR_NONE;
        }
        memcpy(tmp, p, len);
        tmp[len] = '\0';
        char *quoted = json_quote(tmp);
        free(tmp);
        (void)save;
        if (!quoted) {
            free(it);
            return GRAMMAR_NONE;
        }
        /* strip the quotes json_quote added */
        it[k++] = grammar_literal(c->b, quoted + 1, strlen(quoted) - 2);
        free(quoted);
        p = q;
    }
    it[k++] = lit(c, "\"");
    grammar_expr e = grammar_seq(c->b, it, k);
    free(it);
    return e;
}

static grammar_expr const_value(struct ctx *c, const cJSON *v) {
    char buf[64];
    grammar_expr w = ws(c);
    if (cJSON_IsNull(v)) return lit(c, "null");
    if (cJSON_IsTrue(v)) return lit(c, "true");
    if (cJSON_IsFalse(v)) return lit(c, "false");
    if (cJSON_IsNumber(v)) {
        int n = json_schema_format_number(v->valuedouble, buf, sizeof(buf));
        return grammar_literal(c->b, buf, (size_t)n);
    }
    if (cJSON_IsString(v)) return const_string(c, v->valuestring);
    int is_obj = cJSON_IsObject(v);
    int n = cJSON_GetArraySize(v), k = 0;
    grammar_expr *it = malloc(((size_t)n * 8 + 3) * sizeof(*it)); /* per member: , w "k" w : w v w */
    if (!it) return GRAMMAR_NONE;
    it[k++] = lit(c, is_obj ? "{" : "[");
    it[k++] = w;
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (i) it[k++] = lit(c, ","), it[k++] = w;
        if (is_obj) {
            it[k++] = const_string(c, e->string);
            it[k++] = w;
            it[k++] = lit(c, ":");
            it[k++] = w;
        }
        it[k++] = const_value(c, e);
        it[k++] = w;
    }
    it[k++] = lit(c, is_obj ? "}" : "]");
    grammar_expr r = grammar_seq(c->b, it, k);
    free(it);
    return r;
}

/* ---- type sets ---- */

enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_STR = 16, T_NUM = 32, T_INT = 64, T_ALL = 127 };

static int type_bit(const char *s) {
    static const struct { const char *n; int bit; } t[] = {
        {"null", T_NULL}, {"boolean", T_BOOL}, {"object", T_OBJ}, {"array", T_ARR},
        {"string", T_STR}, {"number", T_NUM | T_INT}, {"integer", T_INT},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0) return t[i].bit;
    return -1;
}

/* T_NUM | T_INT: number; T_INT alone: integer. */
static int parse_types(struct ctx *c, const cJSON *t, int *out) {
    if (!t) {
        *out = T_ALL;
        return 0;
    }
    int m = 0;
    if (cJSON_IsString(t)) {
        m = type_bit(t->valuestring);
    } else if (cJSON_IsArray(t)) {
        for (const cJSON *e = t->child; e; e = e->next) {
            int bit = cJSON_IsString(e) ? type_bit(e->valuestring) : -1;
            if (bit < 0) {
                m = -1;
                break;
            }
            m |= bit;
        }
    } else {
        m = -1;
    }
    if (m < 0) {
        /* Name the offending value: a typo ("strin") is the usual cause. */
        char v[48] = "";
        const cJSON *bad = cJSON_IsArray(t) ? t->child : t;
        for (; bad && cJSON_IsArray(t) && cJSON_IsString(bad) && type_bit(bad->valuestring) >= 0; bad = bad->next) {}
        if (bad && cJSON_IsString(bad)) snprintf(v, sizeof v, " '%.40s'", bad->valuestring);
        return folio_err(FOLIO_EINVAL,
                         "invalid JSON Schema 'type'%s at %s: want null, boolean, object, array, number, string or "
                         "integer",
                         v, here(c));
    }
    *out = m;
    return 0;
}

static int value_type(const cJSON *v) {
    if (cJSON_IsNull(v)) return T_NULL;
    if (cJSON_IsBool(v)) return T_BOOL;
    if (cJSON_IsObject(v)) return T_OBJ;
    if (cJSON_IsArray(v)) return T_ARR;
    if (cJSON_IsString(v)) return T_STR;
    if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15) return T_INT;
    return T_NUM;
}

/* ---- keyword tables ---- */

static const char *const refused[] = {
    "propertyNames", "dependentSchemas",
    "contains", "minContains", "maxContains", "unevaluatedItems", "$dynamicRef",
    "$recursiveRef", "then", "else",
};

/* Keywords that constrain (anything else is an annotation or unknown, and ignored). */
static const char *const constraints[] = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "additionalItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength",
    "maxLength", "pattern", "format", "minItems", "maxItems", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "nullable", "minProperties", "maxProperties",
    "uniqueItems", "multipleOf", "unevaluatedProperties", "if",
    "patternProperties", "propertyNames", "dependencies", "dependentRequired", "dependentSchemas",
    "not", "contains", "minContains", "maxContains", "unevaluatedItems", "$dynamicRef",
    "$recursiveRef", "then", "else",
};

static int in_list(const char *k, const char *const *l, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, l[i]) == 0) return 1;
    return 0;
}

static int is_constraint(const char *k) {
    return in_list(k, constraints, sizeof(constraints) / sizeof(constraints[0]));
}

static int has_constraints_except(const cJSON *s, const char *except) {
    for (const cJSON *e = s->child; e; e = e->next)
        if (is_constraint(e->string) && strcmp(e->string, except) != 0) return 1;
    return 0;
}

/* ---- $ref ---- */

/* Resolves a local reference ("#", "#/definitions/a", the root's own $id + fragment). NULL with
 * a message for a remote or dangling one. */
static const cJSON *resolve(struct ctx *c, const char *ref, int *rc) {
    int err = 0;
    const cJSON *t = json_ref_target(&c->doc, ref, &err);
    if (t) return t;
    if (err == FOLIO_EINVAL)
        *rc = folio_err(FOLIO_EINVAL, "JSON Schema $ref '%s' at %s does not resolve", ref, here(c));
    else {
        const char *h = strchr(ref, '#');
        *rc = folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword '$ref' at %s: %s reference '%s'", here(c),
                        h && h[1] && h[1] != '/' ? "anchor" : "remote", ref);
    }
    return NULL;
}

static int gen(struct ctx *c, const cJSON *s, grammar_expr *out);
enum { GEN_RULE, GEN_INLINE };
static int gen_as(struct ctx *c, const cJSON *s, int mode, int into, grammar_expr *out, int *rule_out);

/* A reference: one rule per target pointer, declared before its body is built. *rule_out: it. */
static int gen_ref(struct ctx *c, const char *ref, grammar_expr *out, int *rule_out) {
    for (int i = 0; i < c->nrefs; i++)
        if (strcmp(c->refs[i].ptr, ref) == 0) {
            *out = grammar_ref(c->b, c->refs[i].rule);
            *rule_out = c->refs[i].rule;
            return 0;
        }
    int rc = 0;
    const cJSON *t = resolve(c, ref, &rc);
    if (!t) return rc;
    if (c->nrefs == c->refcap) {
        int cap = c->refcap ? c->refcap * 2 : 16;
        struct ref_entry *p = realloc(c->refs, (size_t)cap * sizeof(*p));
        if (!p) return FOLIO_ENOMEM;
        c->refs = p;
        c->refcap = cap;
    }
    int rule = grammar_rule_fresh(c->b, "ref");
    char *dup = strdup(ref);
    if (!dup || rule < 0) {
        free(dup);
        return rule < 0 ? FOLIO_EINVAL : FOLIO_ENOMEM;
    }
    c->refs[c->nrefs].ptr = dup;
    c->refs[c->nrefs].rule = rule;
    c->nrefs++;
    /* the target compiles with its own location in messages */
    char saved[sizeof(c->path)];
    size_t saved_len = c->plen;
    memcpy(saved, c->path, sizeof(saved));
    const char *hash = strchr(ref, '#');
    snprintf(c->path, sizeof(c->path), "%s", hash && hash[1] ? hash + 1 : "");
    c->plen = strlen(c->path);
    rc = gen_as(c, t, GEN_INLINE, rule, out, rule_out);
    memcpy(c->path, saved, sizeof(saved));
    c->plen = saved_len;
    return rc;
}

/* ---- merging (allOf, $ref with siblings, anyOf with siblings) ---- */

static int merge_into(struct ctx *c, cJSON *dst, const cJSON *src, int depth);

static int set_false(cJSON *dst) {
    /* an unsatisfiable schema: an empty enum */
    cJSON_DeleteItemFromObjectCaseSensitive(dst, "enum");
    cJSON *e = cJSON_CreateArray();
    if (!e) return FOLIO_ENOMEM;
    cJSON_AddItemToObject(dst, "enum", e);
    return 0;
}

static cJSON *wrap_allof(const cJSON *a, const cJSON *b) {
    cJSON *o = cJSON_CreateObject(), *l = cJSON_CreateArray();
    if (!o || !l) {
        cJSON_Delete(o);
        cJSON_Delete(l);
        return NULL;
    }
    cJSON_AddItemToArray(l, cJSON_Duplicate(a, 1));
    cJSON_AddItemToArray(l, cJSON_Duplicate(b, 1));
    cJSON_AddItemToObject(o, "allOf", l);
    return o;
}

static int is_ap_open(const cJSON *ap) { return !ap || cJSON_IsTrue(ap) || (cJSON_IsObject(ap) && !ap->child); }

/* Whether every property name of `props` is listed in `in`. */
static int props_within(const cJSON *props, const cJSON *in) {
    if (!props) return 1;
    for (const cJSON *e = props->child; e; e = e->next)
        if (!in || !cJSON_GetObjectItemCaseSensitive(in, e->string)) return 0;
    return 1;
}

static int merge_key(struct ctx *c, cJSON *dst, const char *k, const cJSON *v) {
    cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, k);
    if (!d) {
        cJSON *dup = cJSON_Duplicate(v, 1);
        if (!dup) return FOLIO_ENOMEM;
        cJSON_AddItemToObject(dst, k, dup);
        return 0;
    }
    if (cJSON_Compare(d, v, 1)) return 0;
    if (strcmp(k, "type") == 0) {
        int a, b2;
        if (parse_types(c, d, &a) || parse_types(c, v, &b2)) return FOLIO_EINVAL;
        int m = a & b2;
        if ((a & T_NUM) && !(b2 & T_NUM) && (b2 & T_INT)) m &= ~T_NUM;
        if ((b2 & T_NUM) && !(a & T_NUM) && (a & T_INT)) m &= ~T_NUM;
        cJSON *arr = cJSON_CreateArray();
        if (!arr) return FOLIO_ENOMEM;
        static const char *names[] = {"null", "boolean", "object", "array", "string", "number", "integer"};
        for (int i = 0; i < 7; i++) {
            int bit = 1 << i;
            if (!(m & bit)) continue;
            if (bit == T_INT && (m & T_NUM)) continue;
            cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
        }
        cJSON_ReplaceItemInObjectCaseSensitive(dst, "type", arr);
        return 0;
    }
    if (strcmp(k, "properties") == 0 && cJSON_IsObject(d) && cJSON_IsObject(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            cJSON *old = cJSON_GetObjectItemCaseSensitive(d, e->string);
            cJSON *nv = old ? wrap_allof(old, e) : cJSON_Duplicate(e, 1);
            if (!nv) return FOLIO_ENOMEM;
            if (old) cJSON_ReplaceItemInObjectCaseSensitive(d, e->string, nv);
            else cJSON_AddItemToObject(d, e->string, nv);
        }
        return 0;
    }
    if (strcmp(k, "required") == 0 && cJSON_IsArray(d) && cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            int found = 0;
            for (const cJSON *f = d->child; f; f = f->next) found |= cJSON_Compare(e, f, 1);
            if (!found) cJSON_AddItemToArray(d, cJSON_Duplicate(e, 1));
        }
        return 0;
    }
    if (strcmp(k, "additionalProperties") == 0) {
        if (is_ap_open(v)) return 0;
        if (is_ap_open(d)) {
            cJSON_ReplaceItemInObjectCaseSensitive(dst, k, cJSON_Duplicate(v, 1));
            return 0;
        }
        if (cJSON_IsFalse(d) || cJSON_IsFalse(v)) {
            cJSON_ReplaceItemInObjectCaseSensitive(dst, k, cJSON_CreateFalse());
            return 0;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(dst, k, wrap_allof(d, v));
        return 0;
    }
    if ((strcmp(k, "items") == 0 && cJSON_IsObject(d) && cJSON_IsObject(v)) ||
        strcmp(k, "additionalItems") == 0 || strcmp(k, "unevaluatedProperties") == 0) {
        cJSON *w = wrap_allof(d, v);
        if (!w) return FOLIO_ENOMEM;
        cJSON_ReplaceItemInObjectCaseSensitive(dst, k, w);
        return 0;
    }
    int is_min = strcmp(k, "minimum") == 0 || strcmp(k, "minLength") == 0 || strcmp(k, "minItems") == 0 ||
                 strcmp(k, "minProperties") == 0;
    int is_max = strcmp(k, "maximum") == 0 || strcmp(k, "maxLength") == 0 || strcmp(k, "maxItems") == 0 ||
                 strcmp(k, "maxProperties") == 0;
    if ((strcmp(k, "exclusiveMinimum") == 0 || strcmp(k, "exclusiveMaximum") == 0) && cJSON_IsNumber(d) && cJSON_IsNumber(v))
        is_min = k[9] == 'i', is_max = k[9] == 'a';
    if ((is_min || is_max) && cJSON_IsNumber(d) && cJSON_IsNumber(v)) {
        if ((is_min && v->valuedouble > d->valuedouble) || (is_max && v->valuedouble < d->valuedouble))
            cJSON_SetNumberValue(d, v->valuedouble);
        return 0;
    }
    if (strcmp(k, "enum") == 0 && cJSON_IsArray(d) && cJSON_IsArray(v)) {
        cJSON *keep = cJSON_CreateArray();
        if (!keep) return FOLIO_ENOMEM;
        for (const cJSON *e = d->child; e; e = e->next) {
            int found = 0;
            for (const cJSON *f = v->child; f; f = f->next) found |= cJSON_Compare(e, f, 1);
            if (found) cJSON_AddItemToArray(keep, cJSON_Duplicate(e, 1));
        }
        cJSON_ReplaceItemInObjectCaseSensitive(dst, k, keep);
        return 0;
    }
    if (strcmp(k, "const") == 0) return set_false(dst);
    if (strcmp(k, "uniqueItems") == 0 || strcmp(k, "nullable") == 0) {
        cJSON_ReplaceItemInObjectCaseSensitive(dst, k, cJSON_Duplicate(cJSON_IsTrue(d) ? d : v, 1));
        return 0;
    }
    if (strcmp(k, "anyOf") == 0 || strcmp(k, "oneOf") == 0) {
        /* two alternative lists: keep both through a nested allOf of the second */
        cJSON *w = cJSON_CreateObject();
        if (!w) return FOLIO_ENOMEM;
        cJSON_AddItemToObject(w, k, cJSON_Duplicate(v, 1));
        cJSON *all = cJSON_GetObjectItemCaseSensitive(dst, "allOf");
        if (!all) {
            all = cJSON_CreateArray();
            cJSON_AddItemToObject(dst, "allOf", all);
        }
        cJSON_AddItemToArray(all, w);
        return 0;
    }
    return unsup(c, "allOf");
}

static int merge_into(struct ctx *c, cJSON *dst, const cJSON *src, int depth) {
    int rc;
    if (depth > MAX_MERGE_DEPTH) return unsup(c, "allOf");
    if (cJSON_IsTrue(src)) return 0;
    if (cJSON_IsFalse(src)) return set_false(dst);
    if (!cJSON_IsObject(src)) return folio_err(FOLIO_EINVAL, "JSON Schema at %s: allOf item is not a schema", here(c));
    /* closed additionalProperties on one side forbid the other side's extra properties: an
     * intersection we do not express */
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(dst, "properties"), *sp = cJSON_GetObjectItemCaseSensitive(src, "properties");
    if ((!is_ap_open(cJSON_GetObjectItemCaseSensitive(dst, "additionalProperties")) && !props_within(sp, dp)) ||
        (!is_ap_open(cJSON_GetObjectItemCaseSensitive(src, "additionalProperties")) && !props_within(dp, sp)))
        return folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword 'allOf' at %s: additionalProperties closed against another branch's properties", here(c));
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(src, "$ref");
    if (cJSON_IsString(ref)) {
        const cJSON *t = resolve(c, ref->valuestring, &rc);
        if (!t) return rc;
        if ((rc = merge_into(c, dst, t, depth + 1))) return rc;
    }
    for (const cJSON *e = src->child; e; e = e->next) {
        if (strcmp(e->string, "$ref") == 0 || !is_constraint(e->string)) continue;
        if (strcmp(e->string, "allOf") == 0 && cJSON_IsArray(e)) {
            for (const cJSON *a = e->child; a; a = a->next)
                if ((rc = merge_into(c, dst, a, depth + 1))) return rc;
            continue;
        }
        if ((rc = merge_key(c, dst, e->string, e))) return rc;
    }
    return 0;
}

/* A new schema: the merge of the constraint keywords of `a` (all but `skip`) and `b`. */
static int merged(struct ctx *c, const cJSON *a, const char *skip, const cJSON *b, cJSON **out) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return FOLIO_ENOMEM;
    int rc = own(c, m);
    if (rc) return rc;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!is_constraint(e->string) || strcmp(e->string, skip) == 0) continue;
        if (strcmp(e->string, "allOf") == 0 && cJSON_IsArray(e)) {
            for (const cJSON *x = e->child; x; x = x->next)
                if ((rc = merge_into(c, m, x, 1))) return rc;
            continue;
        }
        if (strcmp(e->string, "$ref") == 0) {
            if (!cJSON_IsString(e)) return folio_err(FOLIO_EINVAL, "JSON Schema '$ref' at %s is not a string", here(c));
            const cJSON *t = resolve(c, e->valuestring, &rc);
            if (!t) return rc;
            if ((rc = merge_into(c, m, t, 1))) return rc;
            continue;
        }
        if ((rc = merge_key(c, m, e->string, e))) return rc;
    }
    if (b && (rc = merge_into(c, m, b, 1))) return rc;
    *out = m;
    return 0;
}

/* ---- numbers ---- */

static int ndigits(uint64_t v) {
    int n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

/* Decimal strings of equal length n from lo to hi (as digit strings), leading zeros allowed. */
static grammar_expr same_len(struct ctx *c, const char *lo, const char *hi, int n) {
    if (n == 0) return grammar_empty(c->b);
    if (strncmp(lo, hi, (size_t)n) == 0) return grammar_literal(c->b, lo, (size_t)n);
    if (lo[0] == hi[0]) return grammar_seq2(c->b, grammar_literal(c->b, lo, 1), same_len(c, lo + 1, hi + 1, n - 1));
    int lo_zeros = 1, hi_nines = 1;
    for (int i = 1; i < n; i++) lo_zeros &= lo[i] == '0', hi_nines &= hi[i] == '9';
    grammar_expr alts[3];
    int na = 0;
    char first = lo[0], last = hi[0];
    char nines[24], zeros[24];
    memset(nines, '9', sizeof(nines));
    memset(zeros, '0', sizeof(zeros));
    if (!lo_zeros) {
        alts[na++] = grammar_seq2(c->b, grammar_literal(c->b, lo, 1), same_len(c, lo + 1, nines, n - 1));
        first++;
    }
    if (!hi_nines) last--;
    if (first <= last)
        alts[na++] = grammar_seq2(c->b, grammar_byte_range(c->b, (uint8_t)first, (uint8_t)last),
                                  grammar_repeat(c->b, grammar_byte_range(c->b, '0', '9'), n - 1, n - 1));
    if (!hi_nines) alts[na++] = grammar_seq2(c->b, grammar_literal(c->b, hi, 1), same_len(c, zeros, hi + 1, n - 1));
    return grammar_alt(c->b, alts, na);
}

/* Unsigned integers lo..hi in JSON spelling (no leading zeros); has_hi 0: unbounded. */
static grammar_expr uint_range(struct ctx *c, uint64_t lo, uint64_t hi, int has_hi) {
    grammar_expr alts[24];
    int na = 0, dlo = ndigits(lo), dhi = has_hi ? ndigits(hi) : dlo;
    for (int d = dlo; d <= dhi; d++) {
        uint64_t p = 1;
        for (int i = 1; i < d; i++) p *= 10;
        uint64_t a = d == 1 ? 0 : p, bmax = d == 20 ? UINT64_MAX : p * 10 - 1;
        if (a < lo) a = lo;
        uint64_t bb = has_hi && hi < bmax ? hi : bmax;
        if (a > bb) continue;
        char sa[24], sb[24];
        snprintf(sa, sizeof(sa), "%llu", (unsigned long long)a);
        snprintf(sb, sizeof(sb), "%llu", (unsigned long long)bb);
        alts[na++] = same_len(c, sa, sb, d);
    }
    if (!has_hi && dlo < 20)
        alts[na++] = grammar_seq2(c->b, grammar_byte_range(c->b, '1', '9'),
                                  grammar_repeat(c->b, grammar_byte_range(c->b, '0', '9'), dlo, -1));
    return grammar_alt(c->b, alts, na);
}

struct bounds {
    int has_lo, has_hi, lo_excl, hi_excl;
    double lo, hi;
};

static int read_bounds(struct ctx *c, const cJSON *s, struct bounds *bd) {
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maximum");
    const cJSON *emn = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum");
    const cJSON *emx = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
    memset(bd, 0, sizeof(*bd));
    if (mn) {
        if (!cJSON_IsNumber(mn)) return folio_err(FOLIO_EINVAL, "JSON Schema 'minimum' at %s is not a number", here(c));
        bd->has_lo = 1, bd->lo = mn->valuedouble;
        bd->lo_excl = cJSON_IsTrue(emn); /* draft 4: a boolean modifier */
    }
    if (mx) {
        if (!cJSON_IsNumber(mx)) return folio_err(FOLIO_EINVAL, "JSON Schema 'maximum' at %s is not a number", here(c));
        bd->has_hi = 1, bd->hi = mx->valuedouble;
        bd->hi_excl = cJSON_IsTrue(emx);
    }
    if (cJSON_IsNumber(emn) && (!bd->has_lo || emn->valuedouble >= bd->lo))
        bd->has_lo = 1, bd->lo = emn->valuedouble, bd->lo_excl = 1;
    if (cJSON_IsNumber(emx) && (!bd->has_hi || emx->valuedouble <= bd->hi))
        bd->has_hi = 1, bd->hi = emx->valuedouble, bd->hi_excl = 1;
    return 0;
}

static int gen_integer(struct ctx *c, const cJSON *s, grammar_expr *out) {
    struct bounds bd;
    int rc = read_bounds(c, s, &bd);
    if (rc) return rc;
    const double LIM = 9.2e18;
    double lo = -INFINITY, hi = INFINITY;
    if (bd.has_lo) lo = bd.lo_excl ? floor(bd.lo) + 1 : ceil(bd.lo);
    if (bd.has_hi) hi = bd.hi_excl ? ceil(bd.hi) - 1 : floor(bd.hi);
    if (lo < -LIM) lo = -INFINITY;
    if (hi > LIM) hi = INFINITY;
    if (lo > hi) {
        *out = dead(c);
        return 0;
    }
    if (isinf(lo) && isinf(hi)) {
        *out = int_grammar(c);
        return 0;
    }
    grammar_expr alts[3];
    int na = 0;
    if (hi >= 0) /* non-negative part */
        alts[na++] = uint_range(c, lo > 0 ? (uint64_t)lo : 0, isinf(hi) ? 0 : (uint64_t)hi, !isinf(hi));
    if (lo < 0) { /* negative part: magnitudes */
        uint64_t mlo = hi < 0 ? (uint64_t)(-hi) : 1;
        alts[na++] = grammar_seq2(c->b, lit(c, "-"), uint_range(c, mlo, isinf(lo) ? 0 : (uint64_t)(-lo), !isinf(lo)));
    }
    if (lo <= 0 && hi >= 0) alts[na++] = lit(c, "-0"); /* -0 is 0 */
    *out = grammar_alt(c->b, alts, na);
    return 0;
}

/* Decimal magnitudes x (I or I.F, no exponent) with a <= x <= b (a < x, x < b when exclusive;
 * has_b 0: no upper bound), a and b whole. x >= a iff I >= a; x > a iff I > a, or I == a with
 * a non-zero fraction; x <= b iff I < b, or I == b with a zero fraction. */
static grammar_expr magnitude(struct ctx *c, uint64_t a, int a_ex, int has_b, uint64_t b, int b_ex) {
    grammar_expr alts[3];
    int na = 0;
    char s[32];
    grammar_expr frac_any = grammar_repeat(c->b, grammar_seq2(c->b, lit(c, "."), digits(c, 1)), 0, 1);
    uint64_t lo = a + (a_ex ? 1 : 0);
    if (!has_b || (b >= 1 && lo <= b - 1)) alts[na++] = grammar_seq2(c->b, uint_range(c, lo, has_b ? b - 1 : 0, has_b), frac_any);
    if (a_ex && (!has_b || a < b)) {
        snprintf(s, sizeof(s), "%llu.", (unsigned long long)a);
        grammar_expr nzf = seq3(c, grammar_repeat(c->b, lit(c, "0"), 0, -1), grammar_byte_range(c->b, '1', '9'), digits(c, 0));
        alts[na++] = grammar_seq2(c->b, lit(c, s), nzf);
    }
    if (has_b && !b_ex && (b > a || (b == a && !a_ex))) {
        snprintf(s, sizeof(s), "%llu", (unsigned long long)b);
        grammar_expr zf = grammar_repeat(c->b, grammar_seq2(c->b, lit(c, "."), grammar_repeat(c->b, lit(c, "0"), 1, -1)), 0, 1);
        alts[na++] = grammar_seq2(c->b, lit(c, s), zf);
    }
    return grammar_alt(c->b, alts, na);
}

/* A number within whole-number bounds, exactly, written without an exponent. */
static grammar_expr bounded_decimal(struct ctx *c, const struct bounds *bd) {
    grammar_expr alts[2];
    int na = 0;
    double L = bd->lo, H = bd->hi;
    if (!bd->has_hi || H >= 0) { /* x >= 0 */
        int nonneg_lo = bd->has_lo && L >= 0;
        alts[na++] = magnitude(c, nonneg_lo ? (uint64_t)L : 0, nonneg_lo && bd->lo_excl, bd->has_hi,
                               bd->has_hi ? (uint64_t)H : 0, bd->hi_excl);
    }
    if (!bd->has_lo || L < 0) { /* "-" then the magnitude; -0 counts as 0 */
        uint64_t a = 0;
        int a_ex = 0;
        if (bd->has_hi && H < 0) a = (uint64_t)(-H), a_ex = bd->hi_excl;
        else if (bd->has_hi && H == 0) a_ex = bd->hi_excl;
        alts[na++] = grammar_seq2(c->b, lit(c, "-"), magnitude(c, a, a_ex, bd->has_lo, bd->has_lo ? (uint64_t)(-L) : 0, bd->lo_excl));
    }
    return grammar_alt(c->b, alts, na);
}

static int gen_number(struct ctx *c, const cJSON *s, grammar_expr *out) {
    struct bounds bd;
    int rc = read_bounds(c, s, &bd);
    if (rc) return rc;
    if (!bd.has_lo && !bd.has_hi) {
        *out = number_grammar(c);
        return 0;
    }
    if ((!bd.has_lo || (bd.lo == floor(bd.lo) && fabs(bd.lo) < 9e15)) &&
        (!bd.has_hi || (bd.hi == floor(bd.hi) && fabs(bd.hi) < 9e15))) {
        *out = bounded_decimal(c, &bd);
        return 0;
    }
    if (bd.has_lo && bd.lo == 0 && !bd.has_hi) {
        grammar_expr nz = grammar_seq2(c->b, grammar_byte_range(c->b, '1', '9'), digits(c, 0));
        grammar_expr uint = grammar_alt2(c->b, lit(c, "0"), nz);
        if (!bd.lo_excl) {
            *out = grammar_seq2(c->b, uint, frac_exp(c));
            return 0;
        }
        /* > 0: a non-zero mantissa */
        grammar_expr exp = grammar_repeat(
            c->b, seq3(c, hexset(c, "eE"), grammar_repeat(c->b, hexset(c, "+-"), 0, 1), digits(c, 1)), 0, 1);
        grammar_expr fr = grammar_repeat(c->b, grammar_seq2(c->b, lit(c, "."), digits(c, 1)), 0, 1);
        grammar_expr zero_frac = seq3(c, lit(c, "0."), grammar_repeat(c->b, lit(c, "0"), 0, -1),
                                      grammar_seq2(c->b, grammar_byte_range(c->b, '1', '9'), digits(c, 0)));
        *out = grammar_seq2(c->b, grammar_alt2(c->b, grammar_seq2(c->b, nz, fr), zero_frac), exp);
        return 0;
    }
    c->relaxed |= JSON_SCHEMA_RELAX_NUMBER_BOUNDS;
    *out = number_grammar(c);
    return 0;
}

/* ---- strings ---- */

/* A pattern or format string: the body a rule of its own (followed only by the closing quote,
 * so the same regex shares its token sets across schemas), memoized per grammar. */
static int gen_regex_string(struct ctx *c, const char *re, int unanchored, int min_len, int max_len, grammar_expr *out) {
    grammar_expr body;
    int exact = 1;
    char tag[64];
    int tn = snprintf(tag, sizeof(tag), "re %d %d %d", unanchored, min_len, max_len);
    uint64_t h0 = 0x7265, h1 = 0x6765;
    hash_text(tag, (size_t)tn, &h0, &h1);
    hash_text(re, strlen(re), &h0, &h1);
    int hit = memo_find(c, h0, h1);
    if (hit >= 0) {
        *out = seq3(c, lit(c, "\""), grammar_ref(c->b, hit), lit(c, "\""));
        return 0;
    }
    int rc = gram_regex_json_expr(c->b, re, strlen(re), unanchored, min_len, max_len, &body, &exact);
    if (rc) {
        if (rc == FOLIO_EUNSUP || rc == FOLIO_EINVAL) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", folio_last_error());
            return folio_err(rc, "JSON Schema 'pattern' at %s: %s", here(c), msg);
        }
        return rc;
    }
    if (!exact) c->relaxed |= JSON_SCHEMA_RELAX_LENGTH_WITH_PATTERN;
    int rule = grammar_rule_fresh(c->b, "string_re");
    if (rule < 0 || grammar_rule_define(c->b, rule, body) < 0) return FOLIO_EINVAL;
    if ((rc = memo_put(c, h0, h1, rule))) return rc;
    *out = seq3(c, lit(c, "\""), grammar_ref(c->b, rule), lit(c, "\""));
    return 0;
}

/* jchar{lo,hi} (hi -1: unbounded), the same language as a repeat of the json_char rule. The
 * first few required characters are inline, so the states a string starts in take bytes and
 * get exact token sets, and an unbounded tail is the shared body rule. */
#define INLINE_MIN_CHARS 3
static grammar_expr counted_chars(struct ctx *c, int lo, int hi) {
    if (lo == 0 && hi < 0) return string_body(c);
    int k = lo < INLINE_MIN_CHARS ? lo : INLINE_MIN_CHARS;
    grammar_expr head = grammar_repeat(c->b, jchar_expr(c), k, k);
    if (hi < 0) return seq3(c, head, grammar_repeat(c->b, jchar(c), lo - k, lo - k), string_body(c));
    return grammar_seq2(c->b, head, grammar_repeat(c->b, jchar(c), lo - k, hi - k));
}

static int gen_string(struct ctx *c, const cJSON *s, grammar_expr *out) {
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    if ((mn && !cJSON_IsNumber(mn)) || (mx && !cJSON_IsNumber(mx)) || (pat && !cJSON_IsString(pat)))
        return folio_err(FOLIO_EINVAL, "invalid JSON Schema string keyword at %s", here(c));
    double lo = mn ? ceil(mn->valuedouble) : 0, hi = mx ? floor(mx->valuedouble) : -1;
    if (lo < 0) lo = 0;
    if (mx && hi < lo) {
        *out = dead(c);
        return 0;
    }
    if (lo > GRAMMAR_MAX_REPEAT) {
        size_t save;
        path_push(c, "minLength", &save);
        int rc = folio_err(FOLIO_EUNSUP, "unsupported JSON Schema minLength above %d at %s", GRAMMAR_MAX_REPEAT, here(c));
        path_pop(c, save);
        return rc;
    }
    if (hi > GRAMMAR_MAX_REPEAT) {
        c->relaxed |= JSON_SCHEMA_RELAX_LONG_MAXLENGTH;
        hi = -1;
    }
    const char *fre = NULL;
    if (cJSON_IsString(fmt)) {
        fre = json_format_regex(fmt->valuestring);
        if (!fre) c->relaxed |= JSON_SCHEMA_RELAX_UNKNOWN_FORMAT;
    }
    if (pat) {
        if (fre) c->relaxed |= JSON_SCHEMA_RELAX_FORMAT_WITH_PATTERN;
        size_t save;
        path_push(c, "pattern", &save);
        int rc = gen_regex_string(c, pat->valuestring, 1, (int)lo, (int)hi, out);
        path_pop(c, save);
        return rc;
    }
    if (fre) return gen_regex_string(c, fre, 0, (int)lo, (int)hi, out);
    *out = seq3(c, lit(c, "\""), counted_chars(c, (int)lo, (int)hi), lit(c, "\""));
    return 0;
}

/* ---- arrays ---- */

static int gen_sub(struct ctx *c, const cJSON *s, const char *k1, const char *k2, grammar_expr *out) {
    size_t s1, s2 = 0;
    path_push(c, k1, &s1);
    if (k2) path_push(c, k2, &s2);
    int rc = gen(c, s, out);
    if (k2) path_pop(c, s2);
    path_pop(c, s1);
    return rc;
}

static int gen_array(struct ctx *c, const cJSON *s, grammar_expr *out) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalItems");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
    const char *prefix_kw = "prefixItems", *rest_kw = "items";
    const cJSON *rest = items;
    if (cJSON_IsArray(items)) { /* draft 4-2019: items as a list */
        prefix = items, prefix_kw = "items";
        rest = addl, rest_kw = "additionalItems";
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "uniqueItems") && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "uniqueItems")))
        c->relaxed |= JSON_SCHEMA_RELAX_UNIQUE_ITEMS;
    long lo = cJSON_IsNumber(mn) ? (long)ceil(mn->valuedouble) : 0;
    long hi = cJSON_IsNumber(mx) ? (long)floor(mx->valuedouble) : -1;
    if (lo < 0) lo = 0;
    if (lo > GRAMMAR_MAX_REPEAT || hi > GRAMMAR_MAX_REPEAT) {
        return folio_err(FOLIO_EUNSUP, "unsupported JSON Schema minItems/maxItems above %d at %s", GRAMMAR_MAX_REPEAT, here(c));
    }
    if (hi >= 0 && hi < lo) {
        *out = dead(c);
        return 0;
    }
    int k = prefix ? cJSON_GetArraySize(prefix) : 0;
    if (hi >= 0 && k > hi) k = (int)hi;
    grammar_expr w = ws(c), comma = grammar_seq2(c->b, lit(c, ","), w);
    grammar_expr rest_e;
    int rc;
    if (!rest || cJSON_IsTrue(rest)) {
        rest_e = any_value(c);
    } else if ((rc = gen_sub(c, rest, rest_kw, NULL, &rest_e))) {
        return rc;
    }
    int rest_ok = !cJSON_IsFalse(rest);
    grammar_expr *pe = malloc(((size_t)k + 1) * sizeof(*pe));
    if (!pe) return FOLIO_ENOMEM;
    int i = 0;
    for (const cJSON *e = prefix ? prefix->child : NULL; e && i < k; e = e->next, i++) {
        char idx[16];
        snprintf(idx, sizeof(idx), "%d", i);
        if ((rc = gen_sub(c, e, prefix_kw, idx, &pe[i]))) {
            free(pe);
            return rc;
        }
        pe[i] = grammar_seq2(c->b, pe[i], w);
    }
    grammar_expr re = grammar_seq2(c->b, rest_e, w);
    /* tail after position k (k elements emitted, k >= 1): more rest elements */
    grammar_expr tail;
    long tlo = lo - k > 0 ? lo - k : 0, thi = hi < 0 ? -1 : hi - k;
    if (!rest_ok) tail = tlo > 0 ? dead(c) : grammar_empty(c->b);
    else tail = grammar_repeat(c->b, grammar_seq2(c->b, comma, re), (int)tlo, (int)thi);
    /* walk back through the prefix: tail_i = elements i.. given i >= 1 already emitted */
    for (int j = k - 1; j >= 1; j--) {
        grammar_expr present = seq3(c, comma, pe[j], tail);
        tail = j >= lo ? grammar_alt2(c->b, present, grammar_empty(c->b)) : present;
    }
    grammar_expr body;
    if (k > 0) {
        body = grammar_seq2(c->b, pe[0], tail);
    } else if (!rest_ok || hi == 0) {
        body = lo > 0 ? dead(c) : grammar_empty(c->b);
        tlo = 0;
    } else {
        body = grammar_seq2(c->b, re, grammar_repeat(c->b, grammar_seq2(c->b, comma, re), lo > 1 ? (int)lo - 1 : 0,
                                                     hi < 0 ? -1 : (int)hi - 1));
    }
    if (lo == 0 && !(k == 0 && (!rest_ok || hi == 0))) body = grammar_alt2(c->b, body, grammar_empty(c->b));
    free(pe);
    *out = grammar_seq(c->b, (grammar_expr[]){lit(c, "["), w, body, lit(c, "]")}, 4);
    return 0;
}

/* ---- objects ---- */

/* Keys that are none of the listed names: a trie of the names, where a key either leaves the
 * trie (any character no name continues with, then anything) or stops at a trie node that ends
 * no name. Characters on the trie are matched as gram_regex_json_class spells them; the tail
 * after leaving the trie takes every JSON spelling. This keeps additional properties from
 * re-using a listed name with a value the listed schema forbids. */
struct trie {
    uint32_t *cp;
    int *kid, *next, *term;
    int n, cap;
};

static int trie_node(struct trie *t, uint32_t cp) {
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        uint32_t *a = realloc(t->cp, (size_t)cap * sizeof(*a));
        if (a) t->cp = a;
        int *b1 = realloc(t->kid, (size_t)cap * sizeof(int));
        if (b1) t->kid = b1;
        int *b2 = realloc(t->next, (size_t)cap * sizeof(int));
        if (b2) t->next = b2;
        int *b3 = realloc(t->term, (size_t)cap * sizeof(int));
        if (b3) t->term = b3;
        if (!a || !b1 || !b2 || !b3) return -1;
        t->cap = cap;
    }
    t->cp[t->n] = cp;
    t->kid[t->n] = t->next[t->n] = -1;
    t->term[t->n] = 0;
    return t->n++;
}

static int trie_add(struct trie *t, const char *name) {
    int node = 0;
    const unsigned char *p = (const unsigned char *)name;
    while (*p) {
        uint32_t cp = *p;
        int len = cp < 0x80 ? 1 : cp >> 5 == 6 ? 2 : cp >> 4 == 14 ? 3 : 4;
        if (len > 1) cp &= 0xFFu >> (len + 1);
        for (int k = 1; k < len && p[k]; k++) cp = cp << 6 | (p[k] & 63u);
        for (int k = 0; k < len && *p; k++) p++;
        int ch = t->kid[node];
        while (ch >= 0 && t->cp[ch] != cp) ch = t->next[ch];
        if (ch < 0) {
            if ((ch = trie_node(t, cp)) < 0) return FOLIO_ENOMEM;
            t->next[ch] = t->kid[node];
            t->kid[node] = ch;
        }
        node = ch;
    }
    t->term[node] = 1;
    return 0;
}

/* The way out of the trie at a node: one character of the given ranges, then the tail. A rule
 * per distinct set of ranges (most nodes have one child, so the sets repeat across nodes and
 * schemas): the node's automaton state then calls it before reading a byte, and the compiler
 * reuses the rule's token sets (a whole vocabulary's worth) instead of walking them per node;
 * and the ranges' escape spellings are states of that rule, not of every node. */
static grammar_expr key_tail(struct ctx *c, const uint32_t (*rg)[2], int n, grammar_expr tail) {
    uint64_t h0 = 0x6b657974, h1 = 0x7461696c;
    hash_text("key_tail", 8, &h0, &h1);
    hash_text((const char *)rg, (size_t)n * sizeof *rg, &h0, &h1);
    hash_text((const char *)&tail, sizeof tail, &h0, &h1);
    int rule = memo_find(c, h0, h1);
    if (rule < 0) {
        rule = grammar_rule_fresh(c->b, "key_tail");
        if (rule < 0 || grammar_rule_define(c->b, rule, grammar_seq2(c->b, gram_regex_json_class(c->b, rg, n), tail)) < 0 ||
            memo_put(c, h0, h1, rule))
            return GRAMMAR_NONE;
    }
    return grammar_ref(c->b, rule);
}

static grammar_expr trie_emit(struct ctx *c, struct trie *t, int node, int depth, grammar_expr tail) {
    int nk = 0;
    for (int ch = t->kid[node]; ch >= 0; ch = t->next[ch]) nk++;
    grammar_expr *alts = malloc(((size_t)nk + 2) * sizeof(*alts));
    uint32_t(*rg)[2] = malloc(((size_t)nk + 1) * sizeof(*rg));
    if (!alts || !rg) {
        free(alts);
        free(rg);
        return GRAMMAR_NONE;
    }
    int na = 0, nr = 0;
    if (!t->term[node]) alts[na++] = grammar_empty(c->b);
    /* complement of the children's code points, built from their sorted list */
    uint32_t *cps = malloc(((size_t)nk + 1) * sizeof(*cps));
    if (!cps) {
        free(alts);
        free(rg);
        return GRAMMAR_NONE;
    }
    int m = 0;
    for (int ch = t->kid[node]; ch >= 0; ch = t->next[ch]) {
        uint32_t one[1][2] = {{t->cp[ch], t->cp[ch]}};
        grammar_expr sub = trie_emit(c, t, ch, depth + 1, tail);
        alts[na++] = grammar_seq2(c->b, gram_regex_json_class(c->b, (const uint32_t(*)[2])one, 1), sub);
        cps[m++] = t->cp[ch];
    }
    for (int i = 1; i < m; i++) /* insertion sort: few children */
        for (int j = i; j > 0 && cps[j - 1] > cps[j]; j--) {
            uint32_t x = cps[j];
            cps[j] = cps[j - 1];
            cps[j - 1] = x;
        }
    uint32_t next = 0;
    for (int i = 0; i < m; i++) {
        if (cps[i] > next) {
            uint32_t hi = cps[i] - 1;
            if (!(next >= 0xD800 && hi <= 0xDFFF)) rg[nr][0] = next, rg[nr][1] = hi, nr++;
        }
        next = cps[i] + 1;
    }
    if (next <= 0x10FFFF) rg[nr][0] = next, rg[nr][1] = 0x10FFFF, nr++;
    /* drop the surrogate block, which gram_regex_json_class does not expect */
    int w = 0;
    uint32_t(*rg2)[2] = malloc(((size_t)nr * 2 + 1) * sizeof(*rg2));
    for (int i = 0; rg2 && i < nr; i++) {
        uint32_t lo = rg[i][0], hi = rg[i][1];
        if (hi < 0xD800 || lo > 0xDFFF) { rg2[w][0] = lo, rg2[w][1] = hi, w++; continue; }
        if (lo < 0xD800) rg2[w][0] = lo, rg2[w][1] = 0xD7FF, w++;
        if (hi > 0xDFFF) rg2[w][0] = 0xE000, rg2[w][1] = hi, w++;
    }
    if (rg2 && w) alts[na++] = key_tail(c, (const uint32_t(*)[2])rg2, w, tail);
    grammar_expr r = rg2 ? grammar_alt(c->b, alts, na) : GRAMMAR_NONE;
    free(rg2);
    free(cps);
    free(rg);
    free(alts);
    /* every so often a rule of its own, so long names do not nest past GRAMMAR_MAX_DEPTH */
    if (depth % 16 == 15 && r != GRAMMAR_NONE) {
        int rule = grammar_rule_fresh(c->b, "key");
        if (rule < 0 || grammar_rule_define(c->b, rule, r) < 0) return GRAMMAR_NONE;
        r = grammar_ref(c->b, rule);
    }
    return r;
}

static grammar_expr key_not_in(struct ctx *c, const char *const *names, int n) {
    if (n == 0) return any_string(c);
    struct trie t = {0};
    grammar_expr r = GRAMMAR_NONE;
    if (trie_node(&t, 0) < 0) goto out;
    for (int i = 0; i < n; i++)
        if (trie_add(&t, names[i])) goto out;
    grammar_expr body = trie_emit(c, &t, 0, 0, string_body(c));
    /* a rule, so that the names' trie is one set of states, not one per place a key may go */
    int rule = grammar_rule_fresh(c->b, "key");
    if (rule < 0 || grammar_rule_define(c->b, rule, seq3(c, lit(c, "\""), body, lit(c, "\""))) < 0) goto out;
    r = grammar_ref(c->b, rule);
out:
    free(t.cp);
    free(t.kid);
    free(t.next);
    free(t.term);
    return r;
}

struct member {
    const char *name;
    grammar_expr kv; /* "name" ws : ws value ws */
    int required;
};

struct objgen {
    struct ctx *c;
    struct member *m;
    int n, minp, maxp, kcap, extras;
    grammar_expr kv_extra, comma;
    grammar_expr *memo; /* [2][n+1][kcap+1] */
};

/* The members from i on, k of them already written (capped at kcap), first: none written yet.
 * Built bottom-up, i from n down to 0, so that a schema's property count never becomes C
 * recursion (HTTP threads have small stacks); every MEMBER_RULE_EVERY properties the tail
 * becomes a rule of its own, so that the expression nesting of many optional properties stays
 * under GRAMMAR_MAX_DEPTH, and every MEMBER_TAIL_EVERY properties the tail after a written
 * member does, since the tail with no member written yet repeats it once per member (the
 * automaton is built per reference, so without a rule it grows with the square of the count). */
#define MEMBER_RULE_EVERY 32
#define MEMBER_TAIL_EVERY 8
static grammar_expr *member_slot(struct objgen *o, int i, int k, int first) {
    return &o->memo[((size_t)first * (size_t)(o->n + 1) + (size_t)i) * (size_t)(o->kcap + 1) + (size_t)k];
}

static grammar_expr member_at(struct objgen *o, int i, int k, int first) {
    struct ctx *c = o->c;
    if (o->maxp >= 0 && k > o->maxp) return dead(c);
    if (i == o->n) {
        int lo = o->minp - k > 0 ? o->minp - k : 0, hi = o->maxp < 0 ? -1 : o->maxp - k;
        if (!o->extras || hi == 0) return lo == 0 ? grammar_empty(c->b) : dead(c);
        if (!first) return grammar_repeat(c->b, grammar_seq2(c->b, o->comma, o->kv_extra), lo, hi);
        grammar_expr more = grammar_repeat(c->b, grammar_seq2(c->b, o->comma, o->kv_extra), lo > 1 ? lo - 1 : 0,
                                           hi < 0 ? -1 : hi - 1);
        grammar_expr r = grammar_seq2(c->b, o->kv_extra, more);
        return lo == 0 ? grammar_alt2(c->b, r, grammar_empty(c->b)) : r;
    }
    int nk = k + 1 > o->kcap ? o->kcap : k + 1;
    grammar_expr head = first ? o->m[i].kv : grammar_seq2(c->b, o->comma, o->m[i].kv);
    /* the count does not change (no counting, or at its cap): the tail once, not twice, so
     * that a run of optional members does not double the automaton per member */
    if (!first && nk == k && !o->m[i].required)
        return grammar_seq2(c->b, grammar_repeat(c->b, head, 0, 1), *member_slot(o, i + 1, k, 0));
    grammar_expr present = grammar_seq2(c->b, head, *member_slot(o, i + 1, nk, 0));
    return o->m[i].required ? present : grammar_alt2(c->b, present, *member_slot(o, i + 1, k, first));
}

static grammar_expr members(struct objgen *o) {
    struct ctx *c = o->c;
    for (int i = o->n; i >= 0; i--)
        for (int first = 0; first < 2; first++)
            for (int k = 0; k <= o->kcap; k++) {
                grammar_expr r = member_at(o, i, k, first);
                if (r != GRAMMAR_NONE && i > 0 && i < o->n && i % (first ? MEMBER_RULE_EVERY : MEMBER_TAIL_EVERY) == 0) {
                    int rule = grammar_rule_fresh(c->b, "members");
                    if (rule < 0 || grammar_rule_define(c->b, rule, r) < 0) return GRAMMAR_NONE;
                    r = grammar_ref(c->b, rule);
                }
                *member_slot(o, i, k, first) = r;
            }
    return *member_slot(o, 0, 0, 1);
}

static int is_trivial(const cJSON *s) { return cJSON_IsTrue(s) || (cJSON_IsObject(s) && !has_constraints_except(s, "")); }

/* Patterns every key matches (or every key but "" and line terminators, for .+). */
static int catch_all(const char *re) {
    static const char *const all[] = {"", ".*", "^.*$", "^.*", ".*$", "^(.*)$", ".+", "^.+$", "^.+", ".+$", "^(.+)$", "."};
    return in_list(re, all, sizeof(all) / sizeof(all[0]));
}

/* patternProperties, in the shapes we can express: additionalProperties closed (a key matching
 * pattern i takes schema i), or one catch-all pattern (every key not listed takes its schema),
 * or only trivial pattern schemas beside an open additionalProperties (no constraint at all).
 * *kv gets the additional member grammar, or GRAMMAR_NONE when nothing changes. */
static int gen_pattern_props(struct ctx *c, const cJSON *pp, const struct member *m, int n, int ap_open, int ap_closed,
                             grammar_expr colon, grammar_expr *kv) {
    int np = cJSON_GetArraySize(pp), all_trivial = 1, rc = 0;
    *kv = GRAMMAR_NONE;
    for (const cJSON *e = pp->child; e; e = e->next) all_trivial &= is_trivial(e);
    if (all_trivial && ap_open) return 0;
    if (!ap_closed && !(np == 1 && catch_all(pp->child->string))) return unsup(c, "patternProperties");
    /* a listed property whose name a constraining pattern matches would need both schemas */
    for (const cJSON *e = pp->child; e; e = e->next) {
        if (is_trivial(e)) continue;
        for (int i = 0; i < n; i++) {
            int f = gram_regex_search(e->string, strlen(e->string), m[i].name, strlen(m[i].name));
            if (f < 0) {
                size_t save;
                path_push(c, "patternProperties", &save);
                rc = folio_err(f, "JSON Schema 'patternProperties' at %s: %s", here(c), folio_last_error());
                path_pop(c, save);
                return rc;
            }
            if (f) return unsup(c, "patternProperties");
        }
    }
    grammar_expr *alts = malloc((size_t)np * sizeof(*alts));
    if (!alts) return FOLIO_ENOMEM;
    const char **names = malloc(((size_t)n + 1) * sizeof(*names));
    if (!names) {
        free(alts);
        return FOLIO_ENOMEM;
    }
    for (int i = 0; i < n; i++) names[i] = m[i].name;
    int na = 0;
    for (const cJSON *e = pp->child; e && !rc; e = e->next) {
        grammar_expr key, v;
        if (ap_closed) {
            size_t save;
            path_push(c, "patternProperties", &save);
            rc = gram_regex_json_expr(c->b, e->string, strlen(e->string), 1, 0, -1, &key, NULL);
            if (rc) rc = folio_err(rc, "JSON Schema 'patternProperties' at %s: %s", here(c), folio_last_error());
            path_pop(c, save);
            if (rc) break;
            key = seq3(c, lit(c, "\""), key, lit(c, "\""));
        } else {
            key = key_not_in(c, names, n);
        }
        if ((rc = gen_sub(c, e, "patternProperties", e->string, &v))) break;
        alts[na++] = grammar_seq(c->b, (grammar_expr[]){key, colon, v, ws(c)}, 4);
    }
    /* keys matching two patterns, or a pattern and a listed name, need every schema involved:
     * with additionalProperties closed we require only one */
    if (!rc && ap_closed && (np > 1 || n > 0)) c->relaxed |= JSON_SCHEMA_RELAX_PATTERN_PROPERTIES;
    if (!rc) *kv = grammar_alt(c->b, alts, na);
    free(names);
    free(alts);
    return rc;
}

static int gen_object(struct ctx *c, const cJSON *s, grammar_expr *out) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    const cJSON *mnp = cJSON_GetObjectItemCaseSensitive(s, "minProperties");
    const cJSON *mxp = cJSON_GetObjectItemCaseSensitive(s, "maxProperties");
    if (!ap) ap = cJSON_GetObjectItemCaseSensitive(s, "unevaluatedProperties");
    if (props && !cJSON_IsObject(props)) return folio_err(FOLIO_EINVAL, "JSON Schema 'properties' at %s is not an object", here(c));
    if (req && !cJSON_IsArray(req)) return folio_err(FOLIO_EINVAL, "JSON Schema 'required' at %s is not an array", here(c));
    int extras = ap ? !cJSON_IsFalse(ap) : !c->p->strict;
    int np = props ? cJSON_GetArraySize(props) : 0, nr = req ? cJSON_GetArraySize(req) : 0;
    struct objgen o = {.c = c, .extras = extras, .minp = 0, .maxp = -1};
    int rc = 0;
    o.m = calloc((size_t)(np + nr + 1), sizeof(*o.m));
    if (!o.m) return FOLIO_ENOMEM;
    grammar_expr w = ws(c);
    o.comma = grammar_seq2(c->b, lit(c, ","), w);
    grammar_expr colon = seq3(c, w, lit(c, ":"), w);
    grammar_expr ap_e = GRAMMAR_NONE;
    if (extras || nr) {
        /* additional values (also the schema of a required name that no property lists) */
        if (!ap || cJSON_IsTrue(ap)) ap_e = any_value(c);
        else if (cJSON_IsFalse(ap)) ap_e = dead(c);
        else if ((rc = gen_sub(c, ap, ap == cJSON_GetObjectItemCaseSensitive(s, "additionalProperties") ? "additionalProperties" : "unevaluatedProperties", NULL, &ap_e)))
            goto out;
    }
    for (const cJSON *e = props ? props->child : NULL; e; e = e->next) {
        struct member *m = &o.m[o.n++];
        m->name = e->string;
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (cJSON_IsString(r) && strcmp(r->valuestring, e->string) == 0) m->required = 1;
        grammar_expr v;
        if ((rc = gen_sub(c, e, "properties", e->string, &v))) goto out;
        char *q = json_quote(e->string);
        if (!q) { rc = FOLIO_ENOMEM; goto out; }
        m->kv = grammar_seq(c->b, (grammar_expr[]){lit(c, q), colon, v, w}, 4);
        free(q);
    }
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        if (!cJSON_IsString(r)) { rc = folio_err(FOLIO_EINVAL, "JSON Schema 'required' at %s lists a non-string", here(c)); goto out; }
        int listed = 0;
        for (int i = 0; i < o.n; i++) listed |= strcmp(o.m[i].name, r->valuestring) == 0;
        if (listed) continue;
        struct member *m = &o.m[o.n++];
        m->name = r->valuestring;
        m->required = 1;
        char *q = json_quote(r->valuestring);
        if (!q) { rc = FOLIO_ENOMEM; goto out; }
        m->kv = grammar_seq(c->b, (grammar_expr[]){lit(c, q), colon, ap_e, w}, 4);
        free(q);
    }
    if (extras) {
        const char **names = malloc(((size_t)o.n + 1) * sizeof(*names));
        if (!names) { rc = FOLIO_ENOMEM; goto out; }
        for (int i = 0; i < o.n; i++) names[i] = o.m[i].name;
        grammar_expr key = key_not_in(c, names, o.n);
        free(names);
        o.kv_extra = grammar_seq(c->b, (grammar_expr[]){key, colon, ap_e, w}, 4);
    }
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(s, "patternProperties");
    if (cJSON_IsObject(pp) && pp->child) {
        grammar_expr kv;
        if ((rc = gen_pattern_props(c, pp, o.m, o.n, extras && is_ap_open(ap), !extras, colon, &kv))) goto out;
        if (kv != GRAMMAR_NONE) {
            o.kv_extra = kv;
            o.extras = 1;
        }
    }
    if (cJSON_IsNumber(mnp)) o.minp = (int)fmax(0, ceil(mnp->valuedouble));
    if (cJSON_IsNumber(mxp)) o.maxp = (int)fmax(0, floor(mxp->valuedouble));
    int nreq = 0;
    for (int i = 0; i < o.n; i++) nreq += o.m[i].required;
    if (o.minp <= nreq) o.minp = 0; /* already implied */
    if (o.maxp >= 0 && !extras && o.maxp >= o.n) o.maxp = -1;
    o.kcap = o.maxp >= 0 ? o.maxp + 1 : o.minp;
    if (o.kcap > MAX_PROP_COUNT) {
        rc = unsup(c, o.maxp >= 0 ? "maxProperties" : "minProperties");
        goto out;
    }
    size_t nmemo = 2 * (size_t)(o.n + 1) * (size_t)(o.kcap + 1);
    o.memo = malloc(nmemo * sizeof(*o.memo));
    if (!o.memo) { rc = FOLIO_ENOMEM; goto out; }
    grammar_expr body = members(&o);
    *out = grammar_seq(c->b, (grammar_expr[]){lit(c, "{"), w, body, lit(c, "}")}, 4);
out:
    free(o.memo);
    free(o.m);
    return rc;
}

/* ---- the generator ---- */

static int check_keywords(struct ctx *c, const cJSON *s) {
    for (const cJSON *e = s->child; e; e = e->next) {
        const char *k = e->string;
        if (in_list(k, refused, sizeof(refused) / sizeof(refused[0]))) {
            /* then/else without if never apply */
            if ((strcmp(k, "then") == 0 || strcmp(k, "else") == 0) && !cJSON_GetObjectItemCaseSensitive(s, "if")) continue;
            size_t save;
            path_push(c, k, &save);
            int rc = folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword '%s' at %s", k, here(c));
            path_pop(c, save);
            return rc;
        }
        if (strcmp(k, "if") == 0 && (cJSON_GetObjectItemCaseSensitive(s, "then") || cJSON_GetObjectItemCaseSensitive(s, "else"))) {
            size_t save;
            path_push(c, k, &save);
            int rc = folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword 'if' at %s", here(c));
            path_pop(c, save);
            return rc;
        }
        if (strcmp(k, "unevaluatedProperties") == 0 &&
            (cJSON_GetObjectItemCaseSensitive(s, "allOf") || cJSON_GetObjectItemCaseSensitive(s, "anyOf") ||
             cJSON_GetObjectItemCaseSensitive(s, "oneOf") || cJSON_GetObjectItemCaseSensitive(s, "$ref")))
            return unsup(c, "unevaluatedProperties");
        if (strcmp(k, "multipleOf") == 0) {
            /* multipleOf 1 on integers (or 1 on numbers, making them integers) is a no-op we can express */
            if (!(cJSON_IsNumber(e) && e->valuedouble == 1.0)) {
                size_t save;
                path_push(c, k, &save);
                int rc = folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword 'multipleOf' at %s", here(c));
                path_pop(c, save);
                return rc;
            }
        }
    }
    return 0;
}

static int gen_types(struct ctx *c, const cJSON *s, grammar_expr *out) {
    int types, rc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if ((rc = parse_types(c, t, &types))) return rc;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "nullable"))) types |= T_NULL;
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(s, "multipleOf");
    if (mo && (types & T_NUM)) types &= ~T_NUM; /* multipleOf 1: integers only */
    grammar_expr alts[7];
    int na = 0;
    if (types & T_NULL) alts[na++] = lit(c, "null");
    if (types & T_BOOL) alts[na++] = grammar_alt2(c->b, lit(c, "true"), lit(c, "false"));
    if (types & T_OBJ) {
        if ((rc = gen_object(c, s, &alts[na]))) return rc;
        na++;
    }
    if (types & T_ARR) {
        if ((rc = gen_array(c, s, &alts[na]))) return rc;
        na++;
    }
    if (types & T_STR) {
        if ((rc = gen_string(c, s, &alts[na]))) return rc;
        na++;
    }
    if (types & T_NUM) {
        if ((rc = gen_number(c, s, &alts[na]))) return rc;
        na++;
    } else if (types & T_INT) {
        if ((rc = gen_integer(c, s, &alts[na]))) return rc;
        na++;
    }
    *out = na == 1 ? alts[0] : grammar_alt(c->b, alts, na);
    return 0;
}

static int gen_enum(struct ctx *c, const cJSON *s, const cJSON *en, const cJSON *cst, grammar_expr *out) {
    int types, rc;
    if ((rc = parse_types(c, cJSON_GetObjectItemCaseSensitive(s, "type"), &types))) return rc;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "nullable"))) types |= T_NULL;
    if (en && !cJSON_IsArray(en)) return folio_err(FOLIO_EINVAL, "JSON Schema 'enum' at %s is not an array", here(c));
    int n = en ? cJSON_GetArraySize(en) : 1, na = 0;
    grammar_expr *alts = malloc(((size_t)n + 1) * sizeof(*alts));
    if (!alts) return FOLIO_ENOMEM;
    for (const cJSON *v = en ? en->child : cst; v; v = en ? v->next : NULL) {
        /* a value of a type the schema excludes can never validate */
        if (!(value_type(v) & types)) continue;
        if (cst && en && !cJSON_Compare(v, cst, 1)) continue;
        alts[na++] = const_value(c, v);
    }
    *out = na == 1 ? alts[0] : grammar_alt(c->b, alts, na);
    free(alts);
    return 0;
}

/* Alternatives, grouped into rules of ALT_CHUNK when there are many, since one automaton
 * state may call only so many rules (gram_compile.c) and a branch can be a rule. */
#define ALT_CHUNK 32
static grammar_expr alt_chunked(struct ctx *c, grammar_expr *alts, int n) {
    while (n > ALT_CHUNK) {
        int m = 0;
        for (int i = 0; i < n; i += ALT_CHUNK) {
            int k = n - i < ALT_CHUNK ? n - i : ALT_CHUNK;
            int rule = grammar_rule_fresh(c->b, "alts");
            if (rule < 0 || grammar_rule_define(c->b, rule, grammar_alt(c->b, alts + i, k)) < 0) return GRAMMAR_NONE;
            alts[m++] = grammar_ref(c->b, rule);
        }
        n = m;
    }
    return grammar_alt(c->b, alts, n);
}

/* The finite set a schema's values come from: its enum (or const), or an allOf member's. NULL
 * when there is none. *one: the set is the single value returned (a const). In drafts 3-7 an
 * enum beside $ref does not apply, so it is no domain. */
static const cJSON *finite_domain(const cJSON *s, int ref_alone, int *one) {
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    for (const cJSON *m = s; m; m = m == s ? (cJSON_IsArray(all) ? all->child : NULL) : m->next) {
        if (!cJSON_IsObject(m) || (ref_alone && cJSON_GetObjectItemCaseSensitive(m, "$ref"))) continue;
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(m, "enum"), *cst = cJSON_GetObjectItemCaseSensitive(m, "const");
        *one = !cJSON_IsArray(en) && cst;
        if (cJSON_IsArray(en)) return en;
        if (cst) return cst;
    }
    return NULL;
}

/* A schema whose values are a finite set beside constraints the generator may not express
 * (allOf [{enum}, {not ...}], an enum under an if): exactly the set's values that validate
 * against the whole schema, decided by json_validate. 1 with *out; 0 when s is no such schema
 * or a value cannot be decided (an unsupported keyword: the generator proper then builds or
 * refuses s); an error when the validation budget ran out. */
static int gen_finite(struct ctx *c, const cJSON *s, grammar_expr *out) {
    static const char *const plain[] = {"enum", "const", "type", "nullable"};
    int one = 0, other = 0, rc = 0;
    const cJSON *dom = finite_domain(s, c->doc.ref_alone, &one);
    if (!dom) return 0;
    for (const cJSON *e = s->child; e; e = e->next)
        other |= is_constraint(e->string) && !in_list(e->string, plain, sizeof(plain) / sizeof(plain[0]));
    if (!other) return 0; /* gen_enum's plain case */
    int n = one ? 1 : cJSON_GetArraySize(dom), na = 0;
    grammar_expr *alts = malloc(((size_t)n + 1) * sizeof(*alts));
    if (!alts) return FOLIO_ENOMEM;
    for (const cJSON *v = one ? dom : dom->child; v; v = one ? NULL : v->next) {
        int ok = json_validate(&c->doc, s, v, &c->validate_budget);
        if (ok < 0) {
            /* out of budget: refuse, since the generator proper would take the enum alone */
            if (c->validate_budget == 0) rc = ok;
            goto out;
        }
        if (ok) alts[na++] = const_value(c, v);
    }
    *out = alt_chunked(c, alts, na);
    rc = *out == GRAMMAR_NONE ? FOLIO_EINVAL : 1;
out:
    free(alts);
    return rc;
}

/* `not`, where the negation is a schema we express: not required [a, b] is properties a false or
 * b false (properties constrains objects only, so non-objects still pass, as they must); not
 * type is the other types; not anyOf is allOf of the negations and not allOf anyOf; not not X is
 * X; a $ref is negated through its target. Anything else (not pattern, not properties) has no
 * grammar: an error naming 'not'. *out: a new tree, the caller's; it refers to (never copies)
 * the document's subschemas, and its nodes count against c->negate_budget, since a $ref to a
 * wide anyOf of $refs would otherwise multiply out. */
#define MAX_NOT_DEPTH 8
#define NEGATE_BUDGET (1 << 14) /* nodes a compile's negations may build */
static cJSON *neg_node(struct ctx *c, cJSON *n) {
    if (n && --c->negate_budget < 0) {
        cJSON_Delete(n);
        return NULL;
    }
    return n;
}

static int neg_fail(struct ctx *c, cJSON *r, int rc) {
    cJSON_Delete(r);
    if (c->negate_budget < 0) return folio_err(FOLIO_EUNSUP, "unsupported JSON Schema keyword 'not' at %s: its negation is too large", here(c));
    return rc ? rc : FOLIO_ENOMEM;
}

static int negate(struct ctx *c, const cJSON *n, int depth, cJSON **out) {
    static const char *const tnames[] = {"null", "boolean", "object", "array", "string", "number"};
    static const int tbits[] = {T_NULL, T_BOOL, T_OBJ, T_ARR, T_STR, T_NUM};
    int rc = 0;
    *out = NULL;
    if (depth > MAX_NOT_DEPTH) return unsup(c, "not");
    if (cJSON_IsBool(n)) {
        *out = neg_node(c, cJSON_IsTrue(n) ? cJSON_CreateFalse() : cJSON_CreateTrue());
        return *out ? 0 : neg_fail(c, NULL, 0);
    }
    if (!cJSON_IsObject(n)) return folio_err(FOLIO_EINVAL, "JSON Schema 'not' at %s is not a schema", here(c));
    cJSON *r = neg_node(c, cJSON_CreateObject());
    cJSON *alts = r ? cJSON_AddArrayToObject(r, "anyOf") : NULL;
    if (!alts) return neg_fail(c, r, 0);
    /* not (A and B) = not A or not B, one keyword at a time */
    for (const cJSON *e = n->child; e; e = e->next) {
        const char *k = e->string;
        if (!is_constraint(k)) continue;
        cJSON *p = NULL;
        if (strcmp(k, "required") == 0 && cJSON_IsArray(e)) {
            for (const cJSON *q = e->child; q; q = q->next) {
                if (!cJSON_IsString(q)) return neg_fail(c, r, folio_err(FOLIO_EINVAL, "JSON Schema 'required' at %s lists a non-string", here(c)));
                cJSON *o = neg_node(c, cJSON_CreateObject()), *props = o ? cJSON_AddObjectToObject(o, "properties") : NULL;
                if (!props || !cJSON_AddFalseToObject(props, q->valuestring)) {
                    cJSON_Delete(o);
                    return neg_fail(c, r, 0);
                }
                cJSON_AddItemToArray(alts, o);
            }
            continue;
        }
        if (strcmp(k, "type") == 0) {
            int t;
            if ((rc = parse_types(c, e, &t))) return neg_fail(c, r, rc);
            /* the rest of number once integers are excluded is not a type we can name */
            if ((t & T_INT) && !(t & T_NUM)) return neg_fail(c, r, unsup(c, "not"));
            cJSON *tl = cJSON_CreateArray();
            for (int i = 0; tl && i < 6; i++)
                if (!(t & tbits[i])) cJSON_AddItemToArray(tl, cJSON_CreateString(tnames[i]));
            if (tl && !tl->child) {
                cJSON_Delete(tl);
                p = cJSON_CreateFalse();
            } else if (tl && (p = cJSON_CreateObject())) {
                cJSON_AddItemToObject(p, "type", tl);
            } else {
                cJSON_Delete(tl);
            }
        } else if (strcmp(k, "not") == 0) {
            p = cJSON_CreateObject(); /* not not X: X itself, by reference */
            cJSON *list = p ? cJSON_AddArrayToObject(p, "allOf") : NULL;
            if (!list || !cJSON_AddItemReferenceToArray(list, (cJSON *)e)) {
                cJSON_Delete(p);
                p = NULL;
            }
        } else if (strcmp(k, "anyOf") == 0 || strcmp(k, "allOf") == 0 || strcmp(k, "$ref") == 0) {
            const cJSON *t = NULL;
            if (k[0] == '$' && !(t = cJSON_IsString(e) ? resolve(c, e->valuestring, &rc) : NULL))
                return neg_fail(c, r, rc ? rc : folio_err(FOLIO_EINVAL, "JSON Schema '$ref' at %s is not a string", here(c)));
            p = cJSON_CreateObject();
            cJSON *list = p ? cJSON_AddArrayToObject(p, k[1] == 'n' ? "allOf" : "anyOf") : NULL;
            if (!list) {
                cJSON_Delete(p);
                return neg_fail(c, r, 0);
            }
            for (const cJSON *b = t ? t : cJSON_IsArray(e) ? e->child : NULL; b; b = t ? NULL : b->next) {
                cJSON *neg;
                if ((rc = negate(c, b, depth + 1, &neg))) {
                    cJSON_Delete(p);
                    return neg_fail(c, r, rc);
                }
                cJSON_AddItemToArray(list, neg);
            }
        } else {
            return neg_fail(c, r, unsup(c, "not"));
        }
        if (!(p = neg_node(c, p))) return neg_fail(c, r, 0);
        cJSON_AddItemToArray(alts, p);
    }
    if (!alts->child) { /* not {} */
        cJSON *f = neg_node(c, cJSON_CreateFalse());
        if (!f) return neg_fail(c, r, 0);
        cJSON_AddItemToArray(alts, f);
    }
    *out = r;
    return 0;
}

/* A string that is none of a few names (not {enum: [...]} beside type string, the one `not` of
 * values with a grammar): 1 with *out, 0 when s is not of that shape. */
static int gen_string_not_in(struct ctx *c, const cJSON *s, const cJSON *n, grammar_expr *out) {
    static const char *const plain[] = {"type", "not"};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "string") != 0 || !cJSON_IsObject(n)) return 0;
    for (const cJSON *e = s->child; e; e = e->next)
        if (is_constraint(e->string) && !in_list(e->string, plain, 2)) return 0;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(n, "enum"), *cst = cJSON_GetObjectItemCaseSensitive(n, "const");
    if (has_constraints_except(n, en ? "enum" : "const") || (!cJSON_IsArray(en) && !cst)) return 0;
    int cnt = en ? cJSON_GetArraySize(en) : 1, k = 0;
    const char **names = malloc(((size_t)cnt + 1) * sizeof(*names));
    if (!names) return FOLIO_ENOMEM;
    for (const cJSON *v = en ? en->child : cst; v; v = en ? v->next : NULL)
        if (cJSON_IsString(v)) names[k++] = v->valuestring; /* other types are not strings anyway */
    *out = key_not_in(c, names, k);
    free(names);
    return *out == GRAMMAR_NONE ? FOLIO_ENOMEM : 1;
}

/* s with a `not`: its own keywords merged with the negation. 1 with *out, 0 without a `not`. */
static int gen_not(struct ctx *c, const cJSON *s, int mode, grammar_expr *out, int *sub) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "not");
    if (!n) return 0;
    int rc = gen_string_not_in(c, s, n, out);
    if (rc) return rc;
    cJSON *p, *m;
    size_t save;
    path_push(c, "not", &save);
    rc = negate(c, n, 0, &p);
    path_pop(c, save);
    if (rc || (rc = own(c, p)) || (rc = merged(c, s, "not", p, &m))) return rc;
    rc = gen_as(c, m, mode, -1, out, sub);
    return rc ? rc : 1;
}

/* Property dependencies ("dependencies": {"a": ["b"]}, dependentRequired): an object with a
 * must have b. Exact, as the union of variants, one per subset of the k triggers: a trigger in
 * the subset is required with its dependents, one outside it is forbidden (properties.a false).
 * 2^k variants, so k is bounded. 1 with *out; 0 when s has none (or only empty lists, which
 * leave s as it is, minus them, in *out too); an error for schema-valued dependencies. */
#define MAX_DEPENDENCY_SPLIT 3
static int gen_dependencies(struct ctx *c, const cJSON *s, grammar_expr *out) {
    static const char *const kws[] = {"dependencies", "dependentRequired"};
    const cJSON *trig[MAX_DEPENDENCY_SPLIT];
    int k = 0, any = 0, rc = 0;
    for (int w = 0; w < 2; w++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(s, kws[w]);
        if (!d) continue;
        any = 1;
        if (!cJSON_IsObject(d)) return folio_err(FOLIO_EINVAL, "JSON Schema '%s' at %s is not an object", kws[w], here(c));
        for (const cJSON *e = d->child; e; e = e->next) {
            if (!cJSON_IsArray(e)) return unsup(c, kws[w]); /* a schema: dependentSchemas' form */
            if (!e->child) continue;
            if (k == MAX_DEPENDENCY_SPLIT) return unsup(c, kws[w]);
            trig[k++] = e;
        }
    }
    if (!any) return 0;
    int nv = 1 << k;
    grammar_expr *alts = malloc((size_t)nv * sizeof(*alts));
    if (!alts) return FOLIO_ENOMEM;
    for (int mask = 0; mask < nv && !rc; mask++) {
        /* a shallow variant: s's other keywords and properties by reference, never copied, so
         * that variants nested in variants cost their own keys, not their subtrees */
        cJSON *v = cJSON_CreateObject();
        if (!v) {
            rc = FOLIO_ENOMEM;
            break;
        }
        if ((rc = own(c, v))) break;
        cJSON *props = cJSON_AddObjectToObject(v, "properties"), *req = cJSON_AddArrayToObject(v, "required");
        if (!props || !req) {
            rc = FOLIO_ENOMEM;
            break;
        }
        for (const cJSON *e = s->child; e && !rc; e = e->next) {
            int is_props = strcmp(e->string, "properties") == 0, is_req = strcmp(e->string, "required") == 0;
            if (in_list(e->string, kws, 2)) continue;
            if (!is_props && !is_req) {
                cJSON_AddItemReferenceToObject(v, e->string, (cJSON *)e);
            } else if (is_props ? !cJSON_IsObject(e) : !cJSON_IsArray(e)) {
                rc = folio_err(FOLIO_EINVAL, "JSON Schema '%s' at %s is not an %s", e->string, here(c), is_props ? "object" : "array");
            } else {
                for (const cJSON *x = e->child; x; x = x->next) {
                    if (is_props) cJSON_AddItemReferenceToObject(props, x->string, (cJSON *)x);
                    else cJSON_AddItemReferenceToArray(req, (cJSON *)x);
                }
            }
        }
        for (int i = 0; i < k && !rc; i++) {
            if (mask >> i & 1) {
                cJSON_AddItemToArray(req, cJSON_CreateString(trig[i]->string));
                for (const cJSON *r = trig[i]->child; r; r = r->next) cJSON_AddItemReferenceToArray(req, (cJSON *)r);
            } else if (cJSON_GetObjectItemCaseSensitive(props, trig[i]->string)) {
                cJSON_ReplaceItemInObjectCaseSensitive(props, trig[i]->string, cJSON_CreateFalse());
            } else {
                cJSON_AddItemToObject(props, trig[i]->string, cJSON_CreateFalse());
            }
        }
        if (rc) break;
        rc = gen_as(c, v, GEN_INLINE, -1, &alts[mask], NULL);
    }
    if (!rc) *out = alt_chunked(c, alts, nv);
    free(alts);
    return rc ? rc : 1;
}

/* The generator proper: s's grammar as an expression. *sub: the rule it is a plain call of
 * (a $ref, a merged schema's rule), else -1. */
static int gen_inner(struct ctx *c, const cJSON *s, int mode, grammar_expr *out, int *sub) {
    int rc = 0;
    *sub = -1;
    if (cJSON_IsTrue(s)) {
        *out = any_value(c);
        return 0;
    }
    if (cJSON_IsFalse(s)) {
        *out = dead(c);
        return 0;
    }
    if (!cJSON_IsObject(s)) return folio_err(FOLIO_EINVAL, "JSON Schema at %s is not an object or boolean", here(c));
    if (++c->depth > MAX_GEN_DEPTH) {
        rc = folio_err(FOLIO_EINVAL, "JSON Schema nested too deeply at %s", here(c));
        goto out;
    }
    if ((rc = gen_finite(c, s, out)) || (rc = gen_dependencies(c, s, out)) || (rc = gen_not(c, s, mode, out, sub))) {
        if (rc == 1) rc = 0;
        goto out;
    }
    if ((rc = check_keywords(c, s))) goto out;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    if (ref) {
        if (!cJSON_IsString(ref)) {
            rc = folio_err(FOLIO_EINVAL, "JSON Schema '$ref' at %s is not a string", here(c));
            goto out;
        }
        if (c->doc.ref_alone || !has_constraints_except(s, "$ref")) {
            rc = gen_ref(c, ref->valuestring, out, sub);
            goto out;
        }
        cJSON *m;
        if ((rc = merged(c, s, "", NULL, &m))) goto out;
        rc = gen_as(c, m, mode, -1, out, sub);
        goto out;
    }
    if (any || one) {
        const char *kw = any ? "anyOf" : "oneOf";
        const cJSON *list = any ? any : one;
        if (!cJSON_IsArray(list) || !list->child) {
            rc = folio_err(FOLIO_EINVAL, "JSON Schema '%s' at %s is not a non-empty array", kw, here(c));
            goto out;
        }
        if (!any && cJSON_GetArraySize(list) > 1) c->relaxed |= JSON_SCHEMA_RELAX_ONEOF;
        int n = cJSON_GetArraySize(list), i = 0, siblings = has_constraints_except(s, kw);
        grammar_expr *alts = malloc((size_t)n * sizeof(*alts));
        if (!alts) {
            rc = FOLIO_ENOMEM;
            goto out;
        }
        for (const cJSON *e = list->child; e; e = e->next, i++) {
            char idx[16];
            size_t s1, s2;
            snprintf(idx, sizeof(idx), "%d", i);
            path_push(c, kw, &s1);
            path_push(c, idx, &s2);
            /* branches inline, so the automaton merges their common prefixes */
            if (siblings) {
                cJSON *m;
                rc = merged(c, s, kw, e, &m);
                if (!rc) rc = gen_as(c, m, GEN_INLINE, -1, &alts[i], NULL);
            } else {
                rc = gen_as(c, e, GEN_INLINE, -1, &alts[i], NULL);
            }
            path_pop(c, s2);
            path_pop(c, s1);
            if (rc) break;
        }
        if (!rc) *out = alt_chunked(c, alts, n);
        free(alts);
        goto out;
    }
    if (all) {
        if (!cJSON_IsArray(all)) {
            rc = folio_err(FOLIO_EINVAL, "JSON Schema 'allOf' at %s is not an array", here(c));
            goto out;
        }
        cJSON *m;
        size_t save;
        path_push(c, "allOf", &save);
        rc = merged(c, s, "", NULL, &m);
        path_pop(c, save);
        if (rc) goto out;
        rc = gen_as(c, m, mode, -1, out, sub);
        goto out;
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (en || cst) {
        rc = gen_enum(c, s, en, cst, out);
        goto out;
    }
    rc = gen_types(c, s, out);
out:
    c->depth--;
    return rc;
}

/* The memo key of a subschema: its constraint keywords in order, compact. Annotations do not
 * change the grammar, so subschemas that differ only in them share a rule. */
static int schema_key(const cJSON *s, uint64_t *h0, uint64_t *h1) {
    *h0 = 0x736368656d61ULL, *h1 = 0x6b6579ULL;
    for (const cJSON *e = s->child; e; e = e->next) {
        if (!is_constraint(e->string)) continue;
        char *t = cJSON_PrintUnformatted(e);
        if (!t) return FOLIO_ENOMEM;
        hash_text(e->string, strlen(e->string) + 1, h0, h1);
        hash_text(t, strlen(t), h0, h1);
        free(t);
    }
    return 0;
}

/* Whether a subschema's grammar is worth a rule of its own: anything but literals (enum,
 * const, null, booleans) and unbounded numbers, which are a few states inline. */
static int worth_rule(const cJSON *s) {
    static const char *const big[] = {"anyOf", "oneOf", "allOf", "$ref"};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        if (cJSON_GetObjectItemCaseSensitive(s, big[i])) return 1;
    if (cJSON_GetObjectItemCaseSensitive(s, "enum") || cJSON_GetObjectItemCaseSensitive(s, "const")) return 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    int types = 0;
    if (!t) return 1;
    if (cJSON_IsString(t)) types = type_bit(t->valuestring);
    for (const cJSON *e = cJSON_IsArray(t) ? t->child : NULL; e; e = e->next)
        types |= cJSON_IsString(e) ? type_bit(e->valuestring) : -1;
    if (types < 0 || (types & (T_OBJ | T_ARR | T_STR))) return 1;
    static const char *const bounds[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++)
        if (cJSON_GetObjectItemCaseSensitive(s, bounds[i])) return 1;
    return 0;
}

/* A subschema's grammar, memoized: identical subschemas (by their constraint keywords) anywhere
 * in the document are one rule. mode GEN_RULE: the value becomes a rule (when worth it);
 * GEN_INLINE: an expression (anyOf branches, so that their prefixes merge), though still a call
 * when the subschema was already made a rule. into >= 0: a declared rule (a $ref target's) to
 * define with the value. *rule_out (may be NULL): the rule *out is a call of, or -1. */
static int gen_as(struct ctx *c, const cJSON *s, int mode, int into, grammar_expr *out, int *rule_out) {
    int rc, sub = -1, rule = -1;
    uint64_t h0 = 0, h1 = 0;
    grammar_expr e;
    if (rule_out) *rule_out = -1;
    int keyed = cJSON_IsObject(s);
    if (keyed) {
        if ((rc = schema_key(s, &h0, &h1))) return rc;
        int hit = memo_find(c, h0, h1);
        if (hit >= 0) {
            e = grammar_ref(c->b, hit);
            rule = hit;
            goto done;
        }
    }
    if ((rc = gen_inner(c, s, mode, &e, &sub))) return rc;
    rule = sub;
    if (into < 0 && sub < 0 && keyed && mode == GEN_RULE && worth_rule(s)) {
        rule = grammar_rule_fresh(c->b, "value");
        if (rule < 0 || grammar_rule_define(c->b, rule, e) < 0) return FOLIO_EINVAL;
        e = grammar_ref(c->b, rule);
    }
    if (into >= 0) rule = into;
    if (keyed && rule >= 0 && (rc = memo_put(c, h0, h1, rule))) return rc;
done:
    if (into >= 0) {
        if (grammar_rule_define(c->b, into, e) < 0) return FOLIO_EINVAL;
        e = grammar_ref(c->b, into);
    }
    *out = e;
    if (rule_out) *rule_out = rule;
    return 0;
}

static int gen(struct ctx *c, const cJSON *s, grammar_expr *out) { return gen_as(c, s, GEN_RULE, -1, out, NULL); }

/* Nesting of the text, counted before cJSON recurses into it. */
static int text_depth_ok(const char *s, size_t n) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\') i++;
            else if (ch == '"') in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > JSON_SCHEMA_MAX_DEPTH) return 0;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return 1;
}

int json_schema_compile_ex(const char *schema, size_t len, const struct json_schema_params *p,
                           struct grammar **out, unsigned *relaxed) {
    struct json_schema_params defaults = json_schema_default_params();
    struct ctx c = {.p = p ? p : &defaults, .ws = GRAMMAR_NONE, .any_value = GRAMMAR_NONE,
                    .string = GRAMMAR_NONE, .jchar = GRAMMAR_NONE, .jchar_e = GRAMMAR_NONE,
                    .body_any = GRAMMAR_NONE};
    int rc = 0;
    *out = NULL;
    if (relaxed) *relaxed = 0;
    if (len > JSON_SCHEMA_MAX_BYTES)
        return folio_err(FOLIO_EINVAL, "JSON Schema is %zu bytes, over the %d byte limit", len, JSON_SCHEMA_MAX_BYTES);
    if (!text_depth_ok(schema, len))
        return folio_err(FOLIO_EINVAL, "JSON Schema nests deeper than %d levels", JSON_SCHEMA_MAX_DEPTH);
    c.root = cJSON_ParseWithLength(schema, len);
    if (!c.root) return folio_err(FOLIO_EINVAL, "JSON Schema is not valid JSON");
    c.doc.root = c.root;
    c.validate_budget = VALIDATE_BUDGET;
    c.negate_budget = NEGATE_BUDGET;
    if (!(c.b = grammar_builder_create())) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c.root, "$id");
    if (!cJSON_IsString(id)) id = cJSON_GetObjectItemCaseSensitive(c.root, "id");
    if (cJSON_IsString(id)) c.doc.root_id = id->valuestring;
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(c.root, "$schema");
    c.doc.ref_alone = cJSON_IsString(sv) && strstr(sv->valuestring, "draft-0") != NULL;
    /* the root is a rule of its own so that "$ref": "#" recurses into it */
    int root = grammar_rule_declare(c.b, "root");
    c.refs = malloc(sizeof(*c.refs));
    if (!c.refs || root < 0 || !(c.refs[0].ptr = strdup("#"))) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    c.refs[0].rule = root;
    c.nrefs = c.refcap = 1;
    grammar_expr body;
    if ((rc = gen(&c, c.root, &body))) goto out;
    /* a value, with whitespace allowed around it */
    body = seq3(&c, ws(&c), body, ws(&c));
    if (grammar_rule_define(c.b, root, body) < 0) {
        rc = FOLIO_EINVAL;
        goto out;
    }
    rc = grammar_builder_finish(c.b, root, out);
    if (relaxed) *relaxed = c.relaxed;
out:
    for (int i = 0; i < c.nrefs; i++) free(c.refs[i].ptr);
    free(c.refs);
    for (int i = 0; i < c.nowned; i++) cJSON_Delete(c.owned[i]);
    free(c.owned);
    free(c.memo);
    grammar_builder_free(c.b);
    cJSON_Delete(c.root);
    return rc;
}

int json_schema_compile(const char *schema, size_t len, const struct json_schema_params *p,
                        struct grammar **out) {
    return json_schema_compile_ex(schema, len, p, out, NULL);
}

const char *json_schema_relaxation_name(unsigned bit) {
    switch (bit) {
    case JSON_SCHEMA_RELAX_ONEOF: return "oneOf as anyOf";
    case JSON_SCHEMA_RELAX_UNIQUE_ITEMS: return "uniqueItems not enforced";
    case JSON_SCHEMA_RELAX_NUMBER_BOUNDS: return "number bounds not enforced";
    case JSON_SCHEMA_RELAX_LENGTH_WITH_PATTERN: return "length with pattern/format not enforced";
    case JSON_SCHEMA_RELAX_UNKNOWN_FORMAT: return "unknown format (annotation)";
    case JSON_SCHEMA_RELAX_FORMAT_WITH_PATTERN: return "format with pattern: pattern only";
    case JSON_SCHEMA_RELAX_LONG_MAXLENGTH: return "maxLength above GRAMMAR_MAX_REPEAT";
    case JSON_SCHEMA_RELAX_PATTERN_PROPERTIES: return "patternProperties: one schema per key";
    default: return "?";
    }
}
