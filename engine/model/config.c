/* config: see config.h. */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads an integer field; a missing field keeps *out. Fails on a non-integral or out-of-range
 * value, since a typo there would otherwise give a model with a silently wrong shape. */
static int get_int(const cJSON *obj, const char *key, int *out, int min, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return folio_err(FOLIO_EINVAL, "config.json: \"%s\" must be an integer in [%d, %d]", key, min, max);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return folio_err(FOLIO_EINVAL, "config.json: \"%s\" must be a number", key);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *obj, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return folio_err(FOLIO_EINVAL, "config.json: \"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int is_token_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= INT32_MAX &&
           v->valuedouble == floor(v->valuedouble);
}

/* eos_token_id may be a single id or a list of ids. */
static int get_eos_list(const cJSON *obj, struct model_config *cfg, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    if (!v || cJSON_IsNull(v)) return 0;
    cfg->num_eos_token_ids = 0;
    if (cJSON_IsNumber(v)) {
        if (!is_token_id(v)) return folio_err(FOLIO_EINVAL, "%s: \"eos_token_id\" is not a token id", file);
        cfg->eos_token_ids[cfg->num_eos_token_ids++] = (int32_t)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v)) return folio_err(FOLIO_EINVAL, "%s: \"eos_token_id\" must be an id or a list of ids", file);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!is_token_id(e))
            return folio_err(FOLIO_EINVAL, "%s: \"eos_token_id\" holds a non-id", file);
        if (cfg->num_eos_token_ids == CONFIG_MAX_EOS)
            return folio_err(FOLIO_EUNSUP, "%s: more than %d eos ids", file, CONFIG_MAX_EOS);
        cfg->eos_token_ids[cfg->num_eos_token_ids++] = (int32_t)e->valuedouble;
    }
    return 0;
}

static int parse_rope_scaling(const cJSON *root, struct model_config *cfg) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return folio_err(FOLIO_EINVAL, "config.json: \"rope_scaling\" must be an object");
    /* Transformers renamed "type" to "rope_type"; checkpoints carry either. */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t)) return folio_err(FOLIO_EINVAL, "config.json: rope_scaling has no \"rope_type\"");
    int rc;
    if (strcmp(t->valuestring, "default") == 0) return 0;
    if ((rc = get_num(rs, "factor", &cfg->rope_scaling.factor))) return rc;
    if (!(cfg->rope_scaling.factor > 0)) return folio_err(FOLIO_EINVAL, "config.json: rope_scaling.factor must be > 0");
    if (strcmp(t->valuestring, "linear") == 0) {
        cfg->rope_scaling.type = ROPE_SCALING_LINEAR;
        return 0;
    }
    if (strcmp(t->valuestring, "llama3") == 0) {
        cfg->rope_scaling.type = ROPE_SCALING_LLAMA3;
        cfg->rope_scaling.low_freq_factor = 1.0;
        cfg->rope_scaling.high_freq_factor = 4.0;
        cfg->rope_scaling.original_max_position_embeddings = 8192;
        if ((rc = get_num(rs, "low_freq_factor", &cfg->rope_scaling.low_freq_factor)) ||
            (rc = get_num(rs, "high_freq_factor", &cfg->rope_scaling.high_freq_factor)) ||
            (rc = get_int(rs, "original_max_position_embeddings",
                          &cfg->rope_scaling.original_max_position_embeddings, 1, 1 << 30)))
            return rc;
        if (!(cfg->rope_scaling.high_freq_factor > cfg->rope_scaling.low_freq_factor))
            return folio_err(FOLIO_EINVAL, "config.json: llama3 rope_scaling needs high_freq_factor > low_freq_factor");
        return 0;
    }
    return folio_err(FOLIO_EUNSUP, "config.json: rope_scaling type \"%s\" is not supported (linear, llama3)",
                     t->valuestring);
}

int config_parse(const char *json, struct model_config *cfg) {
    int rc = 0;
    cJSON *root = cJSON_Parse(json);
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_token_id = -1;
    cfg->rms_norm_eps = 1e-6f;
    cfg->rope_theta = 10000.0;
    cfg->max_position_embeddings = 2048;
    cfg->tie_word_embeddings = 0; /* the default of LlamaConfig, MistralConfig and Qwen2Config */
    cfg->torch_dtype = FOLIO_F32;
    cfg->default_temperature = cfg->default_top_p = cfg->default_repetition_penalty = -1.0f;
    cfg->default_top_k = cfg->default_max_new_tokens = -1;
    if (!root || !cJSON_IsObject(root)) {
        rc = folio_err(FOLIO_EINVAL, "config.json is not valid JSON");
        goto out;
    }

    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        rc = folio_err(FOLIO_EINVAL, "config.json: missing \"architectures\"");
        goto out;
    }
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", a0->valuestring);
    if (strcmp(a0->valuestring, "LlamaForCausalLM") == 0) {
        cfg->arch = ARCH_LLAMA;
    } else if (strcmp(a0->valuestring, "MistralForCausalLM") == 0) {
        cfg->arch = ARCH_MISTRAL;
    } else if (strcmp(a0->valuestring, "Qwen2ForCausalLM") == 0) {
        cfg->arch = ARCH_QWEN2;
        cfg->attention_bias = 1; /* Qwen2 always has q/k/v biases; its config has no key */
    } else {
        rc = folio_err(FOLIO_EUNSUP,
                       "unsupported architecture \"%s\" (supported: LlamaForCausalLM, "
                       "MistralForCausalLM, Qwen2ForCausalLM)", a0->valuestring);
        goto out;
    }

    const int big = 1 << 24;
    if ((rc = get_int(root, "hidden_size", &cfg->hidden_size, 1, big)) ||
        (rc = get_int(root, "intermediate_size", &cfg->intermediate_size, 1, big)) ||
        (rc = get_int(root, "num_hidden_layers", &cfg->num_layers, 1, 4096)) ||
        (rc = get_int(root, "num_attention_heads", &cfg->num_heads, 1, 4096)) ||
        (rc = get_int(root, "vocab_size", &cfg->vocab_size, 1, big)) ||
        (rc = get_int(root, "max_position_embeddings", &cfg->max_position_embeddings, 1, 1 << 30)))
        goto out;
    if (!cfg->hidden_size || !cfg->intermediate_size || !cfg->num_layers || !cfg->num_heads || !cfg->vocab_size) {
        rc = folio_err(FOLIO_EINVAL, "config.json: hidden_size, intermediate_size, num_hidden_layers, "
                                     "num_attention_heads and vocab_size are required");
        goto out;
    }
    cfg->num_kv_heads = cfg->num_heads;
    if ((rc = get_int(root, "num_key_value_heads", &cfg->num_kv_heads, 1, 4096))) goto out;
    if (cfg->num_heads % cfg->num_kv_heads) {
        rc = folio_err(FOLIO_EINVAL, "config.json: num_attention_heads (%d) is not a multiple of "
                                     "num_key_value_heads (%d)", cfg->num_heads, cfg->num_kv_heads);
        goto out;
    }
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    if ((rc = get_int(root, "head_dim", &cfg->head_dim, 2, 4096))) goto out;
    if (cfg->head_dim % 2) {
        rc = folio_err(FOLIO_EINVAL, "config.json: head_dim must be even for RoPE");
        goto out;
    }
    double eps = cfg->rms_norm_eps;
    if ((rc = get_num(root, "rms_norm_eps", &eps)) || (rc = get_num(root, "rope_theta", &cfg->rope_theta)))
        goto out;
    cfg->rms_norm_eps = (float)eps;
    if (!(cfg->rope_theta > 0)) {
        rc = folio_err(FOLIO_EINVAL, "config.json: rope_theta must be > 0");
        goto out;
    }
    if ((rc = get_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings)) ||
        (rc = get_bool(root, "attention_bias", &cfg->attention_bias)))
        goto out;
    if (cfg->arch == ARCH_QWEN2) cfg->attention_bias = 1;
    int mlp_bias = 0;
    if ((rc = get_bool(root, "mlp_bias", &mlp_bias))) goto out;
    if (mlp_bias) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: mlp_bias is not supported");
        goto out;
    }

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "silu") != 0) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: hidden_act \"%s\" is not supported (silu)", act->valuestring);
        goto out;
    }

    /* Mistral applies its window whenever it is set; Qwen2 only with use_sliding_window. */
    int use_window = cfg->arch == ARCH_MISTRAL;
    if ((rc = get_bool(root, "use_sliding_window", &use_window))) goto out;
    if (use_window && (rc = get_int(root, "sliding_window", &cfg->sliding_window, 0, 1 << 30))) goto out;
    if (!use_window || cfg->sliding_window >= cfg->max_position_embeddings) cfg->sliding_window = 0;

    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!cJSON_IsString(td)) td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (cJSON_IsString(td) && folio_dtype_parse(td->valuestring, &cfg->torch_dtype) != 0) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: torch_dtype \"%s\" is not supported", td->valuestring);
        goto out;
    }

    if ((rc = parse_rope_scaling(root, cfg))) goto out;
    int bos = -1;
    if ((rc = get_int(root, "bos_token_id", &bos, 0, big))) goto out;
    cfg->bos_token_id = bos;
    rc = get_eos_list(root, cfg, "config.json");
out:
    cJSON_Delete(root);
    return rc;
}

int config_parse_generation(const char *json, struct model_config *cfg) {
    int rc = 0;
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        rc = folio_err(FOLIO_EINVAL, "generation_config.json is not valid JSON");
        goto out;
    }
    int bos = cfg->bos_token_id;
    if ((rc = get_int(root, "bos_token_id", &bos, 0, 1 << 24))) goto out;
    cfg->bos_token_id = bos;
    if ((rc = get_eos_list(root, cfg, "generation_config.json"))) goto out;
    double t = cfg->default_temperature, p = cfg->default_top_p, r = cfg->default_repetition_penalty;
    if ((rc = get_num(root, "temperature", &t)) || (rc = get_num(root, "top_p", &p)) ||
        (rc = get_num(root, "repetition_penalty", &r)) ||
        (rc = get_int(root, "top_k", &cfg->default_top_k, 0, 1 << 24)) ||
        (rc = get_int(root, "max_new_tokens", &cfg->default_max_new_tokens, 0, 1 << 30)))
        goto out;
    cfg->default_temperature = (float)t;
    cfg->default_top_p = (float)p;
    cfg->default_repetition_penalty = (float)r;
out:
    cJSON_Delete(root);
    return rc;
}

int config_load(const char *dir, struct model_config *cfg) {
    char path[4096];
    char *text = NULL;
    int rc;
    if ((rc = folio_path_join(path, sizeof path, dir, "config.json"))) return rc;
    if ((rc = folio_read_file(path, &text, NULL))) return rc;
    rc = config_parse(text, cfg);
    free(text);
    text = NULL;
    if (rc) return rc;
    if ((rc = folio_path_join(path, sizeof path, dir, "generation_config.json"))) return rc;
    if (folio_file_exists(path)) {
        if ((rc = folio_read_file(path, &text, NULL))) return rc;
        rc = config_parse_generation(text, cfg);
        free(text);
    }
    return rc;
}

void config_rope_inv_freq(const struct model_config *cfg, double *out) {
    const int half = cfg->head_dim / 2;
    const double two_pi = 6.283185307179586;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(cfg->rope_theta, (2.0 * i) / cfg->head_dim);
        if (cfg->rope_scaling.type == ROPE_SCALING_LINEAR) {
            f /= cfg->rope_scaling.factor;
        } else if (cfg->rope_scaling.type == ROPE_SCALING_LLAMA3) {
            /* Long wavelengths are slowed by `factor`, short ones kept, the band between
             * interpolated: Llama 3.1's context extension. */
            double old_len = cfg->rope_scaling.original_max_position_embeddings;
            double lo = cfg->rope_scaling.low_freq_factor, hi = cfg->rope_scaling.high_freq_factor;
            double wavelen = two_pi / f;
            if (wavelen > old_len / lo) {
                f /= cfg->rope_scaling.factor;
            } else if (wavelen >= old_len / hi) {
                double smooth = (old_len / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / cfg->rope_scaling.factor + smooth * f;
            }
        }
        out[i] = f;
    }
}

size_t config_weight_bytes(const struct model_config *c, enum folio_dtype dtype) {
    const size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    const size_t qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim;
    const size_t per_layer = H * qd * 2 + H * kvd * 2 + 3 * H * I;
    size_t n = (size_t)c->num_layers * per_layer + V * H * (c->tie_word_embeddings ? 1 : 2);
    size_t vec = H + (size_t)c->num_layers * (2 * H + (c->attention_bias ? qd + 2 * kvd : 0));
    return n * folio_dtype_size(dtype) + vec * sizeof(float);
}

size_t config_kv_block_bytes(const struct model_config *c, int block_size) {
    return 2 * (size_t)c->num_layers * c->num_kv_heads * c->head_dim * (size_t)block_size * sizeof(float);
}
