/* tok_internal.h: the tokenizer's private types and the helpers its files share
 * (tokenizer.c, tok_normalize.c, tok_bpe.c, tok_decode.c, tok_util.c, tok_utf8.c).
 * Not a public header: nothing outside engine/tok*.c may include it; the API is tokenizer.h.
 * It exists so that the tokenizer can live in several files (one job each) while keeping
 * struct tokenizer's fields in one place. The tiny helpers on the encode hot path (map
 * lookups here, buffer pushes in base/sbuf.h, UTF-8 stepping in base/utf8.h) are static inline
 * so that splitting the files costs no calls across translation units. */
#ifndef FOLIO_TOK_INTERNAL_H
#define FOLIO_TOK_INTERNAL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include "text/tokenizer.h"

#include "base/arena.h"
#include "base/sbuf.h"
#include "base/utf8.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * Small containers (tok_util.c has the rest) */

struct ivec {
    int32_t *v;
    int n, cap;
};

static inline int tok_ivec_push(struct ivec *a, int32_t x) {
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

/* Strings that live as long as the tokenizer (vocabulary, added tokens, patterns) go in its
 * arena, in blocks of this size: a 128k vocabulary fills a few. */
#define TOK_ARENA_BLOCK (1u << 20)

/* ------------------------------------------------------------------------------------------
 * Hash maps: string -> int32 (vocabulary, added tokens) and id pair -> merge (tok_bpe.c). */

static inline uint64_t tok_hash_bytes(const char *s, size_t n) {
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

static inline struct smap_slot *tok_smap_find_slot(const struct smap *m, const char *s,
                                                   size_t n) {
    size_t mask = m->cap - 1, i = (size_t)tok_hash_bytes(s, n) & mask;
    for (;;) {
        struct smap_slot *sl = &m->slots[i];
        if (!sl->s || (sl->len == n && memcmp(sl->s, s, n) == 0)) return sl;
        i = (i + 1) & mask;
    }
}

static inline int tok_smap_get(const struct smap *m, const char *s, size_t n, int32_t *val) {
    if (!m->slots) return 0;
    struct smap_slot *sl = tok_smap_find_slot(m, s, n);
    if (!sl->s) return 0;
    *val = sl->val;
    return 1;
}

struct pmap_slot {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, id;
};

struct pmap {
    struct pmap_slot *slots;
    size_t cap;
};

/* ------------------------------------------------------------------------------------------
 * Pipeline components parsed from tokenizer.json. */

struct regex; /* a compiled PCRE2 pattern; tok_normalize.c */

/* A pattern as tokenizer.json writes it: {"String": "..."} or {"Regex": "..."}. */
struct pattern {
    char *lit; /* literal string, or NULL */
    size_t litn;
    struct regex *re;
};

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

static inline int32_t tok_vocab_lookup(const struct tokenizer *t, const char *s, size_t n) {
    int32_t id;
    return tok_smap_get(&t->vocab, s, n, &id) ? id : -1;
}

/* Per-call encoding scratch: tokenizer_encode owns it; the pre-tokenizer and BPE reuse its
 * buffers so that one call allocates only as its inputs grow. */
struct sym;  /* BPE symbol, tok_bpe.c */
struct hent; /* BPE merge-heap entry, tok_bpe.c */

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

/* ------------------------------------------------------------------------------------------
 * Shared functions. Each returns 0 or a negative FOLIO_E* code unless it says otherwise. */

/* tok_util.c */
int tok_plist_push(struct plist *l, const char *s, size_t n);
void tok_plist_clear(struct plist *l);
void tok_plist_free(struct plist *l);
int tok_smap_init(struct smap *m, size_t expect);
int tok_smap_set(struct smap *m, const char *s, size_t n, int32_t val);
const char *tok_jstr(const cJSON *o, const char *k);
int tok_jbool(const cJSON *o, const char *k, int dflt);

/* tok_utf8.c */
size_t tok_trim_start_len(const char *s, size_t n);
size_t tok_trim_end_len(const char *s, size_t n);

/* tok_normalize.c: normalizers, pre-tokenizers and the GPT-2 byte map */
extern int16_t tok_cp_to_byte[324]; /* ByteLevel code point -> byte, -1 when unmapped */
void tok_bytelevel_init(void);      /* fills the byte map once; thread-safe */
int tok_parse_replacement(const cJSON *j, char *repl, size_t *repln);
int tok_parse_prepend_scheme(const cJSON *j, enum prepend_scheme *ps);
int tok_parse_normalizer(struct tokenizer *t, const cJSON *j, struct normalizer *n);
void tok_free_normalizer(struct normalizer *n);
int tok_parse_pretok(struct tokenizer *t, const cJSON *j, struct pretok *p);
void tok_free_pretok(struct pretok *p);
int tok_normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out,
                  pcre2_match_data *md, struct ivec *scratch);
int tok_pretokenize(const struct tokenizer *t, struct enc *e, const char *s, size_t n,
                    int section_index, struct plist **res);

/* tok_bpe.c */
int tok_bpe_load_merges(struct tokenizer *t, const cJSON *merges);
int tok_bpe_encode_word(const struct tokenizer *t, struct enc *e, const char *w, size_t n);
void tok_bpe_fuse_unk(const struct tokenizer *t, struct ivec *v);

/* tok_decode.c */
int tok_count_decoders(const cJSON *j);
int tok_parse_decoder(struct tokenizer *t, const cJSON *j);

#endif
