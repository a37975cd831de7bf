/* kv_cache: the block manager of the paged KV cache. The pool of num_blocks blocks is fixed
 * at creation; sequences own block tables that grow a block at a time, so a sequence wastes
 * at most block_size - 1 slots. This is the plain allocator (free list); reference counts,
 * copy-on-write and prefix caching build on it. */
#ifndef FOLIO_KV_CACHE_H
#define FOLIO_KV_CACHE_H

#include <stdint.h>

struct kv_cache;

struct kv_cache_params {
    int num_blocks;
    int block_size;
};

/* One sequence's block table; `blocks` is caller storage of `cap` entries
 * (model_max_blocks_per_seq), so growing a table never allocates. */
struct kv_seq {
    int32_t *blocks;
    int num_blocks;
    int cap;
};

struct kv_cache *kv_cache_create(const struct kv_cache_params *p); /* NULL on OOM */
void kv_cache_free(struct kv_cache *kv);

int kv_cache_num_free(const struct kv_cache *kv);
int kv_cache_block_size(const struct kv_cache *kv);

/* Grows s to hold num_tokens tokens. On failure (pool empty or table full) nothing changes
 * and a negative code is returned. */
int kv_cache_reserve(struct kv_cache *kv, struct kv_seq *s, int num_tokens);
/* Returns every block of s to the pool. */
void kv_cache_release(struct kv_cache *kv, struct kv_seq *s);
/* Slot of token position pos of s (which must be reserved). */
static inline int32_t kv_seq_slot(const struct kv_seq *s, int pos, int block_size) {
    return s->blocks[pos / block_size] * block_size + pos % block_size;
}

#endif
