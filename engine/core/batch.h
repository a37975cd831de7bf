/* batch: the batch builder (vLLM's model runner): lays out the new tokens of the sequences
 * that run in one forward pass as one struct model_batch, in the layout DESIGN.md describes:
 * every token flattened with its position, its sequence's row and its KV slot, one block
 * table per sequence, and the rows whose logits are wanted. The engine's step and the CLI's
 * logits command both build their batches here.
 *
 * Every array is allocated by batch_create for the limits it is given; adding sequences and
 * finishing never allocate, so the step loop stays free of malloc. Not thread-safe: one
 * builder per step loop. */
#ifndef FOLIO_BATCH_H
#define FOLIO_BATCH_H

#include <stdint.h>

#include "core/kv_cache.h"
#include "model/model.h"

struct batch;

struct batch_params {
    int max_tokens;         /* tokens of one batch (max_num_batched_tokens) */
    int max_seqs;           /* sequences of one batch */
    int max_logits;         /* logits rows of one batch */
    int max_blocks_per_seq; /* block-table entries of one sequence (model_max_blocks_per_seq) */
    int split;              /* sequences come with a kv_local table too */
    int block_size;         /* KV block size in tokens */
};

/* Which of a sequence's new tokens get a logits row. */
enum batch_logits {
    BATCH_LOGITS_NONE, /* a prefill chunk that does not reach the end of the prompt */
    BATCH_LOGITS_LAST, /* the next token is sampled from the last one */
    BATCH_LOGITS_ALL,  /* every token's logits (the logits command) */
};

/* NULL on bad params (a limit below 1) or out of memory. Free with batch_free. */
struct batch *batch_create(const struct batch_params *p);
void batch_free(struct batch *b);

/* Empties the batch for the next step. */
void batch_clear(struct batch *b);

/* Adds tokens[start, start + n) of one sequence as the batch's next row: their positions are
 * start.., their KV goes to the slots kv (and kv_local, the sliding layers' table of a split
 * cache, or NULL) has reserved for them (kv_cache_reserve), and the
 * rows of their logits follow those already added. kv is read again by batch_finish, so it
 * must stay as it is until then. prompt_len is the sequence's prompt length (LongRoPE keys
 * on it; see model_batch). FOLIO_EINVAL (the batch unchanged) when n < 1 or the batch would
 * pass one of its limits. */
int batch_add(struct batch *b, const struct kv_seq *kv, const struct kv_seq *kv_local, const int32_t *tokens,
              int start, int n, int prompt_len, enum batch_logits logits);

/* The batch for model_forward, pointing into b (valid until batch_clear): the block tables
 * are copied in, packed as wide as the longest table, since at 128k positions a full-width
 * table is 32 KiB per sequence to move every step. copies: [num_copies, 2] (src, dst) KV
 * blocks to copy before the pass (kv_cache_reserve's copy-on-write), or NULL. */
void batch_finish(struct batch *b, const int32_t *copies, int num_copies, struct model_batch *out);

#endif
