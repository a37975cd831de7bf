/* kv_cache: see kv_cache.h.
 *
 * Block states: used (refcnt > 0), cached (refcnt 0, hashed: in the LRU list and the hash
 * table) and free (refcnt 0, unhashed: on the free stack). Allocation prefers free blocks, so
 * a cached prefix survives as long as anything else can be handed out. */
#include "core/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct kv_cache {
    int num_blocks, block_size, prefix_caching;
    int32_t *refcnt;      /* [num_blocks] */
    int32_t *fill;        /* [num_blocks] leading slots holding computed K/V */
    uint8_t *hashed;      /* [num_blocks] entered in the hash table */
    uint64_t *hash;       /* [num_blocks] chain hash, valid when hashed */
    uint64_t *parent;     /* [num_blocks] the parent block's chain hash, to confirm hits */
    int32_t *toks;        /* [num_blocks, block_size] the tokens of hashed blocks */
    int32_t *free_stack;  /* [num_blocks] */
    int min_free;         /* the fewest free blocks ever: the rest have been written at least once */
    int num_free;
    int32_t *prev, *next; /* [num_blocks] LRU list of cached blocks, head = evicted first */
    int32_t lru_head, lru_tail;
    int32_t *table;       /* [table_mask + 1] open addressing (linear probing), -1 = empty */
    uint64_t table_mask;
    int used, cached;
    long long stored;     /* sum of fill over used blocks, kept as it changes */
    long long queries, hits, copies, evictions;
};

static uint64_t chain_hash(uint64_t parent, const int32_t *tokens, int n) {
    uint64_t h = folio_mix64(parent ^ 0x6a09e667f3bcc909ULL);
    for (int i = 0; i < n; i++) h = folio_mix64(h + (uint32_t)tokens[i]);
    return h;
}

struct kv_cache *kv_cache_create(const struct kv_cache_params *p) {
    if (p->num_blocks < 1 || p->block_size < 1) return NULL;
    struct kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    const size_t nb = (size_t)p->num_blocks;
    size_t cap = 16;
    while (cap < 2 * nb) cap *= 2;
    kv->num_blocks = p->num_blocks;
    kv->block_size = p->block_size;
    kv->prefix_caching = p->enable_prefix_caching;
    kv->refcnt = calloc(nb, sizeof *kv->refcnt);
    kv->fill = calloc(nb, sizeof *kv->fill);
    kv->hashed = calloc(nb, 1);
    kv->hash = calloc(nb, sizeof *kv->hash);
    kv->parent = calloc(nb, sizeof *kv->parent);
    kv->toks = malloc(nb * (size_t)p->block_size * sizeof *kv->toks);
    kv->free_stack = malloc(nb * sizeof *kv->free_stack);
    kv->prev = malloc(nb * sizeof *kv->prev);
    kv->next = malloc(nb * sizeof *kv->next);
    kv->table = malloc(cap * sizeof *kv->table);
    if (!kv->refcnt || !kv->fill || !kv->hashed || !kv->hash || !kv->parent || !kv->toks || !kv->free_stack ||
        !kv->prev || !kv->next || !kv->table) {
        kv_cache_free(kv);
        return NULL;
    }
    kv->table_mask = cap - 1;
    memset(kv->table, 0xff, cap * sizeof *kv->table);
    /* Pop order 0, 1, 2, ...: deterministic layouts make failures reproducible. */
    for (int i = 0; i < p->num_blocks; i++) kv->free_stack[i] = p->num_blocks - 1 - i;
    kv->num_free = kv->min_free = p->num_blocks;
    kv->lru_head = kv->lru_tail = -1;
    return kv;
}

void kv_cache_free(struct kv_cache *kv) {
    if (!kv) return;
    free(kv->refcnt);
    free(kv->fill);
    free(kv->hashed);
    free(kv->hash);
    free(kv->parent);
    free(kv->toks);
    free(kv->free_stack);
    free(kv->prev);
    free(kv->next);
    free(kv->table);
    free(kv);
}

int kv_cache_num_available(const struct kv_cache *kv) { return kv->num_free + kv->cached; }

/* ---- the hash table of cached blocks ---- */

static int32_t table_find(const struct kv_cache *kv, uint64_t h, uint64_t parent, const int32_t *tokens) {
    for (uint64_t i = h & kv->table_mask;; i = (i + 1) & kv->table_mask) {
        int32_t b = kv->table[i];
        if (b < 0) return -1;
        if (kv->hash[b] == h && kv->parent[b] == parent &&
            memcmp(kv->toks + (size_t)b * kv->block_size, tokens, sizeof(int32_t) * kv->block_size) == 0)
            return b;
    }
}

static void table_insert(struct kv_cache *kv, int32_t b) {
    uint64_t i = kv->hash[b] & kv->table_mask;
    while (kv->table[i] >= 0) i = (i + 1) & kv->table_mask;
    kv->table[i] = b;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void table_remove(struct kv_cache *kv, int32_t b) {
    const uint64_t mask = kv->table_mask;
    uint64_t i = kv->hash[b] & mask;
    while (kv->table[i] != b) i = (i + 1) & mask;
    for (uint64_t j = i;;) {
        j = (j + 1) & mask;
        if (kv->table[j] < 0) break;
        uint64_t home = kv->hash[kv->table[j]] & mask;
        /* The entry at j may move to i only if its home is not cyclically in (i, j]. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        kv->table[i] = kv->table[j];
        i = j;
    }
    kv->table[i] = -1;
}

/* ---- the LRU list of cached blocks ---- */

static void lru_append(struct kv_cache *kv, int32_t b) {
    kv->prev[b] = kv->lru_tail;
    kv->next[b] = -1;
    if (kv->lru_tail >= 0) kv->next[kv->lru_tail] = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
}

static void lru_remove(struct kv_cache *kv, int32_t b) {
    if (kv->prev[b] >= 0) kv->next[kv->prev[b]] = kv->next[b];
    else kv->lru_head = kv->next[b];
    if (kv->next[b] >= 0) kv->prev[kv->next[b]] = kv->prev[b];
    else kv->lru_tail = kv->prev[b];
}

/* ---- block references ---- */

static int32_t take_block(struct kv_cache *kv) {
    int32_t b;
    if (kv->num_free > 0) {
        b = kv->free_stack[--kv->num_free];
        if (kv->num_free < kv->min_free) kv->min_free = kv->num_free;
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        lru_remove(kv, b);
        table_remove(kv, b);
        kv->hashed[b] = 0;
        kv->cached--;
        kv->evictions++;
    } else {
        return -1;
    }
    kv->refcnt[b] = 1;
    kv->fill[b] = 0;
    kv->used++;
    return b;
}

static void ref_block(struct kv_cache *kv, int32_t b) {
    if (kv->refcnt[b]++ == 0) { /* a cached block comes back into use */
        lru_remove(kv, b);
        kv->cached--;
        kv->used++;
        kv->stored += kv->fill[b];
    }
}

static void unref_block(struct kv_cache *kv, int32_t b) {
    if (--kv->refcnt[b] > 0) return;
    kv->used--;
    kv->stored -= kv->fill[b];
    if (kv->hashed[b]) {
        lru_append(kv, b);
        kv->cached++;
    } else {
        kv->free_stack[kv->num_free++] = b;
    }
}

/* The first block a query at position m still reads through a window (0 = every block). */
static int window_first_block(int m, int window, int bs) {
    return window > 0 && m - window + 1 > 0 ? (m - window + 1) / bs : 0;
}

int kv_cache_match_prefix(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n) {
    return kv_cache_match_prefix_window(kv, s, tokens, n, 0);
}

int kv_cache_match_prefix_window(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n, int window) {
    if (!kv->prefix_caching || s->num_blocks != 0 || n < 1) return 0;
    const int bs = kv->block_size;
    const int max_nb = (n - 1) / bs < s->cap ? (n - 1) / bs : s->cap;
    /* The chain hashes depend on the tokens only, so a block can be looked up even when the
     * blocks before it are gone. best: the most blocks whose last window's blocks are all
     * present (run_start: the first block of the present run ending at i). Without a window
     * every block from the first is needed, so the first miss ends the search. */
    uint64_t h = 0, best_h = 0;
    int best = 0, run_start = 0;
    for (int i = 0; i < max_nb; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        const uint64_t hh = chain_hash(h, t, bs);
        const int32_t b = table_find(kv, hh, h, t);
        s->blocks[i] = b;
        h = hh;
        if (b < 0) {
            if (window <= 0) break;
            run_start = i + 1;
            continue;
        }
        if (run_start <= window_first_block((i + 1) * bs, window, bs)) {
            best = i + 1;
            best_h = hh;
        }
    }
    const int first = window_first_block(best * bs, window, bs);
    for (int i = 0; i < best; i++) {
        if (i < first) {
            s->blocks[i] = 0;
        } else {
            ref_block(kv, s->blocks[i]);
        }
    }
    s->num_blocks = s->num_hashed = best;
    s->num_dropped = first;
    s->last_hash = best_h;
    s->num_computed = best * bs;
    return s->num_computed;
}

void kv_cache_count_prefix(struct kv_cache *kv, int queried, int hit) {
    kv->queries += queried;
    kv->hits += hit;
}

static int blocks_for(const struct kv_cache *kv, int tokens) { return (tokens + kv->block_size - 1) / kv->block_size; }

int kv_cache_blocks_needed(const struct kv_cache *kv, const struct kv_seq *s, int num_tokens) {
    int want = blocks_for(kv, num_tokens);
    int need = want > s->num_blocks ? want - s->num_blocks : 0;
    int last = want < s->num_blocks ? want : s->num_blocks;
    for (int i = s->num_computed / kv->block_size; i < last; i++)
        if (kv->refcnt[s->blocks[i]] > 1) need++;
    return need;
}

int kv_cache_reserve(struct kv_cache *kv, struct kv_seq *s, int num_tokens, int32_t *copies, int *num_copies) {
    const int bs = kv->block_size, want = blocks_for(kv, num_tokens);
    if (want > s->cap)
        return folio_err(FOLIO_EINVAL, "%d tokens exceed the sequence's block table (%d blocks)", num_tokens, s->cap);
    int need = kv_cache_blocks_needed(kv, s, num_tokens);
    if (need > kv_cache_num_available(kv))
        return folio_err(FOLIO_ENOMEM, "KV cache exhausted: need %d blocks, %d available", need,
                         kv_cache_num_available(kv));
    int last = want < s->num_blocks ? want : s->num_blocks;
    for (int i = s->num_computed / bs; i < last; i++) {
        int32_t old = s->blocks[i];
        if (kv->refcnt[old] <= 1) continue;
        int32_t b = take_block(kv);
        int keep = s->num_computed - i * bs;
        kv->fill[b] = kv->fill[old] < keep ? kv->fill[old] : keep;
        kv->stored += kv->fill[b];
        copies[2 * *num_copies] = old;
        copies[2 * *num_copies + 1] = b;
        (*num_copies)++;
        kv->copies++;
        s->blocks[i] = b;
        unref_block(kv, old);
    }
    while (s->num_blocks < want) s->blocks[s->num_blocks++] = take_block(kv);
    return 0;
}

void kv_cache_commit(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int num_computed) {
    const int bs = kv->block_size;
    for (int i = s->num_computed / bs; i < s->num_blocks && i * bs < num_computed; i++) {
        int f = num_computed - i * bs < bs ? num_computed - i * bs : bs;
        if (kv->fill[s->blocks[i]] < f) {
            kv->stored += f - kv->fill[s->blocks[i]];
            kv->fill[s->blocks[i]] = f;
        }
    }
    s->num_computed = num_computed;
    if (!kv->prefix_caching) return;
    while ((s->num_hashed + 1) * bs <= num_computed) {
        const int32_t *t = tokens + (size_t)s->num_hashed * bs;
        int32_t b = s->blocks[s->num_hashed];
        uint64_t h = chain_hash(s->last_hash, t, bs);
        /* A block computed twice (two requests prefilled the same prefix at once) stays
         * unhashed: one cached copy is enough, and the other returns to the free stack. */
        if (s->num_hashed >= s->num_dropped && !kv->hashed[b] && table_find(kv, h, s->last_hash, t) < 0) {
            kv->hashed[b] = 1;
            kv->hash[b] = h;
            kv->parent[b] = s->last_hash;
            memcpy(kv->toks + (size_t)b * bs, t, sizeof(int32_t) * bs);
            table_insert(kv, b);
        }
        s->last_hash = h;
        s->num_hashed++;
    }
}

void kv_cache_fork(struct kv_cache *kv, const struct kv_seq *src, struct kv_seq *dst) {
    for (int i = 0; i < src->num_blocks; i++) {
        if (i >= src->num_dropped) ref_block(kv, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->num_blocks = src->num_blocks;
    dst->num_dropped = src->num_dropped;
    dst->num_computed = src->num_computed;
    dst->num_hashed = src->num_hashed;
    dst->last_hash = src->last_hash;
}

void kv_cache_release(struct kv_cache *kv, struct kv_seq *s) {
    /* Last block first, so that a sequence's tail is evicted before its (more shareable)
     * beginning. */
    for (int i = s->num_blocks - 1; i >= s->num_dropped; i--) unref_block(kv, s->blocks[i]);
    s->num_blocks = s->num_computed = s->num_hashed = s->num_dropped = 0;
    s->last_hash = 0;
}

void kv_cache_drop_before(struct kv_cache *kv, struct kv_seq *s, int pos) {
    int n = pos > 0 ? pos / kv->block_size : 0;
    if (n > s->num_blocks) n = s->num_blocks;
    for (; s->num_dropped < n; s->num_dropped++) {
        unref_block(kv, s->blocks[s->num_dropped]);
        s->blocks[s->num_dropped] = 0;
    }
}

void kv_cache_get_stats(const struct kv_cache *kv, struct kv_cache_stats *out) {
    *out = (struct kv_cache_stats){
        .num_blocks = kv->num_blocks,
        .used = kv->used,
        .cached = kv->cached,
        .free = kv->num_free,
        .allocated_slots = (long long)kv->used * kv->block_size,
        .stored_tokens = kv->stored,
        .prefix_queries = kv->queries,
        .prefix_hits = kv->hits,
        .cow_copies = kv->copies,
        .evictions = kv->evictions,
        .touched = kv->num_blocks - kv->min_free,
    };
}
