/* kv_cache: the block manager of the paged KV cache (vLLM's BlockPool + KVCacheManager).
 *
 * The pool of num_blocks blocks of block_size token slots is fixed at creation. Each
 * sequence owns a block table that grows a block at a time, so it wastes at most
 * block_size - 1 slots. Blocks carry reference counts: parallel samples of one prompt
 * (kv_cache_fork) and requests with a common prefix share blocks, and a shared block is
 * copied before anyone writes into it (copy-on-write).
 *
 * Prefix caching: a block whose slots are all computed gets a hash chaining its parent
 * block's hash with its tokens, and is entered in a table. A new sequence reuses the longest
 * chain of cached blocks that matches its prompt. A cached block that no sequence holds stays
 * cached until its slot is needed: free blocks that hold nothing are handed out first, then
 * cached ones in LRU order. A hash hit is confirmed against the block's stored tokens and
 * parent hash, so a 64-bit collision cannot return another prompt's KV.
 *
 * Everything is allocated in kv_cache_create; no call allocates afterwards. Not thread-safe:
 * the engine thread owns it. */
#ifndef FOLIO_KV_CACHE_H
#define FOLIO_KV_CACHE_H

#include <stdint.h>

struct kv_cache;

struct kv_cache_params {
    int num_blocks;
    int block_size;
    int enable_prefix_caching;
};

/* One sequence's block table. `blocks` is caller storage of `cap` entries
 * (model_max_blocks_per_seq), so growing a table never allocates. Initialize with
 * kv_seq_init; the other fields belong to kv_cache. */
struct kv_seq {
    int32_t *blocks;     /* [cap] physical block ids; the first num_blocks are valid */
    int num_blocks;
    int cap;
    int num_computed;    /* leading token slots whose K/V are written */
    int num_hashed;      /* leading blocks entered in (or matched from) the prefix cache */
    uint64_t last_hash;  /* hash of block num_hashed - 1 */
    int num_dropped;     /* leading blocks given back because a sliding window passed them
                          * (kv_cache_drop_before); their entries hold block 0, never read */
};

struct kv_cache_stats {
    int num_blocks;
    int used;            /* held by at least one sequence */
    int cached;          /* held by none, but keep a cached prefix */
    int free;            /* hold nothing */
    long long allocated_slots; /* used * block_size */
    long long stored_tokens;   /* computed slots in used blocks (shared blocks count once) */
    long long prefix_queries;  /* prompt tokens looked up in the prefix cache */
    long long prefix_hits;     /* of those, tokens found cached */
    long long cow_copies;      /* blocks copied because a shared block was written */
    long long evictions;       /* cached blocks reused for other content */
    int touched;               /* blocks ever taken: on the CPU the pool's pages are committed
                                * on first write, so this is how much of it is resident */
};

static inline void kv_seq_init(struct kv_seq *s, int32_t *blocks, int cap) {
    *s = (struct kv_seq){.blocks = blocks, .cap = cap};
}

struct kv_cache *kv_cache_create(const struct kv_cache_params *p); /* NULL on bad params or OOM */
void kv_cache_free(struct kv_cache *kv);

/* Blocks an allocation can take now: free plus cached-and-unused. */
int kv_cache_num_available(const struct kv_cache *kv);
void kv_cache_get_stats(const struct kv_cache *kv, struct kv_cache_stats *out);

/* For an empty sequence about to prefill tokens[0, n): takes a reference on the longest chain
 * of cached blocks holding a prefix of tokens[0, n - 1) (the last prompt token is always
 * computed, since its logits are needed) and returns how many tokens they cover, a multiple
 * of block_size; s->num_computed is set to it. Returns 0 when prefix caching is off. */
int kv_cache_match_prefix(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n);
/* The same for a sequence whose layers slide over window tokens (window <= 0: the plain
 * match): a prefix is usable when the blocks of its last window tokens are cached, whatever
 * became of those before, so the match holds only those (the rest count as dropped). */
int kv_cache_match_prefix_window(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n, int window);
/* Adds to the hit-rate counters (the scheduler counts a lookup once the sequence is
 * admitted, so a retried admission is not counted twice). */
void kv_cache_count_prefix(struct kv_cache *kv, int queried, int hit);

/* Makes s ready to write the K/V of tokens [s->num_computed, num_tokens): grows the table to
 * cover num_tokens slots and gives s its own copy of any shared block in that range. Each
 * copy is appended to copies as a (src, dst) pair at copies[2 * *num_copies]; the caller must
 * copy those blocks on the device before writing. Fails with FOLIO_ENOMEM (the pool cannot
 * supply the blocks) or FOLIO_EINVAL (the table is full) and then changes nothing. */
int kv_cache_reserve(struct kv_cache *kv, struct kv_seq *s, int num_tokens, int32_t *copies,
                     int *num_copies);
/* Blocks kv_cache_reserve would take from the pool for num_tokens. */
int kv_cache_blocks_needed(const struct kv_cache *kv, const struct kv_seq *s, int num_tokens);

/* Records that tokens [s->num_computed, num_computed) are now written; tokens[] is the whole
 * sequence (at least num_computed ids). Blocks that became full enter the prefix cache. */
void kv_cache_commit(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int num_computed);

/* dst (empty) shares every block of src; both must copy before writing a shared block. */
void kv_cache_fork(struct kv_cache *kv, const struct kv_seq *src, struct kv_seq *dst);

/* Drops s's references; blocks nobody holds return to the pool (cached ones stay cached).
 * s becomes empty (num_computed 0). */
void kv_cache_release(struct kv_cache *kv, struct kv_seq *s);

/* For the layers of a sliding window: gives back s's blocks that lie wholly before token
 * position pos, which no later query of s reads (call after kv_cache_commit, with pos =
 * num_computed - window + 1). A block that is also a cached prefix stays cached, so a later
 * request can still match the chain. */
void kv_cache_drop_before(struct kv_cache *kv, struct kv_seq *s, int pos);

/* Physical slot of token position pos of s (which must be reserved). */
static inline int32_t kv_seq_slot(const struct kv_seq *s, int pos, int block_size) {
    return s->blocks[pos / block_size] * block_size + pos % block_size;
}

#endif
