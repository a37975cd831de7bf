/* mem_plan: how a GPU engine divides its share of device memory, with vLLM's semantics.
 *
 * --gpu-memory-utilization u is this engine's share of the device's total memory: budget =
 * u * total. It must be free when the engine starts (other processes' memory is not ours to
 * count on). The weights, the activation scratch and every workspace a forward pass at the
 * largest batch allocates (measured by a profiling pass) come out of the budget first; the
 * rest becomes KV blocks. When something does not fit, the error says what would: the free
 * memory, what the weights need, and the largest --max-model-len the cache could hold.
 *
 * Pure arithmetic on the figures the engine measures, so that it is tested without a GPU. */
#ifndef FOLIO_MEM_PLAN_H
#define FOLIO_MEM_PLAN_H

#include <stddef.h>

struct mem_plan {
    /* device, measured once the backend has started (its context excluded, as in vLLM) */
    size_t total, free;
    double utilization;       /* (0, 1] */
    size_t weight_bytes;      /* the weights in the serving dtype */
    const char *dtype;        /* its name, for messages */
    size_t non_kv_bytes;      /* after profiling: all the engine allocated (weights included) */
    size_t block_bytes;       /* one KV block across all layers (the full-attention ones, when split), in
                               * the KV cache's dtype */
    const char *kv_dtype;     /* its name ("float32", "bfloat16", "float8_e4m3"), for messages, or NULL */
    size_t local_block_bytes; /* split cache (Gemma 2/3): a block of the sliding layers; 0 otherwise */
    int local_blocks_max;     /* the most blocks their pool can use (config_kv_local_blocks) */
    int block_size;           /* tokens per block */
    int max_model_len;        /* requested, or the model's maximum */
    int len_given;            /* 1 when the user set --max-model-len */
    int max_num_seqs;
    /* out (mem_plan_kv) */
    int num_blocks;
    int num_local_blocks;     /* split cache: the sliding layers' pool */
    int out_max_model_len;
    char notice[256];         /* when max_model_len was lowered to fit */
};

/* Before loading: the share is valid and free, and the weights fit in it. FOLIO_EINVAL with
 * a message that says what would fit. */
int mem_plan_check(const struct mem_plan *p);
/* After the profiling pass: the KV pool's size and the served max_model_len. Like the CPU
 * pool, it never exceeds what max_num_seqs full-length sequences can use. */
int mem_plan_kv(struct mem_plan *p);

/* How a split cache divides `bytes` between its pools: the sliding layers' takes the share
 * an unsplit cache would give those layers (block bytes in proportion), but never more than
 * it can use (local_max); the full layers' pool takes the rest. So a split cache holds at
 * least the tokens an unsplit one would, and past the window only the full layers grow. */
void mem_plan_split(double bytes, size_t block_bytes, size_t local_block_bytes, int local_max, long long *num_blocks,
                    int *num_local_blocks);

#endif
