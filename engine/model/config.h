/* config: config.json and generation_config.json of a Hugging Face Llama-family checkpoint,
 * parsed once into a plain struct that the rest of the engine reads (no JSON past this
 * module). Only the fields that change the math are kept; an unsupported architecture,
 * activation or RoPE scaling is an error here rather than silently wrong output later. */
#ifndef FOLIO_CONFIG_H
#define FOLIO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

enum model_arch { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2 };
enum rope_scaling_type { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 };

#define CONFIG_MAX_EOS 8

struct model_config {
    enum model_arch arch;
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
    int sliding_window;           /* 0 = full attention */
    enum folio_dtype torch_dtype; /* float32 when config.json does not say */

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

/* Inverse RoPE frequencies with the config's scaling applied: out[i] for i < head_dim/2. */
void config_rope_inv_freq(const struct model_config *cfg, double *out);

/* Resident bytes of every matrix and vector (the embedding included) that a model of this
 * config takes in dtype: what must fit before loading. Arithmetic only, so that foliod can
 * estimate a model without the engine. */
size_t config_weight_bytes(const struct model_config *c, enum folio_dtype dtype);
/* Bytes one KV block of block_size tokens takes across all layers (K and V): sizes the cache
 * and max_model_len before loading. */
size_t config_kv_block_bytes(const struct model_config *c, int block_size);

#endif
