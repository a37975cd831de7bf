/* ct_lex: source preprocessing and the tokenizer.
 *
 * A port of @huggingface/jinja's preprocess() and tokenize(). Preprocessing is done as that
 * code does it, with whole-text regular expressions (drop one trailing newline; lstrip_blocks:
 * spaces/tabs before "{%", "{#" or "{-" at a line start; trim_blocks: the newline after "%}",
 * "#}" or "-}"; remove {% generation %} / {% endgeneration %} tags), so that quirks such as
 * trimming inside string literals come out the same. Every byte keeps the line it came from in
 * the original source, for error messages. */
#include "chat_template/ct_internal.h"

#include <stdio.h>

/* ------------------------------------------------------------------------------------------
 * Preprocessing: text plus the source line of each byte */

struct pp {
    char *s;
    uint32_t *line;
    size_t len, cap;
};

static int pp_put(struct pp *p, const char *s, const uint32_t *line, size_t n) {
    if (n == 0) return 0;
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n) cap *= 2;
        char *ns = realloc(p->s, cap + 1);
        if (!ns) return FOLIO_ENOMEM;
        p->s = ns;
        uint32_t *nl = realloc(p->line, (cap + 1) * sizeof(uint32_t));
        if (!nl) return FOLIO_ENOMEM;
        p->line = nl;
        p->cap = cap;
    }
    memcpy(p->s + p->len, s, n);
    memcpy(p->line + p->len, line, n * sizeof(uint32_t));
    p->len += n;
    return 0;
}

static void pp_free(struct pp *p) {
    free(p->s);
    free(p->line);
    memset(p, 0, sizeof(*p));
}

/* Line starts for JS's multiline ^: after \n, \r, U+2028, U+2029. */
static int after_line_terminator(const char *s, size_t i) {
    if (i == 0) return 1;
    if (s[i - 1] == '\n' || s[i - 1] == '\r') return 1;
    return i >= 3 && (unsigned char)s[i - 3] == 0xE2 && (unsigned char)s[i - 2] == 0x80 &&
           ((unsigned char)s[i - 1] == 0xA8 || (unsigned char)s[i - 1] == 0xA9);
}

static size_t js_space_run(const char *s, size_t i, size_t n) {
    size_t k;
    while (i < n && (k = ct_js_space(s + i, s + n)) > 0) i += k;
    return i;
}

/* /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/: at s+q (just after the leading
 * whitespace), the end of the tag (after its trailing whitespace), or 0 when no match. */
static size_t match_generation(const char *s, size_t q, size_t n, int *lstrip, int *rstrip,
                               size_t *tag_end) {
    size_t i = q;
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
    i += 2;
    *lstrip = i < n && s[i] == '-';
    if (*lstrip) i++;
    i = js_space_run(s, i, n);
    if (i + 3 <= n && !memcmp(s + i, "end", 3) && i + 13 <= n && !memcmp(s + i + 3, "generation", 10))
        i += 3;
    if (i + 10 > n || memcmp(s + i, "generation", 10)) return 0;
    i += 10;
    i = js_space_run(s, i, n);
    *rstrip = i < n && s[i] == '-';
    if (*rstrip) i++;
    if (i + 2 > n || s[i] != '%' || s[i + 1] != '}') return 0;
    i += 2;
    *tag_end = i;
    return js_space_run(s, i, n);
}

static int preprocess(const char *src, size_t len, struct pp *out) {
    int rc = 0;
    struct pp a = {0}, b = {0};
    uint32_t *lines = malloc((len + 1) * sizeof(uint32_t));
    if (!lines) return FOLIO_ENOMEM;
    uint32_t ln = 1;
    for (size_t i = 0; i < len; i++) {
        lines[i] = ln;
        if (src[i] == '\n') ln++;
    }
    if (len > 0 && src[len - 1] == '\n') len--;

    /* lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1" */
    for (size_t i = 0; i < len;) {
        if (after_line_terminator(src, i)) {
            size_t j = i;
            while (j < len && (src[j] == ' ' || src[j] == '\t')) j++;
            if (j > i && j + 1 < len && src[j] == '{' &&
                (src[j + 1] == '#' || src[j + 1] == '%' || src[j + 1] == '-')) {
                i = j;
                continue;
            }
        }
        if ((rc = pp_put(&a, src + i, lines + i, 1))) goto out;
        i++;
    }
    /* trim_blocks: /([#%-]})\n/g -> "$1" */
    for (size_t i = 0; i < a.len;) {
        if (i + 2 < a.len && (a.s[i] == '#' || a.s[i] == '%' || a.s[i] == '-') &&
            a.s[i + 1] == '}' && a.s[i + 2] == '\n') {
            if ((rc = pp_put(&b, a.s + i, a.line + i, 2))) goto out;
            i += 3;
            continue;
        }
        if ((rc = pp_put(&b, a.s + i, a.line + i, 1))) goto out;
        i++;
    }
    /* {% generation %} tags go, keeping the whitespace around them unless '-' says not. */
    for (size_t p = 0; p < b.len;) {
        size_t q = js_space_run(b.s, p, b.len), tag_end = 0, r;
        int ls = 0, rs = 0;
        if ((r = match_generation(b.s, q, b.len, &ls, &rs, &tag_end)) > 0) {
            if (!ls && (rc = pp_put(out, b.s + p, b.line + p, q - p))) goto out;
            if (!rs && (rc = pp_put(out, b.s + tag_end, b.line + tag_end, r - tag_end))) goto out;
            p = r;
            continue;
        }
        size_t e = q > p ? q : p + 1;
        if ((rc = pp_put(out, b.s + p, b.line + p, e - p))) goto out;
        p = e;
    }
    if (!out->s) {
        out->s = malloc(1);
        out->line = malloc(sizeof(uint32_t));
        if (!out->s || !out->line) { rc = FOLIO_ENOMEM; goto out; }
    }
    out->s[out->len] = '\0';
    out->line[out->len] = ln;
out:
    free(lines);
    pp_free(&a);
    pp_free(&b);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Tokenizer */

struct lex {
    struct arena *arena;
    const char *s;
    const uint32_t *line;
    size_t n, pos;
    struct ct_tok *toks;
    size_t ntoks, cap;
    struct sbuf tmp; /* the token being built (strings with escapes) */
};

static int lex_err(struct lex *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lex_err(struct lex *l, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t p = l->pos < l->n ? l->pos : l->n;
    return folio_err(FOLIO_EINVAL, "chat template line %u: %s", (unsigned)l->line[p], msg);
}

static int push_tok(struct lex *l, int type, const char *s, size_t len, size_t at) {
    if (l->ntoks == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct ct_tok *nt = realloc(l->toks, cap * sizeof(*nt));
        if (!nt) return FOLIO_ENOMEM;
        l->toks = nt;
        l->cap = cap;
    }
    struct ct_tok *t = &l->toks[l->ntoks++];
    t->type = (uint8_t)type;
    t->line = l->line[at < l->n ? at : l->n];
    t->s = s;
    t->len = len;
    return 0;
}

/* Copies s into the arena (token text must outlive the source buffer). */
static int push_tok_copy(struct lex *l, int type, const char *s, size_t len, size_t at) {
    char *c = arena_dup(l->arena, s, len);
    if (!c) return FOLIO_ENOMEM;
    return push_tok(l, type, c, len, at);
}

static int last_type(const struct lex *l) { return l->ntoks ? l->toks[l->ntoks - 1].type : -1; }

static int tmp_put_cp(struct lex *l, uint32_t cp) {
    char u[4];
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
    return sbuf_put(&l->tmp, u, utf8_encode(cp, u));
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

enum { W_SPACE, W_DIGIT, W_WORD, W_QUOTE };

static int pred(struct lex *l, int what, char quote) {
    if (l->pos >= l->n) return what == W_QUOTE; /* src[len] is undefined: !== quote */
    char c = l->s[l->pos];
    switch (what) {
    case W_SPACE: return ct_js_space(l->s + l->pos, l->s + l->n) > 0;
    case W_DIGIT: return c >= '0' && c <= '9';
    case W_WORD:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    default: return c != quote;
    }
}

/* The reference's ESCAPE_CHARACTERS: the character after a backslash, and what it stands for. */
static const char ESCAPES[][2] = {
    {'n', '\n'}, {'t', '\t'}, {'r', '\r'}, {'b', '\b'}, {'f', '\f'}, {'v', '\v'}, {'\'', '\''}, {'"', '"'}, {'\\', '\\'},
};

/* consumeWhile(): collects into l->tmp, decoding backslash escapes; reaching the end of the
 * source while consuming is an error, as in the reference. */
static int consume_while(struct lex *l, int what, char quote) {
    int rc;
    l->tmp.n = 0;
    while (pred(l, what, quote)) {
        if (l->pos >= l->n) return lex_err(l, "unexpected end of template");
        if (l->s[l->pos] == '\\') {
            ++l->pos;
            if (l->pos >= l->n) return lex_err(l, "unexpected end of template");
            char e = l->s[l->pos++];
            if (e == 'x' || e == 'u') {
                size_t hl = e == 'x' ? 2 : 4;
                uint32_t cp = 0;
                if (l->pos + hl > l->n) return lex_err(l, "invalid hexadecimal escape");
                for (size_t k = 0; k < hl; k++) {
                    int h = hexval(l->s[l->pos + k]);
                    if (h < 0) return lex_err(l, "invalid hexadecimal escape");
                    cp = cp * 16 + (uint32_t)h;
                }
                l->pos += hl;
                /* \uD83D\uDE00: JS joins the two halves into one character */
                if (cp >= 0xD800 && cp <= 0xDBFF && l->pos + 6 <= l->n && l->s[l->pos] == '\\' &&
                    l->s[l->pos + 1] == 'u') {
                    uint32_t lo = 0;
                    int ok = 1;
                    for (size_t k = 0; k < 4; k++) {
                        int h = hexval(l->s[l->pos + 2 + k]);
                        if (h < 0) { ok = 0; break; }
                        lo = lo * 16 + (uint32_t)h;
                    }
                    if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        l->pos += 6;
                    }
                }
                if ((rc = tmp_put_cp(l, cp))) return rc;
                continue;
            }
            const size_t ne = sizeof(ESCAPES) / sizeof(ESCAPES[0]);
            size_t k = 0;
            while (k < ne && ESCAPES[k][0] != e) k++;
            if (k == ne) return lex_err(l, "unexpected escaped character '%c'", e);
            if ((rc = sbuf_put(&l->tmp, &ESCAPES[k][1], 1))) return rc;
            continue;
        }
        if ((rc = sbuf_put(&l->tmp, l->s + l->pos, 1))) return rc;
        l->pos++;
        if (l->pos >= l->n) return lex_err(l, "unexpected end of template");
    }
    return 0;
}

static void strip_trailing_ws(struct lex *l) {
    if (!l->ntoks || l->toks[l->ntoks - 1].type != T_TEXT) return;
    struct ct_tok *t = &l->toks[l->ntoks - 1];
    /* trimEnd(): drop JS whitespace characters from the end */
    for (;;) {
        size_t k = 0;
        for (size_t w = 1; w <= 3 && w <= t->len; w++) {
            size_t m = ct_js_space(t->s + t->len - w, t->s + t->len);
            if (m == w) { k = w; break; }
        }
        if (!k) break;
        t->len -= k;
    }
    if (t->len == 0) l->ntoks--;
}

static void skip_leading_ws(struct lex *l) {
    size_t k;
    while (l->pos < l->n && (k = ct_js_space(l->s + l->pos, l->s + l->n)) > 0) l->pos += k;
}

static const struct {
    const char *seq;
    int type;
} ORDERED[] = {
    {"{%", T_OPEN_STMT}, {"%}", T_CLOSE_STMT}, {"{{", T_OPEN_EXPR}, {"}}", T_CLOSE_EXPR},
    {"(", T_LPAREN}, {")", T_RPAREN}, {"{", T_LBRACE}, {"}", T_RBRACE}, {"[", T_LBRACKET},
    {"]", T_RBRACKET}, {",", T_COMMA}, {".", T_DOT}, {":", T_COLON}, {"|", T_PIPE},
    {"<=", T_CMP}, {">=", T_CMP}, {"==", T_CMP}, {"!=", T_CMP}, {"<", T_CMP}, {">", T_CMP},
    {"+", T_ADD}, {"-", T_ADD}, {"~", T_ADD}, {"**", T_POW}, {"*", T_MUL}, {"//", T_MUL},
    {"/", T_MUL}, {"%", T_MUL}, {"=", T_EQUALS},
};

static int starts(const struct lex *l, const char *s) {
    size_t n = strlen(s);
    return l->pos + n <= l->n && !memcmp(l->s + l->pos, s, n);
}

static int lex_all(struct lex *l) {
    int rc;
    int curly = 0;
    while (l->pos < l->n) {
        int lt = last_type(l);
        if (lt < 0 || lt == T_CLOSE_STMT || lt == T_CLOSE_EXPR || lt == T_COMMENT) {
            size_t st = l->pos;
            while (l->pos < l->n && !(l->s[l->pos] == '{' && l->pos + 1 < l->n &&
                                      (l->s[l->pos + 1] == '%' || l->s[l->pos + 1] == '{' ||
                                       l->s[l->pos + 1] == '#')))
                l->pos++;
            if (l->pos > st) {
                if ((rc = push_tok_copy(l, T_TEXT, l->s + st, l->pos - st, st))) return rc;
                continue;
            }
        }
        if (starts(l, "{#")) {
            size_t at = l->pos;
            l->pos += 2;
            int strip_before = l->pos < l->n && l->s[l->pos] == '-';
            if (strip_before) l->pos++;
            size_t cs = l->pos;
            while (!(l->pos + 1 < l->n && l->s[l->pos] == '#' && l->s[l->pos + 1] == '}')) {
                if (l->pos + 2 >= l->n) return lex_err(l, "missing end of comment tag");
                l->pos++;
            }
            size_t ce = l->pos;
            int strip_after = ce > cs && l->s[ce - 1] == '-';
            if (strip_after) ce--;
            if (strip_before) strip_trailing_ws(l);
            if ((rc = push_tok(l, T_COMMENT, "", 0, at))) return rc;
            l->pos += 2;
            if (strip_after) skip_leading_ws(l);
            continue;
        }
        if (starts(l, "{%-")) {
            strip_trailing_ws(l);
            if ((rc = push_tok(l, T_OPEN_STMT, "{%", 2, l->pos))) return rc;
            l->pos += 3;
            continue;
        }
        if (starts(l, "{{-")) {
            strip_trailing_ws(l);
            if ((rc = push_tok(l, T_OPEN_EXPR, "{{", 2, l->pos))) return rc;
            curly = 0;
            l->pos += 3;
            continue;
        }
        if ((rc = consume_while(l, W_SPACE, 0))) return rc;
        if (starts(l, "-%}")) {
            if ((rc = push_tok(l, T_CLOSE_STMT, "%}", 2, l->pos))) return rc;
            l->pos += 3;
            skip_leading_ws(l);
            continue;
        }
        if (starts(l, "-}}")) {
            if ((rc = push_tok(l, T_CLOSE_EXPR, "}}", 2, l->pos))) return rc;
            l->pos += 3;
            skip_leading_ws(l);
            continue;
        }
        if (l->pos >= l->n) break; /* cannot happen: consume_while fails first */
        char c = l->s[l->pos];
        if (c == '-' || c == '+') {
            int t2 = last_type(l);
            if (t2 == T_TEXT || t2 < 0) return lex_err(l, "unexpected character '%c'", c);
            if (!(t2 == T_IDENT || t2 == T_NUM || t2 == T_STR || t2 == T_RPAREN || t2 == T_RBRACKET)) {
                size_t at = l->pos;
                ++l->pos;
                if ((rc = consume_while(l, W_DIGIT, 0))) return rc;
                size_t intlen = l->tmp.n;
                if (intlen > 0 && l->pos + 1 < l->n && l->s[l->pos] == '.' && l->s[l->pos + 1] >= '0' &&
                    l->s[l->pos + 1] <= '9') {
                    char *ip = malloc(intlen ? intlen : 1);
                    if (!ip) return FOLIO_ENOMEM;
                    memcpy(ip, l->tmp.p, intlen);
                    ++l->pos;
                    if ((rc = consume_while(l, W_DIGIT, 0))) { free(ip); return rc; }
                    size_t fl = l->tmp.n;
                    char *num = arena_alloc(l->arena, intlen + fl + 3);
                    if (!num) { free(ip); return FOLIO_ENOMEM; }
                    num[0] = c;
                    memcpy(num + 1, ip, intlen);
                    num[1 + intlen] = '.';
                    memcpy(num + 2 + intlen, l->tmp.p, fl);
                    free(ip);
                    if ((rc = push_tok(l, T_NUM, num, intlen + fl + 2, at))) return rc;
                    continue;
                }
                if (intlen == 0) {
                    if ((rc = push_tok(l, T_UNARY, c == '-' ? "-" : "+", 1, at))) return rc;
                    continue;
                }
                char *num = arena_alloc(l->arena, intlen + 2);
                if (!num) return FOLIO_ENOMEM;
                num[0] = c;
                memcpy(num + 1, l->tmp.p, intlen);
                if ((rc = push_tok(l, T_NUM, num, intlen + 1, at))) return rc;
                continue;
            }
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof(ORDERED) / sizeof(ORDERED[0]); k++) {
            if (ORDERED[k].type == T_CLOSE_EXPR && curly > 0) continue;
            if (!starts(l, ORDERED[k].seq)) continue;
            size_t sl = strlen(ORDERED[k].seq);
            if ((rc = push_tok(l, ORDERED[k].type, ORDERED[k].seq, sl, l->pos))) return rc;
            if (ORDERED[k].type == T_OPEN_EXPR) curly = 0;
            else if (ORDERED[k].type == T_LBRACE) ++curly;
            else if (ORDERED[k].type == T_RBRACE) --curly;
            l->pos += sl;
            matched = 1;
            break;
        }
        if (matched) continue;
        if (c == '\'' || c == '"') {
            size_t at = l->pos;
            ++l->pos;
            if ((rc = consume_while(l, W_QUOTE, c))) return rc;
            if ((rc = push_tok_copy(l, T_STR, l->tmp.p, l->tmp.n, at))) return rc;
            ++l->pos;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t at = l->pos;
            if ((rc = consume_while(l, W_DIGIT, 0))) return rc;
            if (last_type(l) != T_DOT && l->pos + 1 < l->n && l->s[l->pos] == '.' &&
                l->s[l->pos + 1] >= '0' && l->s[l->pos + 1] <= '9') {
                ++l->pos;
                if ((rc = sbuf_put(&l->tmp, ".", 1))) return rc;
                /* the fraction digits follow in the source; collect them after the '.' */
                size_t keep = l->tmp.n;
                char *save = malloc(keep);
                if (!save) return FOLIO_ENOMEM;
                memcpy(save, l->tmp.p, keep);
                rc = consume_while(l, W_DIGIT, 0);
                if (rc) { free(save); return rc; }
                char *num = arena_alloc(l->arena, keep + l->tmp.n + 1);
                if (!num) { free(save); return FOLIO_ENOMEM; }
                memcpy(num, save, keep);
                memcpy(num + keep, l->tmp.p, l->tmp.n);
                size_t nl = keep + l->tmp.n;
                free(save);
                if ((rc = push_tok(l, T_NUM, num, nl, at))) return rc;
                continue;
            }
            if ((rc = push_tok_copy(l, T_NUM, l->tmp.p, l->tmp.n, at))) return rc;
            continue;
        }
        if (pred(l, W_WORD, 0)) {
            size_t at = l->pos;
            if ((rc = consume_while(l, W_WORD, 0))) return rc;
            if ((rc = push_tok_copy(l, T_IDENT, l->tmp.p, l->tmp.n, at))) return rc;
            continue;
        }
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            return lex_err(l, "unexpected character '%c'", c);
        return lex_err(l, "unexpected character (byte 0x%02x)", (unsigned char)c);
    }
    return 0;
}

int ct_tokenize(struct arena *a, const char *src, size_t len, struct ct_tok **toks,
                size_t *ntoks) {
    struct pp p = {0};
    int rc = preprocess(src, len, &p);
    struct lex l = {.arena = a};
    if (rc) goto out;
    l.s = p.s;
    l.line = p.line;
    l.n = p.len;
    rc = lex_all(&l);
    if (rc) goto out;
    /* the parser keeps tokens for the template's lifetime: move them into the arena */
    *toks = arena_alloc(a, (l.ntoks + 1) * sizeof(struct ct_tok));
    if (!*toks) { rc = FOLIO_ENOMEM; goto out; }
    if (l.ntoks) memcpy(*toks, l.toks, l.ntoks * sizeof(struct ct_tok));
    *ntoks = l.ntoks;
    /* a sentinel that carries the last line, for "unexpected end" messages */
    (*toks)[l.ntoks].line = p.line[p.len];
    (*toks)[l.ntoks].type = T_TEXT;
out:
    free(l.toks);
    sbuf_free(&l.tmp);
    pp_free(&p);
    return rc;
}
