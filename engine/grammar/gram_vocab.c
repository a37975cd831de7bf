/* gram_vocab: the model's vocabulary as byte strings in a trie, and the cache of per-state
 * token sets that every grammar compiled for it shares.
 *
 * The trie is stored in DFS preorder with, per node, the index just past its subtree: a walk
 * that finds a prefix impossible skips every token under it in one step, which is what makes
 * precomputing a state's tokens cost the part of the vocabulary the state can start, not the
 * whole of it. Identical byte strings (vocabularies have a few) share a node.
 *
 * The cache maps a structural hash of (a rule and every rule it can call, a state, the bytes
 * that may follow the rule) to that state's precomputed sets: a JSON string rule, the same in
 * every schema, is walked once per vocabulary instead of once per request. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_internal.h"

struct gram_cache_entry {
    uint64_t k0, k1;
    struct gram_state_sets *sets;
};

/* Upper bound on the memory the shared cache holds; past it, compiled grammars keep their own
 * sets (correct, just not shared). */
#define GRAM_VOCAB_CACHE_MAX_BYTES ((size_t)512 << 20)

static int cmp_tok(const void *x, const void *y, void *ctx) {
    const struct gram_vocab *v = ctx;
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint32_t la = v->lens[a], lb = v->lens[b];
    int c = memcmp(v->bytes[a], v->bytes[b], la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

struct gram_vocab *gram_vocab_create(int vocab_size, const uint8_t *const *bytes,
                                     const uint32_t *lens, const int32_t *stop_ids,
                                     int num_stop) {
    if (vocab_size < 0 || num_stop < 0) return NULL;
    struct gram_vocab *v = calloc(1, sizeof *v);
    int32_t *order = NULL, *path = NULL;
    if (!v) return NULL;
    v->vocab_size = vocab_size;
    v->compile_threads = 1;
    v->bytes = calloc((size_t)vocab_size + 1, sizeof *v->bytes);
    v->lens = calloc((size_t)vocab_size + 1, sizeof *v->lens);
    v->is_stop = calloc((size_t)vocab_size + 1, 1);
    v->stop_ids = malloc(((size_t)num_stop + 1) * sizeof *v->stop_ids);
    order = malloc(((size_t)vocab_size + 1) * sizeof *order);
    if (!v->bytes || !v->lens || !v->is_stop || !v->stop_ids || !order) goto fail;
    pthread_mutex_init(&v->lock, NULL);
    v->cache_cap = 1024;
    v->cache = calloc(v->cache_cap, sizeof *v->cache);
    if (!v->cache) goto fail;
    for (int i = 0; i < num_stop; i++)
        if (stop_ids[i] >= 0 && stop_ids[i] < vocab_size && !v->is_stop[stop_ids[i]]) {
            v->is_stop[stop_ids[i]] = 1;
            v->stop_ids[v->num_stop++] = stop_ids[i];
        }
    int n = 0;
    size_t total = 0;
    for (int i = 0; i < vocab_size; i++) {
        /* a stop token is EOS only, never its bytes */
        uint32_t l = v->is_stop[i] ? 0 : lens[i];
        v->lens[i] = l;
        v->bytes[i] = malloc(l ? l : 1);
        if (!v->bytes[i]) goto fail;
        if (l) memcpy(v->bytes[i], bytes[i], l);
        if (l) order[n++] = i;
        total += l;
        if (l > v->max_len) v->max_len = l;
    }
    qsort_r(order, (size_t)n, sizeof *order, cmp_tok, v);
    /* nodes: at most one per byte of every token, plus the root */
    size_t cap = total + 1;
    v->trie_byte = malloc(cap);
    v->trie_depth = malloc(cap * sizeof *v->trie_depth);
    v->trie_tok = malloc(cap * sizeof *v->trie_tok);
    v->trie_end = malloc(cap * sizeof *v->trie_end);
    v->trie_tok_next = malloc(((size_t)vocab_size + 1) * sizeof *v->trie_tok_next);
    path = malloc(((size_t)v->max_len + 2) * sizeof *path);
    if (!v->trie_byte || !v->trie_depth || !v->trie_tok || !v->trie_end || !v->trie_tok_next || !path)
        goto fail;
    int32_t nn = 0;
    v->trie_byte[0] = 0;
    v->trie_depth[0] = 0;
    v->trie_tok[0] = -1;
    path[0] = nn++;
    uint32_t plen = 0; /* bytes on the path */
    int prev = -1;
    for (int i = 0; i < n; i++) {
        int t = order[i];
        uint32_t l = v->lens[t], lcp = 0;
        if (prev >= 0) {
            uint32_t lp = v->lens[prev], m = l < lp ? l : lp;
            while (lcp < m && v->bytes[t][lcp] == v->bytes[prev][lcp]) lcp++;
        }
        while (plen > lcp) v->trie_end[path[plen--]] = nn; /* close the subtrees we leave */
        while (plen < l) {
            int32_t k = nn++;
            v->trie_byte[k] = v->bytes[t][plen];
            v->trie_depth[k] = (int32_t)plen + 1;
            v->trie_tok[k] = -1;
            path[++plen] = k;
        }
        /* identical strings: the node lists them all (trie_tok, then trie_tok_next) */
        int32_t k = path[plen];
        v->trie_tok_next[t] = v->trie_tok[k];
        v->trie_tok[k] = t;
        prev = t;
    }
    while (plen > 0) v->trie_end[path[plen--]] = nn;
    v->trie_end[0] = nn;
    v->num_trie = nn;
    free(order);
    free(path);
    return v;
fail:
    free(order);
    free(path);
    gram_vocab_free(v);
    return NULL;
}

void gram_vocab_free(struct gram_vocab *v) {
    if (!v) return;
    if (v->bytes)
        for (int i = 0; i < v->vocab_size; i++) free(v->bytes[i]);
    if (v->cache) {
        for (size_t i = 0; i < v->cache_cap; i++)
            if (v->cache[i]) {
                free(v->cache[i]->sets);
                free(v->cache[i]);
            }
        pthread_mutex_destroy(&v->lock);
    }
    free(v->cache);
    free(v->bytes);
    free(v->lens);
    free(v->is_stop);
    free(v->stop_ids);
    free(v->trie_byte);
    free(v->trie_depth);
    free(v->trie_tok);
    free(v->trie_end);
    free(v->trie_tok_next);
    free(v);
}

int gram_vocab_size(const struct gram_vocab *v) { return v->vocab_size; }
int gram_mask_words(const struct gram_vocab *v) { return (v->vocab_size + 31) / 32; }

void gram_vocab_set_compile_threads(struct gram_vocab *v, int n) {
    v->compile_threads = n < 1 ? 1 : n > GRAM_MAX_COMPILE_THREADS ? GRAM_MAX_COMPILE_THREADS : n;
}

static size_t slot_of(const struct gram_vocab *v, uint64_t k0, uint64_t k1) {
    size_t i = (size_t)(k0 ^ k1 * 31) & (v->cache_cap - 1);
    while (v->cache[i] && (v->cache[i]->k0 != k0 || v->cache[i]->k1 != k1)) i = (i + 1) & (v->cache_cap - 1);
    return i;
}

const struct gram_state_sets *gram_vocab_cache_get(struct gram_vocab *v, uint64_t k0, uint64_t k1) {
    pthread_mutex_lock(&v->lock);
    struct gram_cache_entry *e = v->cache[slot_of(v, k0, k1)];
    pthread_mutex_unlock(&v->lock);
    return e ? e->sets : NULL;
}

const struct gram_state_sets *gram_vocab_cache_put(struct gram_vocab *v, uint64_t k0, uint64_t k1,
                                                   struct gram_state_sets *s) {
    const struct gram_state_sets *r = NULL;
    pthread_mutex_lock(&v->lock);
    size_t i = slot_of(v, k0, k1);
    if (v->cache[i]) { /* another thread got there first */
        r = v->cache[i]->sets;
        free(s);
        goto out;
    }
    if (v->cache_bytes + s->bytes > GRAM_VOCAB_CACHE_MAX_BYTES) goto out;
    if ((v->cache_count + 1) * 2 > v->cache_cap) {
        size_t nc = v->cache_cap * 2;
        struct gram_cache_entry **nt = calloc(nc, sizeof *nt);
        if (!nt) goto out;
        struct gram_cache_entry **old = v->cache;
        size_t oc = v->cache_cap;
        v->cache = nt;
        v->cache_cap = nc;
        for (size_t j = 0; j < oc; j++)
            if (old[j]) v->cache[slot_of(v, old[j]->k0, old[j]->k1)] = old[j];
        free(old);
        i = slot_of(v, k0, k1);
    }
    struct gram_cache_entry *e = malloc(sizeof *e);
    if (!e) goto out;
    e->k0 = k0;
    e->k1 = k1;
    s->in_cache = 1;
    e->sets = s;
    v->cache[i] = e;
    v->cache_count++;
    v->cache_bytes += s->bytes;
    r = s;
out:
    pthread_mutex_unlock(&v->lock);
    return r;
}
