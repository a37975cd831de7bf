/* detok: incremental detokenization over a bounded window of tokens (a variant of vLLM's
 * prefix_offset/read_offset technique). The window holds the last few tokens; we remember how
 * many bytes of its decode were already emitted. Each push decodes the window in stream mode
 * (an incomplete UTF-8 tail is left out: maximal-subpart decoding makes the result
 * prefix-stable) and emits what is new. The window then shrinks from the front to the
 * shortest suffix of tokens that, decoded on its own as a text start, still gives a tail of the
 * same text: everything after it decodes identically in either context (SentencePiece's
 * leading-space strip and the start of a byte run only affect the start of a window; a byte
 * run cut in the middle of a character decodes differently and fails the check).
 *
 * transformers' clean_up_tokenization (" ." -> ".", " 's" -> "'s", ...) depends on what
 * follows, so its input is held back from the last space that could still start one of its
 * patterns; see cut_point().
 *
 * Every buffer is sized in detok_create from the tokenizer's longest piece. */
#include "text/detok.h"

#include "text/tokenizer.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 32     /* tokens kept */
#define PROMPT_CTX 5  /* prompt tokens used as the first window (vLLM uses 5) */
#define SHRINK_TRY 4  /* shortest window suffixes tried after each push */

struct detok {
    const struct tokenizer *tok;
    int flags;                 /* TOK_DECODE_* for the window decodes */
    int32_t win[WINDOW];
    int n;
    size_t emitted;            /* bytes of the window's stream decode already emitted */
    void *work;                /* decode scratch for up to WINDOW tokens */
    char *cmp;                 /* a copy of one window's text, for tail_ok */
    size_t work_cap;
    size_t text_cap;           /* the most bytes one window decodes to */
    bool cleanup;
    char *cl;                  /* raw text held back for the clean-up pass */
    size_t cl_n, cl_cap;
    char *q;                   /* finished text the caller's buffer had no room for yet */
    size_t q_n, q_cap;
    bool done;
};

static int decode_ids(struct detok *d, const int32_t *ids, int n, int stream, const char **text,
                      size_t *len, int *incomplete) {
    return tok_decode_window(d->tok, ids, n, d->flags | (stream ? TOK_DECODE_STREAM : 0), d->work,
                             d->work_cap, text, len, incomplete);
}

static int queue_put(struct detok *d, const char *s, size_t n) {
    if (d->q_n + n > d->q_cap)
        return folio_err(FOLIO_EINVAL, "detok: output backlog full; pass a larger buffer "
                                       "(detok_max_delta bytes)");
    memcpy(d->q + d->q_n, s, n);
    d->q_n += n;
    return 0;
}

/* The clean-up patterns and the chains that the pass order creates (" ' " -> "'" can make a
 * " 's" that the later pass then rewrites), written as they appear in the raw text. A cut
 * is safe when no space just before it starts a proper prefix of one of these. */
static const char *const cleanup_spans[] = {
    " .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're",
    "  ' m", "  ' s", "  ' ve", "  ' re",
};

static bool open_pattern(const char *s, size_t n) {
    for (size_t i = 0; i < sizeof cleanup_spans / sizeof cleanup_spans[0]; i++) {
        size_t pn = strlen(cleanup_spans[i]);
        if (n < pn && memcmp(s, cleanup_spans[i], n) == 0) return true;
    }
    return false;
}

/* The longest prefix of cl whose clean-up no later text can change. The text before cl was
 * cut at such a point too, so no pattern reaches back into it. */
static size_t cut_point(const struct detok *d) {
    const char *s = d->cl;
    for (size_t p = d->cl_n; p > 0; p--) {
        if (p < d->cl_n && ((unsigned char)s[p] & 0xC0) == 0x80) continue;
        bool ok = true;
        for (size_t k = p > 6 ? p - 6 : 0; k < p && ok; k++)
            if (s[k] == ' ' && open_pattern(s + k, p - k)) ok = false;
        if (ok) return p;
    }
    return 0;
}

static int emit(struct detok *d, const char *s, size_t n, bool final) {
    if (!d->cleanup) return queue_put(d, s, n);
    if (d->cl_n + n > d->cl_cap) return folio_err(FOLIO_EINVAL, "detok: clean-up buffer full");
    memcpy(d->cl + d->cl_n, s, n);
    d->cl_n += n;
    size_t p = final ? d->cl_n : cut_point(d);
    if (p == 0) return 0;
    size_t m = tok_clean_up_spaces(d->cl, p);
    int rc = queue_put(d, d->cl, m);
    if (rc) return rc;
    memmove(d->cl, d->cl + p, d->cl_n - p);
    d->cl_n -= p;
    return 0;
}

/* Moves as much finished text as fits (whole characters) into out. */
static void drain(struct detok *d, char *out, size_t cap, size_t *n_out) {
    size_t n = d->q_n < cap - 1 ? d->q_n : cap - 1;
    while (n < d->q_n && n > 0 && ((unsigned char)d->q[n] & 0xC0) == 0x80) n--;
    memcpy(out, d->q, n);
    out[n] = '\0';
    memmove(d->q, d->q + n, d->q_n - n);
    d->q_n -= n;
    *n_out = n;
}

/* Whether win[from:n] decodes on its own (as a text start) to a non-empty tail of d->cmp
 * (the stream decode of win[0:n], cmp_len bytes), with the same pending incomplete character
 * or none: a lone continuation byte decodes to U+FFFD on its own, which must not pass for a
 * U+FFFD of the full text while in context that byte still waits for its character. */
static int tail_ok(struct detok *d, int from, size_t cmp_len, int cmp_inc, size_t *len_out,
                   bool *ok) {
    const char *t;
    size_t len;
    int inc;
    int rc = decode_ids(d, d->win + from, d->n - from, 1, &t, &len, &inc);
    if (rc) return rc;
    *ok = len > 0 && len <= cmp_len && inc == cmp_inc && memcmp(d->cmp + cmp_len - len, t, len) == 0;
    *len_out = len;
    return 0;
}

/* Drops the window's front down to the shortest suffix (of the last `tries` lengths) that
 * tail_ok accepts. full/full_len: the window's current stream decode. */
static int shrink(struct detok *d, const char *full, size_t full_len, int full_inc, int tries) {
    int rc;
    if (d->n <= 1 || full_len == 0) return 0;
    memcpy(d->cmp, full, full_len);
    int lo = d->n - tries > 1 ? d->n - tries : 1;
    for (int from = d->n - 1; from >= lo; from--) {
        size_t len;
        bool ok;
        if ((rc = tail_ok(d, from, full_len, full_inc, &len, &ok))) return rc;
        if (!ok) continue;
        memmove(d->win, d->win + from, (size_t)(d->n - from) * sizeof *d->win);
        d->n -= from;
        /* the emitted part of the old text ends inside the kept tail, or before it */
        size_t cut = full_len - len;
        d->emitted = d->emitted > cut ? d->emitted - cut : 0;
        return 0;
    }
    return 0;
}

/* Window full and no suffix stands in for it (tokens whose text is empty on their own):
 * drop the oldest token anyway. */
static int make_room(struct detok *d) {
    const char *t;
    size_t len;
    int inc, rc;
    if ((rc = decode_ids(d, d->win, d->n, 1, &t, &len, &inc))) return rc;
    if ((rc = shrink(d, t, len, inc, WINDOW))) return rc;
    if (d->n < WINDOW) return 0;
    memmove(d->win, d->win + 1, (size_t)(d->n - 1) * sizeof *d->win);
    d->n--;
    if ((rc = decode_ids(d, d->win, d->n, 1, &t, &len, &inc))) return rc;
    if (d->emitted > len) d->emitted = len;
    return 0;
}

struct detok *detok_create(const struct tokenizer *tok, const int32_t *prompt, int n_prompt,
                           int skip_special) {
    struct detok *d = calloc(1, sizeof *d);
    if (!d) goto fail;
    d->tok = tok;
    d->flags = skip_special ? TOK_DECODE_SKIP_SPECIAL : 0;
    d->cleanup = tok_cleans_up_spaces(tok) != 0;
    d->work_cap = tok_decode_work_size(tok, WINDOW);
    d->text_cap = d->work_cap / 2; /* one decode buffer bounds any window's text */
    d->cl_cap = d->text_cap + 16;
    d->q_cap = 4 * d->text_cap + 64;
    d->work = malloc(d->work_cap);
    d->cmp = malloc(d->text_cap);
    d->cl = malloc(d->cl_cap);
    d->q = malloc(d->q_cap);
    if (!d->work || !d->cmp || !d->cl || !d->q) goto fail;

    /* The prefix: the last few prompt tokens, more while they decode to nothing (skipped
     * specials and out-of-range ids vanish from the text, so they do not count). */
    int nctx = 0;
    for (int i = n_prompt - 1; i >= 0 && nctx < WINDOW / 2; i--) {
        if (prompt[i] < 0 || prompt[i] >= tokenizer_vocab_size(tok)) continue;
        if (skip_special && tokenizer_is_special(tok, prompt[i])) continue;
        nctx++;
    }
    for (int i = n_prompt - 1, k = nctx; i >= 0 && k > 0; i--) {
        if (prompt[i] < 0 || prompt[i] >= tokenizer_vocab_size(tok)) continue;
        if (skip_special && tokenizer_is_special(tok, prompt[i])) continue;
        d->win[--k] = prompt[i];
    }
    const char *t;
    size_t len = 0;
    int inc = 0;
    int take = nctx < PROMPT_CTX ? nctx : PROMPT_CTX;
    for (;; take++) {
        if (decode_ids(d, d->win + nctx - take, take, 1, &t, &len, &inc) != 0) goto fail;
        if (len > 0 || take == nctx) break;
    }
    memmove(d->win, d->win + nctx - take, (size_t)take * sizeof *d->win);
    d->n = take;
    d->emitted = len;
    return d;
fail:
    folio_err(FOLIO_ENOMEM, "detok: out of memory");
    detok_free(d);
    return NULL;
}

void detok_free(struct detok *d) {
    if (!d) return;
    free(d->work);
    free(d->cmp);
    free(d->cl);
    free(d->q);
    free(d);
}

size_t detok_max_delta(const struct detok *d) { return d->text_cap + 16; }

int detok_push(struct detok *d, int32_t id, char *out, size_t cap, size_t *n_out) {
    int rc;
    *n_out = 0;
    if (!d || !out || cap < 64) return folio_err(FOLIO_EINVAL, "detok_push: bad arguments");
    out[0] = '\0';
    if (d->done) return folio_err(FOLIO_EINVAL, "detok_push: stream already flushed");
    bool skipped = (d->flags & TOK_DECODE_SKIP_SPECIAL) && tokenizer_is_special(d->tok, id);
    if (id < 0 || id >= tokenizer_vocab_size(d->tok)) skipped = true; /* decodes to nothing */
    if (!skipped) {
        if (d->n == WINDOW && (rc = make_room(d))) return rc;
        d->win[d->n++] = id;
        const char *t;
        size_t len;
        int inc;
        if ((rc = decode_ids(d, d->win, d->n, 1, &t, &len, &inc))) return rc;
        if (len > d->emitted) {
            if ((rc = emit(d, t + d->emitted, len - d->emitted, false))) return rc;
            d->emitted = len;
        }
        if ((rc = shrink(d, t, len, inc, SHRINK_TRY))) return rc;
    }
    drain(d, out, cap, n_out);
    return 0;
}

int detok_flush(struct detok *d, char *out, size_t cap, size_t *n_out) {
    int rc;
    *n_out = 0;
    if (!d || !out || cap < 64) return folio_err(FOLIO_EINVAL, "detok_flush: bad arguments");
    out[0] = '\0';
    if (!d->done) {
        const char *t;
        size_t len;
        int inc;
        if ((rc = decode_ids(d, d->win, d->n, 0, &t, &len, &inc))) return rc;
        if (len > d->emitted && (rc = emit(d, t + d->emitted, len - d->emitted, true))) return rc;
        if (d->cleanup && (rc = emit(d, "", 0, true))) return rc;
        d->done = true;
        d->n = 0;
    }
    drain(d, out, cap, n_out);
    return 0;
}
