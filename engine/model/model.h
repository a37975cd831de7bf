/* model: a Llama-family checkpoint (Llama, Mistral, Qwen2) resident on a backend, and its
 * forward pass over a flattened batch of tokens from several sequences.
 *
 * Batch layout (vLLM's, see DESIGN.md): the scheduled tokens of all sequences flattened to
 * [num_tokens], each with its position and sequence index; each sequence has a block table
 * of physical KV block ids, and each new token a slot (block * block_size + offset) where its
 * K/V are written. Attention reads K/V only through the block tables. */
#ifndef FOLIO_MODEL_H
#define FOLIO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/config.h"

struct model;

struct model_params {
    int dtype_auto;             /* 1: keep each weight's checkpoint dtype */
    enum folio_dtype dtype;     /* used when dtype_auto == 0 */
    int max_num_batched_tokens; /* largest num_tokens of a batch */
    int max_num_seqs;           /* largest num_seqs of a batch */
    int max_num_logits;         /* largest num_logits of a batch */
    int max_model_len;          /* 0: max_position_embeddings */
    int block_size;             /* KV block size in tokens */
    /* The KV cache's dtype: FOLIO_F32 (the default), FOLIO_BF16 or FOLIO_FP8 (e4m3, with the
     * checkpoint's per-layer self_attn.k_scale / v_scale, else 1), where the backend has it
     * (backend_supports_kv_dtype). config_kv_dtype resolves --kv-cache-dtype to one. */
    enum folio_dtype kv_dtype;
    /* Quantization at load (--quantization): FOLIO_Q8, FOLIO_Q4 or FOLIO_FP8 for the layers'
     * matrices and the LM head; 0 (FOLIO_F32) = none. A pre-quantized checkpoint refuses it. */
    enum folio_dtype quantization;
};

struct model_params model_default_params(void);

struct model_batch {
    int num_tokens;
    const int32_t *tokens;        /* [num_tokens] */
    const int32_t *positions;     /* [num_tokens] */
    const int32_t *seq_idx;       /* [num_tokens] row of block_tables */
    const int32_t *slot_mapping;  /* [num_tokens] KV slot, -1 for padding */
    int num_seqs;
    const int32_t *block_tables;  /* [num_seqs, block_table_width] */
    int num_logits;
    const int32_t *logits_idx;    /* [num_logits] token rows whose logits are wanted */
    int num_copies;               /* at most max_num_seqs */
    const int32_t *block_copies;  /* [num_copies, 2] (src, dst) KV blocks to copy first */
    int block_table_width;        /* 0: model_max_blocks_per_seq; less is cheaper to move, and must
                                   * cover every token's position / block_size */
    /* [num_seqs] each sequence's prompt length, or NULL (then the sequence's last position in
     * this batch + 1 stands for it). LongRoPE (Phi-3) rotates a token with its long factors
     * when max(prompt length, position + 1) passes the pretrained length: what transformers
     * does for an unchunked prefill and each decode step, made independent of chunking,
     * batching and preemption. */
    const int32_t *seq_prompt_len;
    /* With a split KV cache (model_alloc_kv_split): the sliding layers' tables and slots in
     * their own pool, in the layout of block_tables / slot_mapping (the same width), and the
     * copies to make there first. NULL / 0 otherwise. */
    const int32_t *block_tables_local; /* [num_seqs, block_table_width] */
    const int32_t *slot_mapping_local; /* [num_tokens] */
    int num_copies_local;
    const int32_t *block_copies_local; /* [num_copies_local, 2] */
};

/* Loads config, weights and allocates the activation scratch for the params' limits.
 * Tensors are checked against the config (present, exact shape). Free with model_free. */
int model_load(const char *dir, const struct model_params *p, struct backend *b, struct model **out);
void model_free(struct model *m);

/* Allocates the paged KV cache: num_blocks blocks of params.block_size tokens. */
int model_alloc_kv(struct model *m, int num_blocks);
/* Whether the model mixes sliding-window and full-attention layers (Gemma 2/3), so that its
 * sliding layers can keep their KV in a pool of their own (model_alloc_kv_split). */
int model_has_local_layers(const struct model *m);
/* The split cache: the full layers' K/V in num_blocks blocks, the sliding layers' in
 * num_local_blocks, each pool with its own block tables (model_batch's _local fields), so a
 * sequence holds only its window's blocks of the sliding layers. */
int model_alloc_kv_split(struct model *m, int num_blocks, int num_local_blocks);
/* Bytes one KV block takes across all layers (K and V); before loading, from the config:
 * config_kv_block_bytes. */
size_t model_kv_block_bytes(const struct model *m);
/* The KV cache's dtype (model_params.kv_dtype), and an FP8 cache's scales of layer l (1 when
 * the checkpoint has none, and for the other dtypes). */
enum folio_dtype model_kv_dtype(const struct model *m);
void model_kv_scales(const struct model *m, int l, float *k_scale, float *v_scale);

const struct model_config *model_config(const struct model *m);
const struct model_params *model_params(const struct model *m);
int model_max_blocks_per_seq(const struct model *m);
/* Bytes of weights read once per forward (what bounds single-stream decode). */
size_t model_weight_bytes(const struct model *m);
enum folio_dtype model_dtype(const struct model *m);
/* The dtype of the layers' matrices: model_dtype, or a quantized one (Q8, Q4, Q4Z, FP8). */
enum folio_dtype model_matrix_dtype(const struct model *m);
/* Device bytes of activation scratch: the model's buffers and the backend's reserve. */
size_t model_activation_bytes(const struct model *m);
/* Lowers max_model_len after load (when the KV cache turns out smaller than planned). */
void model_set_max_model_len(struct model *m, int len);
/* Frees the KV cache (model_alloc_kv may then run again). */
void model_free_kv(struct model *m);
/* One forward pass at the params' limits on a scratch one-block KV cache (allocated and freed
 * here when none is), so that every lazily allocated device buffer exists afterwards: the
 * memory measured then is the engine's peak outside the KV cache. */
int model_profile(struct model *m);

/* Runs the batch and writes logits[num_logits, vocab_size] (host memory, fp32). The batch
 * must respect the params' limits; a violation is an error, never an overflow. */
int model_forward(struct model *m, const struct model_batch *batch, float *logits);
/* Whether the backend can take the argmax of the logits itself (the GPU). */
int model_has_device_argmax(const struct model *m);
/* The same pass, but only ids[num_logits], each row's argmax (lowest id on ties), reach the
 * host: greedy decoding without moving the logits. */
int model_forward_argmax(struct model *m, const struct model_batch *batch, int32_t *ids);

/* Records the forward pass as CUDA graphs (backends that can record), as vLLM does for
 * decode: one per batch size up to max_batch (1, 2, 4, 8, 16, 24, ... 512), after the KV
 * cache exists. From then on a batch that wants every token's logits, in order, within the
 * graphs' context bound (8192 or max_model_len), pads to the next recorded size and replays
 * it with one launch instead of a few hundred; any other batch runs as before. Returns the
 * number recorded (0 where the backend cannot), or a negative code (then none are kept). */
int model_capture_graphs(struct model *m, int max_batch);
/* Graphs recorded, and the largest batch one serves. */
int model_num_graphs(const struct model *m, int *largest);
/* Forward passes served by a graph so far. */
long long model_graph_replays(const struct model *m);

#endif
