/* grammar: the builder every front end writes into, the checks that make a grammar safe to
 * run (every rule defined, no left recursion, limits), its structural hash and printer, and a
 * slow reference recognizer (grammar_matches) that the fast matcher is tested against.
 *
 * Expressions are indices into one node pool. A node's children are always older than it,
 * so finish and the analyses walk the pool in index order instead of recursing down chains
 * that a request controls. */
#include "grammar/grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sbuf.h"
#include "base/util.h"
#include "grammar/gram_internal.h"

struct grammar_builder {
    struct grammar_node *nodes;
    int num_nodes, cap_nodes;
    int32_t *kids;
    int num_kids, cap_kids;
    uint32_t (*sets)[8];
    int num_sets, cap_sets;
    int32_t *rule_body;  /* GRAMMAR_NONE until defined */
    char **rule_name;
    int num_rules, cap_rules, cap_names;
    int32_t *name_hash;  /* open addressing over rule ids, -1 empty */
    int name_cap;
    int fresh_counter;
    int32_t byte_node[256]; /* shared single-byte terminals, -1 not made yet */
    int32_t empty_node;
    int failed;
    char err[256];       /* the first failure, reported again by finish */
};

/* Records the first failure of a builder call: later calls given GRAMMAR_NONE stay quiet. */
static grammar_expr fail(struct grammar_builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static grammar_expr fail(struct grammar_builder *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (!b->failed) vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
    b->failed = 1;
    folio_err(FOLIO_EINVAL, "%s", b->err);
    return GRAMMAR_NONE;
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return FOLIO_ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

struct grammar_builder *grammar_builder_create(void) {
    struct grammar_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    for (int i = 0; i < 256; i++) b->byte_node[i] = -1;
    b->empty_node = -1;
    return b;
}

void grammar_builder_free(struct grammar_builder *b) {
    if (!b) return;
    for (int i = 0; i < b->num_rules; i++) free(b->rule_name[i]);
    free(b->nodes);
    free(b->kids);
    free(b->sets);
    free(b->rule_body);
    free(b->rule_name);
    free(b->name_hash);
    free(b);
}

static grammar_expr new_node(struct grammar_builder *b, int kind, int32_t a, int32_t bb, int32_t c) {
    if (b->num_nodes >= GRAMMAR_MAX_NODES)
        return fail(b, "grammar exceeds GRAMMAR_MAX_NODES (%d expressions)", GRAMMAR_MAX_NODES);
    if (grow((void **)&b->nodes, &b->cap_nodes, b->num_nodes + 1, sizeof *b->nodes))
        return fail(b, "grammar: out of memory");
    struct grammar_node *n = &b->nodes[b->num_nodes];
    n->kind = (uint8_t)kind;
    n->a = a;
    n->b = bb;
    n->c = c;
    return b->num_nodes++;
}

static int valid(const struct grammar_builder *b, grammar_expr e) { return e >= 0 && e < b->num_nodes; }

grammar_expr grammar_empty(struct grammar_builder *b) {
    if (b->empty_node < 0) b->empty_node = new_node(b, GRAMMAR_K_EMPTY, 0, 0, 0);
    return b->empty_node;
}

grammar_expr grammar_bytes(struct grammar_builder *b, const uint32_t set[8]) {
    int count = 0, last = -1;
    for (int c = 0; c < 256; c++)
        if (set[c >> 5] >> (c & 31) & 1) count++, last = c;
    if (count == 1 && b->byte_node[last] >= 0) return b->byte_node[last];
    if (b->num_sets >= GRAMMAR_MAX_NODES) return fail(b, "grammar exceeds GRAMMAR_MAX_NODES");
    if (grow((void **)&b->sets, &b->cap_sets, b->num_sets + 1, sizeof *b->sets))
        return fail(b, "grammar: out of memory");
    memcpy(b->sets[b->num_sets], set, sizeof b->sets[0]);
    grammar_expr e = new_node(b, GRAMMAR_K_BYTES, b->num_sets, 0, 0);
    if (e == GRAMMAR_NONE) return e;
    b->num_sets++;
    if (count == 1) b->byte_node[last] = e;
    return e;
}

grammar_expr grammar_byte_range(struct grammar_builder *b, uint8_t lo, uint8_t hi) {
    uint32_t set[8] = {0};
    for (int c = lo; c <= hi; c++) set[c >> 5] |= 1u << (c & 31);
    return grammar_bytes(b, set);
}

grammar_expr grammar_literal(struct grammar_builder *b, const char *s, size_t n) {
    if (n == 0) return grammar_empty(b);
    if (n > GRAMMAR_MAX_NODES) return fail(b, "grammar literal exceeds GRAMMAR_MAX_NODES");
    grammar_expr *items = malloc(n * sizeof *items);
    if (!items) return fail(b, "grammar: out of memory");
    for (size_t i = 0; i < n; i++) items[i] = grammar_byte_range(b, (uint8_t)s[i], (uint8_t)s[i]);
    grammar_expr e = grammar_seq(b, items, (int)n);
    free(items);
    return e;
}

/* Splices nested seqs (or alts) into one list, so that chains built with seq2/alt2 stay flat
 * and GRAMMAR_MAX_DEPTH counts real nesting only. */
static grammar_expr combine(struct grammar_builder *b, int kind, const grammar_expr *items, int n) {
    if (n < 0) return fail(b, "grammar: negative item count");
    for (int i = 0; i < n; i++)
        if (!valid(b, items[i])) {
            if (items[i] != GRAMMAR_NONE) fail(b, "grammar: invalid expression %d", items[i]);
            return GRAMMAR_NONE;
        }
    if (n == 0) return kind == GRAMMAR_K_SEQ ? grammar_empty(b) : new_node(b, kind, 0, 0, 0);
    if (n == 1) return items[0];
    long total = 0;
    for (int i = 0; i < n; i++) {
        const struct grammar_node *k = &b->nodes[items[i]];
        if (k->kind == kind) total += k->b;
        else if (!(kind == GRAMMAR_K_SEQ && k->kind == GRAMMAR_K_EMPTY)) total++;
    }
    if (total == 0) return grammar_empty(b);
    if (total > GRAMMAR_MAX_NODES) return fail(b, "grammar exceeds GRAMMAR_MAX_NODES");
    if (grow((void **)&b->kids, &b->cap_kids, b->num_kids + (int)total, sizeof *b->kids))
        return fail(b, "grammar: out of memory");
    int first = b->num_kids;
    for (int i = 0; i < n; i++) {
        const struct grammar_node *k = &b->nodes[items[i]];
        if (k->kind == kind) {
            memmove(&b->kids[b->num_kids], &b->kids[k->a], (size_t)k->b * sizeof *b->kids);
            b->num_kids += k->b;
        } else if (!(kind == GRAMMAR_K_SEQ && k->kind == GRAMMAR_K_EMPTY)) {
            b->kids[b->num_kids++] = items[i];
        }
    }
    if (total == 1) {
        b->num_kids = first;
        return b->kids[first];
    }
    grammar_expr e = new_node(b, kind, first, (int32_t)total, 0);
    if (e == GRAMMAR_NONE) b->num_kids = first;
    return e;
}

grammar_expr grammar_seq(struct grammar_builder *b, const grammar_expr *items, int n) {
    return combine(b, GRAMMAR_K_SEQ, items, n);
}
grammar_expr grammar_alt(struct grammar_builder *b, const grammar_expr *items, int n) {
    return combine(b, GRAMMAR_K_ALT, items, n);
}
grammar_expr grammar_seq2(struct grammar_builder *b, grammar_expr a, grammar_expr c) {
    grammar_expr it[2] = {a, c};
    return combine(b, GRAMMAR_K_SEQ, it, 2);
}
grammar_expr grammar_alt2(struct grammar_builder *b, grammar_expr a, grammar_expr c) {
    grammar_expr it[2] = {a, c};
    return combine(b, GRAMMAR_K_ALT, it, 2);
}

grammar_expr grammar_repeat(struct grammar_builder *b, grammar_expr e, int min, int max) {
    if (!valid(b, e)) {
        if (e != GRAMMAR_NONE) fail(b, "grammar: invalid expression %d", e);
        return GRAMMAR_NONE;
    }
    if (min < 0 || (max != -1 && max < min))
        return fail(b, "grammar: bad repetition bounds {%d,%d}", min, max);
    if (min > GRAMMAR_MAX_REPEAT || max > GRAMMAR_MAX_REPEAT)
        return fail(b, "grammar: repetition bound exceeds GRAMMAR_MAX_REPEAT (%d)", GRAMMAR_MAX_REPEAT);
    if (max == 0) return grammar_empty(b);
    if (min == 1 && max == 1) return e;
    return new_node(b, GRAMMAR_K_REPEAT, e, min, max);
}

/* ---- code points -------------------------------------------------------------------------- */

static int cmp_range(const void *x, const void *y) {
    const uint32_t *a = x, *c = y;
    return a[0] < c[0] ? -1 : a[0] > c[0];
}

static int enc_len(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

static void encode(uint32_t cp, uint8_t *o) {
    int n = enc_len(cp);
    if (n == 1) { o[0] = (uint8_t)cp; return; }
    for (int i = n - 1; i > 0; i--) { o[i] = (uint8_t)(0x80 | (cp & 0x3f)); cp >>= 6; }
    o[0] = (uint8_t)((n == 2 ? 0xc0 : n == 3 ? 0xe0 : 0xf0) | cp);
}

/* [lo, hi] of one encoded length as alternatives of byte-range sequences (the split used by
 * RE2 and Rust's regex-syntax): split until each byte position ranges independently. */
static int utf8_split(struct grammar_builder *b, uint32_t lo, uint32_t hi, grammar_expr *out, int *n,
                      int cap) {
    int len = enc_len(lo);
    for (int i = 1; i < len; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0)
                return utf8_split(b, lo, lo | m, out, n, cap) || utf8_split(b, (lo | m) + 1, hi, out, n, cap);
            if ((hi & m) != m)
                return utf8_split(b, lo, (hi & ~m) - 1, out, n, cap) || utf8_split(b, hi & ~m, hi, out, n, cap);
        }
    }
    uint8_t l[4], h[4];
    encode(lo, l);
    encode(hi, h);
    grammar_expr it[4];
    for (int i = 0; i < len; i++) it[i] = grammar_byte_range(b, l[i], h[i]);
    if (*n >= cap) return 1;
    out[(*n)++] = grammar_seq(b, it, len);
    return 0;
}

grammar_expr grammar_codepoints(struct grammar_builder *b, const uint32_t (*ranges)[2], int n,
                                int negate) {
    if (n < 0 || n > GRAMMAR_MAX_NODES) return fail(b, "grammar: bad code point range count %d", n);
    /* normalized: clamped, sorted, merged, surrogates cut out, complemented for negate */
    uint32_t(*r)[2] = malloc(((size_t)n + 4) * sizeof *r);
    uint32_t(*u)[2] = malloc(((size_t)n * 2 + 8) * sizeof *u);
    grammar_expr *alts = NULL;
    grammar_expr res = GRAMMAR_NONE;
    if (!r || !u) { fail(b, "grammar: out of memory"); goto out; }
    int m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t lo = ranges[i][0], hi = ranges[i][1];
        if (lo > hi) { uint32_t t = lo; lo = hi; hi = t; }
        if (lo > 0x10FFFF) continue;
        if (hi > 0x10FFFF) hi = 0x10FFFF;
        r[m][0] = lo;
        r[m][1] = hi;
        m++;
    }
    qsort(r, (size_t)m, sizeof *r, cmp_range);
    int k = 0;
    for (int i = 0; i < m; i++) {
        if (k && r[i][0] <= r[k - 1][1] + 1) {
            if (r[i][1] > r[k - 1][1]) r[k - 1][1] = r[i][1];
        } else {
            r[k][0] = r[i][0];
            r[k][1] = r[i][1];
            k++;
        }
    }
    m = k;
    if (negate) {
        uint32_t next = 0;
        k = 0;
        for (int i = 0; i < m; i++) {
            if (r[i][0] > next) { u[k][0] = next; u[k][1] = r[i][0] - 1; k++; }
            next = r[i][1] + 1;
        }
        if (next <= 0x10FFFF) { u[k][0] = next; u[k][1] = 0x10FFFF; k++; }
    } else {
        memcpy(u, r, (size_t)m * sizeof *r);
        k = m;
    }
    /* surrogates and length boundaries: pieces of one encoded length, no D800..DFFF */
    static const uint32_t cuts[][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF},
                                       {0x10000, 0x10FFFF}};
    int cap = k * 5 * 24 + 8, na = 0;
    alts = malloc((size_t)cap * sizeof *alts);
    if (!alts) { fail(b, "grammar: out of memory"); goto out; }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < 5; j++) {
            uint32_t lo = u[i][0] > cuts[j][0] ? u[i][0] : cuts[j][0];
            uint32_t hi = u[i][1] < cuts[j][1] ? u[i][1] : cuts[j][1];
            if (lo <= hi && utf8_split(b, lo, hi, alts, &na, cap)) {
                fail(b, "grammar: code point ranges too fragmented");
                goto out;
            }
        }
    res = grammar_alt(b, alts, na);
out:
    free(r);
    free(u);
    free(alts);
    return res;
}

/* ---- rules -------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static int find_rule(const struct grammar_builder *b, const char *name) {
    if (!b->name_cap) return -1;
    for (size_t i = hash_str(name) & (size_t)(b->name_cap - 1);; i = (i + 1) & (size_t)(b->name_cap - 1)) {
        int32_t r = b->name_hash[i];
        if (r < 0) return -1;
        if (strcmp(b->rule_name[r], name) == 0) return r;
    }
}

static int rehash(struct grammar_builder *b, int cap) {
    int32_t *h = malloc((size_t)cap * sizeof *h);
    if (!h) return FOLIO_ENOMEM;
    for (int i = 0; i < cap; i++) h[i] = -1;
    for (int r = 0; r < b->num_rules; r++) {
        size_t i = hash_str(b->rule_name[r]) & (size_t)(cap - 1);
        while (h[i] >= 0) i = (i + 1) & (size_t)(cap - 1);
        h[i] = r;
    }
    free(b->name_hash);
    b->name_hash = h;
    b->name_cap = cap;
    return 0;
}

int grammar_rule_declare(struct grammar_builder *b, const char *name) {
    if (!name) return fail(b, "grammar: rule without a name");
    int r = find_rule(b, name);
    if (r >= 0) return r;
    if (b->num_rules >= GRAMMAR_MAX_RULES)
        return fail(b, "grammar exceeds GRAMMAR_MAX_RULES (%d rules)", GRAMMAR_MAX_RULES);
    char *copy = strdup(name);
    if (!copy || grow((void **)&b->rule_body, &b->cap_rules, b->num_rules + 1, sizeof *b->rule_body) ||
        grow((void **)&b->rule_name, &b->cap_names, b->num_rules + 1, sizeof *b->rule_name)) {
        free(copy);
        return fail(b, "grammar: out of memory");
    }
    r = b->num_rules++;
    b->rule_body[r] = GRAMMAR_NONE;
    b->rule_name[r] = copy;
    if (b->num_rules * 2 > b->name_cap) {
        if (rehash(b, b->name_cap ? b->name_cap * 2 : 64)) {
            b->num_rules--;
            free(copy);
            return fail(b, "grammar: out of memory");
        }
    } else {
        size_t i = hash_str(copy) & (size_t)(b->name_cap - 1);
        while (b->name_hash[i] >= 0) i = (i + 1) & (size_t)(b->name_cap - 1);
        b->name_hash[i] = r;
    }
    return r;
}

int grammar_rule_define(struct grammar_builder *b, int rule, grammar_expr body) {
    if (rule < 0 || rule >= b->num_rules) {
        if (rule != GRAMMAR_NONE) fail(b, "grammar: no rule %d", rule);
        return GRAMMAR_NONE;
    }
    if (!valid(b, body)) {
        if (body != GRAMMAR_NONE) fail(b, "grammar: invalid expression %d", body);
        return GRAMMAR_NONE;
    }
    if (b->rule_body[rule] != GRAMMAR_NONE)
        return fail(b, "grammar: rule '%s' is defined twice", b->rule_name[rule]);
    b->rule_body[rule] = body;
    return rule;
}

grammar_expr grammar_ref(struct grammar_builder *b, int rule) {
    if (rule < 0 || rule >= b->num_rules) {
        if (rule != GRAMMAR_NONE) fail(b, "grammar: no rule %d", rule);
        return GRAMMAR_NONE;
    }
    return new_node(b, GRAMMAR_K_REF, rule, 0, 0);
}

int grammar_rule_fresh(struct grammar_builder *b, const char *prefix) {
    char name[128];
    for (;;) {
        snprintf(name, sizeof name, "%.100s_%d", prefix ? prefix : "r", ++b->fresh_counter);
        if (find_rule(b, name) < 0) return grammar_rule_declare(b, name);
    }
}

/* ---- composition ---------------------------------------------------------------------------- */

grammar_expr grammar_fail(struct grammar_builder *b, const char *msg) { return fail(b, "%s", msg); }

grammar_expr grammar_embed(struct grammar_builder *b, const struct grammar *g) {
    if (!g || g->num_rules < 1) return fail(b, "grammar_embed: no grammar");
    int32_t *rules = malloc((size_t)g->num_rules * sizeof *rules);
    int32_t *map = malloc(((size_t)g->num_nodes + 1) * sizeof *map);
    grammar_expr *items = NULL;
    grammar_expr out = GRAMMAR_NONE;
    if (!rules || !map) {
        fail(b, "grammar: out of memory");
        goto out;
    }
    for (int r = 0; r < g->num_rules; r++)
        if ((rules[r] = grammar_rule_fresh(b, g->rule_name[r])) < 0) goto out;
    /* children are older than their parents: one pass in index order */
    int cap = 0;
    for (int i = 0; i < g->num_nodes; i++) {
        const struct grammar_node *n = &g->nodes[i];
        switch (n->kind) {
        case GRAMMAR_K_EMPTY: map[i] = grammar_empty(b); break;
        case GRAMMAR_K_BYTES: map[i] = grammar_bytes(b, g->sets[n->a]); break;
        case GRAMMAR_K_REPEAT: map[i] = grammar_repeat(b, map[n->a], n->b, n->c); break;
        case GRAMMAR_K_REF: map[i] = grammar_ref(b, rules[n->a]); break;
        default:
            if (n->b > cap) {
                cap = n->b;
                grammar_expr *ni = realloc(items, (size_t)cap * sizeof *ni);
                if (!ni) {
                    fail(b, "grammar: out of memory");
                    goto out;
                }
                items = ni;
            }
            for (int j = 0; j < n->b; j++) items[j] = map[g->kids[n->a + j]];
            map[i] = n->kind == GRAMMAR_K_SEQ ? grammar_seq(b, items, n->b) : grammar_alt(b, items, n->b);
        }
        if (map[i] == GRAMMAR_NONE) goto out;
    }
    for (int r = 0; r < g->num_rules; r++)
        if (grammar_rule_define(b, rules[r], map[g->rule_body[r]]) < 0) goto out;
    out = grammar_ref(b, rules[0]);
out:
    free(rules);
    free(map);
    free(items);
    return out;
}

grammar_expr grammar_text_without(struct grammar_builder *b, const char *t, size_t m) {
    if (m == 0 || m > 256) return fail(b, "grammar_text_without: the text must be 1 to 256 bytes");
    const uint8_t c0 = (uint8_t)t[0];
    for (size_t i = 1; i < m; i++)
        if ((uint8_t)t[i] == c0)
            return fail(b, "grammar_text_without: '%.*s' repeats its first byte", (int)m, t);
    /* Once c0 is read, the text either goes on with t or breaks off; since c0 occurs in t only
     * at its start, a break-off that reads c0 begins the next attempt and any other byte ends
     * the attempt. So the language is (X)* P* with X = [^c0] | P* E, where P is a proper
     * prefix of t (each begins with c0, so P P never spells t across the seam) and E a proper
     * prefix followed by a byte that neither continues t nor is c0. */
    uint32_t not_c0[8];
    memset(not_c0, 0xff, sizeof not_c0);
    not_c0[c0 >> 5] &= ~(1u << (c0 & 31));
    grammar_expr *prefixes = malloc(m * sizeof *prefixes), *exits = malloc(m * sizeof *exits);
    grammar_expr out = GRAMMAR_NONE;
    if (!prefixes || !exits) {
        fail(b, "grammar: out of memory");
        goto out;
    }
    for (size_t k = 1; k < m; k++) {
        prefixes[k - 1] = grammar_literal(b, t, k);
        uint32_t set[8];
        memcpy(set, not_c0, sizeof set);
        set[(uint8_t)t[k] >> 5] &= ~(1u << ((uint8_t)t[k] & 31));
        exits[k - 1] = grammar_seq2(b, prefixes[k - 1], grammar_bytes(b, set));
    }
    grammar_expr p = grammar_repeat(b, grammar_alt(b, prefixes, (int)m - 1), 0, -1);
    grammar_expr x = grammar_alt2(b, grammar_bytes(b, not_c0), grammar_seq2(b, p, grammar_alt(b, exits, (int)m - 1)));
    out = grammar_seq2(b, grammar_repeat(b, x, 0, -1), p);
out:
    free(prefixes);
    free(exits);
    return out;
}

/* ---- finish ------------------------------------------------------------------------------- */

void grammar_free(struct grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->num_rules; i++) free(g->rule_name[i]);
    free(g->rule_name);
    free(g->rule_body);
    free(g->nodes);
    free(g->kids);
    free(g->sets);
    free(g->nullable);
    free(g);
}

static uint64_t mix(uint64_t h, uint64_t v) { return folio_mix64(h ^ v); }

/* Computes nullable per node (fixpoint over rules, nodes in index order), then the rules each
 * rule can call before consuming a byte, and fails on a cycle among those calls. */
static int check_left_recursion(struct grammar *g) {
    int rc = 0;
    uint8_t *rnull = calloc((size_t)g->num_rules, 1);
    int32_t *edge_off = calloc((size_t)g->num_rules + 1, sizeof *edge_off);
    int32_t *edges = NULL;
    int32_t *left = malloc(((size_t)g->num_nodes + 1) * sizeof *left);
    int32_t *stack = NULL;
    uint8_t *color = NULL;
    if (!rnull || !edge_off || !left) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < g->num_nodes; i++) {
            const struct grammar_node *n = &g->nodes[i];
            uint8_t v = 0;
            switch (n->kind) {
            case GRAMMAR_K_EMPTY: v = 1; break;
            case GRAMMAR_K_BYTES: v = 0; break;
            case GRAMMAR_K_SEQ:
                v = 1;
                for (int j = 0; j < n->b && v; j++) v = g->nullable[g->kids[n->a + j]];
                break;
            case GRAMMAR_K_ALT:
                for (int j = 0; j < n->b && !v; j++) v = g->nullable[g->kids[n->a + j]];
                break;
            case GRAMMAR_K_REPEAT: v = n->b == 0 || g->nullable[n->a]; break;
            case GRAMMAR_K_REF: v = rnull[n->a]; break;
            }
            g->nullable[i] = v;
        }
        for (int r = 0; r < g->num_rules; r++)
            if (!rnull[r] && g->nullable[g->rule_body[r]]) rnull[r] = 1, changed = 1;
    }
    /* the rules each body can call before it consumes a byte: a walk down the body that
     * enters a seq's items only while the ones before are nullable (left[] stamps r + 1) */
    size_t ne = 0, ecap = 0;
    stack = malloc(((size_t)g->num_nodes + 1) * sizeof *stack);
    if (!stack) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int i = 0; i < g->num_nodes; i++) left[i] = 0;
    for (int r = 0; r < g->num_rules; r++) {
        int sp = 0;
        left[g->rule_body[r]] = r + 1;
        stack[sp++] = g->rule_body[r];
        while (sp) {
            const struct grammar_node *n = &g->nodes[stack[--sp]];
            int k;
            switch (n->kind) {
            case GRAMMAR_K_SEQ:
            case GRAMMAR_K_ALT:
                for (int j = 0; j < n->b; j++) {
                    k = g->kids[n->a + j];
                    if (left[k] != r + 1) left[k] = r + 1, stack[sp++] = k;
                    if (n->kind == GRAMMAR_K_SEQ && !g->nullable[k]) break;
                }
                break;
            case GRAMMAR_K_REPEAT:
                if (left[n->a] != r + 1) left[n->a] = r + 1, stack[sp++] = n->a;
                break;
            case GRAMMAR_K_REF:
                if (ne == ecap) {
                    ecap = ecap ? ecap * 2 : 256;
                    int32_t *e2 = realloc(edges, ecap * sizeof *edges);
                    if (!e2) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                    edges = e2;
                }
                edges[ne++] = n->a;
                break;
            }
        }
        edge_off[r + 1] = (int32_t)ne;
    }
    free(stack);
    /* cycle search: iterative DFS, color 1 on the path, 2 done */
    color = calloc((size_t)(unsigned)g->num_rules + 1, 1);
    stack = malloc(((size_t)(unsigned)g->num_rules + 1) * 2 * sizeof *stack);
    if (!color || !stack) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int s = 0; s < g->num_rules; s++) {
        if (color[s]) continue;
        int sp = 0;
        stack[0] = s;
        stack[1] = edge_off[s];
        color[s] = 1;
        sp = 1;
        while (sp) {
            int r = stack[2 * (sp - 1)];
            int32_t *it = &stack[2 * (sp - 1) + 1];
            if (*it == edge_off[r + 1]) {
                color[r] = 2;
                sp--;
                continue;
            }
            int t = edges[(*it)++];
            if (color[t] == 1) {
                rc = folio_err(FOLIO_EINVAL, "rule '%s' is left-recursive", g->rule_name[t]);
                goto out;
            }
            if (color[t] == 0) {
                color[t] = 1;
                stack[2 * sp] = t;
                stack[2 * sp + 1] = edge_off[t];
                sp++;
            }
        }
    }
out:
    free(rnull);
    free(edge_off);
    free(edges);
    free(left);
    free(stack);
    free(color);
    return rc;
}

int grammar_builder_finish(struct grammar_builder *b, int root, struct grammar **out) {
    int rc = 0;
    *out = NULL;
    int32_t *rmap = NULL, *rorder = NULL, *nmap = NULL, *smap = NULL;
    uint16_t *depth = NULL;
    int32_t *stack = NULL;
    struct grammar *g = NULL;
    if (b->failed) return folio_err(FOLIO_EINVAL, "%s", b->err);
    if (root < 0 || root >= b->num_rules) return folio_err(FOLIO_EINVAL, "grammar: no root rule %d", root);
    rmap = malloc((size_t)b->num_rules * sizeof *rmap);
    rorder = malloc((size_t)b->num_rules * sizeof *rorder);
    nmap = malloc(((size_t)b->num_nodes + 1) * sizeof *nmap);
    smap = malloc(((size_t)b->num_sets + 1) * sizeof *smap);
    depth = calloc((size_t)b->num_nodes + 1, sizeof *depth);
    g = calloc(1, sizeof *g);
    if (!rmap || !rorder || !nmap || !smap || !depth || !g) {
        rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
        goto out;
    }
    for (int i = 0; i < b->num_rules; i++) rmap[i] = -1;
    for (int i = 0; i < b->num_nodes; i++) nmap[i] = -1;
    for (int i = 0; i < b->num_sets; i++) smap[i] = -1;
    /* reachable rules, breadth first from the root (which becomes rule 0), and their nodes
     * (marked -3 in nmap) by a depth-first walk with an explicit stack */
    stack = malloc(((size_t)b->num_nodes + 1) * sizeof *stack);
    if (!stack) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    int nr = 0;
    rmap[root] = 0;
    rorder[nr++] = root;
    for (int q = 0; q < nr; q++) {
        int r = rorder[q], sp = 0;
        if (b->rule_body[r] == GRAMMAR_NONE) {
            rc = folio_err(FOLIO_EINVAL, "grammar: rule '%s' is undefined", b->rule_name[r]);
            goto out;
        }
        if (nmap[b->rule_body[r]] != -3) nmap[b->rule_body[r]] = -3, stack[sp++] = b->rule_body[r];
        while (sp) {
            const struct grammar_node *n = &b->nodes[stack[--sp]];
            if (n->kind == GRAMMAR_K_SEQ || n->kind == GRAMMAR_K_ALT) {
                for (int j = 0; j < n->b; j++) {
                    int k = b->kids[n->a + j];
                    if (nmap[k] != -3) nmap[k] = -3, stack[sp++] = k;
                }
            } else if (n->kind == GRAMMAR_K_REPEAT) {
                if (nmap[n->a] != -3) nmap[n->a] = -3, stack[sp++] = n->a;
            } else if (n->kind == GRAMMAR_K_REF && rmap[n->a] < 0) {
                rmap[n->a] = nr;
                rorder[nr++] = n->a;
            }
        }
    }
    /* renumber nodes in index order (children stay older), sets likewise; depth check */
    int nn = 0, nk = 0, ns = 0;
    for (int i = 0; i < b->num_nodes; i++) {
        if (nmap[i] != -3) continue;
        const struct grammar_node *n = &b->nodes[i];
        int d = 1;
        if (n->kind == GRAMMAR_K_SEQ || n->kind == GRAMMAR_K_ALT) {
            for (int j = 0; j < n->b; j++)
                if (depth[b->kids[n->a + j]] + 1 > d) d = depth[b->kids[n->a + j]] + 1;
            nk += n->b;
        } else if (n->kind == GRAMMAR_K_REPEAT) {
            d = depth[n->a] + 1;
        } else if (n->kind == GRAMMAR_K_BYTES && smap[n->a] < 0) {
            smap[n->a] = ns++;
        }
        if (d > GRAMMAR_MAX_DEPTH) {
            rc = folio_err(FOLIO_EINVAL, "grammar: expressions nest deeper than GRAMMAR_MAX_DEPTH (%d)",
                           GRAMMAR_MAX_DEPTH);
            goto out;
        }
        depth[i] = (uint16_t)d;
        nmap[i] = nn++;
    }
    g->nodes = malloc(((size_t)nn + 1) * sizeof *g->nodes);
    g->kids = malloc(((size_t)nk + 1) * sizeof *g->kids);
    g->sets = malloc(((size_t)ns + 1) * sizeof *g->sets);
    g->nullable = calloc((size_t)nn + 1, 1);
    g->rule_body = malloc((size_t)nr * sizeof *g->rule_body);
    g->rule_name = calloc((size_t)nr, sizeof *g->rule_name);
    if (!g->nodes || !g->kids || !g->sets || !g->nullable || !g->rule_body || !g->rule_name) {
        rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
        goto out;
    }
    g->num_rules = nr;
    for (int q = 0; q < nr; q++) {
        g->rule_body[q] = nmap[b->rule_body[rorder[q]]];
        g->rule_name[q] = strdup(b->rule_name[rorder[q]]);
        if (!g->rule_name[q]) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    }
    for (int i = 0; i < b->num_sets; i++)
        if (smap[i] >= 0) memcpy(g->sets[smap[i]], b->sets[i], sizeof g->sets[0]);
    g->num_sets = ns;
    for (int i = 0; i < b->num_nodes; i++) {
        if (nmap[i] < 0) continue;
        const struct grammar_node *n = &b->nodes[i];
        struct grammar_node *o = &g->nodes[nmap[i]];
        *o = *n;
        switch (n->kind) {
        case GRAMMAR_K_BYTES: o->a = smap[n->a]; break;
        case GRAMMAR_K_SEQ:
        case GRAMMAR_K_ALT:
            o->a = g->num_kids;
            for (int j = 0; j < n->b; j++) g->kids[g->num_kids++] = nmap[b->kids[n->a + j]];
            break;
        case GRAMMAR_K_REPEAT: o->a = nmap[n->a]; break;
        case GRAMMAR_K_REF: o->a = rmap[n->a]; break;
        }
    }
    g->num_nodes = nn;
    rc = check_left_recursion(g);
    if (rc) goto out;
    uint64_t h = mix(0x6772616d6d6172ULL, (uint64_t)nr);
    for (int i = 0; i < nn; i++) {
        const struct grammar_node *n = &g->nodes[i];
        h = mix(h, (uint64_t)n->kind << 56 ^ (uint64_t)(uint32_t)n->a << 24 ^ (uint64_t)(uint32_t)n->b);
        h = mix(h, (uint64_t)(uint32_t)n->c);
    }
    for (int i = 0; i < g->num_kids; i++) h = mix(h, (uint64_t)g->kids[i]);
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < 8; j += 2) h = mix(h, (uint64_t)g->sets[i][j] << 32 | g->sets[i][j + 1]);
    for (int q = 0; q < nr; q++) h = mix(h, (uint64_t)g->rule_body[q]);
    g->hash = h;
    *out = g;
    g = NULL;
out:
    grammar_free(g);
    free(rmap);
    free(rorder);
    free(nmap);
    free(smap);
    free(depth);
    free(stack);
    return rc;
}

uint64_t grammar_hash(const struct grammar *g) { return g->hash; }

int grammar_from_choices(const char *const *s, const size_t *lens, int n, struct grammar **out) {
    *out = NULL;
    if (n < 1) return folio_err(FOLIO_EINVAL, "grammar: a choice needs at least one string");
    struct grammar_builder *b = grammar_builder_create();
    grammar_expr *alts = malloc((size_t)n * sizeof *alts);
    int rc;
    if (!b || !alts) {
        rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) alts[i] = grammar_literal(b, s[i], lens ? lens[i] : strlen(s[i]));
    int root = grammar_rule_declare(b, "root");
    grammar_rule_define(b, root, grammar_alt(b, alts, n));
    rc = grammar_builder_finish(b, root, out);
out:
    free(alts);
    grammar_builder_free(b);
    return rc;
}

/* ---- printing ----------------------------------------------------------------------------- */

static void put_byte(struct sbuf *o, uint8_t c, int in_class) {
    char t[8];
    if (c == '\n') sbuf_puts(o, "\\n");
    else if (c == '\t') sbuf_puts(o, "\\t");
    else if (c == '\r') sbuf_puts(o, "\\r");
    else if (c == '\\' || (in_class ? (c == ']' || c == '-' || c == '^') : c == '"')) {
        t[0] = '\\';
        t[1] = (char)c;
        sbuf_put(o, t, 2);
    } else if (c < 0x20 || c >= 0x7f) {
        snprintf(t, sizeof t, "\\x%02X", c);
        sbuf_puts(o, t);
    } else {
        sbuf_put(o, (const char *)&c, 1);
    }
}

static int single_byte(const struct grammar *g, int e) {
    if (g->nodes[e].kind != GRAMMAR_K_BYTES) return -1;
    const uint32_t *s = g->sets[g->nodes[e].a];
    int found = -1;
    for (int c = 0; c < 256; c++)
        if (s[c >> 5] >> (c & 31) & 1) {
            if (found >= 0) return -1;
            found = c;
        }
    return found;
}

static void print_expr(const struct grammar *g, int e, struct sbuf *o, int paren) {
    const struct grammar_node *n = &g->nodes[e];
    char t[48];
    switch (n->kind) {
    case GRAMMAR_K_EMPTY: sbuf_puts(o, "\"\""); break;
    case GRAMMAR_K_BYTES: {
        int c1 = single_byte(g, e);
        if (c1 >= 0) {
            sbuf_puts(o, "\"");
            put_byte(o, (uint8_t)c1, 0);
            sbuf_puts(o, "\"");
            break;
        }
        const uint32_t *s = g->sets[n->a];
        sbuf_puts(o, "[");
        for (int c = 0; c < 256; c++) {
            if (!(s[c >> 5] >> (c & 31) & 1)) continue;
            int d = c;
            while (d + 1 < 256 && (s[(d + 1) >> 5] >> ((d + 1) & 31) & 1)) d++;
            put_byte(o, (uint8_t)c, 1);
            if (d > c) {
                if (d > c + 1) sbuf_puts(o, "-");
                put_byte(o, (uint8_t)d, 1);
            }
            c = d;
        }
        sbuf_puts(o, "]");
        break;
    }
    case GRAMMAR_K_SEQ:
        if (paren) sbuf_puts(o, "(");
        for (int j = 0; j < n->b; j++) {
            int k = g->kids[n->a + j];
            if (j) sbuf_puts(o, " ");
            if (single_byte(g, k) >= 0) { /* a run of single bytes prints as one literal */
                sbuf_puts(o, "\"");
                for (; j < n->b && single_byte(g, g->kids[n->a + j]) >= 0; j++)
                    put_byte(o, (uint8_t)single_byte(g, g->kids[n->a + j]), 0);
                j--;
                sbuf_puts(o, "\"");
            } else {
                print_expr(g, k, o, 1);
            }
        }
        if (paren) sbuf_puts(o, ")");
        break;
    case GRAMMAR_K_ALT:
        if (n->b == 0) { sbuf_puts(o, "[]"); break; }
        if (paren) sbuf_puts(o, "(");
        for (int j = 0; j < n->b; j++) {
            if (j) sbuf_puts(o, " | ");
            print_expr(g, g->kids[n->a + j], o, 1);
        }
        if (paren) sbuf_puts(o, ")");
        break;
    case GRAMMAR_K_REPEAT:
        print_expr(g, n->a, o, 1);
        if (n->b == 0 && n->c == -1) sbuf_puts(o, "*");
        else if (n->b == 1 && n->c == -1) sbuf_puts(o, "+");
        else if (n->b == 0 && n->c == 1) sbuf_puts(o, "?");
        else if (n->c == -1) snprintf(t, sizeof t, "{%d,}", n->b), sbuf_puts(o, t);
        else if (n->b == n->c) snprintf(t, sizeof t, "{%d}", n->b), sbuf_puts(o, t);
        else snprintf(t, sizeof t, "{%d,%d}", n->b, n->c), sbuf_puts(o, t);
        break;
    case GRAMMAR_K_REF: sbuf_puts(o, g->rule_name[n->a]); break;
    }
}

char *grammar_print(const struct grammar *g) {
    struct sbuf o = {0};
    for (int r = 0; r < g->num_rules; r++) {
        sbuf_puts(&o, g->rule_name[r]);
        sbuf_puts(&o, " ::= ");
        print_expr(g, g->rule_body[r], &o, 0);
        sbuf_puts(&o, "\n");
    }
    return o.p; /* NULL only when out of memory */
}

/* ---- reference recognizer ------------------------------------------------------------------ */

/* ends(e, i): the set of positions j such that e matches s[i, j), as a bitset over 0..n.
 * Rule results are memoized per start position; without left recursion a rule never needs
 * its own result at the same position, so the recursion ends. */
struct ref_match {
    const struct grammar *g;
    const uint8_t *s;
    size_t n, words;
    uint64_t **memo; /* [num_rules * (n + 1)] */
    int oom;
};

static uint64_t *bits_new(struct ref_match *m) {
    uint64_t *p = calloc(m->words, sizeof *p);
    if (!p) m->oom = 1;
    return p;
}

static void ends(struct ref_match *m, int e, size_t i, uint64_t *out);

static void ends_set(struct ref_match *m, int e, const uint64_t *from, uint64_t *out) {
    for (size_t w = 0; w < m->words; w++)
        for (uint64_t x = from[w]; x; x &= x - 1) ends(m, e, w * 64 + (size_t)__builtin_ctzll(x), out);
}

static void ends(struct ref_match *m, int e, size_t i, uint64_t *out) {
    const struct grammar_node *nd = &m->g->nodes[e];
    if (m->oom) return;
    switch (nd->kind) {
    case GRAMMAR_K_EMPTY: out[i / 64] |= 1ULL << (i % 64); break;
    case GRAMMAR_K_BYTES:
        if (i < m->n && (m->g->sets[nd->a][m->s[i] >> 5] >> (m->s[i] & 31) & 1))
            out[(i + 1) / 64] |= 1ULL << ((i + 1) % 64);
        break;
    case GRAMMAR_K_ALT:
        for (int j = 0; j < nd->b; j++) ends(m, m->g->kids[nd->a + j], i, out);
        break;
    case GRAMMAR_K_SEQ: {
        uint64_t *cur = bits_new(m), *nxt = bits_new(m);
        if (!cur || !nxt) { free(cur); free(nxt); return; }
        cur[i / 64] |= 1ULL << (i % 64);
        for (int j = 0; j < nd->b; j++) {
            memset(nxt, 0, m->words * sizeof *nxt);
            ends_set(m, m->g->kids[nd->a + j], cur, nxt);
            uint64_t *t = cur; cur = nxt; nxt = t;
        }
        for (size_t w = 0; w < m->words; w++) out[w] |= cur[w];
        free(cur);
        free(nxt);
        break;
    }
    case GRAMMAR_K_REPEAT: {
        uint64_t *cur = bits_new(m), *nxt = bits_new(m);
        if (!cur || !nxt) { free(cur); free(nxt); return; }
        cur[i / 64] |= 1ULL << (i % 64);
        if (nd->b == 0) out[i / 64] |= 1ULL << (i % 64);
        for (long k = 1; nd->c < 0 || k <= nd->c; k++) {
            memset(nxt, 0, m->words * sizeof *nxt);
            ends_set(m, nd->a, cur, nxt);
            int empty = 1, same = 1;
            for (size_t w = 0; w < m->words; w++) {
                if (nxt[w]) empty = 0;
                if (nxt[w] != cur[w]) same = 0;
                if (k >= nd->b) out[w] |= nxt[w];
            }
            /* empty: no more matches; same: a fixpoint (only a nullable body gets there), every
             * later count gives the same set */
            if (empty || (same && k >= nd->b)) break;
            uint64_t *t = cur; cur = nxt; nxt = t;
        }
        free(cur);
        free(nxt);
        break;
    }
    case GRAMMAR_K_REF: {
        uint64_t **slot = &m->memo[(size_t)nd->a * (m->n + 1) + i];
        if (!*slot) {
            uint64_t *r = bits_new(m);
            if (!r) return;
            ends(m, m->g->rule_body[nd->a], i, r);
            *slot = r;
        }
        for (size_t w = 0; w < m->words; w++) out[w] |= (*slot)[w];
        break;
    }
    }
}

int grammar_matches(const struct grammar *g, const uint8_t *s, size_t n) {
    struct ref_match m = {.g = g, .s = s, .n = n, .words = (n + 1 + 63) / 64};
    m.memo = calloc((size_t)g->num_rules * (n + 1), sizeof *m.memo);
    uint64_t *r = bits_new(&m);
    int ok = 0;
    if (m.memo && r) {
        ends(&m, g->rule_body[0], 0, r);
        ok = !m.oom && (r[n / 64] >> (n % 64) & 1);
    }
    if (m.memo)
        for (size_t i = 0; i < (size_t)g->num_rules * (n + 1); i++) free(m.memo[i]);
    free(m.memo);
    free(r);
    return ok;
}
