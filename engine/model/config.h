/* config: config.json and generation_config.json of a Hugging Face checkpoint of a supported
 * family (Llama, Mistral, Qwen2/3, Qwen3-MoE, Mixtral, Gemma 2/3, Phi-3), parsed once into a
 * plain struct that the rest of the engine reads (no JSON past this module). The families
 * differ in a few switches (QK-norm, norm placement, activation, soft-caps, windows, experts)
 * that this struct spells out, so the forward pass is one piece of code. An unsupported
 * architecture or option is an error here, naming it, rather than silently wrong output. */
#ifndef FOLIO_CONFIG_H
#define FOLIO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

enum model_arch {
    ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3, ARCH_QWEN3_MOE, ARCH_MIXTRAL, ARCH_GEMMA2, ARCH_GEMMA3,
    ARCH_PHI3
};
enum rope_scaling_type { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3, ROPE_SCALING_LONGROPE };
enum model_act { MODEL_ACT_SILU, MODEL_ACT_GELU_TANH };

/* The supported architectures, as a message lists them. */
#define CONFIG_SUPPORTED_ARCHS                                                                                   \
    "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "            \
    "Qwen3MoeForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text), "        \
    "Phi3ForCausalLM"

#define CONFIG_MAX_LAYERS 4096
#define CONFIG_MAX_ROPE_FACTORS 512 /* LongRoPE factors: rotary dim / 2 */
/* layer_flags bits */
#define LAYER_SLIDING 1 /* attends over the last sliding_window positions only */
#define LAYER_MOE 2     /* a sparse MoE block instead of the dense MLP */
#define CONFIG_MAX_EOS 8

/* A pre-quantized checkpoint's quantization_config (quant_method as vLLM reads it). */
enum quant_method { QUANT_NONE = 0, QUANT_FP8, QUANT_AWQ, QUANT_GPTQ };
struct model_quant {
    enum quant_method method;
    int bits;          /* AWQ/GPTQ: 4 */
    int group_size;    /* AWQ/GPTQ: 32, 64 or 128; GPTQ -1 = one group per row */
    int sym;           /* GPTQ: symmetric (zero 8); AWQ: !zero_point */
    int desc_act;      /* GPTQ: act-order groups (g_idx) */
    int gptq_v2;       /* GPTQ checkpoint_format "gptq_v2": zeros stored as they are, not minus one */
    int fp8_channel;   /* FP8: a scale per output channel (compressed-tensors strategy "channel") */
    char name[32];     /* quant_method as written: "fp8", "compressed-tensors", "awq", "gptq" */
};

struct model_config {
    enum model_arch arch;
    struct model_quant quant;     /* QUANT_NONE for a float checkpoint */
    char arch_name[64];           /* architectures[0], e.g. "LlamaForCausalLM" */
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;                 /* explicit head_dim, else hidden_size / num_heads */
    int vocab_size;
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    struct {
        enum rope_scaling_type type;
        double factor;
        double low_freq_factor, high_freq_factor;   /* llama3 */
        int original_max_position_embeddings;       /* llama3 */
    } rope_scaling;
    int tie_word_embeddings;
    int attention_bias;           /* q/k/v projections carry biases (always for Qwen2) */
    int sliding_window;           /* 0 = full attention; applies to the LAYER_SLIDING layers */
    enum folio_dtype torch_dtype; /* float32 when config.json does not say */

    /* What sets the families apart. */
    enum model_act act;           /* of the gated MLP */
    int qk_norm;                  /* RMSNorm over each q and k head before RoPE (Qwen3, Gemma 3) */
    int norm_plus_one;            /* RMSNorm scales by (1 + w) (Gemma) */
    int sandwich_norm;            /* post-attention and post-MLP norms too: four per layer (Gemma) */
    int embed_scale;              /* embeddings times sqrt(hidden_size), rounded to the weights' dtype */
    int fused_qkv;                /* qkv_proj and gate_up_proj tensors (Phi-3) */
    float attn_scale;             /* on q.k: 1/sqrt(head_dim), or query_pre_attn_scalar^-1/2 */
    float attn_softcap;           /* 0 = none (Gemma 2: 50) */
    float final_softcap;          /* 0 = none (Gemma 2: 30) */
    int rotary_dim;               /* leading dims of a head that rotate (partial_rotary_factor) */
    double rope_local_theta;      /* RoPE base of the sliding layers, unscaled (Gemma 3); 0 = same */
    struct {                      /* rope_scaling.type longrope (Phi-3) */
        int original_max_position_embeddings;
        double attention_factor;  /* scales the rotated dims of q and k */
        double short_factor[CONFIG_MAX_ROPE_FACTORS], long_factor[CONFIG_MAX_ROPE_FACTORS];
    } longrope;
    /* Experts (Mixtral, Qwen3-MoE); num_experts 0 for a dense model. */
    int num_experts, num_experts_per_tok, moe_intermediate_size, norm_topk_prob;
    uint8_t layer_flags[CONFIG_MAX_LAYERS];

    /* generation_config.json (falls back to config.json's ids). */
    int32_t bos_token_id;         /* -1 when unknown */
    int32_t eos_token_ids[CONFIG_MAX_EOS];
    int num_eos_token_ids;
    /* Sampling defaults a server applies when a request leaves them out (as vLLM does);
     * a negative value means "not set". */
    float default_temperature, default_top_p, default_repetition_penalty;
    int default_top_k;
    int default_max_new_tokens;
};

/* Loads DIR/config.json (required) and DIR/generation_config.json (optional). Returns 0 or a
 * negative FOLIO_E* code with a one-line message in folio_last_error(). */
int config_load(const char *dir, struct model_config *cfg);

/* Parses config.json / generation_config.json text; exposed for tests and the fuzzer. */
int config_parse(const char *json, struct model_config *cfg);
int config_parse_generation(const char *json, struct model_config *cfg);

/* Inverse RoPE frequencies with the config's scaling applied: out[i] for i < rotary_dim / 2.
 * With LongRoPE, the short factors' (long = 0) or the long factors' (long = 1); for the
 * sliding layers of a model with rope_local_theta (local = 1), that base without scaling. */
void config_rope_inv_freq(const struct model_config *cfg, double *out);
void config_rope_inv_freq_for(const struct model_config *cfg, int local, int long_factors, double *out);

/* The dtype of the layers' matrices: a pre-quantized checkpoint's format (Q4Z for AWQ and
 * GPTQ, FP8), else dtype (which --quantization makes Q8, Q4 or FP8). */
enum folio_dtype config_matrix_dtype(const struct model_config *c, enum folio_dtype dtype);
/* Resident bytes of every matrix and vector (the embedding included) that a model of this
 * config takes in dtype: what must fit before loading. Arithmetic only, so that foliod can
 * estimate a model without the engine. */
size_t config_weight_bytes(const struct model_config *c, enum folio_dtype dtype);
/* Parameters: all of them, and those one token's forward pass uses (a MoE uses top_k of its
 * experts; the embedding table counts once, as in a model card's figures). */
void config_param_counts(const struct model_config *c, int64_t *total, int64_t *active);
/* Matrix bytes one decode token reads in dtype (the active experts only, the LM head, not
 * the embedding gather): what bounds single-stream decode. */
size_t config_active_weight_bytes(const struct model_config *c, enum folio_dtype dtype);
/* Bytes one KV block of block_size tokens takes across all layers (K and V) in kv_dtype:
 * sizes the cache and max_model_len before loading. */
size_t config_kv_block_bytes(const struct model_config *c, int block_size, enum folio_dtype kv_dtype);
/* --kv-cache-dtype (vLLM's flag): "auto" (or NULL), "bfloat16"/"bf16", "float32"/"fp32"/"float" or
 * "fp8"/"fp8_e4m3", to FOLIO_BF16, FOLIO_F32 or FOLIO_FP8. auto is the dtype of the weights
 * (`weights`: --dtype, or the checkpoint's torch_dtype): float32 stays float32, and bfloat16
 * and float16 models get bfloat16, whose fp32 range holds any K/V the fp32 activations make
 * (float16's 65504 need not); a quantized dtype also gets bfloat16. FOLIO_EINVAL names the
 * accepted values. */
int config_kv_dtype(const char *spec, enum folio_dtype weights, enum folio_dtype *out);
/* Layers with LAYER_SLIDING. */
int config_num_sliding_layers(const struct model_config *c);
/* Whether the model mixes sliding-window layers with full-attention ones (Gemma 2/3): then
 * the engine keeps the sliding layers' K/V in a pool of their own, in which a sequence holds
 * only its window's blocks. */
int config_kv_split(const struct model_config *c);
/* One block's bytes in the full layers (sliding = 0) or the sliding ones (sliding = 1). */
size_t config_kv_block_bytes_layers(const struct model_config *c, int block_size, int sliding,
                                    enum folio_dtype kv_dtype);
/* Blocks the sliding layers' pool needs so that it never runs out before the full layers'
 * one does: each of max_seqs sequences holds its window's blocks and a partial block or two,
 * and a step's new tokens (max_tokens) need theirs; never more than max_seqs sequences of
 * max_len use. */
int config_kv_local_blocks(const struct model_config *c, int block_size, int max_seqs, int max_tokens, int max_len);

#endif
