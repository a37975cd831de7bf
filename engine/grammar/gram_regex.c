/* gram_regex: an ECMAScript regex subset compiled to a grammar expression over UTF-8 bytes.
 *
 * Two passes: the pattern is parsed into a small AST first, then emitted. The AST exists
 * because where ^ and $ may stand, and where an unanchored pattern gets its implicit .* on
 * either side, depends on what comes after a group, which a one-pass emitter cannot know.
 *
 * Anchors: ^ is accepted where nothing can have been consumed before it on any path (the
 * start of the pattern, the start of a top-level alternative, the start of a group that itself
 * stands at the start); $ symmetrically. Unanchored, each such "start" branch that does not
 * begin with ^ gets a leading .* (any code point, newlines included, since JSON Schema
 * searches the whole string), so "^a|b" means (a.*)|(.*b.*) exactly as a search would.
 *
 * JSON mode (gram_regex_json_expr) matches the regex against the *decoded* body of a JSON
 * string literal: each code point of the match is written as JSON may write it: raw when
 * JSON allows it raw, plus its escape forms: \" \\ \/ \b \f \n \r \t and \u00XX (either hex
 * case) for control characters. A non-control character written as \uXXXX (\u00e9 for e-acute)
 * is not accepted there: models and serializers write those raw, and accepting every \u form
 * for every class would multiply the grammar. */
#include "grammar/gram_regex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

enum rx_kind { RX_EMPTY, RX_CLASS, RX_SEQ, RX_ALT, RX_REP, RX_BOL, RX_EOL };

struct rx_node {
    int kind;
    int kid, next;    /* first child, next sibling (-1: none) */
    int min, max;     /* RX_REP; max -1 unbounded */
    int rg, nrg;      /* RX_CLASS: normalized ranges in rx.rg[rg .. rg+nrg) */
    int lit;          /* RX_CLASS written as one literal character (for literal merging) */
};

struct rx {
    const char *s;
    size_t n, i;
    struct rx_node *nodes;
    int nn, ncap;
    uint32_t (*rg)[2];
    int nrg, rgcap;
    int json;
    int unanchored;
    struct grammar_builder *b;
    grammar_expr dotstar; /* cached ".*" over all code points (GRAMMAR_NONE until built) */
    int depth;
};

#define RX_MAX_DEPTH 32 /* group nesting: bounds the parser's recursion (HTTP threads have 100 KiB stacks, and an ASan frame is big) */
#define CP_MAX 0x10FFFF

static int rx_new(struct rx *r, int kind) {
    if (r->nn == r->ncap) {
        int cap = r->ncap ? r->ncap * 2 : 64;
        struct rx_node *p = realloc(r->nodes, (size_t)cap * sizeof(*p));
        if (!p) return FOLIO_ENOMEM;
        r->nodes = p;
        r->ncap = cap;
    }
    struct rx_node *nd = &r->nodes[r->nn];
    memset(nd, 0, sizeof(*nd));
    nd->kind = kind;
    nd->kid = nd->next = -1;
    return r->nn++;
}

/* Range scratch: a class is built at the end of rx.rg, then normalized in place. */
static int rg_push(struct rx *r, uint32_t lo, uint32_t hi) {
    if (r->nrg == r->rgcap) {
        int cap = r->rgcap ? r->rgcap * 2 : 256;
        uint32_t(*p)[2] = realloc(r->rg, (size_t)cap * sizeof(*p));
        if (!p) return FOLIO_ENOMEM;
        r->rg = p;
        r->rgcap = cap;
    }
    r->rg[r->nrg][0] = lo;
    r->rg[r->nrg][1] = hi;
    r->nrg++;
    return 0;
}

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts and merges ranges [start, nrg), drops surrogates (not scalar values, never in UTF-8),
 * and complements them when negate. Leaves the result at [start, nrg). */
static int rg_normalize(struct rx *r, int start, int negate) {
    int n = r->nrg - start;
    /* An empty class ([]) stores no range yet: r->rg may still be NULL. */
    uint32_t(*a)[2] = n > 0 ? r->rg + start : NULL;
    if (n > 0) qsort(a, (size_t)n, sizeof(*a), cmp_range);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && a[i][0] <= a[m - 1][1] + 1) {
            if (a[i][1] > a[m - 1][1]) a[m - 1][1] = a[i][1];
        } else {
            a[m][0] = a[i][0];
            a[m][1] = a[i][1];
            m++;
        }
    }
    r->nrg = start + m;
    if (negate) {
        /* complement into fresh space after the merged list, then move it down */
        int base = r->nrg;
        uint32_t next = 0;
        for (int i = 0; i < m; i++) {
            uint32_t lo = r->rg[start + i][0], hi = r->rg[start + i][1];
            if (lo > next && rg_push(r, next, lo - 1)) return FOLIO_ENOMEM;
            next = hi + 1;
        }
        if (next <= CP_MAX && rg_push(r, next, CP_MAX)) return FOLIO_ENOMEM;
        int k = r->nrg - base;
        memmove(r->rg + start, r->rg + base, (size_t)k * sizeof(*r->rg));
        r->nrg = start + k;
    }
    /* cut out the surrogate block D800-DFFF */
    int end = r->nrg;
    for (int i = start; i < end; i++) {
        uint32_t lo = r->rg[i][0], hi = r->rg[i][1];
        if (hi < 0xD800 || lo > 0xDFFF) continue;
        if (lo < 0xD800 && hi > 0xDFFF) {
            r->rg[i][1] = 0xD7FF;
            if (rg_push(r, 0xE000, hi)) return FOLIO_ENOMEM;
        } else if (lo < 0xD800) {
            r->rg[i][1] = 0xD7FF;
        } else if (hi > 0xDFFF) {
            r->rg[i][0] = 0xE000;
        } else {
            r->rg[i][0] = 1; /* empty: mark and drop below */
            r->rg[i][1] = 0;
        }
    }
    int w = start;
    for (int i = start; i < r->nrg; i++)
        if (r->rg[i][0] <= r->rg[i][1]) {
            r->rg[w][0] = r->rg[i][0];
            r->rg[w][1] = r->rg[i][1];
            w++;
        }
    r->nrg = w;
    if (r->nrg - start > 1) qsort(r->rg + start, (size_t)(r->nrg - start), sizeof(*r->rg), cmp_range);
    return 0;
}

static int err_at(struct rx *r, int code, const char *what) {
    return folio_err(code, "regex: %s at offset %zu", what, r->i);
}

/* The built-in classes; `neg` gives \D \W \S. Ranges are pushed unnormalized. */
static int push_builtin(struct rx *r, char c) {
    static const uint32_t d[][2] = {{'0', '9'}};
    static const uint32_t w[][2] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const uint32_t s[][2] = {{9, 13},         {' ', ' '},       {0xA0, 0xA0},
                                    {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
                                    {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
                                    {0xFEFF, 0xFEFF}};
    const uint32_t(*t)[2];
    int n;
    switch (c | 0x20) {
    case 'd': t = d, n = 1; break;
    case 'w': t = w, n = 4; break;
    default: t = s, n = (int)(sizeof(s) / sizeof(s[0])); break;
    }
    int neg = c >= 'A' && c <= 'Z';
    if (!neg) {
        for (int i = 0; i < n; i++)
            if (rg_push(r, t[i][0], t[i][1])) return FOLIO_ENOMEM;
        return 0;
    }
    /* complement inline so that [\D_] unions correctly */
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (t[i][0] > next && rg_push(r, next, t[i][0] - 1)) return FOLIO_ENOMEM;
        next = t[i][1] + 1;
    }
    return rg_push(r, next, CP_MAX);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex(struct rx *r, int digits, uint32_t *cp) {
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        if (r->i >= r->n || hexval(r->s[r->i]) < 0) return err_at(r, FOLIO_EINVAL, "bad hex escape");
        v = v * 16 + (uint32_t)hexval(r->s[r->i++]);
    }
    *cp = v;
    return 0;
}

/* One UTF-8 code point of the pattern itself. */
static int read_cp(struct rx *r, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)r->s + r->i;
    size_t left = r->n - r->i;
    uint32_t c = p[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || (size_t)len > left) return err_at(r, FOLIO_EINVAL, "invalid UTF-8");
    if (len > 1) c &= 0xFFu >> (len + 1);
    for (int k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) return err_at(r, FOLIO_EINVAL, "invalid UTF-8");
        c = c << 6 | (p[k] & 0x3F);
    }
    r->i += (size_t)len;
    *cp = c;
    return 0;
}

/* An escape after the backslash. Sets *cp for a single character, or pushes a built-in class
 * and sets *is_class. in_class: inside [...] (\b is backspace there, \- is allowed). */
static int parse_escape(struct rx *r, int in_class, uint32_t *cp, int *is_class) {
    *is_class = 0;
    if (r->i >= r->n) return err_at(r, FOLIO_EINVAL, "trailing backslash");
    char c = r->s[r->i];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        r->i++;
        *is_class = 1;
        return push_builtin(r, c);
    case 'b':
        if (in_class) {
            r->i++;
            *cp = 8;
            return 0;
        }
        return err_at(r, FOLIO_EUNSUP, "unsupported word boundary \\b");
    case 'B': return err_at(r, FOLIO_EUNSUP, "unsupported word boundary \\B");
    case 'n': r->i++; *cp = '\n'; return 0;
    case 't': r->i++; *cp = '\t'; return 0;
    case 'r': r->i++; *cp = '\r'; return 0;
    case 'f': r->i++; *cp = '\f'; return 0;
    case 'v': r->i++; *cp = '\v'; return 0;
    case '0':
        if (r->i + 1 < r->n && r->s[r->i + 1] >= '0' && r->s[r->i + 1] <= '9')
            return err_at(r, FOLIO_EUNSUP, "unsupported octal escape");
        r->i++;
        *cp = 0;
        return 0;
    case 'x': r->i++; return read_hex(r, 2, cp);
    case 'u':
        r->i++;
        if (r->i < r->n && r->s[r->i] == '{') {
            uint32_t v = 0;
            int nd = 0;
            r->i++;
            while (r->i < r->n && hexval(r->s[r->i]) >= 0 && nd < 7) v = v * 16 + (uint32_t)hexval(r->s[r->i++]), nd++;
            if (!nd || r->i >= r->n || r->s[r->i] != '}' || v > CP_MAX)
                return err_at(r, FOLIO_EINVAL, "bad \\u{...} escape");
            r->i++;
            *cp = v;
            return 0;
        }
        {
            int rc = read_hex(r, 4, cp);
            if (rc) return rc;
            /* a surrogate pair written as two \u escapes is one code point */
            if (*cp >= 0xD800 && *cp <= 0xDBFF && r->i + 6 <= r->n && r->s[r->i] == '\\' &&
                r->s[r->i + 1] == 'u') {
                size_t save = r->i;
                uint32_t lo;
                r->i += 2;
                if (read_hex(r, 4, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
                    return 0;
                }
                r->i = save;
            }
            return 0;
        }
    case 'c':
        if (r->i + 1 < r->n && ((r->s[r->i + 1] | 0x20) >= 'a' && (r->s[r->i + 1] | 0x20) <= 'z')) {
            *cp = (uint32_t)(r->s[r->i + 1] & 31);
            r->i += 2;
            return 0;
        }
        return err_at(r, FOLIO_EINVAL, "bad \\c escape");
    case 'k': return err_at(r, FOLIO_EUNSUP, "unsupported backreference \\k");
    case 'p': case 'P': return err_at(r, FOLIO_EUNSUP, "unsupported Unicode property escape");
    default:
        if (c >= '1' && c <= '9') return err_at(r, FOLIO_EUNSUP, "unsupported backreference");
        /* identity escape: \. \/ \- \$ ... (and, as browsers do, any other character) */
        return read_cp(r, cp);
    }
}

static int parse_alt(struct rx *r, int *out);

static int parse_class(struct rx *r, int *out) {
    int start = r->nrg, neg = 0, rc;
    r->i++; /* [ */
    if (r->i < r->n && r->s[r->i] == '^') neg = 1, r->i++;
    for (;;) {
        if (r->i >= r->n) return err_at(r, FOLIO_EINVAL, "unterminated character class");
        if (r->s[r->i] == ']') {
            r->i++;
            break;
        }
        uint32_t lo, hi;
        int is_class = 0;
        if (r->s[r->i] == '\\') {
            r->i++;
            if ((rc = parse_escape(r, 1, &lo, &is_class))) return rc;
        } else if ((rc = read_cp(r, &lo))) {
            return rc;
        }
        if (is_class) continue;
        hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            size_t save = r->i;
            r->i++;
            int hc = 0;
            if (r->s[r->i] == '\\') {
                r->i++;
                if ((rc = parse_escape(r, 1, &hi, &hc))) return rc;
            } else if ((rc = read_cp(r, &hi))) {
                return rc;
            }
            if (hc) {
                /* [a-\d]: the '-' is a literal, as in Annex B */
                if (rg_push(r, lo, lo) || rg_push(r, '-', '-')) return FOLIO_ENOMEM;
                (void)save;
                continue;
            }
            if (hi < lo) return err_at(r, FOLIO_EINVAL, "range out of order in character class");
        }
        if (rg_push(r, lo, hi)) return FOLIO_ENOMEM;
    }
    if ((rc = rg_normalize(r, start, neg))) return rc;
    int nd = rx_new(r, RX_CLASS);
    if (nd < 0) return nd;
    r->nodes[nd].rg = start;
    r->nodes[nd].nrg = r->nrg - start;
    *out = nd;
    return 0;
}

static int class_node(struct rx *r, int start, int lit, int *out) {
    int rc = rg_normalize(r, start, 0);
    if (rc) return rc;
    int nd = rx_new(r, RX_CLASS);
    if (nd < 0) return nd;
    r->nodes[nd].rg = start;
    r->nodes[nd].nrg = r->nrg - start;
    r->nodes[nd].lit = lit;
    *out = nd;
    return 0;
}

static int parse_atom(struct rx *r, int *out) {
    char c = r->s[r->i];
    int rc, start = r->nrg;
    switch (c) {
    case '(': {
        r->i++;
        if (r->i < r->n && r->s[r->i] == '?') {
            if (r->i + 1 < r->n && r->s[r->i + 1] == ':') {
                r->i += 2;
            } else if (r->i + 2 < r->n && r->s[r->i + 1] == '<' && r->s[r->i + 2] != '=' &&
                       r->s[r->i + 2] != '!') {
                const char *e = memchr(r->s + r->i, '>', r->n - r->i);
                if (!e) return err_at(r, FOLIO_EINVAL, "unterminated group name");
                r->i = (size_t)(e - r->s) + 1;
            } else if (r->i + 1 < r->n && (r->s[r->i + 1] == '=' || r->s[r->i + 1] == '!')) {
                return err_at(r, FOLIO_EUNSUP, "unsupported lookahead");
            } else if (r->i + 1 < r->n && r->s[r->i + 1] == '<') {
                return err_at(r, FOLIO_EUNSUP, "unsupported lookbehind");
            } else {
                return err_at(r, FOLIO_EUNSUP, "unsupported group modifier (flags)");
            }
        }
        if (++r->depth > RX_MAX_DEPTH) return err_at(r, FOLIO_EUNSUP, "groups nested too deeply");
        if ((rc = parse_alt(r, out))) return rc;
        r->depth--;
        if (r->i >= r->n || r->s[r->i] != ')') return err_at(r, FOLIO_EINVAL, "missing )");
        r->i++;
        return 0;
    }
    case '[': return parse_class(r, out);
    case '.':
        r->i++;
        /* ECMA: any code point but the line terminators */
        if (rg_push(r, 0, 9) || rg_push(r, 11, 12) || rg_push(r, 14, 0x2027) ||
            rg_push(r, 0x202A, CP_MAX))
            return FOLIO_ENOMEM;
        return class_node(r, start, 0, out);
    case '^':
    case '$': {
        r->i++;
        int nd = rx_new(r, c == '^' ? RX_BOL : RX_EOL);
        if (nd < 0) return nd;
        *out = nd;
        return 0;
    }
    case '\\': {
        uint32_t cp;
        int is_class;
        r->i++;
        if ((rc = parse_escape(r, 0, &cp, &is_class))) return rc;
        if (!is_class && rg_push(r, cp, cp)) return FOLIO_ENOMEM;
        return class_node(r, start, !is_class, out);
    }
    case '*': case '+': case '?': return err_at(r, FOLIO_EINVAL, "nothing to repeat");
    case ')': return err_at(r, FOLIO_EINVAL, "unmatched )");
    default: {
        uint32_t cp;
        if ((rc = read_cp(r, &cp))) return rc;
        if (rg_push(r, cp, cp)) return FOLIO_ENOMEM;
        return class_node(r, start, 1, out);
    }
    }
}

/* {n}, {n,}, {n,m} at r->i; returns 1 and advances when it is one, 0 (a literal '{') when not. */
static int parse_braces(struct rx *r, int *min, int *max) {
    size_t j = r->i + 1;
    long a = 0, b;
    int nd = 0;
    while (j < r->n && r->s[j] >= '0' && r->s[j] <= '9') {
        if (a < 1000000) a = a * 10 + (r->s[j] - '0');
        j++, nd++;
    }
    if (!nd || j >= r->n) return 0;
    b = a;
    if (r->s[j] == ',') {
        j++;
        int nd2 = 0;
        b = 0;
        while (j < r->n && r->s[j] >= '0' && r->s[j] <= '9') {
            if (b < 1000000) b = b * 10 + (r->s[j] - '0');
            j++, nd2++;
        }
        if (!nd2) b = -1;
    }
    if (j >= r->n || r->s[j] != '}') return 0;
    r->i = j + 1;
    *min = (int)a;
    *max = (int)b;
    return 1;
}

static int parse_seq(struct rx *r, int *out) {
    int seq = rx_new(r, RX_SEQ), last = -1, rc;
    if (seq < 0) return seq;
    while (r->i < r->n && r->s[r->i] != '|' && r->s[r->i] != ')') {
        int atom, min = -2, max = -1;
        if (r->s[r->i] == '{') {
            int a, bb;
            if (parse_braces(r, &a, &bb)) return err_at(r, FOLIO_EINVAL, "nothing to repeat");
            uint32_t cp = '{';
            int start = r->nrg;
            r->i++;
            if (rg_push(r, cp, cp)) return FOLIO_ENOMEM;
            if ((rc = class_node(r, start, 1, &atom))) return rc;
        } else if ((rc = parse_atom(r, &atom))) {
            return rc;
        }
        if (r->i < r->n) {
            char q = r->s[r->i];
            if (q == '*') min = 0, max = -1, r->i++;
            else if (q == '+') min = 1, max = -1, r->i++;
            else if (q == '?') min = 0, max = 1, r->i++;
            else if (q == '{' && !parse_braces(r, &min, &max)) min = -2;
        }
        if (min != -2) {
            if (r->i < r->n && r->s[r->i] == '?') r->i++; /* lazy: same language */
            if (r->i < r->n && (r->s[r->i] == '*' || r->s[r->i] == '+' || r->s[r->i] == '?' ||
                                (r->s[r->i] == '{' && r->i + 1 < r->n && r->s[r->i + 1] >= '0' &&
                                 r->s[r->i + 1] <= '9')))
                return err_at(r, FOLIO_EINVAL, "nothing to repeat");
            if (r->nodes[atom].kind == RX_BOL || r->nodes[atom].kind == RX_EOL)
                return err_at(r, FOLIO_EUNSUP, "quantified anchor");
            if (max >= 0 && max < min) return err_at(r, FOLIO_EINVAL, "numbers out of order in {} quantifier");
            if (min > GRAMMAR_MAX_REPEAT || max > GRAMMAR_MAX_REPEAT)
                return err_at(r, FOLIO_EUNSUP, "repeat bound above GRAMMAR_MAX_REPEAT");
            int rep = rx_new(r, RX_REP);
            if (rep < 0) return rep;
            r->nodes[rep].kid = atom;
            r->nodes[rep].min = min;
            r->nodes[rep].max = max;
            atom = rep;
        }
        if (last < 0) r->nodes[seq].kid = atom;
        else r->nodes[last].next = atom;
        last = atom;
    }
    *out = seq;
    return 0;
}

static int parse_alt(struct rx *r, int *out) {
    int first, rc;
    if ((rc = parse_seq(r, &first))) return rc;
    if (r->i >= r->n || r->s[r->i] != '|') {
        *out = first;
        return 0;
    }
    int alt = rx_new(r, RX_ALT), last = first;
    if (alt < 0) return alt;
    r->nodes[alt].kid = first;
    while (r->i < r->n && r->s[r->i] == '|') {
        int nx;
        r->i++;
        if ((rc = parse_seq(r, &nx))) return rc;
        r->nodes[last].next = nx;
        last = nx;
    }
    *out = alt;
    return 0;
}

/* ---- emission ---- */

static int rg_has(const uint32_t (*a)[2], int n, uint32_t cp) {
    for (int i = 0; i < n; i++)
        if (cp >= a[i][0] && cp <= a[i][1]) return 1;
    return 0;
}

/* A code point class as it may be written inside a JSON string (see the file comment). */
static grammar_expr json_class(struct grammar_builder *b, const uint32_t (*a)[2], int n) {
    grammar_expr alts[16];
    int na = 0;
    /* raw part: the class minus controls, quote and backslash */
    uint32_t(*raw)[2] = malloc((size_t)(n + 2) * sizeof(*raw));
    if (!raw) return GRAMMAR_NONE;
    int nr = 0;
    for (int i = 0; i < n; i++) {
        uint32_t lo = a[i][0] < 0x20 ? 0x20 : a[i][0], hi = a[i][1];
        if (lo > hi) continue;
        /* split around 0x22 and 0x5C */
        uint32_t cuts[2] = {0x22, 0x5C};
        for (int k = 0; k < 2 && lo <= hi; k++) {
            if (cuts[k] < lo || cuts[k] > hi) continue;
            if (cuts[k] > lo) raw[nr][0] = lo, raw[nr][1] = cuts[k] - 1, nr++;
            lo = cuts[k] + 1;
        }
        if (lo <= hi) raw[nr][0] = lo, raw[nr][1] = hi, nr++;
    }
    if (nr) alts[na++] = grammar_codepoints(b, (const uint32_t(*)[2])raw, nr, 0);
    free(raw);
    static const struct { uint32_t cp; const char *esc; } short_esc[] = {
        {'"', "\\\""}, {'\\', "\\\\"}, {'/', "\\/"}, {8, "\\b"},
        {12, "\\f"},   {10, "\\n"},    {13, "\\r"},  {9, "\\t"},
    };
    for (size_t k = 0; k < sizeof(short_esc) / sizeof(short_esc[0]); k++)
        if (rg_has(a, n, short_esc[k].cp)) alts[na++] = grammar_literal(b, short_esc[k].esc, 2);
    for (int h = 0; h < 2; h++) {
        uint32_t set[8] = {0};
        int any = 0;
        for (int l = 0; l < 16; l++) {
            if (!rg_has(a, n, (uint32_t)(h * 16 + l))) continue;
            const char *lc = "0123456789abcdef", *uc = "0123456789ABCDEF";
            set[(uint8_t)lc[l] >> 5] |= 1u << ((uint8_t)lc[l] & 31);
            set[(uint8_t)uc[l] >> 5] |= 1u << ((uint8_t)uc[l] & 31);
            any = 1;
        }
        if (!any) continue;
        char pre[5] = {'\\', 'u', '0', '0', (char)('0' + h)};
        alts[na++] = grammar_seq2(b, grammar_literal(b, pre, 5), grammar_bytes(b, set));
    }
    return grammar_alt(b, alts, na);
}

static grammar_expr emit_class(struct rx *r, const struct rx_node *nd) {
    if (nd->nrg == 0) return grammar_alt(r->b, NULL, 0); /* [] matches nothing (r->rg may be NULL) */
    const uint32_t(*a)[2] = (const uint32_t(*)[2])(r->rg + nd->rg);
    if (r->json) return json_class(r->b, a, nd->nrg);
    return grammar_codepoints(r->b, a, nd->nrg, 0);
}

static grammar_expr dotstar(struct rx *r) {
    if (r->dotstar == GRAMMAR_NONE) {
        static const uint32_t all[1][2] = {{0, CP_MAX}};
        grammar_expr any = r->json ? json_class(r->b, all, 1) : grammar_codepoints(r->b, all, 1, 0);
        r->dotstar = grammar_repeat(r->b, any, 0, -1);
    }
    return r->dotstar;
}

/* A literal character that has exactly one spelling in the output (so runs of them merge into
 * one grammar_literal). */
static int plain_lit(struct rx *r, const struct rx_node *nd, uint32_t *cp) {
    if (nd->kind != RX_CLASS || !nd->lit || nd->nrg != 1) return 0;
    *cp = r->rg[nd->rg][0];
    if (r->json && (*cp < 0x20 || *cp == '"' || *cp == '\\' || *cp == '/')) return 0;
    return 1;
}

static size_t enc_utf8(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* at_s / at_e: ^ (or $) may stand here. pad_s / pad_e: this node owns the implicit .* of an
 * unanchored pattern on that side (it adds one unless it begins with ^ / ends with $). */
static int emit(struct rx *r, int ni, int at_s, int at_e, int pad_s, int pad_e, grammar_expr *out);

static int emit_seq(struct rx *r, int ni, int at_s, int at_e, int pad_s, int pad_e, grammar_expr *out) {
    int kids[4096], nk = 0, rc = 0;
    int *kv = kids;
    for (int k = r->nodes[ni].kid; k >= 0; k = r->nodes[k].next) nk++;
    if (nk > 4096 && !(kv = malloc((size_t)nk * sizeof(int)))) return FOLIO_ENOMEM;
    nk = 0;
    for (int k = r->nodes[ni].kid; k >= 0; k = r->nodes[k].next) kv[nk++] = k;
    /* first and last non-anchor children */
    int f = 0, l = nk - 1;
    while (f < nk && r->nodes[kv[f]].kind == RX_BOL) f++;
    while (l >= 0 && r->nodes[kv[l]].kind == RX_EOL) l--;
    int anch_s = f > 0 && at_s, anch_e = l < nk - 1 && at_e;
    if (f > 0 && !at_s) { rc = folio_err(FOLIO_EUNSUP, "regex: unsupported ^ not at the start"); goto out; }
    if (l < nk - 1 && !at_e) { rc = folio_err(FOLIO_EUNSUP, "regex: unsupported $ not at the end"); goto out; }
    /* a group at the edge takes over the padding for its own branches */
    int deleg_s = f <= l && (r->nodes[kv[f]].kind == RX_ALT || r->nodes[kv[f]].kind == RX_SEQ);
    int deleg_e = f <= l && (r->nodes[kv[l]].kind == RX_ALT || r->nodes[kv[l]].kind == RX_SEQ);
    grammar_expr *items = malloc((size_t)(nk + 2) * sizeof(*items));
    char *buf = NULL;
    if (!items) { rc = FOLIO_ENOMEM; goto out; }
    int ni_ = 0;
    if (pad_s && !anch_s && !deleg_s) items[ni_++] = dotstar(r);
    size_t cap = 0, len = 0;
    for (int i = f; i <= l; i++) {
        uint32_t cp;
        if (plain_lit(r, &r->nodes[kv[i]], &cp)) {
            if (len + 4 > cap) {
                size_t nc = cap ? cap * 2 : 64;
                char *p = realloc(buf, nc);
                if (!p) { rc = FOLIO_ENOMEM; goto out2; }
                buf = p, cap = nc;
            }
            len += enc_utf8(cp, buf + len);
            if (i == l || !plain_lit(r, &r->nodes[kv[i + 1]], &cp)) {
                items[ni_++] = grammar_literal(r->b, buf, len);
                len = 0;
            }
            continue;
        }
        /* a child is at the start when only ^ precede it, at the end when only $ follow */
        int cs = at_s && i == f, ce = at_e && i == l;
        if (r->nodes[kv[i]].kind == RX_BOL || r->nodes[kv[i]].kind == RX_EOL) {
            rc = folio_err(FOLIO_EUNSUP, "regex: unsupported %s in the middle of the pattern",
                           r->nodes[kv[i]].kind == RX_BOL ? "^" : "$");
            goto out2;
        }
        if ((rc = emit(r, kv[i], cs, ce, cs && pad_s && !anch_s && deleg_s,
                       ce && pad_e && !anch_e && deleg_e, &items[ni_])))
            goto out2;
        ni_++;
    }
    if (pad_e && !anch_e && !deleg_e && !(pad_s && !anch_s && !deleg_s && f > l)) items[ni_++] = dotstar(r);
    *out = ni_ == 1 ? items[0] : grammar_seq(r->b, items, ni_);
out2:
    free(buf);
    free(items);
out:
    if (kv != kids) free(kv);
    return rc;
}

static int emit(struct rx *r, int ni, int at_s, int at_e, int pad_s, int pad_e, grammar_expr *out) {
    struct rx_node *nd = &r->nodes[ni];
    int rc;
    switch (nd->kind) {
    case RX_SEQ: return emit_seq(r, ni, at_s, at_e, pad_s, pad_e, out);
    case RX_ALT: {
        int n = 0;
        for (int k = nd->kid; k >= 0; k = r->nodes[k].next) n++;
        grammar_expr *it = malloc((size_t)n * sizeof(*it));
        if (!it) return FOLIO_ENOMEM;
        n = 0;
        for (int k = r->nodes[ni].kid; k >= 0; k = r->nodes[k].next) {
            if ((rc = emit(r, k, at_s, at_e, pad_s, pad_e, &it[n]))) {
                free(it);
                return rc;
            }
            n++;
        }
        *out = grammar_alt(r->b, it, n);
        free(it);
        return 0;
    }
    case RX_REP: {
        grammar_expr e;
        if ((rc = emit(r, nd->kid, 0, 0, 0, 0, &e))) return rc;
        *out = grammar_repeat(r->b, e, nd->min, nd->max);
        return 0;
    }
    case RX_CLASS: *out = emit_class(r, nd); return 0;
    case RX_BOL:
    case RX_EOL:
        /* only reached for an anchor standing alone in a repeat or similar */
        return folio_err(FOLIO_EUNSUP, "regex: unsupported anchor position");
    default: *out = grammar_empty(r->b); return 0;
    }
}

/* Tightens a length constraint into the regex when its shape allows it exactly: one branch,
 * anchored at both ends, made of single characters and repeats of single characters with at
 * most one of variable length. Returns 1 when applied (or when the fixed length is known), 0
 * when the shape does not allow it; *dead when no string can satisfy both. */
static int apply_length(struct rx *r, int root, int unanchored, int min_len, int max_len, int *dead) {
    int ni = root;
    *dead = 0;
    if (r->nodes[ni].kind != RX_SEQ) return 0;
    int kids[512], nk = 0;
    for (int k = r->nodes[ni].kid; k >= 0; k = r->nodes[k].next) {
        if (nk == 512) return 0;
        kids[nk++] = k;
    }
    int f = 0, l = nk - 1;
    while (f < nk && r->nodes[kids[f]].kind == RX_BOL) f++;
    while (l >= 0 && r->nodes[kids[l]].kind == RX_EOL) l--;
    if (unanchored && (f == 0 || l == nk - 1)) return 0;
    long fixed = 0;
    int var = -1;
    for (int i = f; i <= l; i++) {
        struct rx_node *nd = &r->nodes[kids[i]];
        if (nd->kind == RX_CLASS) {
            fixed++;
            continue;
        }
        if (nd->kind != RX_REP || r->nodes[nd->kid].kind != RX_CLASS) return 0;
        if (nd->min == nd->max) {
            fixed += nd->min;
            continue;
        }
        if (var >= 0) return 0;
        var = kids[i];
    }
    if (var < 0) {
        if (fixed < min_len || (max_len >= 0 && fixed > max_len)) *dead = 1;
        return 1;
    }
    struct rx_node *v = &r->nodes[var];
    long lo = v->min, hi = v->max;
    if (min_len - fixed > lo) lo = min_len - fixed;
    if (max_len >= 0 && (hi < 0 || max_len - fixed < hi)) hi = max_len - fixed;
    if (hi >= 0 && hi < lo) {
        *dead = 1;
        return 1;
    }
    if (lo > GRAMMAR_MAX_REPEAT || hi > GRAMMAR_MAX_REPEAT) return 0;
    v->min = (int)lo;
    v->max = (int)hi;
    return 1;
}

static int build(struct grammar_builder *b, const char *re, size_t n, int unanchored, int json,
                 int min_len, int max_len, grammar_expr *out, int *length_exact) {
    struct rx r = {.s = re, .n = n, .b = b, .json = json, .unanchored = unanchored, .dotstar = GRAMMAR_NONE};
    int root, rc;
    if (length_exact) *length_exact = 1;
    if ((rc = parse_alt(&r, &root))) goto out;
    if (r.i < r.n) {
        rc = err_at(&r, FOLIO_EINVAL, "unmatched )");
        goto out;
    }
    if (min_len > 0 || max_len >= 0) {
        int dead = 0;
        if (!apply_length(&r, root, unanchored, min_len, max_len, &dead)) {
            if (length_exact) *length_exact = 0;
        } else if (dead) {
            *out = grammar_alt(b, NULL, 0);
            goto out;
        }
    }
    grammar_expr e = GRAMMAR_NONE;
    if ((rc = emit(&r, root, 1, 1, unanchored, unanchored, &e))) goto out;
    if (e == GRAMMAR_NONE) {
        rc = FOLIO_EINVAL; /* the builder recorded why */
        goto out;
    }
    *out = e;
out:
    free(r.nodes);
    free(r.rg);
    return rc;
}

int gram_regex_expr(struct grammar_builder *b, const char *re, size_t n, int unanchored,
                    grammar_expr *out) {
    return build(b, re, n, unanchored, 0, 0, -1, out, NULL);
}

int gram_regex_json_expr(struct grammar_builder *b, const char *re, size_t n, int unanchored,
                         int min_len, int max_len, grammar_expr *out, int *length_exact) {
    return build(b, re, n, unanchored, 1, min_len, max_len, out, length_exact);
}

grammar_expr gram_regex_json_class(struct grammar_builder *b, const uint32_t (*ranges)[2], int n) {
    return json_class(b, ranges, n);
}

/* The regex's whole grammar: anchored (vLLM's regex) or searched (JSON Schema's pattern). */
static int whole(const char *re, size_t n, int unanchored, struct grammar **out) {
    struct grammar_builder *b = grammar_builder_create();
    int rc;
    grammar_expr e;
    if (!b) return folio_err(FOLIO_ENOMEM, "regex: out of memory");
    if ((rc = gram_regex_expr(b, re, n, unanchored, &e))) goto out;
    int root = grammar_rule_declare(b, "root");
    if (root < 0 || grammar_rule_define(b, root, e) < 0) {
        rc = FOLIO_EINVAL;
        goto out;
    }
    rc = grammar_builder_finish(b, root, out);
out:
    grammar_builder_free(b);
    return rc;
}

int gram_regex_compile(const char *re, size_t n, struct grammar **out) { return whole(re, n, 0, out); }

int gram_regex_search(const char *re, size_t n, const char *s, size_t len) {
    struct grammar *g = NULL;
    int rc = whole(re, n, 1, &g);
    if (!rc) rc = grammar_matches(g, (const uint8_t *)s, len);
    grammar_free(g);
    return rc;
}
