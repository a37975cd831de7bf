/* batch: see batch.h. */
#include "core/batch.h"

#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* One allocation: the struct, then seqs, then the int32 arrays. */
struct batch {
    struct batch_params p;
    const struct kv_seq **seqs;                    /* [max_seqs] whose tables batch_finish copies */
    const struct kv_seq **seqs_local;              /* [max_seqs] (split) */
    int32_t *tokens, *positions, *seq_idx, *slots; /* [max_tokens] */
    int32_t *slots_local;                          /* [max_tokens] (split) */
    int32_t *tables_local;                         /* [max_seqs, max_blocks_per_seq] (split) */
    int32_t *logits_idx;                           /* [max_logits] token rows */
    int32_t *prompt_len;                           /* [max_seqs] */
    int32_t *tables;                               /* [max_seqs, max_blocks_per_seq], packed
                                                    * to [num_seqs, width] by batch_finish */
    int num_tokens, num_seqs, num_logits;
};

struct batch *batch_create(const struct batch_params *p) {
    if (p->max_tokens < 1 || p->max_seqs < 1 || p->max_logits < 1 || p->max_blocks_per_seq < 1 ||
        p->block_size < 1)
        return NULL;
    const size_t T = (size_t)p->max_tokens, S = (size_t)p->max_seqs;
    const size_t ints = 5 * T + (size_t)p->max_logits + S + 2 * S * (size_t)p->max_blocks_per_seq;
    struct batch *b = malloc(sizeof *b + 2 * S * sizeof *b->seqs + ints * sizeof(int32_t));
    if (!b) return NULL;
    *b = (struct batch){.p = *p, .seqs = (const struct kv_seq **)(b + 1)};
    b->seqs_local = b->seqs + S;
    int32_t *q = (int32_t *)(b->seqs_local + S);
    b->tokens = q, q += T;
    b->positions = q, q += T;
    b->seq_idx = q, q += T;
    b->slots = q, q += T;
    b->logits_idx = q, q += p->max_logits;
    b->prompt_len = q, q += S;
    b->slots_local = q, q += T;
    b->tables_local = q, q += S * (size_t)p->max_blocks_per_seq;
    b->tables = q;
    return b;
}

void batch_free(struct batch *b) { free(b); }

void batch_clear(struct batch *b) { b->num_tokens = b->num_seqs = b->num_logits = 0; }

int batch_add(struct batch *b, const struct kv_seq *kv, const struct kv_seq *kv_local, const int32_t *tokens,
              int start, int n, int prompt_len, enum batch_logits logits) {
    const int want = logits == BATCH_LOGITS_ALL ? n : logits == BATCH_LOGITS_LAST;
    if (n < 1 || start < 0 || b->num_seqs == b->p.max_seqs || n > b->p.max_tokens - b->num_tokens ||
        want > b->p.max_logits - b->num_logits || kv->num_blocks > b->p.max_blocks_per_seq ||
        (b->p.split && (!kv_local || kv_local->num_blocks != kv->num_blocks)))
        return folio_err(FOLIO_EINVAL, "batch: a sequence of %d tokens does not fit (%d tokens, %d sequences in)",
                         n, b->num_tokens, b->num_seqs);
    const int s = b->num_seqs++, bs = b->p.block_size;
    int T = b->num_tokens;
    for (int j = 0; j < n; j++, T++) {
        b->tokens[T] = tokens[start + j];
        b->positions[T] = start + j;
        b->seq_idx[T] = s;
        b->slots[T] = kv_seq_slot(kv, start + j, bs);
        if (b->p.split) b->slots_local[T] = kv_seq_slot(kv_local, start + j, bs);
    }
    for (int j = n - want; j < n; j++) b->logits_idx[b->num_logits++] = b->num_tokens + j;
    b->num_tokens = T;
    b->seqs[s] = kv;
    b->seqs_local[s] = kv_local;
    b->prompt_len[s] = prompt_len;
    return 0;
}

void batch_finish(struct batch *b, const int32_t *copies, int num_copies, struct model_batch *out) {
    int W = 1;
    for (int i = 0; i < b->num_seqs; i++)
        if (b->seqs[i]->num_blocks > W) W = b->seqs[i]->num_blocks;
    for (int i = 0; i < b->num_seqs; i++) {
        memcpy(b->tables + (size_t)i * W, b->seqs[i]->blocks, sizeof(int32_t) * (size_t)b->seqs[i]->num_blocks);
        if (b->p.split)
            memcpy(b->tables_local + (size_t)i * W, b->seqs_local[i]->blocks,
                   sizeof(int32_t) * (size_t)b->seqs_local[i]->num_blocks);
    }
    *out = (struct model_batch){
        .num_tokens = b->num_tokens, .tokens = b->tokens, .positions = b->positions, .seq_idx = b->seq_idx,
        .slot_mapping = b->slots, .num_seqs = b->num_seqs, .block_tables = b->tables, .block_table_width = W,
        .num_logits = b->num_logits, .logits_idx = b->logits_idx, .num_copies = num_copies,
        .block_copies = copies, .seq_prompt_len = b->prompt_len,
        .block_tables_local = b->p.split ? b->tables_local : NULL, .slot_mapping_local = b->p.split ? b->slots_local : NULL};
}
