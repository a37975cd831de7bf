/* tok_decode: ids back to text. Parses tokenizer.json's decoder chain (ByteLevel,
 * ByteFallback, Fuse, Strip, Replace, Metaspace; nested Sequences flatten) and runs it as
 * the JS port's decode_chain does, turning invalid UTF-8 into U+FFFD as HF does, then
 * transformers' clean_up_tokenization. Everything runs in one caller-sized work buffer
 * (tok_decode_work_size), because the incremental detokenizer (detok.c) decodes a window of
 * ids per generated token and must not allocate on that path. */
#include "text/tok_internal.h"

/* ------------------------------------------------------------------------------------------
 * Parsing the decoder chain */

int tok_count_decoders(const cJSON *j) {
    const char *type = tok_jstr(j, "type");
    if (type && !strcmp(type, "Sequence")) {
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) n += tok_count_decoders(it);
        return n;
    }
    return 1;
}

/* Nested Sequences flatten: each step maps a token list to a token list. */
int tok_parse_decoder(struct tokenizer *t, const cJSON *j) {
    int rc;
    const char *type = tok_jstr(j, "type");
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: decoder without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) {
            if ((rc = tok_parse_decoder(t, it))) return rc;
        }
        return 0;
    }
    struct dec_step *d = &t->dec[t->n_dec++];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *s = tok_jstr(pat, "String"), *c = tok_jstr(j, "content");
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
        const char *c = tok_jstr(j, "content");
        d->type = DEC_STRIP;
        size_t adv = 0;
        /* JS compares one UTF-16 unit with the content string: only one-character contents
         * ever match. */
        d->strip_cp = UINT32_MAX;
        if (c && *c && utf8_valid(c, strlen(c))) {
            uint32_t cp = utf8_cp_valid(c, &adv);
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
        if ((rc = tok_parse_replacement(j, d->repl, &d->repln))) return rc;
        enum prepend_scheme ps;
        if ((rc = tok_parse_prepend_scheme(j, &ps))) return rc;
        d->strip_first = ps != PS_NEVER;
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported decoder type \"%s\"", type);
    }
    return 0;
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

/* Appends a run of raw bytes as one piece, ill-formed UTF-8 replaced; at the end of a stream
 * an incomplete trailing character is held back and flagged instead. */
static void emit_bytes(struct dlist *b, const unsigned char *raw, size_t nr, int stream, int at_end,
                       int *incomplete) {
    size_t st = b->len;
    b->len += utf8_lossy((const char *)raw, nr, b->buf + b->len, stream && at_end, at_end ? incomplete : NULL);
    b->v[b->n].off = st;
    b->v[b->n].len = b->len - st;
    b->n++;
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
            emit_bytes(b, raw, nr, stream, j == a->n, incomplete);
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
                if (utf8_cp_valid(s + lo, &adv) != d->strip_cp) break;
                lo += adv;
            }
            for (int k = 0; k < d->stop && hi > lo; k++) {
                size_t st = hi - 1;
                while (st > lo && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
                size_t adv;
                if (utf8_cp_valid(s + st, &adv) != d->strip_cp) break;
                hi = st;
            }
            dl_add(b, s + lo, hi - lo);
        }
        return 0;
    case DEC_BYTELEVEL:
        for (int i = 0; i < a->n;) {
            int32_t idx;
            if (tok_smap_get(&t->added_content, a->buf + a->v[i].off, a->v[i].len, &idx)) {
                dl_add(b, a->buf + a->v[i].off, a->v[i].len);
                i++;
                continue;
            }
            /* a run of ordinary tokens: map characters back to bytes, decode once. The bytes
             * never outgrow the characters, so they are gathered in place. */
            int j = i;
            unsigned char *raw = (unsigned char *)a->buf + a->v[i].off;
            size_t nr = 0;
            while (j < a->n && !tok_smap_get(&t->added_content, a->buf + a->v[j].off, a->v[j].len, &idx)) {
                const char *s = a->buf + a->v[j].off;
                size_t n = a->v[j].len;
                /* A character outside the byte map makes the Rust decoder keep the token's
                 * own bytes; check before overwriting. */
                bool mapped = true;
                for (size_t k = 0; k < n;) {
                    size_t adv;
                    uint32_t cp = utf8_cp_valid(s + k, &adv);
                    if (cp >= 324 || tok_cp_to_byte[cp] < 0) { mapped = false; break; }
                    k += adv;
                }
                if (mapped) {
                    for (size_t k = 0; k < n;) {
                        size_t adv;
                        uint32_t cp = utf8_cp_valid(s + k, &adv);
                        raw[nr++] = (unsigned char)tok_cp_to_byte[cp];
                        k += adv;
                    }
                } else {
                    memmove(raw + nr, s, n);
                    nr += n;
                }
                j++;
            }
            emit_bytes(b, raw, nr, stream, j == a->n, incomplete);
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

/* One token's bytes as they stand in the middle of a decoded text: the decoder chain's
 * per-token rewrites (Replace, ByteFallback, ByteLevel, Metaspace) without the steps that
 * depend on a token's neighbours (Fuse, Strip, Metaspace's first-token strip), and raw bytes
 * where a byte token or a byte-level character stands for part of a UTF-8 character. */
int tok_token_bytes(const struct tokenizer *t, int32_t id, uint8_t *out, size_t cap) {
    if (id < 0 || id >= t->vocab_size || !t->piece[id] || t->special[id]) return 0;
    const char *s = t->piece[id];
    size_t n = t->piece_len[id];
    int32_t idx;
    if (tok_smap_get(&t->added_content, s, n, &idx)) {
        if (n > cap) return FOLIO_EINVAL;
        memcpy(out, s, n);
        return (int)n;
    }
    /* Two buffers, the rewrite of one into the other per step; a step never grows a piece by
     * more than t->growth. */
    size_t need = n * (t->growth > 1 ? t->growth : 1) + 8;
    if (need > cap) return FOLIO_EINVAL;
    char small[2][512];
    char *a = need <= sizeof small[0] ? small[0] : malloc(need), *b = need <= sizeof small[1] ? small[1] : malloc(need);
    if (!a || !b) {
        if (a != small[0]) free(a);
        if (b != small[1]) free(b);
        return FOLIO_ENOMEM;
    }
    memcpy(a, s, n);
    size_t an = n;
    for (int k = 0; k < t->n_dec; k++) {
        const struct dec_step *d = &t->dec[k];
        size_t bn = 0;
        switch (d->type) {
        case DEC_REPLACE:
            for (size_t i = 0; i < an;) {
                if (i + d->patn <= an && d->patn && memcmp(a + i, d->pat, d->patn) == 0) {
                    memcpy(b + bn, d->content, d->contentn);
                    bn += d->contentn;
                    i += d->patn;
                } else {
                    b[bn++] = a[i++];
                }
            }
            break;
        case DEC_METASPACE:
            for (size_t i = 0; i < an;) {
                if (i + d->repln <= an && d->repln && memcmp(a + i, d->repl, d->repln) == 0) {
                    b[bn++] = ' ';
                    i += d->repln;
                } else {
                    b[bn++] = a[i++];
                }
            }
            break;
        case DEC_BYTEFALLBACK: {
            unsigned char byte;
            if (is_byte_token(a, an, &byte)) b[bn++] = (char)byte;
            else {
                memcpy(b, a, an);
                bn = an;
            }
            break;
        }
        case DEC_BYTELEVEL: {
            bool mapped = true;
            for (size_t i = 0; i < an && mapped;) {
                size_t adv;
                uint32_t cp = utf8_cp_valid(a + i, &adv);
                if (cp >= 324 || tok_cp_to_byte[cp] < 0) mapped = false;
                i += adv;
            }
            if (!mapped) {
                memcpy(b, a, an);
                bn = an;
                break;
            }
            for (size_t i = 0; i < an;) {
                size_t adv;
                uint32_t cp = utf8_cp_valid(a + i, &adv);
                b[bn++] = (char)tok_cp_to_byte[cp];
                i += adv;
            }
            break;
        }
        case DEC_FUSE:
        case DEC_STRIP:
            memcpy(b, a, an);
            bn = an;
            break;
        }
        char *tmp = a;
        a = b;
        b = tmp;
        an = bn;
    }
    memcpy(out, a, an);
    if (a != small[0] && a != small[1]) free(a);
    if (b != small[0] && b != small[1]) free(b);
    return (int)an;
}
