/* tokenizer: loads a Hugging Face tokenizer.json (BPE model, normalizers, pre-tokenizers,
 * post-processor, decoders, added tokens) and encodes/decodes exactly as
 * @huggingface/tokenizers does. Where that JS port and the Rust `tokenizers` crate disagree
 * on something only the JS port's bugs explain (BOM stripping after byte fallback, JS's own
 * \s class in the GPT-2 regex), we follow Rust; everything else mirrors the JS code path,
 * which the comparison suite in tests/tokenizer/ checks string by string.
 *
 * Encoding pipeline (per call): split the raw text on added tokens (longest match first),
 * normalize each remaining section, split again on normalized added tokens, pre-tokenize,
 * run BPE on each pre-token, then wrap with the post-processor's special tokens.
 * BPE works on vocabulary ids with a binary heap keyed by (merge rank, position), so long
 * words (SentencePiece-style tokenizers run BPE over a whole section) stay O(n log n). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------------------------------
 * Small containers */

struct sbuf {
    char *p;
    size_t n, cap;
};

static int sbuf_reserve(struct sbuf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sbuf_put(struct sbuf *b, const char *s, size_t n) {
    int rc = sbuf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

struct ivec {
    int32_t *v;
    int n, cap;
};

static int ivec_push(struct ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* A list of strings stored back to back in one buffer: the unit that pre-tokenizers and
 * the decoder chain pass along. */
struct span {
    size_t off, len;
};

struct plist {
    struct sbuf buf;
    struct span *v;
    int n, cap;
};

static int plist_push(struct plist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        struct span *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        l->v = v;
        l->cap = cap;
    }
    size_t off = l->buf.n;
    int rc = sbuf_put(&l->buf, s, n);
    if (rc) return rc;
    l->v[l->n].off = off;
    l->v[l->n].len = n;
    l->n++;
    return 0;
}

static void plist_clear(struct plist *l) {
    l->n = 0;
    l->buf.n = 0;
}

static void plist_free(struct plist *l) {
    free(l->buf.p);
    free(l->v);
}

/* Strings that live as long as the tokenizer: allocated in blocks that never move. */
struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
};

struct arena {
    struct arena_block *head;
};

static char *arena_dup(struct arena *a, const char *s, size_t n) {
    struct arena_block *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

static void arena_free(struct arena *a) {
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------------------------------
 * Hash maps: string -> int32 (vocabulary, added tokens) and id pair -> merge. */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

struct smap_slot {
    const char *s; /* NULL: empty */
    uint32_t len;
    int32_t val;
};

struct smap {
    struct smap_slot *slots;
    size_t cap, n; /* cap: power of two */
};

static int smap_init(struct smap *m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    m->cap = cap;
    m->n = 0;
    return 0;
}

static struct smap_slot *smap_find_slot(const struct smap *m, const char *s, size_t n) {
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        struct smap_slot *sl = &m->slots[i];
        if (!sl->s || (sl->len == n && memcmp(sl->s, s, n) == 0)) return sl;
        i = (i + 1) & mask;
    }
}

static int smap_get(const struct smap *m, const char *s, size_t n, int32_t *val) {
    if (!m->slots) return 0;
    struct smap_slot *sl = smap_find_slot(m, s, n);
    if (!sl->s) return 0;
    *val = sl->val;
    return 1;
}

/* s must outlive the map (arena string). Overwrites an existing key, like a JS Map.set. */
static int smap_set(struct smap *m, const char *s, size_t n, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        struct smap old = *m;
        if (smap_init(m, old.cap) != 0) {
            *m = old;
            return FOLIO_ENOMEM;
        }
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.slots[i].s) continue;
            struct smap_slot *sl = smap_find_slot(m, old.slots[i].s, old.slots[i].len);
            *sl = old.slots[i];
            m->n++;
        }
        free(old.slots);
    }
    struct smap_slot *sl = smap_find_slot(m, s, n);
    if (!sl->s) {
        sl->s = s;
        sl->len = (uint32_t)n;
        m->n++;
    }
    sl->val = val;
    return 0;
}

struct pmap_slot {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, id;
};

struct pmap {
    struct pmap_slot *slots;
    size_t cap;
};

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pmap_index(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

static int pmap_init(struct pmap *m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->cap = cap;
    return 0;
}

static struct pmap_slot *pmap_slot(const struct pmap *m, uint64_t key) {
    size_t mask = m->cap - 1, i = pmap_index(key, mask);
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & mask;
    return &m->slots[i];
}

/* ------------------------------------------------------------------------------------------
 * UTF-8 */

static size_t utf8_len_at(const char *s) {
    unsigned char c = (unsigned char)*s;
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Decodes one code point of known-valid UTF-8. */
static uint32_t utf8_cp(const char *s, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *adv = 1; return u[0]; }
    if (u[0] < 0xE0) { *adv = 2; return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); }
    if (u[0] < 0xF0) {
        *adv = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *adv = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
           ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed sequence starting at s[i] (WHATWG/Unicode "maximal subpart"
 * rules), or 0 when s[i] starts an ill-formed one; *sub gets the bytes the ill-formed prefix
 * covers (one U+FFFD replaces them), *trunc whether it only ran out of input. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i, size_t *sub, int *trunc) {
    unsigned char b = s[i];
    *trunc = 0;
    *sub = 1;
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    size_t j = i + 1;
    for (size_t k = 0; k < need; k++, j++) {
        if (j >= n) {
            *trunc = 1;
            *sub = j - i;
            return 0;
        }
        unsigned char lim_lo = k == 0 ? lo : 0x80, lim_hi = k == 0 ? hi : 0xBF;
        if (s[j] < lim_lo || s[j] > lim_hi) {
            *sub = j - i;
            return 0;
        }
    }
    return need + 1;
}

static bool utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t sub;
        int trunc;
        size_t k = utf8_seq((const unsigned char *)s, n, i, &sub, &trunc);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Decodes bytes to text as TextDecoder / String::from_utf8_lossy do (one U+FFFD per maximal
 * ill-formed subpart). With omit_tail, an incomplete final sequence is left out and
 * reported through *incomplete. out needs 3 * n bytes. */
static size_t utf8_lossy(const unsigned char *s, size_t n, char *out, int omit_tail,
                         int *incomplete) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t sub;
        int trunc;
        size_t k = utf8_seq(s, n, i, &sub, &trunc);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (trunc && incomplete) *incomplete = 1;
        if (trunc && omit_tail) break;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += sub;
    }
    return o;
}

/* JS String.prototype.trim whitespace (WhiteSpace + LineTerminator), which is what
 * @huggingface/tokenizers uses for the lstrip/rstrip of added tokens. */
static bool js_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

static size_t trim_start_len(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t adv;
        uint32_t c = utf8_cp(s + i, &adv);
        if (!js_space(c)) break;
        i += adv;
    }
    return i;
}

static size_t trim_end_len(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        size_t adv;
        if (!js_space(utf8_cp(s + st, &adv))) break;
        end = st;
    }
    return n - end;
}

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

/* A pattern as tokenizer.json writes it: {"String": "..."} or {"Regex": "..."}. */
struct pattern {
    char *lit; /* literal string, or NULL */
    size_t litn;
    struct regex *re;
};

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
                if ((rc = ivec_push(out, (int32_t)i)) || (rc = ivec_push(out, (int32_t)(i + p->litn))))
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
            if ((rc = ivec_push(out, (int32_t)ms)) || (rc = ivec_push(out, (int32_t)me))) return rc;
            pos = me;
        } else {
            if (ms >= n) break;
            pos = ms + utf8_len_at(s + ms);
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
static int16_t cp_to_byte[324];
static char byte_str[256][3];
static uint8_t byte_strlen[256];

static pthread_once_t bytes_once = PTHREAD_ONCE_INIT;

static void bytes_to_unicode_init(void) {
    int n = 0;
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = keep ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int b = 0; b < 256; b++) {
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
        byte_strlen[b] = (uint8_t)utf8_put(byte_to_cp[b], byte_str[b]);
    }
}

/* ------------------------------------------------------------------------------------------
 * Pipeline components parsed from tokenizer.json. */

enum norm_type { NRM_SEQ, NRM_PREPEND, NRM_REPLACE, NRM_NFC, NRM_NFD, NRM_NFKC, NRM_NFKD, NRM_STRIP };

struct normalizer {
    enum norm_type type;
    char *str; /* Prepend: prepend; Replace: content */
    size_t strn;
    struct pattern pat;
    int strip_left, strip_right;
    struct normalizer *kids;
    int nkids;
};

enum pretok_type { PT_SEQ, PT_BYTELEVEL, PT_SPLIT, PT_METASPACE, PT_DIGITS };
enum split_behavior { SB_REMOVED, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };
enum prepend_scheme { PS_NEVER, PS_FIRST, PS_ALWAYS };

struct pretok {
    enum pretok_type type;
    struct pattern pat;        /* Split; ByteLevel's GPT-2 regex */
    enum split_behavior behavior;
    int invert;
    int add_prefix_space, use_regex; /* ByteLevel */
    char repl[8];              /* Metaspace replacement */
    size_t repln;
    enum prepend_scheme prepend;
    int split;                 /* Metaspace */
    int individual_digits;     /* Digits */
    struct pretok *kids;
    int nkids;
};

enum dec_type { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_BYTELEVEL, DEC_METASPACE };

struct dec_step {
    enum dec_type type;
    char *pat, *content; /* Replace (String patterns only) */
    size_t patn, contentn;
    uint32_t strip_cp;   /* Strip content, one code point */
    int start, stop;
    char repl[8];        /* Metaspace */
    size_t repln;
    int strip_first;     /* Metaspace: drop the first token's leading space */
};

struct added_tok {
    const char *content, *norm; /* norm: normalized content, or NULL */
    size_t len, normlen;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
};

/* Longest-match lookup for added tokens: candidates bucketed by first byte, longest first. */
struct matcher {
    struct { const char *s; size_t len; } *e;
    int start[257];
};

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define MAX_TEMPLATE 16

struct tokenizer {
    struct arena arena;
    int vocab_size;          /* highest real id + 1 */
    const char **piece;      /* [vocab_size]; NULL for gaps */
    uint32_t *piece_len;     /* [vocab_size] */
    uint8_t *special;        /* [vocab_size]: dropped by skip_special */
    struct smap vocab;       /* string -> id; ids >= vocab_size are merge-only strings */
    int32_t n_ids;           /* vocab_size + merge-only strings */
    struct pmap merges;
    int32_t byte_id[256];    /* <0xHH> ids, -1 when absent */
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;

    struct added_tok *added;
    int n_added;
    struct smap added_map;     /* content and normalized content -> added index */
    struct smap added_content; /* content -> added index (decoders compare raw contents) */
    struct matcher m_raw, m_norm;

    struct normalizer *norm;
    struct pretok *pre;
    bool has_post;
    int32_t tmpl[MAX_TEMPLATE]; /* post-processor template; -1 marks the sequence */
    int n_tmpl;

    struct dec_step *dec;
    int n_dec;
    bool has_decoder;
    size_t max_piece;  /* longest piece in bytes */
    size_t growth;     /* decoder output bytes per input byte, upper bound */

    bool add_bos, add_eos, cleanup;
    int32_t bos_id, eos_id;
};

/* ------------------------------------------------------------------------------------------
 * Loading */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static int parse_normalizer(struct tokenizer *t, const cJSON *j, struct normalizer *n) {
    int rc = 0;
    const char *type = jstr(j, "type");
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
            if ((rc = parse_normalizer(t, it, &n->kids[i++]))) return rc;
        }
    } else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(j, "prepend");
        if (!p) return folio_err(FOLIO_EINVAL, "tokenizer: Prepend normalizer without prepend");
        n->type = NRM_PREPEND;
        n->strn = strlen(p);
        if (!(n->str = arena_dup(&t->arena, p, n->strn))) return FOLIO_ENOMEM;
    } else if (!strcmp(type, "Replace")) {
        const char *c = jstr(j, "content");
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
        n->strip_left = jbool(j, "strip_left", 0);
        n->strip_right = jbool(j, "strip_right", 0);
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported normalizer type \"%s\"", type);
    }
    return 0;
}

static void free_normalizer(struct normalizer *n) {
    if (!n) return;
    for (int i = 0; i < n->nkids; i++) free_normalizer(&n->kids[i]);
    free(n->kids);
    pattern_free(&n->pat);
}

static int parse_replacement(const cJSON *j, char *repl, size_t *repln) {
    const char *r = jstr(j, "replacement");
    if (!r) r = "\xE2\x96\x81"; /* U+2581 */
    size_t n = strlen(r);
    size_t adv;
    if (n == 0 || n >= 8 || !utf8_valid(r, n) || (utf8_cp(r, &adv), adv != n))
        return folio_err(FOLIO_EUNSUP, "tokenizer: Metaspace replacement must be one character");
    memcpy(repl, r, n + 1);
    *repln = n;
    return 0;
}

static int parse_prepend_scheme(const cJSON *j, enum prepend_scheme *ps) {
    const char *s = jstr(j, "prepend_scheme");
    if (!s) {
        *ps = jbool(j, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
        return 0;
    }
    if (!strcmp(s, "always")) *ps = PS_ALWAYS;
    else if (!strcmp(s, "first")) *ps = PS_FIRST;
    else if (!strcmp(s, "never")) *ps = PS_NEVER;
    else return folio_err(FOLIO_EUNSUP, "tokenizer: unknown prepend_scheme \"%s\"", s);
    return 0;
}

static int parse_pretok(struct tokenizer *t, const cJSON *j, struct pretok *p) {
    int rc = 0;
    const char *type = jstr(j, "type");
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
            if ((rc = parse_pretok(t, it, &p->kids[i++]))) return rc;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = PT_BYTELEVEL;
        p->add_prefix_space = jbool(j, "add_prefix_space", 0);
        p->use_regex = jbool(j, "use_regex", 1);
        if (p->use_regex && (rc = regex_compile(GPT2_PATTERN, &p->pat.re))) return rc;
    } else if (!strcmp(type, "Split")) {
        p->type = PT_SPLIT;
        if ((rc = pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), &t->arena, &p->pat,
                                "Split")))
            return rc;
        const char *b = jstr(j, "behavior");
        if (!b) return folio_err(FOLIO_EINVAL, "tokenizer: Split without behavior");
        if (!strcmp(b, "Removed")) p->behavior = SB_REMOVED;
        else if (!strcmp(b, "Isolated")) p->behavior = SB_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) p->behavior = SB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) p->behavior = SB_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) p->behavior = SB_CONTIGUOUS;
        else return folio_err(FOLIO_EUNSUP, "tokenizer: unknown Split behavior \"%s\"", b);
        p->invert = jbool(j, "invert", 0);
    } else if (!strcmp(type, "Metaspace")) {
        p->type = PT_METASPACE;
        if ((rc = parse_replacement(j, p->repl, &p->repln))) return rc;
        if ((rc = parse_prepend_scheme(j, &p->prepend))) return rc;
        p->split = jbool(j, "split", 1);
    } else if (!strcmp(type, "Digits")) {
        p->type = PT_DIGITS;
        p->individual_digits = jbool(j, "individual_digits", 0);
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported pre_tokenizer type \"%s\"", type);
    }
    return 0;
}

static void free_pretok(struct pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->nkids; i++) free_pretok(&p->kids[i]);
    free(p->kids);
    pattern_free(&p->pat);
}

static int count_decoders(const cJSON *j) {
    const char *type = jstr(j, "type");
    if (type && !strcmp(type, "Sequence")) {
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) n += count_decoders(it);
        return n;
    }
    return 1;
}

/* Nested Sequences flatten: each step maps a token list to a token list. */
static int parse_decoder(struct tokenizer *t, const cJSON *j) {
    int rc;
    const char *type = jstr(j, "type");
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: decoder without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) {
            if ((rc = parse_decoder(t, it))) return rc;
        }
        return 0;
    }
    struct dec_step *d = &t->dec[t->n_dec++];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *s = jstr(pat, "String"), *c = jstr(j, "content");
        if (!s || !*s)
            return folio_err(FOLIO_EUNSUP, "tokenizer: Replace decoder needs a non-empty String pattern");
        d->type = DEC_REPLACE;
        d->patn = strlen(s);
        d->contentn = c ? strlen(c) : 0;
        if (!(d->pat = arena_dup(&t->arena, s, d->patn)) ||
            !(d->content = arena_dup(&t->arena, c ? c : "", d->contentn)))
            return FOLIO_ENOMEM;
        size_t g = (d->contentn + d->patn - 1) / d->patn;
        if (g > 1) t->growth *= g;
    } else if (!strcmp(type, "ByteFallback")) {
        d->type = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->type = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(j, "content");
        d->type = DEC_STRIP;
        size_t adv = 0;
        /* JS compares one UTF-16 unit with the content string: only one-character contents
         * ever match. */
        d->strip_cp = UINT32_MAX;
        if (c && *c && utf8_valid(c, strlen(c))) {
            uint32_t cp = utf8_cp(c, &adv);
            if (adv == strlen(c) && cp < 0x10000) d->strip_cp = cp;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "stop");
        d->start = cJSON_IsNumber(st) ? st->valueint : 0;
        d->stop = cJSON_IsNumber(sp) ? sp->valueint : 0;
    } else if (!strcmp(type, "ByteLevel")) {
        d->type = DEC_BYTELEVEL;
        t->growth *= 3;
    } else if (!strcmp(type, "Metaspace")) {
        d->type = DEC_METASPACE;
        if ((rc = parse_replacement(j, d->repl, &d->repln))) return rc;
        enum prepend_scheme ps;
        if ((rc = parse_prepend_scheme(j, &ps))) return rc;
        d->strip_first = ps != PS_NEVER;
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported decoder type \"%s\"", type);
    }
    return 0;
}

static int32_t vocab_lookup(const struct tokenizer *t, const char *s, size_t n) {
    int32_t id;
    return smap_get(&t->vocab, s, n, &id) ? id : -1;
}

/* The id for a post-processor's special token: tokenizer.json's special_tokens map gives
 * ids; otherwise the token's string, as the JS port looks it up. */
static int template_token(struct tokenizer *t, const cJSON *specials, const char *name,
                          int32_t *out, int *n) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
    if (cJSON_IsArray(ids)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, ids) {
            if (*n >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[(*n)++] = (int32_t)it->valuedouble;
        }
        return 0;
    }
    int32_t id = vocab_lookup(t, name, strlen(name));
    if (id < 0) return folio_err(FOLIO_EINVAL, "tokenizer: template token \"%s\" not in vocab", name);
    if (*n >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
    out[(*n)++] = id;
    return 0;
}

/* Composes one post-processor onto t->tmpl (which starts as just the sequence, -1). */
static int parse_post(struct tokenizer *t, const cJSON *j) {
    int rc;
    const char *type = jstr(j, "type");
    int32_t wrap[MAX_TEMPLATE];
    int nw = 0;
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors")) {
            if ((rc = parse_post(t, it))) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "single")) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (st) {
                const char *name = jstr(st, "id");
                if (!name) return folio_err(FOLIO_EINVAL, "tokenizer: bad template SpecialToken");
                if ((rc = template_token(t, specials, name, wrap, &nw))) return rc;
            } else if (sq) {
                const char *id = jstr(sq, "id");
                if (id && !strcmp(id, "A")) {
                    if (nw >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
                    wrap[nw++] = -1;
                }
            }
        }
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "cls"), 1);
        const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "sep"), 1);
        if (!cJSON_IsNumber(cls) || !cJSON_IsNumber(sep))
            return folio_err(FOLIO_EINVAL, "tokenizer: %s without cls/sep ids", type);
        wrap[nw++] = (int32_t)cls->valuedouble;
        wrap[nw++] = -1;
        wrap[nw++] = (int32_t)sep->valuedouble;
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported post_processor type \"%s\"", type);
    }
    int32_t out[MAX_TEMPLATE];
    int no = 0;
    for (int i = 0; i < nw; i++) {
        if (wrap[i] != -1) {
            if (no >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[no++] = wrap[i];
            continue;
        }
        for (int k = 0; k < t->n_tmpl; k++) {
            if (no >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[no++] = t->tmpl[k];
        }
    }
    memcpy(t->tmpl, out, (size_t)no * sizeof *out);
    t->n_tmpl = no;
    return 0;
}

/* A string's id for merges: vocabulary strings keep theirs; others get ids past the
 * vocabulary so that merges through them still apply (the JS port merges strings). */
static int merge_id(struct tokenizer *t, const char *s, size_t n, int32_t *id) {
    if (smap_get(&t->vocab, s, n, id)) return 0;
    const char *copy = arena_dup(&t->arena, s, n);
    if (!copy) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    *id = t->n_ids++;
    return smap_set(&t->vocab, copy, n, *id);
}

static int load_merges(struct tokenizer *t, const cJSON *merges) {
    int rc;
    int n = cJSON_GetArraySize(merges);
    struct sbuf cat = {0};
    if ((rc = pmap_init(&t->merges, (size_t)n + 1))) return rc;
    int rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t an, bn;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring;
            const char *sp = strchr(s, ' ');
            if (!sp) {
                rc = folio_err(FOLIO_EINVAL, "tokenizer: merge \"%s\" has no space", s);
                goto out;
            }
            a = s;
            an = (size_t)(sp - s);
            b = sp + 1;
            const char *sp2 = strchr(b, ' '); /* JS split(" ", 2) drops anything after */
            bn = sp2 ? (size_t)(sp2 - b) : strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) && cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            an = strlen(a);
            bn = strlen(b);
        } else {
            rc = folio_err(FOLIO_EINVAL, "tokenizer: merge %d is neither \"a b\" nor [a, b]", rank);
            goto out;
        }
        int32_t ia, ib, im;
        cat.n = 0;
        if ((rc = merge_id(t, a, an, &ia)) || (rc = merge_id(t, b, bn, &ib)) ||
            (rc = sbuf_put(&cat, a, an)) || (rc = sbuf_put(&cat, b, bn)) ||
            (rc = merge_id(t, cat.p, cat.n, &im)))
            goto out;
        struct pmap_slot *sl = pmap_slot(&t->merges, pair_key(ia, ib));
        sl->key = pair_key(ia, ib); /* a repeated pair takes the later rank, as a JS Map does */
        sl->rank = rank++;
        sl->id = im;
    }
    rc = 0;
out:
    free(cat.p);
    return rc;
}

static int build_matcher(struct matcher *m, const struct added_tok *added, int n, int normalized) {
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        const char *s = normalized ? added[i].norm : (added[i].norm ? NULL : added[i].content);
        size_t len = normalized ? added[i].normlen : added[i].len;
        if (s && len) cnt++;
    }
    m->e = calloc((size_t)cnt + 1, sizeof *m->e);
    if (!m->e) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    int k = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = k;
        for (int i = 0; i < n; i++) {
            const char *s = normalized ? added[i].norm : (added[i].norm ? NULL : added[i].content);
            size_t len = normalized ? added[i].normlen : added[i].len;
            if (!s || !len || (unsigned char)s[0] != b) continue;
            int pos = k++;
            /* insertion sort: longest first */
            while (pos > m->start[b] && m->e[pos - 1].len < len) {
                m->e[pos] = m->e[pos - 1];
                pos--;
            }
            m->e[pos].s = s;
            m->e[pos].len = len;
        }
    }
    m->start[256] = k;
    return 0;
}

static int normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out,
                     pcre2_match_data *md, struct ivec *scratch);

static int load_added(struct tokenizer *t, const cJSON *arr, pcre2_match_data *md) {
    int rc = 0;
    struct sbuf nb = {0};
    struct ivec scratch = {0};
    t->n_added = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)t->n_added + 1, sizeof *t->added);
    if (!t->added) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    if ((rc = smap_init(&t->added_map, (size_t)t->n_added * 2 + 1)) ||
        (rc = smap_init(&t->added_content, (size_t)t->n_added + 1)))
        goto out;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        struct added_tok *a = &t->added[i];
        const char *content = jstr(it, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!content || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8) {
            rc = folio_err(FOLIO_EINVAL, "tokenizer: added token %d lacks content or id", i);
            goto out;
        }
        a->len = strlen(content);
        if (!(a->content = arena_dup(&t->arena, content, a->len))) {
            rc = FOLIO_ENOMEM;
            goto out;
        }
        a->id = (int32_t)id->valuedouble;
        a->special = jbool(it, "special", 0);
        a->lstrip = jbool(it, "lstrip", 0);
        a->rstrip = jbool(it, "rstrip", 0);
        a->single_word = jbool(it, "single_word", 0);
        a->normalized = jbool(it, "normalized", !a->special);
        if ((rc = smap_set(&t->vocab, a->content, a->len, a->id)) ||
            (rc = smap_set(&t->added_map, a->content, a->len, i)) ||
            (rc = smap_set(&t->added_content, a->content, a->len, i)))
            goto out;
        if (a->normalized && t->norm) {
            nb.n = 0;
            if ((rc = normalize(t->norm, a->content, a->len, &nb, md, &scratch))) goto out;
            if ((rc = sbuf_put(&nb, "", 0))) goto out;
            a->normlen = nb.n;
            if (!(a->norm = arena_dup(&t->arena, nb.p, nb.n))) {
                rc = FOLIO_ENOMEM;
                goto out;
            }
            if ((rc = smap_set(&t->added_map, a->norm, a->normlen, i))) goto out;
        }
        i++;
    }
    if ((rc = build_matcher(&t->m_raw, t->added, t->n_added, 0)) ||
        (rc = build_matcher(&t->m_norm, t->added, t->n_added, 1)))
        goto out;
out:
    free(nb.p);
    free(scratch.v);
    return rc;
}

static int read_json(const char *dir, const char *name, int required, cJSON **out) {
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    int rc = folio_path_join(path, sizeof path, dir, name);
    if (rc) return rc;
    *out = NULL;
    if (!required && !folio_file_exists(path)) return 0;
    if ((rc = folio_read_file(path, &text, &len))) return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return folio_err(FOLIO_EINVAL, "tokenizer: %s is not a JSON object", path);
    }
    return 0;
}

/* bos_token/eos_token in tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const struct tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? vocab_lookup(t, s, strlen(s)) : -1;
}

int tok_load(const char *dir, struct tokenizer **out) {
    int rc;
    cJSON *root = NULL, *cfg = NULL;
    pcre2_match_data *md = NULL;
    struct tokenizer *t = NULL;
    *out = NULL;
    pthread_once(&bytes_once, bytes_to_unicode_init);
    if ((rc = read_json(dir, "tokenizer.json", 1, &root))) goto out;
    if ((rc = read_json(dir, "tokenizer_config.json", 0, &cfg))) goto out;
    t = calloc(1, sizeof *t);
    md = pcre2_match_data_create(1, NULL);
    if (!t || !md) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    t->unk_id = t->bos_id = t->eos_id = -1;
    t->growth = 1;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model)) {
        rc = folio_err(FOLIO_EINVAL, "tokenizer: %s/tokenizer.json has no model", dir);
        goto out;
    }
    if (mtype ? strcmp(mtype, "BPE") != 0 : !cJSON_IsArray(merges)) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: unsupported model type \"%s\" (only BPE)",
                       mtype ? mtype : "?");
        goto out;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        rc = folio_err(FOLIO_EINVAL, "tokenizer: BPE model needs a vocab object and a merges array");
        goto out;
    }
    const char *cswp = jstr(model, "continuing_subword_prefix");
    const char *eows = jstr(model, "end_of_word_suffix");
    if ((cswp && *cswp) || (eows && *eows)) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: continuing_subword_prefix/end_of_word_suffix "
                                     "are not supported");
        goto out;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: BPE dropout is not supported");
        goto out;
    }
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);

    /* vocabulary and added tokens first, so that ids are known before merges */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int nv = cJSON_GetArraySize(vocab), na = cJSON_GetArraySize(added);
    if ((rc = smap_init(&t->vocab, (size_t)nv + (size_t)na + 1024))) goto out;
    int32_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8) {
            rc = folio_err(FOLIO_EINVAL, "tokenizer: bad id for vocab entry \"%s\"", it->string);
            goto out;
        }
        size_t n = strlen(it->string);
        const char *s = arena_dup(&t->arena, it->string, n);
        if (!s) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        int32_t id = (int32_t)it->valuedouble;
        if ((rc = smap_set(&t->vocab, s, n, id))) goto out;
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble <= 1e8 && (int32_t)id->valuedouble > max_id)
            max_id = (int32_t)id->valuedouble;
    }
    t->vocab_size = max_id + 1;
    t->n_ids = t->vocab_size;

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        if (!(t->norm = calloc(1, sizeof *t->norm))) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = parse_normalizer(t, norm, t->norm))) goto out;
    }
    if ((rc = load_added(t, added, md))) goto out;

    /* id -> piece table; added tokens win over the model's own strings (the JS port's
     * vocab[id] = content) */
    t->piece = calloc((size_t)t->vocab_size + 1, sizeof *t->piece);
    t->piece_len = calloc((size_t)t->vocab_size + 1, sizeof *t->piece_len);
    t->special = calloc((size_t)t->vocab_size + 1, 1);
    if (!t->piece || !t->piece_len || !t->special) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const struct smap_slot *sl = &t->vocab.slots[i];
        if (sl->s && sl->val >= 0 && sl->val < t->vocab_size) {
            t->piece[sl->val] = sl->s;
            t->piece_len[sl->val] = sl->len;
        }
    }
    for (int i = 0; i < t->n_added; i++) {
        const struct added_tok *a = &t->added[i];
        t->piece[a->id] = a->content;
        t->piece_len[a->id] = (uint32_t)a->len;
        if (a->special) t->special[a->id] = 1;
    }
    for (int i = 0; i < t->vocab_size; i++)
        if (t->piece[i] && t->piece_len[i] > t->max_piece) t->max_piece = t->piece_len[i];

    if ((rc = load_merges(t, merges))) goto out;

    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk_id = vocab_lookup(t, unk, strlen(unk));
    if (t->unk_id >= t->vocab_size) t->unk_id = -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_lookup(t, name, 6);
        if (t->byte_id[b] >= t->vocab_size) t->byte_id[b] = -1;
    }

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre)) {
        if (!(t->pre = calloc(1, sizeof *t->pre))) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = parse_pretok(t, pre, t->pre))) goto out;
    }
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    t->tmpl[0] = -1;
    t->n_tmpl = 1;
    if (post && !cJSON_IsNull(post)) {
        t->has_post = true;
        if ((rc = parse_post(t, post))) goto out;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec)) {
        t->has_decoder = true;
        t->dec = calloc((size_t)count_decoders(dec) + 1, sizeof *t->dec);
        if (!t->dec) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = parse_decoder(t, dec))) goto out;
    }

    t->cleanup = true;
    if (cfg) {
        t->add_bos = jbool(cfg, "add_bos_token", 0);
        t->add_eos = jbool(cfg, "add_eos_token", 0);
        t->cleanup = jbool(cfg, "clean_up_tokenization_spaces", 1);
        t->bos_id = config_token(t, cfg, "bos_token");
        t->eos_id = config_token(t, cfg, "eos_token");
        if (t->bos_id >= t->vocab_size) t->bos_id = -1;
        if (t->eos_id >= t->vocab_size) t->eos_id = -1;
        /* skip_special_tokens also drops these, as the JS port and transformers do */
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens")) {
            const char *s = cJSON_IsString(it) ? it->valuestring : jstr(it, "content");
            int32_t id = s ? vocab_lookup(t, s, strlen(s)) : -1;
            if (id >= 0 && id < t->vocab_size) t->special[id] = 1;
        }
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (md) pcre2_match_data_free(md);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    tok_free(t);
    return rc;
}

void tok_free(struct tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->piece_len);
    free(t->special);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->added);
    free(t->added_map.slots);
    free(t->added_content.slots);
    free(t->m_raw.e);
    free(t->m_norm.e);
    free_normalizer(t->norm);
    free(t->norm);
    free_pretok(t->pre);
    free(t->pre);
    free(t->dec);
    arena_free(&t->arena);
    free(t);
}

/* ------------------------------------------------------------------------------------------
 * Encoding */

struct sym {
    uint32_t start, len, pos; /* bytes in the word; pos: first character's index */
    int32_t id, prev, next;
};

struct hent {
    uint32_t rank, pos;
    int32_t left, right, idl, idr;
};

struct enc {
    pcre2_match_data *md;
    struct sbuf nbuf, tmp;
    struct plist pa, pb;
    struct ivec matches, parts, sub, out;
    struct sym *syms;
    int symcap;
    struct hent *heap;
    int heapn, heapcap;
};

static void enc_free(struct enc *e) {
    if (e->md) pcre2_match_data_free(e->md);
    free(e->nbuf.p);
    free(e->tmp.p);
    plist_free(&e->pa);
    plist_free(&e->pb);
    free(e->matches.v);
    free(e->parts.v);
    free(e->sub.v);
    free(e->out.v);
    free(e->syms);
    free(e->heap);
}

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
static int normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out,
                     pcre2_match_data *md, struct ivec *scratch) {
    int rc = 0;
    switch (nm->type) {
    case NRM_SEQ: {
        struct sbuf a = {0}, b = {0};
        if ((rc = sbuf_put(&a, s, n))) goto seq_out;
        for (int i = 0; i < nm->nkids; i++) {
            b.n = 0;
            if ((rc = sbuf_put(&b, "", 0)) || (rc = normalize(&nm->kids[i], a.p, a.n, &b, md, scratch)))
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
        size_t a = nm->strip_left ? trim_start_len(s, n) : 0;
        size_t z = nm->strip_right ? trim_end_len(s + a, n - a) : 0;
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
        if (prev < ms && ((rc = ivec_push(pc, (int32_t)prev)) || (rc = ivec_push(pc, (int32_t)ms)) ||
                          (rc = ivec_push(pc, p->invert ? 1 : 0))))
            return rc;
        if ((rc = ivec_push(pc, (int32_t)ms)) || (rc = ivec_push(pc, (int32_t)me)) ||
            (rc = ivec_push(pc, p->invert ? 0 : 1)))
            return rc;
        prev = me;
    }
    if (prev < n && ((rc = ivec_push(pc, (int32_t)prev)) || (rc = ivec_push(pc, (int32_t)n)) ||
                     (rc = ivec_push(pc, p->invert ? 1 : 0))))
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
        if (en > st && (rc = plist_push(out, s + st, en - st))) return rc;
    }
    return 0;
}

static int pretok_piece(const struct tokenizer *t, const struct pretok *p, struct enc *e,
                        const char *s, size_t n, int section_index, struct plist *out) {
    int rc = 0;
    switch (p->type) {
    case PT_SEQ:
        return FOLIO_EINVAL; /* handled by pretokenize() */
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
                    pos = ms + utf8_len_at(x + ms);
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
        if (!p->split) return plist_push(out, b->p, b->n);
        /* split before every replacement character (MergedWithNext) */
        size_t st = 0;
        for (size_t i = 0; i + p->repln <= b->n; i++) {
            if (i > st && memcmp(b->p + i, p->repl, p->repln) == 0) {
                if ((rc = plist_push(out, b->p + st, i - st))) return rc;
                st = i;
            }
        }
        if (b->n > st) return plist_push(out, b->p + st, b->n - st);
        return 0;
    }
    case PT_DIGITS: {
        /* ASCII digits, as the JS port's \d: runs of non-digits, digit runs or single digits */
        size_t st = 0;
        for (size_t i = 1; i <= n; i++) {
            bool d0 = s[i - 1] >= '0' && s[i - 1] <= '9';
            bool d1 = i < n && s[i] >= '0' && s[i] <= '9';
            if (i == n || d0 != d1 || (d0 && p->individual_digits)) {
                if ((rc = plist_push(out, s + st, i - st))) return rc;
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
static int pretokenize(const struct tokenizer *t, struct enc *e, const char *s, size_t n,
                       int section_index, struct plist **res) {
    int rc;
    struct plist *cur = &e->pa, *nxt = &e->pb;
    plist_clear(cur);
    if ((rc = plist_push(cur, s, n))) return rc;
    if (!t->pre) {
        *res = cur;
        return 0;
    }
    const struct pretok *steps = t->pre->type == PT_SEQ ? t->pre->kids : t->pre;
    int nsteps = t->pre->type == PT_SEQ ? t->pre->nkids : 1;
    for (int k = 0; k < nsteps; k++) {
        if (steps[k].type == PT_SEQ)
            return folio_err(FOLIO_EUNSUP, "tokenizer: nested pre_tokenizer Sequence");
        plist_clear(nxt);
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

static int heap_less(const struct hent *a, const struct hent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(struct enc *e, struct hent h) {
    if (e->heapn == e->heapcap) {
        int cap = e->heapcap ? e->heapcap * 2 : 256;
        struct hent *v = realloc(e->heap, (size_t)cap * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        e->heap = v;
        e->heapcap = cap;
    }
    int i = e->heapn++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!heap_less(&h, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = h;
    return 0;
}

static struct hent heap_pop(struct enc *e) {
    struct hent top = e->heap[0], last = e->heap[--e->heapn];
    int i = 0, n = e->heapn;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!heap_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0) e->heap[i] = last;
    return top;
}

static int try_pair(const struct tokenizer *t, struct enc *e, int l) {
    struct sym *s = e->syms;
    int r = s[l].next;
    if (r < 0 || s[l].id < 0 || s[r].id < 0) return 0;
    const struct pmap_slot *sl = pmap_slot(&t->merges, pair_key(s[l].id, s[r].id));
    if (sl->key == UINT64_MAX) return 0;
    struct hent h = {(uint32_t)sl->rank, s[l].pos, l, r, s[l].id, s[r].id};
    return heap_push(e, h);
}

/* Emits the ids for one BPE output piece: its id, or its bytes as <0xHH> tokens, or unk. */
static int emit_piece(const struct tokenizer *t, struct enc *e, const char *w, const struct sym *s) {
    if (s->id >= 0 && s->id < t->vocab_size) return ivec_push(&e->sub, s->id);
    int rc;
    if (t->byte_fallback) {
        bool all = true;
        for (uint32_t i = 0; i < s->len; i++)
            if (t->byte_id[(unsigned char)w[s->start + i]] < 0) all = false;
        if (all) {
            for (uint32_t i = 0; i < s->len; i++)
                if ((rc = ivec_push(&e->sub, t->byte_id[(unsigned char)w[s->start + i]]))) return rc;
            return 0;
        }
    }
    if (t->unk_id >= 0) return ivec_push(&e->sub, t->unk_id);
    return 0; /* no unk token: the JS port drops the piece */
}

static int bpe_word(const struct tokenizer *t, struct enc *e, const char *w, size_t n) {
    int rc;
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = vocab_lookup(t, w, n);
        if (id >= 0 && id < t->vocab_size) return ivec_push(&e->sub, id);
    }
    /* one symbol per character */
    int ns = 0;
    for (size_t i = 0; i < n; ns++) i += utf8_len_at(w + i);
    if (ns > e->symcap) {
        struct sym *v = realloc(e->syms, (size_t)ns * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        e->syms = v;
        e->symcap = ns;
    }
    struct sym *s = e->syms;
    size_t off = 0;
    for (int k = 0; k < ns; k++) {
        size_t l = utf8_len_at(w + off);
        if (off + l > n) l = n - off;
        s[k].start = (uint32_t)off;
        s[k].len = (uint32_t)l;
        s[k].pos = (uint32_t)k;
        s[k].id = vocab_lookup(t, w + off, l);
        s[k].prev = k - 1;
        s[k].next = k + 1 < ns ? k + 1 : -1;
        off += l;
    }
    e->heapn = 0;
    for (int k = 0; k + 1 < ns; k++)
        if ((rc = try_pair(t, e, k))) return rc;
    while (e->heapn > 0) {
        struct hent h = heap_pop(e);
        struct sym *l = &s[h.left];
        if (l->len == 0 || l->next != h.right || l->id != h.idl || s[h.right].id != h.idr) continue;
        struct sym *r = &s[h.right];
        const struct pmap_slot *sl = pmap_slot(&t->merges, pair_key(h.idl, h.idr));
        l->id = sl->id;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = h.left;
        r->len = 0;
        r->id = -1;
        if (l->prev >= 0 && (rc = try_pair(t, e, l->prev))) return rc;
        if ((rc = try_pair(t, e, h.left))) return rc;
    }
    for (int k = 0; k >= 0; k = s[k].next)
        if ((rc = emit_piece(t, e, w, &s[k]))) return rc;
    return 0;
}

/* Consecutive unknown tokens become one (fuse_unk), over one model call as the JS port. */
static void fuse_unk(const struct tokenizer *t, struct ivec *v) {
    if (!t->fuse_unk || t->unk_id < 0) return;
    int w = 0;
    for (int i = 0; i < v->n; i++) {
        if (v->v[i] == t->unk_id && w > 0 && v->v[w - 1] == t->unk_id) continue;
        v->v[w++] = v->v[i];
    }
    v->n = w;
}

struct section {
    size_t off, len;
};

/* Splits s on the added tokens of m (leftmost, then longest), into sections that are either
 * plain text or exactly one added token. */
static int split_added(const struct matcher *m, const char *s, size_t n, struct section **out,
                       int *nout, int *cap) {
    size_t start = 0, i = 0;
    int cnt = 0;
#define PUSH_SEC(o, l)                                                                     \
    do {                                                                                   \
        if (cnt == *cap) {                                                                 \
            int c2 = *cap ? *cap * 2 : 16;                                                 \
            struct section *v2 = realloc(*out, (size_t)c2 * sizeof *v2);                   \
            if (!v2) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");           \
            *out = v2;                                                                     \
            *cap = c2;                                                                     \
        }                                                                                  \
        (*out)[cnt].off = (o);                                                             \
        (*out)[cnt].len = (l);                                                             \
        cnt++;                                                                             \
    } while (0)
    while (i < n) {
        unsigned char b = (unsigned char)s[i];
        size_t mlen = 0;
        for (int k = m->start[b]; k < m->start[b + 1]; k++) {
            if (m->e[k].len <= n - i && memcmp(s + i, m->e[k].s, m->e[k].len) == 0) {
                mlen = m->e[k].len;
                break;
            }
        }
        if (mlen) {
            if (i > start) PUSH_SEC(start, i - start);
            PUSH_SEC(i, mlen);
            i += mlen;
            start = i;
        } else {
            i++;
        }
    }
    if (start < n) PUSH_SEC(start, n - start);
#undef PUSH_SEC
    *nout = cnt;
    return 0;
}

static int added_index(const struct tokenizer *t, const char *s, size_t n) {
    int32_t idx;
    return n && smap_get(&t->added_map, s, n, &idx) ? idx : -1;
}

/* The lstrip/rstrip pass: an added token eats the whitespace next to it. */
static void strip_around_added(const struct tokenizer *t, const char *s, struct section *sec, int n) {
    for (int i = 0; i < n; i++) {
        int a = added_index(t, s + sec[i].off, sec[i].len);
        if (a < 0) continue;
        if (t->added[a].lstrip && i > 0) sec[i - 1].len -= trim_end_len(s + sec[i - 1].off, sec[i - 1].len);
        if (t->added[a].rstrip && i < n - 1) {
            size_t k = trim_start_len(s + sec[i + 1].off, sec[i + 1].len);
            sec[i + 1].off += k;
            sec[i + 1].len -= k;
        }
    }
}

static int encode_text(const struct tokenizer *t, struct enc *e, const char *text, size_t len) {
    int rc = 0;
    struct section *outer = NULL, *inner = NULL;
    int n_outer = 0, cap_outer = 0, n_inner = 0, cap_inner = 0;
    if ((rc = split_added(&t->m_raw, text, len, &outer, &n_outer, &cap_outer))) goto out;
    strip_around_added(t, text, outer, n_outer);
    for (int i = 0; i < n_outer; i++) {
        const char *s = text + outer[i].off;
        size_t n = outer[i].len;
        if (n == 0) continue;
        int a = added_index(t, s, n);
        if (a >= 0) {
            if ((rc = ivec_push(&e->out, t->added[a].id))) goto out;
            continue;
        }
        e->nbuf.n = 0;
        if ((rc = sbuf_put(&e->nbuf, "", 0))) goto out;
        if (t->norm) {
            if ((rc = normalize(t->norm, s, n, &e->nbuf, e->md, &e->matches))) goto out;
        } else if ((rc = sbuf_put(&e->nbuf, s, n))) {
            goto out;
        }
        if (e->nbuf.n == 0) continue;
        const char *ns = e->nbuf.p;
        if ((rc = split_added(&t->m_norm, ns, e->nbuf.n, &inner, &n_inner, &cap_inner))) goto out;
        strip_around_added(t, ns, inner, n_inner);
        for (int j = 0; j < n_inner; j++) {
            const char *ss = ns + inner[j].off;
            size_t sn = inner[j].len;
            if (sn == 0) continue;
            int b = added_index(t, ss, sn);
            if (b >= 0) {
                if ((rc = ivec_push(&e->out, t->added[b].id))) goto out;
                continue;
            }
            struct plist *pieces = NULL;
            if ((rc = pretokenize(t, e, ss, sn, i, &pieces))) goto out;
            e->sub.n = 0;
            for (int k = 0; k < pieces->n; k++) {
                if ((rc = bpe_word(t, e, pieces->buf.p + pieces->v[k].off, pieces->v[k].len))) goto out;
            }
            fuse_unk(t, &e->sub);
            for (int k = 0; k < e->sub.n; k++)
                if ((rc = ivec_push(&e->out, e->sub.v[k]))) goto out;
        }
    }
out:
    free(outer);
    free(inner);
    return rc;
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, int add_special_tokens,
               int32_t **ids_out, int *n_out) {
    int rc = 0;
    struct enc e = {0};
    struct ivec res = {0};
    *ids_out = NULL;
    *n_out = 0;
    if (!t || (!text && len)) return folio_err(FOLIO_EINVAL, "tok_encode: NULL argument");
    if (len > (size_t)INT32_MAX / 4) return folio_err(FOLIO_EINVAL, "tok_encode: text too long");
    if (!utf8_valid(text, len)) return folio_err(FOLIO_EINVAL, "tok_encode: text is not valid UTF-8");
    if (!(e.md = pcre2_match_data_create(1, NULL))) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    if ((rc = encode_text(t, &e, text ? text : "", len))) goto out;
    if (add_special_tokens && t->has_post) {
        for (int i = 0; i < t->n_tmpl; i++) {
            if (t->tmpl[i] != -1) {
                if ((rc = ivec_push(&res, t->tmpl[i]))) goto out;
                continue;
            }
            for (int k = 0; k < e.out.n; k++)
                if ((rc = ivec_push(&res, e.out.v[k]))) goto out;
        }
    } else {
        /* no post-processor: tokenizer_config.json's add_bos_token/add_eos_token decide, as
         * transformers' Llama tokenizers do */
        bool bos = add_special_tokens && t->add_bos && t->bos_id >= 0;
        bool eos = add_special_tokens && t->add_eos && t->eos_id >= 0;
        if (bos && (rc = ivec_push(&res, t->bos_id))) goto out;
        for (int k = 0; k < e.out.n; k++)
            if ((rc = ivec_push(&res, e.out.v[k]))) goto out;
        if (eos && (rc = ivec_push(&res, t->eos_id))) goto out;
    }
    if (!res.v && !(res.v = malloc(sizeof *res.v))) { /* keep *ids_out non-NULL */
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    *ids_out = res.v;
    *n_out = res.n;
    res.v = NULL;
out:
    free(res.v);
    enc_free(&e);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Decoding. A token list lives as spans over a byte buffer; each decoder step rewrites list
 * A into list B (the JS port's decode_chain), and the result is their concatenation. */

struct dlist {
    struct span *v;
    int n;
    char *buf;
    size_t len;
};

static size_t piece_bytes(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size && t->piece[id] ? t->piece_len[id] : 0;
}

/* Bytes one buffer needs for `total` piece bytes over n tokens. */
static size_t dec_buf_size(const struct tokenizer *t, size_t total, int n) {
    return total * t->growth + (size_t)n + 16;
}

static void dl_add(struct dlist *d, const char *s, size_t n) {
    memcpy(d->buf + d->len, s, n);
    d->v[d->n].off = d->len;
    d->v[d->n].len = n;
    d->len += n;
    d->n++;
}

static int is_byte_token(const char *s, size_t n, unsigned char *out) {
    /* "<0xHH>": the JS port parses with parseInt(.., 16), so "<0xA?>" reads as one digit */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    int v = 0, k = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + d;
        k++;
    }
    if (k == 0) return 0;
    *out = (unsigned char)v;
    return 1;
}

static int decode_step(const struct tokenizer *t, const struct dec_step *d, const struct dlist *a,
                       struct dlist *b, int stream, int *incomplete) {
    b->n = 0;
    b->len = 0;
    switch (d->type) {
    case DEC_REPLACE:
        for (int i = 0; i < a->n; i++) {
            const char *s = a->buf + a->v[i].off;
            size_t n = a->v[i].len, st = b->len;
            for (size_t k = 0; k < n;) {
                if (k + d->patn <= n && memcmp(s + k, d->pat, d->patn) == 0) {
                    memcpy(b->buf + b->len, d->content, d->contentn);
                    b->len += d->contentn;
                    k += d->patn;
                } else {
                    b->buf[b->len++] = s[k++];
                }
            }
            b->v[b->n].off = st;
            b->v[b->n].len = b->len - st;
            b->n++;
        }
        return 0;
    case DEC_BYTEFALLBACK:
        for (int i = 0; i < a->n;) {
            unsigned char byte;
            if (!is_byte_token(a->buf + a->v[i].off, a->v[i].len, &byte)) {
                dl_add(b, a->buf + a->v[i].off, a->v[i].len);
                i++;
                continue;
            }
            /* a run of byte tokens decodes as one string; the bytes go to the tail of the
             * output buffer first (the run is at most as long as its 6-byte tokens) */
            int j = i;
            unsigned char *raw = (unsigned char *)a->buf + a->v[i].off; /* reuse: shrinks */
            size_t nr = 0;
            while (j < a->n && is_byte_token(a->buf + a->v[j].off, a->v[j].len, &byte)) {
                raw[nr++] = byte;
                j++;
            }
            int at_end = j == a->n;
            size_t st = b->len;
            b->len += utf8_lossy(raw, nr, b->buf + b->len, stream && at_end,
                                 at_end ? incomplete : NULL);
            b->v[b->n].off = st;
            b->v[b->n].len = b->len - st;
            b->n++;
            i = j;
        }
        return 0;
    case DEC_FUSE: {
        size_t st = b->len;
        for (int i = 0; i < a->n; i++) {
            memcpy(b->buf + b->len, a->buf + a->v[i].off, a->v[i].len);
            b->len += a->v[i].len;
        }
        b->v[0].off = st;
        b->v[0].len = b->len - st;
        b->n = 1;
        return 0;
    }
    case DEC_STRIP:
        for (int i = 0; i < a->n; i++) {
            const char *s = a->buf + a->v[i].off;
            size_t n = a->v[i].len, lo = 0, hi = n;
            for (int k = 0; k < d->start && lo < n; k++) {
                size_t adv;
                if (utf8_cp(s + lo, &adv) != d->strip_cp) break;
                lo += adv;
            }
            for (int k = 0; k < d->stop && hi > lo; k++) {
                size_t st = hi - 1;
                while (st > lo && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
                size_t adv;
                if (utf8_cp(s + st, &adv) != d->strip_cp) break;
                hi = st;
            }
            dl_add(b, s + lo, hi - lo);
        }
        return 0;
    case DEC_BYTELEVEL:
        for (int i = 0; i < a->n;) {
            int32_t idx;
            if (smap_get(&t->added_content, a->buf + a->v[i].off, a->v[i].len, &idx)) {
                dl_add(b, a->buf + a->v[i].off, a->v[i].len);
                i++;
                continue;
            }
            /* a run of ordinary tokens: map characters back to bytes, decode once. The bytes
             * never outgrow the characters, so they are gathered in place. */
            int j = i;
            unsigned char *raw = (unsigned char *)a->buf + a->v[i].off;
            size_t nr = 0;
            while (j < a->n && !smap_get(&t->added_content, a->buf + a->v[j].off, a->v[j].len, &idx)) {
                const char *s = a->buf + a->v[j].off;
                size_t n = a->v[j].len;
                /* A character outside the byte map makes the Rust decoder keep the token's
                 * own bytes; check before overwriting. */
                bool mapped = true;
                for (size_t k = 0; k < n;) {
                    size_t adv;
                    uint32_t cp = utf8_cp(s + k, &adv);
                    if (cp >= 324 || cp_to_byte[cp] < 0) { mapped = false; break; }
                    k += adv;
                }
                if (mapped) {
                    for (size_t k = 0; k < n;) {
                        size_t adv;
                        uint32_t cp = utf8_cp(s + k, &adv);
                        raw[nr++] = (unsigned char)cp_to_byte[cp];
                        k += adv;
                    }
                } else {
                    memmove(raw + nr, s, n);
                    nr += n;
                }
                j++;
            }
            int at_end = j == a->n;
            size_t st = b->len;
            b->len += utf8_lossy(raw, nr, b->buf + b->len, stream && at_end,
                                 at_end ? incomplete : NULL);
            b->v[b->n].off = st;
            b->v[b->n].len = b->len - st;
            b->n++;
            i = j;
        }
        return 0;
    case DEC_METASPACE:
        for (int i = 0; i < a->n; i++) {
            const char *s = a->buf + a->v[i].off;
            size_t n = a->v[i].len, st = b->len;
            for (size_t k = 0; k < n;) {
                if (k + d->repln <= n && memcmp(s + k, d->repl, d->repln) == 0) {
                    b->buf[b->len++] = ' ';
                    k += d->repln;
                } else {
                    b->buf[b->len++] = s[k++];
                }
            }
            if (i == 0 && d->strip_first && b->len > st && b->buf[st] == ' ') {
                memmove(b->buf + st, b->buf + st + 1, b->len - st - 1);
                b->len--;
            }
            b->v[b->n].off = st;
            b->v[b->n].len = b->len - st;
            b->n++;
        }
        return 0;
    }
    return 0;
}

/* work layout: [spans A | spans B | buffer A | buffer B] */
static int decode_core(const struct tokenizer *t, const int32_t *ids, int n, int flags,
                       void *work, size_t bufcap, const char **text, size_t *len, int *incomplete) {
    struct dlist a, b;
    a.v = work;
    b.v = a.v + n + 1;
    a.buf = (char *)(b.v + n + 1);
    b.buf = a.buf + bufcap;
    a.n = 0;
    a.len = 0;
    *incomplete = 0;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->piece[id]) continue;
        if ((flags & TOK_DECODE_SKIP_SPECIAL) && t->special[id]) continue;
        dl_add(&a, t->piece[id], t->piece_len[id]);
    }
    for (int k = 0; k < t->n_dec; k++) {
        int inc = 0;
        decode_step(t, &t->dec[k], &a, &b, (flags & TOK_DECODE_STREAM) != 0, &inc);
        /* only the final byte-decoding step's view of the tail counts */
        if (t->dec[k].type == DEC_BYTEFALLBACK || t->dec[k].type == DEC_BYTELEVEL) *incomplete = inc;
        struct dlist tmp = a;
        a = b;
        b = tmp;
    }
    /* join (with spaces when there is no decoder, as HF does) */
    size_t o = 0;
    for (int i = 0; i < a.n; i++) {
        if (!t->has_decoder && i > 0) b.buf[o++] = ' ';
        memcpy(b.buf + o, a.buf + a.v[i].off, a.v[i].len);
        o += a.v[i].len;
    }
    if (!(flags & TOK_DECODE_STREAM)) *incomplete = 0;
    *text = b.buf;
    *len = o;
    return 0;
}

size_t tok_decode_work_size(const struct tokenizer *t, int n) {
    size_t bufcap = dec_buf_size(t, t->max_piece * (size_t)n, n);
    return 2 * ((size_t)n + 1) * sizeof(struct span) + 2 * bufcap;
}

int tok_decode_window(const struct tokenizer *t, const int32_t *ids, int n, int flags, void *work,
                      size_t work_cap, const char **text, size_t *len, int *incomplete) {
    if (n < 0 || work_cap < tok_decode_work_size(t, n))
        return folio_err(FOLIO_EINVAL, "tok_decode_window: work buffer too small");
    size_t bufcap = dec_buf_size(t, t->max_piece * (size_t)n, n);
    return decode_core(t, ids, n, flags, work, bufcap, text, len, incomplete);
}

int tok_cleans_up_spaces(const struct tokenizer *t) { return t->cleanup; }

/* transformers' clean_up_tokenization: ten replaceAll passes, in this order. */
size_t tok_clean_up_spaces(char *s, size_t n) {
    static const struct { const char *pat; size_t n; } pats[] = {
        {" .", 2}, {" ?", 2}, {" !", 2}, {" ,", 2}, {" ' ", 3},
        {" n't", 4}, {" 'm", 3}, {" 's", 3}, {" 've", 4}, {" 're", 4},
    };
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        const char *pat = pats[p].pat;
        size_t pn = pats[p].n, w = 0;
        /* " ' " -> "'" drops both spaces; the others drop the leading one */
        size_t drop_tail = p == 4 ? 1 : 0;
        for (size_t r = 0; r < n;) {
            if (r + pn <= n && memcmp(s + r, pat, pn) == 0) {
                memmove(s + w, s + r + 1, pn - 1 - drop_tail);
                w += pn - 1 - drop_tail;
                r += pn;
            } else {
                s[w++] = s[r++];
            }
        }
        n = w;
    }
    return n;
}

int tok_decode(const struct tokenizer *t, const int32_t *ids, int n, int skip_special,
               char **text_out, size_t *len_out) {
    *text_out = NULL;
    if (len_out) *len_out = 0;
    if (!t || n < 0 || (!ids && n)) return folio_err(FOLIO_EINVAL, "tok_decode: bad arguments");
    size_t total = 0;
    for (int i = 0; i < n; i++) total += piece_bytes(t, ids[i]);
    size_t bufcap = dec_buf_size(t, total, n);
    size_t wsize = 2 * ((size_t)n + 1) * sizeof(struct span) + 2 * bufcap;
    void *work = malloc(wsize);
    if (!work) return folio_err(FOLIO_ENOMEM, "tok_decode: out of memory");
    const char *text;
    size_t len;
    int inc;
    decode_core(t, ids, n, skip_special ? TOK_DECODE_SKIP_SPECIAL : 0, work, bufcap, &text, &len, &inc);
    char *res = malloc(len + 1);
    if (!res) {
        free(work);
        return folio_err(FOLIO_ENOMEM, "tok_decode: out of memory");
    }
    memcpy(res, text, len);
    free(work);
    if (t->cleanup) len = tok_clean_up_spaces(res, len);
    res[len] = '\0';
    *text_out = res;
    if (len_out) *len_out = len;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Lookups */

int tok_vocab_size(const struct tokenizer *t) { return t->vocab_size; }
int32_t tok_bos_id(const struct tokenizer *t) { return t->bos_id; }
int32_t tok_eos_id(const struct tokenizer *t) { return t->eos_id; }

int tok_is_special(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size && t->special[id];
}

int32_t tok_token_to_id(const struct tokenizer *t, const char *piece) {
    if (!piece) return -1;
    int32_t id = vocab_lookup(t, piece, strlen(piece));
    return id < t->vocab_size ? id : -1;
}

const char *tok_id_to_piece(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size ? t->piece[id] : NULL;
}
