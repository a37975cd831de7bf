/* tok_bpe: the BPE model: the merge table (loaded from tokenizer.json's "merges") and the
 * encoding of one pre-token into vocabulary ids: merges applied by rank, ignore_merges,
 * byte fallback to <0xHH> tokens, unk and fuse_unk. It works on ids, not strings, with a
 * binary heap keyed by (merge rank, position), so that long words (SentencePiece-style
 * tokenizers run BPE over a whole section) stay O(n log n). */
#include "text/tok_internal.h"

/* ------------------------------------------------------------------------------------------
 * The merge table: id pair -> (rank, merged id) */

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
 * Loading merges */

/* A string's id for merges: vocabulary strings keep theirs; others get ids past the
 * vocabulary so that merges through them still apply (the JS port merges strings). */
static int merge_id(struct tokenizer *t, const char *s, size_t n, int32_t *id) {
    if (tok_smap_get(&t->vocab, s, n, id)) return 0;
    const char *copy = arena_dup(&t->arena, s, n);
    if (!copy) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    *id = t->n_ids++;
    return tok_smap_set(&t->vocab, copy, n, *id);
}

int tok_bpe_load_merges(struct tokenizer *t, const cJSON *merges) {
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

/* ------------------------------------------------------------------------------------------
 * Encoding one pre-token */

struct sym {
    uint32_t start, len, pos; /* bytes in the word; pos: first character's index */
    int32_t id, prev, next;
};

struct hent {
    uint32_t rank, pos;
    int32_t left, right, idl, idr;
};

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
    if (s->id >= 0 && s->id < t->vocab_size) return tok_ivec_push(&e->sub, s->id);
    int rc;
    if (t->byte_fallback) {
        bool all = true;
        for (uint32_t i = 0; i < s->len; i++)
            if (t->byte_id[(unsigned char)w[s->start + i]] < 0) all = false;
        if (all) {
            for (uint32_t i = 0; i < s->len; i++)
                if ((rc = tok_ivec_push(&e->sub, t->byte_id[(unsigned char)w[s->start + i]]))) return rc;
            return 0;
        }
    }
    if (t->unk_id >= 0) return tok_ivec_push(&e->sub, t->unk_id);
    return 0; /* no unk token: the JS port drops the piece */
}

int tok_bpe_encode_word(const struct tokenizer *t, struct enc *e, const char *w, size_t n) {
    int rc;
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = tok_vocab_lookup(t, w, n);
        if (id >= 0 && id < t->vocab_size) return tok_ivec_push(&e->sub, id);
    }
    /* one symbol per character */
    int ns = 0;
    for (size_t i = 0; i < n; ns++) i += utf8_len_valid(w + i);
    if (ns > e->symcap) {
        struct sym *v = realloc(e->syms, (size_t)ns * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        e->syms = v;
        e->symcap = ns;
    }
    struct sym *s = e->syms;
    size_t off = 0;
    for (int k = 0; k < ns; k++) {
        size_t l = utf8_len_valid(w + off);
        if (off + l > n) l = n - off;
        s[k].start = (uint32_t)off;
        s[k].len = (uint32_t)l;
        s[k].pos = (uint32_t)k;
        s[k].id = tok_vocab_lookup(t, w + off, l);
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
void tok_bpe_fuse_unk(const struct tokenizer *t, struct ivec *v) {
    if (!t->fuse_unk || t->unk_id < 0) return;
    int w = 0;
    for (int i = 0; i < v->n; i++) {
        if (v->v[i] == t->unk_id && w > 0 && v->v[w - 1] == t->unk_id) continue;
        v->v[w++] = v->v[i];
    }
    v->n = w;
}
