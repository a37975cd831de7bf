/* kv_cache: see kv_cache.h. */
#include "kv_cache.h"

#include <stdlib.h>

#include "util.h"

struct kv_cache {
    int num_blocks, block_size;
    int32_t *free_list; /* stack of free block ids */
    int num_free;
};

struct kv_cache *kv_cache_create(const struct kv_cache_params *p) {
    if (p->num_blocks < 1 || p->block_size < 1) return NULL;
    struct kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->free_list = malloc(sizeof(int32_t) * (size_t)p->num_blocks);
    if (!kv->free_list) {
        free(kv);
        return NULL;
    }
    kv->num_blocks = p->num_blocks;
    kv->block_size = p->block_size;
    /* Pop order 0, 1, 2, ...: deterministic layouts make failures reproducible. */
    for (int i = 0; i < p->num_blocks; i++) kv->free_list[i] = p->num_blocks - 1 - i;
    kv->num_free = p->num_blocks;
    return kv;
}

void kv_cache_free(struct kv_cache *kv) {
    if (!kv) return;
    free(kv->free_list);
    free(kv);
}

int kv_cache_num_free(const struct kv_cache *kv) { return kv->num_free; }
int kv_cache_block_size(const struct kv_cache *kv) { return kv->block_size; }

int kv_cache_reserve(struct kv_cache *kv, struct kv_seq *s, int num_tokens) {
    int need = (num_tokens + kv->block_size - 1) / kv->block_size - s->num_blocks;
    if (need <= 0) return 0;
    if (s->num_blocks + need > s->cap)
        return folio_err(FOLIO_EINVAL, "%d tokens exceed the sequence's block table (%d blocks)", num_tokens, s->cap);
    if (need > kv->num_free)
        return folio_err(FOLIO_ENOMEM, "KV cache exhausted: need %d blocks, %d free", need, kv->num_free);
    for (int i = 0; i < need; i++) s->blocks[s->num_blocks++] = kv->free_list[--kv->num_free];
    return 0;
}

void kv_cache_release(struct kv_cache *kv, struct kv_seq *s) {
    for (int i = s->num_blocks - 1; i >= 0; i--) kv->free_list[kv->num_free++] = s->blocks[i];
    s->num_blocks = 0;
}
