/* gbnf: llama.cpp's GBNF and the Lark/EBNF subset vLLM's users send, parsed straight into the
 * grammar builder (grammar.h), so one recursive-descent parser serves both syntaxes.
 *
 * GBNF follows llama.cpp's grammars/README.md: a rule ends at a newline, except inside
 * parentheses and after `|` (and, as a leniency, before a `|` on the next line); names are
 * [a-zA-Z0-9_-] (the `_` for xgrammar's EBNF, which vLLM forwards); literals and classes hold
 * code points, written raw (UTF-8) or escaped, and are emitted as UTF-8 bytes.
 *
 * Lark: `name: expr` rules and `NAME: expr` terminals, both as rules (a lexer's longest-match
 * choice between terminals is not modelled: the grammar accepts every split of the text into
 * terminals that the rules allow). `%ignore X` is compiled as "X* before every terminal
 * occurrence in a lowercase rule, and X* at the end of start", which lets X appear between any
 * two terminals without making one text parse in exponentially many ways.
 *
 * Robustness: nesting is bounded (GBNF_MAX_DEPTH), every loop moves forward, line:column is
 * computed only for the one error reported, and every error path frees what it built. */
#include "grammar/gbnf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_regex.h"

#define GBNF_MAX_DEPTH 64      /* nested ( ) and [ ] groups */
#define GBNF_MAX_NAME 256      /* bytes in a rule name */

/* What we know of a rule id from the text: where it was first referenced and defined. */
struct rule_info {
    size_t ref_pos, def_pos;  /* offsets into the text (name start) */
    uint8_t referenced, defined, imported;
};

struct parser {
    const char *s;              /* [n] the grammar text */
    size_t n, pos;
    int lark;                   /* 0: GBNF, 1: Lark */
    struct grammar_builder *b;
    int rc;                     /* first error, 0 while none */
    int depth;
    /* Lark state */
    int in_terminal;            /* parsing a terminal's body or %ignore: no ignore-wrapping */
    int has_ignore;             /* the text has %ignore lines (pre-scan) */
    int ign_rule;               /* the rule that is the union of the %ignore items */
    grammar_expr ign_star;      /* ref(ign_rule)* */
    /* the last simple repeat built (x* x+ x?): rep_node = rep_inner{rep_min,rep_max} */
    grammar_expr rep_node, rep_inner;
    int rep_min, rep_max;
    grammar_expr *ign;          /* [ign_n] the %ignore items */
    int ign_n, ign_cap;
    /* scratch */
    grammar_expr *stk;          /* [stk_n] items of the sequences and alternatives being built */
    size_t stk_n, stk_cap;
    uint32_t (*rng)[2];         /* [rng_n] code point ranges of the class being parsed */
    size_t rng_n, rng_cap;
    char *buf;                  /* [buf_n] bytes of the literal being parsed */
    size_t buf_n, buf_cap;
    char name[GBNF_MAX_NAME + 1];
    struct rule_info *rules;    /* [rules_cap] by rule id */
    size_t rules_cap;
};

/* ---- errors ---- */

static void line_col(const struct parser *p, size_t at, int *line, int *col) {
    int l = 1, c = 1;
    if (at > p->n) at = p->n;
    for (size_t i = 0; i < at; i++) {
        unsigned char ch = (unsigned char)p->s[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Records the first error, at offset `at`, and returns GRAMMAR_NONE for the caller to pass up. */
__attribute__((format(printf, 4, 5)))
static grammar_expr perr(struct parser *p, size_t at, int code, const char *fmt, ...) {
    if (p->rc) return GRAMMAR_NONE;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(p, at, &line, &col);
    p->rc = folio_err(code, "%s grammar: line %d:%d: %s", p->lark ? "Lark" : "GBNF", line, col, msg);
    return GRAMMAR_NONE;
}

/* A builder call failed (a limit, or memory): its message, with where we were. */
static grammar_expr check(struct parser *p, grammar_expr e, size_t at) {
    if (e != GRAMMAR_NONE || p->rc) return e;
    char msg[400];
    snprintf(msg, sizeof msg, "%s", folio_last_error());
    return perr(p, at, FOLIO_EINVAL, "%s", msg);
}

static int grow(struct parser *p, void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    if (nc > SIZE_MAX / elem) {
        perr(p, p->pos, FOLIO_ENOMEM, "out of memory");
        return -1;
    }
    void *q = realloc(*arr, nc * elem);
    if (!q) {
        perr(p, p->pos, FOLIO_ENOMEM, "out of memory");
        return -1;
    }
    *arr = q;
    *cap = nc;
    return 0;
}

static int push(struct parser *p, grammar_expr e) {
    if (grow(p, (void **)&p->stk, &p->stk_cap, p->stk_n + 1, sizeof *p->stk)) return -1;
    p->stk[p->stk_n++] = e;
    return 0;
}

static int buf_put(struct parser *p, const char *bytes, size_t k) {
    if (grow(p, (void **)&p->buf, &p->buf_cap, p->buf_n + k, 1)) return -1;
    memcpy(p->buf + p->buf_n, bytes, k);
    p->buf_n += k;
    return 0;
}

static int rng_put(struct parser *p, uint32_t lo, uint32_t hi) {
    if (grow(p, (void **)&p->rng, &p->rng_cap, p->rng_n + 2, sizeof *p->rng)) return -1;
    /* UTF-8 cannot encode surrogates: a range across them is split, one inside them dropped */
    if (lo <= 0xDFFF && hi >= 0xD800) {
        if (lo < 0xD800) {
            p->rng[p->rng_n][0] = lo;
            p->rng[p->rng_n++][1] = 0xD7FF;
        }
        if (hi > 0xDFFF) {
            p->rng[p->rng_n][0] = 0xE000;
            p->rng[p->rng_n++][1] = hi;
        }
        return 0;
    }
    p->rng[p->rng_n][0] = lo;
    p->rng[p->rng_n++][1] = hi;
    return 0;
}

/* ---- rule table ---- */

static struct rule_info *info(struct parser *p, int id) {
    if (id < 0 || id >= GRAMMAR_MAX_RULES) return NULL;
    size_t old = p->rules_cap;
    if (grow(p, (void **)&p->rules, &p->rules_cap, (size_t)id + 1, sizeof *p->rules)) return NULL;
    if (p->rules_cap > old) memset(p->rules + old, 0, (p->rules_cap - old) * sizeof *p->rules);
    return &p->rules[id];
}

/* ---- characters ---- */

static int at_end(const struct parser *p) { return p->pos >= p->n; }
static int peek(const struct parser *p) { return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1; }
static int peek_at(const struct parser *p, size_t k) {
    return p->pos + k < p->n ? (unsigned char)p->s[p->pos + k] : -1;
}

static int is_name_char(const struct parser *p, int c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') return 1;
    return !p->lark && c == '-';
}

static int is_newline(int c) { return c == '\n' || c == '\r'; }

/* Spaces, tabs and comments (# in GBNF, // and # in Lark); newlines too when newline_ok. */
static void skip_ws(struct parser *p, int newline_ok) {
    while (!at_end(p)) {
        int c = peek(p);
        if (c == ' ' || c == '\t' || (newline_ok && is_newline(c))) {
            p->pos++;
        } else if (c == '#' || (p->lark && c == '/' && peek_at(p, 1) == '/')) {
            while (!at_end(p) && !is_newline(peek(p))) p->pos++;
        } else {
            break;
        }
    }
}

/* One UTF-8 code point from the text; -1 (with the error recorded) when malformed. */
static int64_t utf8_next(struct parser *p) {
    size_t at = p->pos;
    const unsigned char *u = (const unsigned char *)p->s + at;
    size_t left = p->n - at;
    uint32_t c = u[0];
    int len;
    uint32_t min;
    if (c < 0x80) {
        p->pos++;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        perr(p, at, FOLIO_EINVAL, "invalid UTF-8 byte 0x%02x", u[0]);
        return -1;
    }
    if ((size_t)len > left) {
        perr(p, at, FOLIO_EINVAL, "truncated UTF-8 sequence");
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            perr(p, at, FOLIO_EINVAL, "invalid UTF-8 sequence");
            return -1;
        }
        c = c << 6 | (u[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        perr(p, at, FOLIO_EINVAL, "invalid UTF-8 sequence");
        return -1;
    }
    p->pos += (size_t)len;
    return c;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class: a raw code point or an escape (the class escapes
 * \] \[ \- \^ are accepted in literals too). Returns the code point, or -1 with the error recorded. */
static int64_t parse_char(struct parser *p) {
    size_t at = p->pos;
    if (peek(p) != '\\') return utf8_next(p);
    int e = peek_at(p, 1);
    if (e < 0) {
        perr(p, at, FOLIO_EINVAL, "unterminated escape");
        return -1;
    }
    p->pos += 2;
    int digits = 0;
    switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'f': return '\f';
    case 'v': return '\v';
    case '0': return 0;
    case '\\': case '"': case '\'': case '/': return e;
    case '[': case ']': case '-': case '^': return e;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default:
        if (e >= 0x20 && e < 0x7F) perr(p, at, FOLIO_EINVAL, "unknown escape '\\%c'", e);
        else perr(p, at, FOLIO_EINVAL, "unknown escape (byte 0x%02x after '\\')", e);
        return -1;
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = hexval(peek(p));
        if (h < 0) {
            perr(p, at, FOLIO_EINVAL, "'\\%c' needs %d hex digits", e, digits);
            return -1;
        }
        v = v << 4 | (uint32_t)h;
        p->pos++;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        perr(p, at, FOLIO_EINVAL, "escape '\\%c' is not a Unicode scalar value (0x%X)", e, v);
        return -1;
    }
    return v;
}

static size_t utf8_put(uint32_t c, char out[4]) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- terminals ---- */

/* "..." into p->buf as UTF-8; the number of code points in *ncp. 0, or -1 on error. */
static int parse_string(struct parser *p, size_t *ncp) {
    size_t at = p->pos;
    p->pos++; /* the opening quote */
    p->buf_n = 0;
    *ncp = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0 || (p->lark && is_newline(c))) {
            perr(p, at, FOLIO_EINVAL, "unterminated string literal");
            return -1;
        }
        if (c == '"') {
            p->pos++;
            return 0;
        }
        int64_t cp = parse_char(p);
        if (cp < 0) return -1;
        char u[4];
        if (buf_put(p, u, utf8_put((uint32_t)cp, u))) return -1;
        (*ncp)++;
    }
}

/* The one code point of a one-character literal in p->buf (valid UTF-8: we encoded it). */
static uint32_t buf_cp(const struct parser *p) {
    const unsigned char *u = (const unsigned char *)p->buf;
    if (u[0] < 0x80) return u[0];
    if (u[0] < 0xE0) return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    if (u[0] < 0xF0) return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

static grammar_expr literal_expr(struct parser *p, size_t at) {
    grammar_expr e = p->buf_n ? grammar_literal(p->b, p->buf, p->buf_n) : grammar_empty(p->b);
    return check(p, e, at);
}

/* GBNF [...] and [^...]. */
static grammar_expr parse_class(struct parser *p) {
    size_t at = p->pos;
    p->pos++;
    int negate = 0;
    if (peek(p) == '^') {
        negate = 1;
        p->pos++;
    }
    p->rng_n = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0) return perr(p, at, FOLIO_EINVAL, "unterminated character class");
        if (c == ']') {
            p->pos++;
            break;
        }
        size_t cat = p->pos;
        int64_t lo = parse_char(p);
        if (lo < 0) return GRAMMAR_NONE;
        int64_t hi = lo;
        if (peek(p) == '-' && peek_at(p, 1) >= 0 && peek_at(p, 1) != ']') {
            p->pos++;
            hi = parse_char(p);
            if (hi < 0) return GRAMMAR_NONE;
            if (hi < lo)
                return perr(p, cat, FOLIO_EINVAL, "character range out of order (U+%04X > U+%04X)",
                            (unsigned)lo, (unsigned)hi);
        }
        if (rng_put(p, (uint32_t)lo, (uint32_t)hi)) return GRAMMAR_NONE;
    }
    grammar_expr e = grammar_codepoints(p->b, (const uint32_t(*)[2])p->rng, (int)p->rng_n, negate);
    return check(p, e, at);
}

/* Lark /regex/ through gram_regex. */
static grammar_expr parse_regex(struct parser *p) {
    size_t at = p->pos;
    size_t i = p->pos + 1;
    while (i < p->n && p->s[i] != '/') {
        if (is_newline((unsigned char)p->s[i])) break;
        if (p->s[i] == '\\' && i + 1 < p->n && !is_newline((unsigned char)p->s[i + 1])) i++;
        i++;
    }
    if (i >= p->n || p->s[i] != '/') return perr(p, at, FOLIO_EINVAL, "unterminated /regex/");
    const char *re = p->s + at + 1;
    size_t re_n = i - at - 1;
    p->pos = i + 1;
    if (is_name_char(p, peek(p))) {
        return perr(p, p->pos, FOLIO_EUNSUP, "regex flags ('/.../%c') are not supported", peek(p));
    }
    grammar_expr e = GRAMMAR_NONE;
    int rc = gram_regex_expr(p->b, re, re_n, 0, &e);
    if (rc) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", folio_last_error());
        return perr(p, at, rc, "in /regex/: %s", msg);
    }
    return check(p, e, at);
}

/* ---- names and references ---- */

/* A name at p->pos into p->name; its length, 0 if there is none (or too long: error). */
static size_t parse_name(struct parser *p) {
    size_t at = p->pos, k = 0;
    while (!at_end(p) && is_name_char(p, peek(p))) {
        if (k == GBNF_MAX_NAME) {
            perr(p, at, FOLIO_EINVAL, "name longer than %d bytes", GBNF_MAX_NAME);
            return 0;
        }
        p->name[k++] = p->s[p->pos++];
    }
    p->name[k] = '\0';
    return k;
}

/* Lark: whether a name is a terminal (upper case after leading underscores); -1 if mixed. */
static int lark_is_terminal(const char *name) {
    const char *q = name;
    while (*q == '_') q++;
    int up = 0, low = 0;
    for (; *q; q++) {
        if (*q >= 'A' && *q <= 'Z') up = 1;
        if (*q >= 'a' && *q <= 'z') low = 1;
    }
    if (up && low) return -1;
    return up;
}

static grammar_expr reference(struct parser *p, size_t at) {
    int id = grammar_rule_declare(p->b, p->name);
    if (id < 0) return check(p, GRAMMAR_NONE, at);
    struct rule_info *ri = info(p, id);
    if (!ri) return p->rc ? GRAMMAR_NONE : perr(p, at, FOLIO_EINVAL, "too many rules");
    if (!ri->referenced) {
        ri->referenced = 1;
        ri->ref_pos = at;
    }
    return check(p, grammar_ref(p->b, id), at);
}

/* Lark: a terminal occurrence inside a lowercase rule may be preceded by %ignore items. */
static grammar_expr lark_terminal(struct parser *p, grammar_expr t, size_t at) {
    if (!p->lark || !p->has_ignore || p->in_terminal || t == GRAMMAR_NONE) return t;
    return check(p, grammar_seq2(p->b, p->ign_star, t), at);
}

/* ---- expressions ---- */

static grammar_expr parse_alt(struct parser *p, int nested);
static grammar_expr repeat(struct parser *p, grammar_expr e, int min, int max, size_t at);

/* A decimal count for {m,n} or ~ n..m. */
static int parse_count(struct parser *p, int *out) {
    size_t at = p->pos;
    int c = peek(p);
    if (c < '0' || c > '9') {
        perr(p, at, FOLIO_EINVAL, "expecting a number");
        return -1;
    }
    long v = 0;
    while ((c = peek(p)) >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        if (v > GRAMMAR_MAX_REPEAT) {
            perr(p, at, FOLIO_EINVAL, "repetition count above %d", GRAMMAR_MAX_REPEAT);
            return -1;
        }
        p->pos++;
    }
    *out = (int)v;
    return 0;
}

static grammar_expr parse_group(struct parser *p, int close, int optional) {
    size_t at = p->pos;
    if (p->depth >= GBNF_MAX_DEPTH)
        return perr(p, at, FOLIO_EINVAL, "groups nested deeper than %d", GBNF_MAX_DEPTH);
    p->pos++;
    p->depth++;
    skip_ws(p, 1);
    grammar_expr e = parse_alt(p, 1);
    p->depth--;
    if (p->rc) return GRAMMAR_NONE;
    skip_ws(p, 1);
    if (peek(p) != close) return perr(p, at, FOLIO_EINVAL, "unclosed '%c'", close == ')' ? '(' : '[');
    p->pos++;
    if (optional) e = repeat(p, e, 0, 1, at);
    return e;
}

static grammar_expr parse_primary(struct parser *p) {
    size_t at = p->pos;
    int c = peek(p);
    if (c == '"') {
        size_t ncp;
        if (parse_string(p, &ncp)) return GRAMMAR_NONE;
        if (p->lark) {
            if (peek(p) == 'i')
                return perr(p, p->pos, FOLIO_EUNSUP, "case-insensitive literals (\"...\"i) are not supported");
            if (peek(p) == '.' && peek_at(p, 1) == '.') {
                /* "a".."z": a range of code points */
                if (ncp != 1) return perr(p, at, FOLIO_EINVAL, "a range needs one-character literals");
                uint32_t lo = buf_cp(p);
                p->pos += 2;
                size_t hat = p->pos;
                if (peek(p) != '"') return perr(p, hat, FOLIO_EINVAL, "expecting a literal after '..'");
                if (parse_string(p, &ncp)) return GRAMMAR_NONE;
                if (ncp != 1) return perr(p, hat, FOLIO_EINVAL, "a range needs one-character literals");
                uint32_t hi = buf_cp(p);
                if (hi < lo) return perr(p, at, FOLIO_EINVAL, "range out of order");
                p->rng_n = 0;
                if (rng_put(p, lo, hi)) return GRAMMAR_NONE;
                grammar_expr e = grammar_codepoints(p->b, (const uint32_t(*)[2])p->rng, (int)p->rng_n, 0);
                return lark_terminal(p, check(p, e, at), at);
            }
        }
        return lark_terminal(p, literal_expr(p, at), at);
    }
    if (c == '(') return parse_group(p, ')', 0);
    if (c == '[') {
        if (p->lark) return parse_group(p, ']', 1);
        return parse_class(p);
    }
    if (!p->lark && c == '.') {
        p->pos++;
        return check(p, grammar_codepoints(p->b, NULL, 0, 1), at);
    }
    if (p->lark && c == '/') return lark_terminal(p, parse_regex(p), at);
    if (c >= 0 && is_name_char(p, c)) {
        if (!parse_name(p)) return GRAMMAR_NONE;
        if (!p->lark) return reference(p, at);
        if (peek(p) == '{') return perr(p, at, FOLIO_EUNSUP, "templates (name{...}) are not supported");
        int term = lark_is_terminal(p->name);
        if (term < 0) return perr(p, at, FOLIO_EINVAL, "name '%s' mixes upper and lower case", p->name);
        if (!term && p->in_terminal)
            return perr(p, at, FOLIO_EINVAL, "a terminal cannot refer to the rule '%s'", p->name);
        grammar_expr e = reference(p, at);
        return term ? lark_terminal(p, e, at) : e;
    }
    if (!p->lark && c == '<')
        return perr(p, at, FOLIO_EUNSUP, "token references (<...>) are not supported");
    if (p->lark && c == '-' && peek_at(p, 1) == '>')
        return perr(p, at, FOLIO_EUNSUP, "aliases (-> name) are not supported");
    if (c < 0) return perr(p, at, FOLIO_EINVAL, "unexpected end of grammar");
    if (c >= 0x20 && c < 0x7F) return perr(p, at, FOLIO_EINVAL, "unexpected '%c'", c);
    return perr(p, at, FOLIO_EINVAL, "unexpected byte 0x%02x", c);
}

/* e{min,max}. Stacked * + ? (also through parentheses: ((x*)+)?) fold into one repeat,
 * which is exact for them ((e?)+ is e*), and keeps needless nesting out of the grammar: the
 * passes over it recurse per level, and nested nullable repeats are costly to match. */
static grammar_expr repeat(struct parser *p, grammar_expr e, int min, int max, size_t at) {
    int simple = min <= 1 && (max == 1 || max == -1);
    if (simple && e != GRAMMAR_NONE && e == p->rep_node) {
        e = p->rep_inner;
        min = min & p->rep_min;
        max = max == -1 || p->rep_max == -1 ? -1 : 1;
    }
    if (min == 1 && max == 1) return e;
    grammar_expr r = check(p, grammar_repeat(p->b, e, min, max), at);
    if (simple && r != GRAMMAR_NONE) {
        p->rep_node = r;
        p->rep_inner = e;
        p->rep_min = min;
        p->rep_max = max;
    }
    return r;
}

static grammar_expr parse_postfix(struct parser *p, int nested) {
    size_t at = p->pos;
    grammar_expr e = parse_primary(p);
    while (!p->rc) {
        size_t save = p->pos;
        skip_ws(p, nested);
        int c = peek(p), min, max;
        size_t op = p->pos;
        if (c == '*') {
            min = 0, max = -1;
            p->pos++;
        } else if (c == '+') {
            min = 1, max = -1;
            p->pos++;
        } else if (c == '?') {
            min = 0, max = 1;
            p->pos++;
        } else if (!p->lark && c == '{') {
            p->pos++;
            skip_ws(p, nested);
            min = 0;
            if (peek(p) != ',') {
                if (parse_count(p, &min)) break;
                skip_ws(p, nested);
            }
            max = min;
            if (peek(p) == ',') {
                p->pos++;
                skip_ws(p, nested);
                max = -1;
                if (peek(p) != '}') {
                    if (parse_count(p, &max)) break;
                    skip_ws(p, nested);
                }
            }
            if (peek(p) != '}') {
                perr(p, op, FOLIO_EINVAL, "expecting '}' to close the repetition");
                break;
            }
            p->pos++;
        } else if (p->lark && c == '~') {
            p->pos++;
            skip_ws(p, 0);
            if (parse_count(p, &min)) break;
            max = min;
            if (peek(p) == '.' && peek_at(p, 1) == '.') {
                p->pos += 2;
                if (parse_count(p, &max)) break;
            }
        } else {
            p->pos = save;
            break;
        }
        if (max >= 0 && max < min) {
            perr(p, op, FOLIO_EINVAL, "repetition maximum %d below minimum %d", max, min);
            break;
        }
        e = repeat(p, e, min, max, at);
    }
    return p->rc ? GRAMMAR_NONE : e;
}

/* Whether the sequence ends here: end, `|`, a closer, or a newline outside a group. */
static int seq_end(const struct parser *p, int nested) {
    int c = peek(p);
    return c < 0 || c == '|' || c == ')' || (p->lark && c == ']') || (!nested && is_newline(c));
}

static grammar_expr parse_seq(struct parser *p, int nested) {
    size_t at = p->pos, base = p->stk_n;
    for (;;) {
        skip_ws(p, nested);
        if (seq_end(p, nested)) break;
        grammar_expr e = parse_postfix(p, nested);
        if (p->rc || push(p, e)) break;
    }
    grammar_expr r = GRAMMAR_NONE;
    if (!p->rc) {
        size_t k = p->stk_n - base;
        r = k == 1 ? p->stk[base] : k == 0 ? grammar_empty(p->b) : grammar_seq(p->b, p->stk + base, (int)k);
        r = check(p, r, at);
    }
    p->stk_n = base;
    return r;
}

/* Alternatives. Outside a group, a `|` at the start of a following line continues them (the
 * Lark form, accepted in GBNF too: a rule never starts with `|`), and so does a newline after
 * a `|` (both syntaxes). */
static grammar_expr parse_alt(struct parser *p, int nested) {
    size_t at = p->pos, base = p->stk_n;
    for (;;) {
        grammar_expr e = parse_seq(p, nested);
        if (p->rc || push(p, e)) break;
        skip_ws(p, nested);
        if (peek(p) != '|' && !nested) {
            size_t save = p->pos;
            skip_ws(p, 1);
            if (peek(p) != '|') p->pos = save;
        }
        if (peek(p) != '|') break;
        p->pos++;
        skip_ws(p, 1);
    }
    grammar_expr r = GRAMMAR_NONE;
    if (!p->rc) {
        size_t k = p->stk_n - base;
        r = k == 1 ? p->stk[base] : grammar_alt(p->b, p->stk + base, (int)k);
        r = check(p, r, at);
    }
    p->stk_n = base;
    return r;
}

/* ---- rules ---- */

/* Defines the rule named p->name (at `at`) with body e. */
static int define(struct parser *p, size_t at, grammar_expr e) {
    if (p->rc) return p->rc;
    int id = grammar_rule_declare(p->b, p->name);
    if (id < 0) return check(p, GRAMMAR_NONE, at), p->rc;
    struct rule_info *ri = info(p, id);
    if (!ri) return p->rc ? p->rc : (perr(p, at, FOLIO_EINVAL, "too many rules"), p->rc);
    if (ri->defined) {
        int line, col;
        line_col(p, ri->def_pos, &line, &col);
        perr(p, at, FOLIO_EINVAL, "rule '%s' is already defined (line %d:%d)", p->name, line, col);
        return p->rc;
    }
    ri->defined = 1;
    ri->def_pos = at;
    if (grammar_rule_define(p->b, id, e) < 0) check(p, GRAMMAR_NONE, at);
    return p->rc;
}

/* After a rule: only spaces and a comment may remain on its line. */
static int end_of_line(struct parser *p) {
    skip_ws(p, 0);
    if (!at_end(p) && !is_newline(peek(p))) {
        int c = peek(p);
        if (c >= 0x20 && c < 0x7F) perr(p, p->pos, FOLIO_EINVAL, "unexpected '%c' (expecting the end of the line)", c);
        else perr(p, p->pos, FOLIO_EINVAL, "unexpected byte 0x%02x (expecting the end of the line)", c);
    }
    return p->rc;
}

/* Every referenced rule must be defined; reported at its first reference. */
static int check_defined(struct parser *p) {
    for (size_t i = 0; i < p->rules_cap && !p->rc; i++) {
        struct rule_info *ri = &p->rules[i];
        if (ri->referenced && !ri->defined) {
            size_t save = p->pos;
            p->pos = ri->ref_pos;
            parse_name(p);
            p->pos = save;
            perr(p, ri->ref_pos, FOLIO_EINVAL, "undefined rule '%s'", p->name);
        }
    }
    return p->rc;
}

/* grammar_builder_finish, with the line of a left-recursive rule added to its message. */
static int finish(struct parser *p, int root, struct grammar **out) {
    int rc = grammar_builder_finish(p->b, root, out);
    if (!rc) return 0;
    char msg[400];
    snprintf(msg, sizeof msg, "%s", folio_last_error());
    const char *q = strchr(msg, '\'');
    const char *r = q ? strchr(q + 1, '\'') : NULL;
    if (q && r && (size_t)(r - q - 1) <= GBNF_MAX_NAME) {
        char name[GBNF_MAX_NAME + 1];
        memcpy(name, q + 1, (size_t)(r - q - 1));
        name[r - q - 1] = '\0';
        /* only a name the text defined (never one grammar.c made up) */
        for (size_t i = 0; i < p->rules_cap; i++) {
            if (!p->rules[i].defined) continue;
            size_t save = p->pos;
            p->pos = p->rules[i].def_pos;
            parse_name(p);
            p->pos = save;
            if (strcmp(p->name, name) == 0) {
                int line, col;
                line_col(p, p->rules[i].def_pos, &line, &col);
                return folio_err(rc, "%s grammar: line %d:%d: %s", p->lark ? "Lark" : "GBNF", line, col, msg);
            }
        }
    }
    return folio_err(rc, "%s grammar: %s", p->lark ? "Lark" : "GBNF", msg);
}

static int parser_init(struct parser *p, const char *text, size_t n, int lark) {
    memset(p, 0, sizeof *p);
    p->s = text ? text : "";
    p->n = text ? n : 0;
    p->lark = lark;
    p->ign_rule = -1;
    p->ign_star = GRAMMAR_NONE;
    p->rep_node = GRAMMAR_NONE;
    p->b = grammar_builder_create();
    if (!p->b) return folio_err(FOLIO_ENOMEM, "out of memory");
    return 0;
}

static void parser_free(struct parser *p) {
    grammar_builder_free(p->b);
    free(p->stk);
    free(p->rng);
    free(p->buf);
    free(p->rules);
    free(p->ign);
}

int gbnf_compile(const char *text, size_t n, struct grammar **out) {
    *out = NULL;
    struct parser p;
    int rc = parser_init(&p, text, n, 0);
    if (rc) return rc;
    skip_ws(&p, 1);
    while (!at_end(&p) && !p.rc) {
        size_t at = p.pos;
        if (!parse_name(&p)) {
            if (!p.rc) {
                int c = peek(&p);
                if (c >= 0x20 && c < 0x7F) perr(&p, at, FOLIO_EINVAL, "expecting a rule name, got '%c'", c);
                else perr(&p, at, FOLIO_EINVAL, "expecting a rule name");
            }
            break;
        }
        skip_ws(&p, 0);
        if (p.pos + 3 > p.n || memcmp(p.s + p.pos, "::=", 3) != 0) {
            perr(&p, p.pos, FOLIO_EINVAL, "expecting '::=' after the rule name '%s'", p.name);
            break;
        }
        p.pos += 3;
        char name[GBNF_MAX_NAME + 1];
        memcpy(name, p.name, sizeof name);
        skip_ws(&p, 1);
        grammar_expr body = parse_alt(&p, 0);
        if (p.rc) break;
        memcpy(p.name, name, sizeof name);
        if (define(&p, at, body) || end_of_line(&p)) break;
        skip_ws(&p, 1);
    }
    if (!p.rc && !check_defined(&p)) {
        int root = -1;
        for (size_t i = 0; i < p.rules_cap && root < 0; i++) {
            if (!p.rules[i].defined) continue;
            p.pos = p.rules[i].def_pos;
            parse_name(&p);
            if (strcmp(p.name, "root") == 0) root = (int)i;
        }
        if (root < 0) rc = folio_err(FOLIO_EINVAL, "GBNF grammar: no 'root' rule");
        else rc = finish(&p, root, out);
    } else {
        rc = p.rc;
    }
    parser_free(&p);
    return rc;
}

/* ---- Lark ---- */

/* Lark's common.lark terminals, as expressions. */
enum common_id {
    C_DIGIT, C_HEXDIGIT, C_INT, C_SIGNED_INT, C_DECIMAL, C_FLOAT, C_SIGNED_FLOAT, C_NUMBER,
    C_SIGNED_NUMBER, C_ESCAPED_STRING, C_LCASE_LETTER, C_UCASE_LETTER, C_LETTER, C_WORD, C_CNAME,
    C_WS_INLINE, C_WS, C_CR, C_LF, C_NEWLINE, C_SH_COMMENT, C_CPP_COMMENT, C_C_COMMENT, C_COUNT
};
static const char *const common_names[C_COUNT] = {
    "DIGIT", "HEXDIGIT", "INT", "SIGNED_INT", "DECIMAL", "FLOAT", "SIGNED_FLOAT", "NUMBER",
    "SIGNED_NUMBER", "ESCAPED_STRING", "LCASE_LETTER", "UCASE_LETTER", "LETTER", "WORD", "CNAME",
    "WS_INLINE", "WS", "CR", "LF", "NEWLINE", "SH_COMMENT", "CPP_COMMENT", "C_COMMENT",
};

static grammar_expr cps(struct grammar_builder *b, const char *pairs, int negate) {
    uint32_t r[8][2];
    int k = 0;
    for (; pairs[0] && k < 8; pairs += 2, k++) {
        r[k][0] = (unsigned char)pairs[0];
        r[k][1] = (unsigned char)pairs[1];
    }
    return grammar_codepoints(b, (const uint32_t(*)[2])r, k, negate);
}

static grammar_expr lit(struct grammar_builder *b, const char *s) { return grammar_literal(b, s, strlen(s)); }
static grammar_expr opt(struct grammar_builder *b, grammar_expr e) { return grammar_repeat(b, e, 0, 1); }
static grammar_expr star(struct grammar_builder *b, grammar_expr e) { return grammar_repeat(b, e, 0, -1); }
static grammar_expr plus(struct grammar_builder *b, grammar_expr e) { return grammar_repeat(b, e, 1, -1); }

static grammar_expr common_expr(struct grammar_builder *b, enum common_id id) {
    grammar_expr sign = opt(b, cps(b, "++--", 0));
    grammar_expr intg = plus(b, cps(b, "09", 0));
    grammar_expr exp = grammar_seq2(b, cps(b, "eeEE", 0), grammar_seq2(b, sign, intg));
    grammar_expr dec = grammar_alt2(b, grammar_seq2(b, intg, grammar_seq2(b, lit(b, "."), opt(b, intg))),
                                    grammar_seq2(b, lit(b, "."), intg));
    grammar_expr flt = grammar_alt2(b, grammar_seq2(b, intg, exp), grammar_seq2(b, dec, opt(b, exp)));
    grammar_expr num = grammar_alt2(b, flt, intg);
    switch (id) {
    case C_DIGIT: return cps(b, "09", 0);
    case C_HEXDIGIT: return cps(b, "09afAF", 0);
    case C_INT: return intg;
    case C_SIGNED_INT: return grammar_seq2(b, sign, intg);
    case C_DECIMAL: return dec;
    case C_FLOAT: return flt;
    case C_SIGNED_FLOAT: return grammar_seq2(b, sign, flt);
    case C_NUMBER: return num;
    case C_SIGNED_NUMBER: return grammar_seq2(b, sign, num);
    case C_ESCAPED_STRING: {
        /* '"', then characters other than newline where a backslash escapes the next one */
        grammar_expr ch = grammar_alt2(b, cps(b, "\"\"\\\\\n\n", 1), grammar_seq2(b, lit(b, "\\"), cps(b, "\n\n", 1)));
        return grammar_seq2(b, lit(b, "\""), grammar_seq2(b, star(b, ch), lit(b, "\"")));
    }
    case C_LCASE_LETTER: return cps(b, "az", 0);
    case C_UCASE_LETTER: return cps(b, "AZ", 0);
    case C_LETTER: return cps(b, "azAZ", 0);
    case C_WORD: return plus(b, cps(b, "azAZ", 0));
    case C_CNAME: return grammar_seq2(b, cps(b, "__azAZ", 0), star(b, cps(b, "__azAZ09", 0)));
    case C_WS_INLINE: return plus(b, cps(b, "  \t\t", 0));
    case C_WS: return plus(b, cps(b, "  \t\t\f\f\r\r\n\n", 0));
    case C_CR: return lit(b, "\r");
    case C_LF: return lit(b, "\n");
    case C_NEWLINE: return plus(b, grammar_seq2(b, opt(b, lit(b, "\r")), lit(b, "\n")));
    case C_SH_COMMENT: return grammar_seq2(b, lit(b, "#"), star(b, cps(b, "\n\n", 1)));
    case C_CPP_COMMENT: return grammar_seq2(b, lit(b, "//"), star(b, cps(b, "\n\n", 1)));
    case C_C_COMMENT: {
        /* "/" "*", then text without "*" "/", then "*" "/" */
        grammar_expr stars = plus(b, lit(b, "*"));
        grammar_expr body = star(b, grammar_alt2(b, cps(b, "**", 1), grammar_seq2(b, stars, cps(b, "**//", 1))));
        return grammar_seq2(b, lit(b, "/*"), grammar_seq2(b, body, grammar_seq2(b, stars, lit(b, "/"))));
    }
    case C_COUNT: break;
    }
    return GRAMMAR_NONE;
}

/* One imported name at p->pos ("WS", or "WS -> ALIAS"): defines it. */
static int lark_import_one(struct parser *p, int allow_alias) {
    size_t nat = p->pos;
    if (!parse_name(p)) return p->rc ? p->rc : (perr(p, nat, FOLIO_EINVAL, "expecting a name to import"), p->rc);
    int id = -1;
    for (int i = 0; i < C_COUNT; i++)
        if (strcmp(p->name, common_names[i]) == 0) id = i;
    if (id < 0) {
        perr(p, nat, FOLIO_EUNSUP, "common.%s is not supported (supported: WS, WS_INLINE, NUMBER, INT, "
             "SIGNED_NUMBER, ESCAPED_STRING, CNAME, LETTER, DIGIT, WORD, NEWLINE, ...)", p->name);
        return p->rc;
    }
    skip_ws(p, 0);
    size_t dat = nat;
    if (allow_alias && peek(p) == '-' && peek_at(p, 1) == '>') {
        p->pos += 2;
        skip_ws(p, 0);
        dat = p->pos;
        if (!parse_name(p)) return p->rc ? p->rc : (perr(p, dat, FOLIO_EINVAL, "expecting a name after '->'"), p->rc);
        if (lark_is_terminal(p->name) != 1) {
            perr(p, dat, FOLIO_EINVAL, "a terminal's name is upper case ('%s')", p->name);
            return p->rc;
        }
    }
    /* importing the same terminal twice is harmless */
    int rid = grammar_rule_declare(p->b, p->name);
    if (rid < 0) return check(p, GRAMMAR_NONE, dat), p->rc;
    struct rule_info *ri = info(p, rid);
    if (!ri) return p->rc;
    if (ri->defined && ri->imported) return 0;
    if (define(p, dat, check(p, common_expr(p->b, (enum common_id)id), dat))) return p->rc;
    ri = info(p, rid);
    if (ri) ri->imported = 1;
    return p->rc;
}

static int lark_directive(struct parser *p) {
    size_t at = p->pos;
    p->pos++;
    size_t k = parse_name(p);
    if (!k) return p->rc ? p->rc : (perr(p, at, FOLIO_EINVAL, "expecting a directive after '%%'"), p->rc);
    if (strcmp(p->name, "ignore") == 0) {
        skip_ws(p, 0);
        p->in_terminal = 1;
        grammar_expr e = parse_alt(p, 0);
        p->in_terminal = 0;
        if (p->rc) return p->rc;
        if (p->ign_n == p->ign_cap) {
            size_t cap = (size_t)p->ign_cap;
            if (grow(p, (void **)&p->ign, &cap, cap + 1, sizeof *p->ign)) return p->rc;
            p->ign_cap = (int)cap;
        }
        p->ign[p->ign_n++] = e;
        return end_of_line(p);
    }
    if (strcmp(p->name, "import") == 0) {
        skip_ws(p, 0);
        size_t mat = p->pos;
        if (!parse_name(p) || strcmp(p->name, "common") != 0 || (peek(p) != '.' && peek(p) != ' ' && peek(p) != '(' && peek(p) != '\t'))
            return p->rc ? p->rc : (perr(p, mat, FOLIO_EUNSUP, "only %%import common.NAME is supported"), p->rc);
        if (peek(p) == '.') {
            p->pos++;
            if (lark_import_one(p, 1)) return p->rc;
        } else {
            skip_ws(p, 0);
            if (peek(p) != '(') return perr(p, p->pos, FOLIO_EINVAL, "expecting '.' or '(' after common"), p->rc;
            p->pos++;
            for (;;) {
                skip_ws(p, 1);
                if (lark_import_one(p, 0)) return p->rc;
                skip_ws(p, 1);
                if (peek(p) == ',') {
                    p->pos++;
                    continue;
                }
                if (peek(p) == ')') {
                    p->pos++;
                    break;
                }
                return perr(p, p->pos, FOLIO_EINVAL, "expecting ',' or ')' in %%import"), p->rc;
            }
        }
        return end_of_line(p);
    }
    if (strcmp(p->name, "declare") == 0 || strcmp(p->name, "override") == 0 || strcmp(p->name, "extend") == 0)
        return perr(p, at, FOLIO_EUNSUP, "%%%s is not supported", p->name), p->rc;
    return perr(p, at, FOLIO_EINVAL, "unknown directive '%%%s'", p->name), p->rc;
}

static int lark_rule(struct parser *p) {
    size_t at = p->pos;
    if (peek(p) == '!') p->pos++; /* keep-all and inline (!?name): tree shape only */
    if (peek(p) == '?') p->pos++;
    size_t nat = p->pos;
    if (!parse_name(p)) {
        if (p->rc) return p->rc;
        int c = peek(p);
        if (c >= 0x20 && c < 0x7F) return perr(p, at, FOLIO_EINVAL, "expecting a rule or a directive, got '%c'", c), p->rc;
        return perr(p, at, FOLIO_EINVAL, "expecting a rule or a directive"), p->rc;
    }
    int term = lark_is_terminal(p->name);
    if (term < 0) return perr(p, nat, FOLIO_EINVAL, "name '%s' mixes upper and lower case", p->name), p->rc;
    if (peek(p) == '{') return perr(p, nat, FOLIO_EUNSUP, "templates (name{...}) are not supported"), p->rc;
    if (peek(p) == '.') return perr(p, nat, FOLIO_EUNSUP, "priorities (name.N) are not supported"), p->rc;
    skip_ws(p, 0);
    if (peek(p) != ':')
        return perr(p, p->pos, FOLIO_EINVAL, "expecting ':' after the rule name '%s'", p->name), p->rc;
    p->pos++;
    char name[GBNF_MAX_NAME + 1];
    memcpy(name, p->name, sizeof name);
    skip_ws(p, 0);
    p->in_terminal = term;
    grammar_expr body = parse_alt(p, 0);
    p->in_terminal = 0;
    if (p->rc) return p->rc;
    memcpy(p->name, name, sizeof name);
    if (define(p, nat, body)) return p->rc;
    return end_of_line(p);
}

/* Whether a line of the text starts (after blanks) with %ignore. */
static int has_ignore_line(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (n - i >= 7 && memcmp(s + i, "%ignore", 7) == 0) return 1;
        const char *nl = memchr(s + i, '\n', n - i);
        if (!nl) break;
        i = (size_t)(nl - s) + 1;
    }
    return 0;
}

int gbnf_compile_lark(const char *text, size_t n, struct grammar **out) {
    *out = NULL;
    struct parser p;
    int rc = parser_init(&p, text, n, 1);
    if (rc) return rc;
    if (has_ignore_line(p.s, p.n)) {
        p.has_ignore = 1;
        p.ign_rule = grammar_rule_fresh(p.b, "lark-ignore");
        p.ign_star = check(&p, grammar_repeat(p.b, grammar_ref(p.b, p.ign_rule), 0, -1), 0);
    }
    for (;;) {
        skip_ws(&p, 1);
        if (at_end(&p) || p.rc) break;
        if (peek(&p) == '%') lark_directive(&p);
        else lark_rule(&p);
    }
    if (!p.rc && !check_defined(&p)) {
        int start = -1;
        for (size_t i = 0; i < p.rules_cap && start < 0; i++) {
            if (!p.rules[i].defined) continue;
            p.pos = p.rules[i].def_pos;
            parse_name(&p);
            if (strcmp(p.name, "start") == 0) start = (int)i;
        }
        if (start < 0) {
            rc = folio_err(FOLIO_EINVAL, "Lark grammar: no 'start' rule");
        } else {
            int root = start;
            if (p.has_ignore) {
                /* the %ignore items may also trail the last terminal */
                grammar_expr ign = grammar_alt(p.b, p.ign, p.ign_n);
                root = grammar_rule_fresh(p.b, "lark-start");
                if (grammar_rule_define(p.b, p.ign_rule, ign) < 0 || root < 0 ||
                    grammar_rule_define(p.b, root, grammar_seq2(p.b, grammar_ref(p.b, start), p.ign_star)) < 0) {
                    char msg[400];
                    snprintf(msg, sizeof msg, "%s", folio_last_error());
                    rc = folio_err(FOLIO_EINVAL, "Lark grammar: %s", msg);
                    goto out;
                }
            }
            rc = finish(&p, root, out);
        }
    } else {
        rc = p.rc;
    }
out:
    parser_free(&p);
    return rc;
}

/* ---- detection ---- */

int gbnf_is_gbnf(const char *text, size_t n) {
    if (!text) return 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) i++;
        if (i < n && text[i] == '%') return 0;
        size_t j = i;
        if (j < n && (text[j] == '?' || text[j] == '!')) j++;
        size_t k = j;
        while (k < n && ((text[k] >= 'a' && text[k] <= 'z') || (text[k] >= 'A' && text[k] <= 'Z') ||
                         (text[k] >= '0' && text[k] <= '9') || text[k] == '_' || text[k] == '-'))
            k++;
        if (k > j) {
            while (k < n && (text[k] == ' ' || text[k] == '\t')) k++;
            if (n - k >= 3 && memcmp(text + k, "::=", 3) == 0) return 1;
            if (k < n && text[k] == ':') return 0;
        }
        const char *nl = i < n ? memchr(text + i, '\n', n - i) : NULL;
        if (!nl) break;
        i = (size_t)(nl - text) + 1;
    }
    for (size_t m = 0; m + 3 <= n; m++)
        if (memcmp(text + m, "::=", 3) == 0) return 1;
    return 0;
}
