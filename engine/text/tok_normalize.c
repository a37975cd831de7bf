/* tok_normalize: the text-to-pieces half of encoding: normalizers (Prepend, Replace,
 * NFC/NFD/NFKC/NFKD via utf8proc, Strip) and pre-tokenizers (ByteLevel with the GPT-2
 * regex, Split, Metaspace, Digits), their parsing from tokenizer.json, and the PCRE2 regexes
 * and String/Regex patterns they share. Kept apart from BPE because everything here works
 * on text, while tok_bpe.c works on vocabulary ids. The GPT-2 byte <-> unicode map lives here
 * with the ByteLevel pre-tokenizer that defines it; the ByteLevel decoder reads its inverse. */
#include "text/tok_internal.h"

#include <pthread.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------------------------------
 * Regexes (PCRE2). HF's patterns are written for Oniguruma, whose \s is Unicode White_Space;
 * PCRE2's UCP \s also takes U+180E, so \s is spelled out. */

#define WS_CLASS_BODY \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
    "\\x{202F}\\x{205F}\\x{3000}"

struct regex {
    pcre2_code *code;
};

static int regex_compile(const char *pat, struct regex **out) {
    int rc = 0;
    struct sbuf b = {0};
    struct regex *re = NULL;
    int in_class = 0;
    for (size_t i = 0; pat[i]; i++) {
        char c = pat[i];
        if (c == '\\' && pat[i + 1]) {
            char e = pat[i + 1];
            i++;
            if (e == 's')
                rc = in_class ? sbuf_put(&b, WS_CLASS_BODY, strlen(WS_CLASS_BODY))
                              : sbuf_put(&b, "[" WS_CLASS_BODY "]", strlen(WS_CLASS_BODY) + 2);
            else if (e == 'S' && !in_class)
                rc = sbuf_put(&b, "[^" WS_CLASS_BODY "]", strlen(WS_CLASS_BODY) + 3);
            else {
                char two[2] = {'\\', e};
                rc = sbuf_put(&b, two, 2);
            }
        } else {
            if (c == '[' && !in_class) {
                in_class = 1;
                rc = sbuf_put(&b, &c, 1);
                /* a ']' (or '^]') right after '[' is a literal */
                if (!rc && pat[i + 1] == '^') rc = sbuf_put(&b, &pat[++i], 1);
                if (!rc && pat[i + 1] == ']') rc = sbuf_put(&b, &pat[++i], 1);
                if (rc) goto out;
                continue;
            }
            if (c == ']' && in_class) in_class = 0;
            rc = sbuf_put(&b, &c, 1);
        }
        if (rc) goto out;
    }
    if (!b.p && (rc = sbuf_put(&b, "", 0))) goto out;
    re = calloc(1, sizeof *re);
    if (!re) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    int err;
    PCRE2_SIZE erroff;
    re->code = pcre2_compile((PCRE2_SPTR)b.p, b.n, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                             &err, &erroff, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: cannot compile regex %s: %s at %zu", pat,
                       (char *)msg, (size_t)erroff);
        goto out;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    *out = re;
    re = NULL;
out:
    if (re) free(re);
    free(b.p);
    return rc;
}

static void regex_free(struct regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

/* Finds the next match at or after `start`; returns 1 and [*ms, *me), 0 when none. Empty
 * matches are reported; callers step past them. */
static int regex_next(const struct regex *re, pcre2_match_data *md, const char *s, size_t n,
                      size_t start, size_t *ms, size_t *me) {
    int r = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (r == PCRE2_ERROR_JIT_STACKLIMIT)
        r = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                        md, NULL);
    if (r == PCRE2_ERROR_NOMATCH) return 0;
    if (r < 0) return folio_err(FOLIO_EINVAL, "tokenizer: regex match failed (%d)", r);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}


static int pattern_parse(const cJSON *j, struct arena *a, struct pattern *p, const char *what) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "Regex");
    if (cJSON_IsString(s)) {
        p->litn = strlen(s->valuestring);
        p->lit = arena_dup(a, s->valuestring, p->litn);
        if (!p->lit) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        if (p->litn == 0) return folio_err(FOLIO_EUNSUP, "tokenizer: empty %s pattern", what);
        return 0;
    }
    if (cJSON_IsString(r)) return regex_compile(r->valuestring, &p->re);
    return folio_err(FOLIO_EINVAL, "tokenizer: %s pattern is neither String nor Regex", what);
}

/* All matches of p in s as (start, end) pairs, non-overlapping, left to right. Empty regex
 * matches are dropped. */
static int pattern_matches(const struct pattern *p, pcre2_match_data *md, const char *s, size_t n,
                           struct ivec *out) {
    int rc;
    out->n = 0;
    if (p->lit) {
        for (size_t i = 0; i + p->litn <= n;) {
            if (memcmp(s + i, p->lit, p->litn) == 0) {
                if ((rc = tok_ivec_push(out, (int32_t)i)) || (rc = tok_ivec_push(out, (int32_t)(i + p->litn))))
                    return rc;
                i += p->litn;
            } else {
                i++;
            }
        }
        return 0;
    }
    size_t pos = 0;
    while (pos <= n) {
        size_t ms, me;
        int r = regex_next(p->re, md, s, n, pos, &ms, &me);
        if (r < 0) return r;
        if (r == 0) break;
        if (me > ms) {
            if ((rc = tok_ivec_push(out, (int32_t)ms)) || (rc = tok_ivec_push(out, (int32_t)me)))
                return rc;
            pos = me;
        } else {
            if (ms >= n) break;
            pos = ms + utf8_len_valid(s + ms);
        }
    }
    return 0;
}

static int pattern_replace_all(const struct pattern *p, pcre2_match_data *md, const char *s,
                               size_t n, const char *content, size_t cn, struct ivec *scratch,
                               struct sbuf *out) {
    int rc = pattern_matches(p, md, s, n, scratch);
    if (rc) return rc;
    size_t prev = 0;
    for (int i = 0; i < scratch->n; i += 2) {
        size_t ms = (size_t)scratch->v[i], me = (size_t)scratch->v[i + 1];
        if ((rc = sbuf_put(out, s + prev, ms - prev)) || (rc = sbuf_put(out, content, cn))) return rc;
        prev = me;
    }
    return sbuf_put(out, s + prev, n - prev);
}

static void pattern_free(struct pattern *p) { regex_free(p->re); }

/* ------------------------------------------------------------------------------------------
 * GPT-2 byte <-> unicode mapping. */

static uint16_t byte_to_cp[256];
int16_t tok_cp_to_byte[324];
static char byte_str[256][3];
static uint8_t byte_strlen[256];

static pthread_once_t bytes_once = PTHREAD_ONCE_INIT;

static void bytes_to_unicode_init(void) {
    int n = 0;
    for (int i = 0; i < 324; i++) tok_cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = keep ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int b = 0; b < 256; b++) {
        tok_cp_to_byte[byte_to_cp[b]] = (int16_t)b;
        byte_strlen[b] = (uint8_t)utf8_encode(byte_to_cp[b], byte_str[b]);
    }
}

void tok_bytelevel_init(void) { pthread_once(&bytes_once, bytes_to_unicode_init); }

/* ------------------------------------------------------------------------------------------
 * Parsing normalizers and pre-tokenizers from tokenizer.json */

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

int tok_parse_normalizer(struct tokenizer *t, const cJSON *j, struct normalizer *n) {
    int rc = 0;
    const char *type = tok_jstr(j, "type");
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        n->type = NRM_SEQ;
        n->nkids = cJSON_GetArraySize(arr);
        n->kids = calloc((size_t)n->nkids + 1, sizeof *n->kids);
        if (!n->kids) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((rc = tok_parse_normalizer(t, it, &n->kids[i++]))) return rc;
        }
    } else if (!strcmp(type, "Prepend")) {
        const char *p = tok_jstr(j, "prepend");
        if (!p) return folio_err(FOLIO_EINVAL, "tokenizer: Prepend normalizer without prepend");
        n->type = NRM_PREPEND;
        n->strn = strlen(p);
        if (!(n->str = arena_dup(&t->arena, p, n->strn))) return FOLIO_ENOMEM;
    } else if (!strcmp(type, "Replace")) {
        const char *c = tok_jstr(j, "content");
        n->type = NRM_REPLACE;
        n->strn = c ? strlen(c) : 0;
        if (!(n->str = arena_dup(&t->arena, c ? c : "", n->strn))) return FOLIO_ENOMEM;
        if ((rc = pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), &t->arena, &n->pat,
                                "Replace normalizer")))
            return rc;
    } else if (!strcmp(type, "NFC")) {
        n->type = NRM_NFC;
    } else if (!strcmp(type, "NFD")) {
        n->type = NRM_NFD;
    } else if (!strcmp(type, "NFKC")) {
        n->type = NRM_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        n->type = NRM_NFKD;
    } else if (!strcmp(type, "Strip")) {
        n->type = NRM_STRIP;
        n->strip_left = tok_jbool(j, "strip_left", 0);
        n->strip_right = tok_jbool(j, "strip_right", 0);
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported normalizer type \"%s\"", type);
    }
    return 0;
}

void tok_free_normalizer(struct normalizer *n) {
    if (!n) return;
    for (int i = 0; i < n->nkids; i++) tok_free_normalizer(&n->kids[i]);
    free(n->kids);
    pattern_free(&n->pat);
}

int tok_parse_replacement(const cJSON *j, char *repl, size_t *repln) {
    const char *r = tok_jstr(j, "replacement");
    if (!r) r = "\xE2\x96\x81"; /* U+2581 */
    size_t n = strlen(r);
    size_t adv;
    if (n == 0 || n >= 8 || !utf8_valid(r, n) || (utf8_cp_valid(r, &adv), adv != n))
        return folio_err(FOLIO_EUNSUP, "tokenizer: Metaspace replacement must be one character");
    memcpy(repl, r, n + 1);
    *repln = n;
    return 0;
}

int tok_parse_prepend_scheme(const cJSON *j, enum prepend_scheme *ps) {
    const char *s = tok_jstr(j, "prepend_scheme");
    if (!s) {
        *ps = tok_jbool(j, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
        return 0;
    }
    if (!strcmp(s, "always")) *ps = PS_ALWAYS;
    else if (!strcmp(s, "first")) *ps = PS_FIRST;
    else if (!strcmp(s, "never")) *ps = PS_NEVER;
    else return folio_err(FOLIO_EUNSUP, "tokenizer: unknown prepend_scheme \"%s\"", s);
    return 0;
}

int tok_parse_pretok(struct tokenizer *t, const cJSON *j, struct pretok *p) {
    int rc = 0;
    const char *type = tok_jstr(j, "type");
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        p->type = PT_SEQ;
        p->nkids = cJSON_GetArraySize(arr);
        p->kids = calloc((size_t)p->nkids + 1, sizeof *p->kids);
        if (!p->kids) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((rc = tok_parse_pretok(t, it, &p->kids[i++]))) return rc;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = PT_BYTELEVEL;
        p->add_prefix_space = tok_jbool(j, "add_prefix_space", 0);
        p->use_regex = tok_jbool(j, "use_regex", 1);
        if (p->use_regex && (rc = regex_compile(GPT2_PATTERN, &p->pat.re))) return rc;
    } else if (!strcmp(type, "Split")) {
        p->type = PT_SPLIT;
        if ((rc = pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), &t->arena, &p->pat,
                                "Split")))
            return rc;
        const char *b = tok_jstr(j, "behavior");
        if (!b) return folio_err(FOLIO_EINVAL, "tokenizer: Split without behavior");
        if (!strcmp(b, "Removed")) p->behavior = SB_REMOVED;
        else if (!strcmp(b, "Isolated")) p->behavior = SB_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) p->behavior = SB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) p->behavior = SB_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) p->behavior = SB_CONTIGUOUS;
        else return folio_err(FOLIO_EUNSUP, "tokenizer: unknown Split behavior \"%s\"", b);
        p->invert = tok_jbool(j, "invert", 0);
    } else if (!strcmp(type, "Metaspace")) {
        p->type = PT_METASPACE;
        if ((rc = tok_parse_replacement(j, p->repl, &p->repln))) return rc;
        if ((rc = tok_parse_prepend_scheme(j, &p->prepend))) return rc;
        p->split = tok_jbool(j, "split", 1);
    } else if (!strcmp(type, "Digits")) {
        p->type = PT_DIGITS;
        p->individual_digits = tok_jbool(j, "individual_digits", 0);
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported pre_tokenizer type \"%s\"", type);
    }
    return 0;
}

void tok_free_pretok(struct pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->nkids; i++) tok_free_pretok(&p->kids[i]);
    free(p->kids);
    pattern_free(&p->pat);
}

/* ------------------------------------------------------------------------------------------
 * Normalizing and pre-tokenizing (per encode call) */

static int utf8proc_form(const char *s, size_t n, utf8proc_option_t opt, struct sbuf *out) {
    utf8proc_uint8_t *res = NULL;
    if (n == 0) return 0;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res,
                                      opt | UTF8PROC_STABLE);
    if (r < 0) return folio_err(FOLIO_EINVAL, "tokenizer: unicode normalization failed: %s",
                                utf8proc_errmsg(r));
    int rc = sbuf_put(out, (const char *)res, (size_t)r);
    free(res);
    return rc;
}

/* Appends the normalization of s to out. */
int tok_normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out,
                  pcre2_match_data *md, struct ivec *scratch) {
    int rc = 0;
    switch (nm->type) {
    case NRM_SEQ: {
        struct sbuf a = {0}, b = {0};
        if ((rc = sbuf_put(&a, s, n))) goto seq_out;
        for (int i = 0; i < nm->nkids; i++) {
            b.n = 0;
            if ((rc = sbuf_put(&b, "", 0)) || (rc = tok_normalize(&nm->kids[i], a.p, a.n, &b, md, scratch)))
                goto seq_out;
            struct sbuf t = a;
            a = b;
            b = t;
        }
        rc = sbuf_put(out, a.p, a.n);
    seq_out:
        free(a.p);
        free(b.p);
        return rc;
    }
    case NRM_PREPEND:
        if ((rc = sbuf_put(out, nm->str, nm->strn))) return rc;
        return sbuf_put(out, s, n);
    case NRM_REPLACE:
        return pattern_replace_all(&nm->pat, md, s, n, nm->str, nm->strn, scratch, out);
    case NRM_NFC: return utf8proc_form(s, n, UTF8PROC_COMPOSE, out);
    case NRM_NFD: return utf8proc_form(s, n, UTF8PROC_DECOMPOSE, out);
    case NRM_NFKC: return utf8proc_form(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case NRM_NFKD: return utf8proc_form(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case NRM_STRIP: {
        size_t a = nm->strip_left ? tok_trim_start_len(s, n) : 0;
        size_t z = nm->strip_right ? tok_trim_end_len(s + a, n - a) : 0;
        return sbuf_put(out, s + a, n - a - z);
    }
    }
    return 0;
}

/* Split pre-tokenizer, with the Rust crate's behaviors (the JS port only has Isolated,
 * Removed and invert). */
static int split_piece(const struct pretok *p, struct enc *e, const char *s, size_t n,
                       struct plist *out) {
    int rc = pattern_matches(&p->pat, e->md, s, n, &e->matches);
    if (rc) return rc;
    /* (start, end, is_match) pieces covering s */
    struct ivec *m = &e->matches;
    struct ivec *pc = &e->parts;
    pc->n = 0;
    size_t prev = 0;
    for (int i = 0; i < m->n; i += 2) {
        size_t ms = (size_t)m->v[i], me = (size_t)m->v[i + 1];
        if (prev < ms && ((rc = tok_ivec_push(pc, (int32_t)prev)) ||
                          (rc = tok_ivec_push(pc, (int32_t)ms)) ||
                          (rc = tok_ivec_push(pc, p->invert ? 1 : 0))))
            return rc;
        if ((rc = tok_ivec_push(pc, (int32_t)ms)) || (rc = tok_ivec_push(pc, (int32_t)me)) ||
            (rc = tok_ivec_push(pc, p->invert ? 0 : 1)))
            return rc;
        prev = me;
    }
    if (prev < n && ((rc = tok_ivec_push(pc, (int32_t)prev)) ||
                     (rc = tok_ivec_push(pc, (int32_t)n)) ||
                     (rc = tok_ivec_push(pc, p->invert ? 1 : 0))))
        return rc;
    int np = pc->n / 3;
    int32_t *v = pc->v;
    /* merge in place into (start, end) runs, then emit */
    int w = 0;
    int prev_match = 0;
    switch (p->behavior) {
    case SB_REMOVED:
        for (int i = 0; i < np; i++)
            if (!v[3 * i + 2]) { v[3 * w] = v[3 * i]; v[3 * w + 1] = v[3 * i + 1]; w++; }
        break;
    case SB_ISOLATED:
        w = np;
        break;
    case SB_CONTIGUOUS:
        for (int i = 0; i < np; i++) {
            int im = v[3 * i + 2];
            if (w > 0 && im && prev_match) v[3 * (w - 1) + 1] = v[3 * i + 1];
            else { v[3 * w] = v[3 * i]; v[3 * w + 1] = v[3 * i + 1]; w++; }
            prev_match = im;
        }
        break;
    case SB_MERGED_PREV:
        for (int i = 0; i < np; i++) {
            int im = v[3 * i + 2];
            if (w > 0 && im && !prev_match) v[3 * (w - 1) + 1] = v[3 * i + 1];
            else { v[3 * w] = v[3 * i]; v[3 * w + 1] = v[3 * i + 1]; w++; }
            prev_match = im;
        }
        break;
    case SB_MERGED_NEXT: {
        /* walk backwards: a match joins the piece after it */
        int wr = np; /* results fill v[3*wr ...] from the end */
        for (int i = np - 1; i >= 0; i--) {
            int im = v[3 * i + 2];
            int32_t st = v[3 * i], en = v[3 * i + 1];
            if (wr < np && im && !prev_match) v[3 * wr] = st;
            else { wr--; v[3 * wr] = st; v[3 * wr + 1] = en; }
            prev_match = im;
        }
        for (int i = wr; i < np; i++) { v[3 * w] = v[3 * i]; v[3 * w + 1] = v[3 * i + 1]; w++; }
        break;
    }
    }
    for (int i = 0; i < w; i++) {
        size_t st = (size_t)v[3 * i], en = (size_t)v[3 * i + 1];
        if (en > st && (rc = tok_plist_push(out, s + st, en - st))) return rc;
    }
    return 0;
}

static int pretok_piece(const struct tokenizer *t, const struct pretok *p, struct enc *e,
                        const char *s, size_t n, int section_index, struct plist *out) {
    int rc = 0;
    switch (p->type) {
    case PT_SEQ:
        return FOLIO_EINVAL; /* handled by tok_pretokenize() */
    case PT_BYTELEVEL: {
        struct sbuf *src = &e->tmp;
        src->n = 0;
        if (p->add_prefix_space && (n == 0 || s[0] != ' ') && (rc = sbuf_put(src, " ", 1))) return rc;
        if ((rc = sbuf_put(src, s, n))) return rc;
        const char *x = src->p;
        size_t xn = src->n;
        size_t pos = 0;
        while (pos < xn) {
            size_t ms = xn, me = xn;
            if (p->use_regex) {
                int r = regex_next(p->pat.re, e->md, x, xn, pos, &ms, &me);
                if (r < 0) return r;
                if (r == 0) break;
                if (me == ms) { /* the GPT-2 pattern never matches empty; be safe */
                    pos = ms + utf8_len_valid(x + ms);
                    continue;
                }
            } else {
                ms = pos;
            }
            /* JS: text.match() keeps matches only */
            size_t need = (me - ms) * 2;
            size_t off = out->buf.n;
            if ((rc = sbuf_reserve(&out->buf, need))) return rc;
            char *d = out->buf.p + off;
            size_t k = 0;
            for (size_t i = ms; i < me; i++) {
                unsigned char b = (unsigned char)x[i];
                memcpy(d + k, byte_str[b], byte_strlen[b]);
                k += byte_strlen[b];
            }
            out->buf.n += k;
            /* register the span without copying again */
            if (out->n == out->cap) {
                int cap = out->cap ? out->cap * 2 : 16;
                struct span *v = realloc(out->v, (size_t)cap * sizeof *v);
                if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
                out->v = v;
                out->cap = cap;
            }
            out->v[out->n].off = off;
            out->v[out->n].len = k;
            out->n++;
            out->buf.p[out->buf.n] = '\0';
            pos = me;
        }
        return 0;
    }
    case PT_SPLIT:
        return split_piece(p, e, s, n, out);
    case PT_METASPACE: {
        struct sbuf *b = &e->tmp;
        b->n = 0;
        if ((rc = sbuf_put(b, "", 0))) return rc;
        int starts = 0;
        if (n > 0 && s[0] == ' ') starts = 1;
        else if (n >= p->repln && memcmp(s, p->repl, p->repln) == 0) starts = 1;
        if (!starts && (p->prepend == PS_ALWAYS || (p->prepend == PS_FIRST && section_index == 0)) &&
            (rc = sbuf_put(b, p->repl, p->repln)))
            return rc;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') rc = sbuf_put(b, p->repl, p->repln);
            else rc = sbuf_put(b, s + i, 1);
            if (rc) return rc;
        }
        if (!p->split) return tok_plist_push(out, b->p, b->n);
        /* split before every replacement character (MergedWithNext) */
        size_t st = 0;
        for (size_t i = 0; i + p->repln <= b->n; i++) {
            if (i > st && memcmp(b->p + i, p->repl, p->repln) == 0) {
                if ((rc = tok_plist_push(out, b->p + st, i - st))) return rc;
                st = i;
            }
        }
        if (b->n > st) return tok_plist_push(out, b->p + st, b->n - st);
        return 0;
    }
    case PT_DIGITS: {
        /* ASCII digits, as the JS port's \d: runs of non-digits, digit runs or single digits */
        size_t st = 0;
        for (size_t i = 1; i <= n; i++) {
            bool d0 = s[i - 1] >= '0' && s[i - 1] <= '9';
            bool d1 = i < n && s[i] >= '0' && s[i] <= '9';
            if (i == n || d0 != d1 || (d0 && p->individual_digits)) {
                if ((rc = tok_plist_push(out, s + st, i - st))) return rc;
                st = i;
            }
        }
        (void)t;
        return 0;
    }
    }
    return 0;
}

/* Runs the pre-tokenizer over one string; the result is in *res (e->pa or e->pb). */
int tok_pretokenize(const struct tokenizer *t, struct enc *e, const char *s, size_t n,
                    int section_index, struct plist **res) {
    int rc;
    struct plist *cur = &e->pa, *nxt = &e->pb;
    tok_plist_clear(cur);
    if ((rc = tok_plist_push(cur, s, n))) return rc;
    if (!t->pre) {
        *res = cur;
        return 0;
    }
    const struct pretok *steps = t->pre->type == PT_SEQ ? t->pre->kids : t->pre;
    int nsteps = t->pre->type == PT_SEQ ? t->pre->nkids : 1;
    for (int k = 0; k < nsteps; k++) {
        if (steps[k].type == PT_SEQ)
            return folio_err(FOLIO_EUNSUP, "tokenizer: nested pre_tokenizer Sequence");
        tok_plist_clear(nxt);
        for (int i = 0; i < cur->n; i++) {
            if ((rc = pretok_piece(t, &steps[k], e, cur->buf.p + cur->v[i].off, cur->v[i].len,
                                   section_index, nxt)))
                return rc;
        }
        struct plist *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    *res = cur;
    return 0;
}
