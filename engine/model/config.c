/* config: see config.h. */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"

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

/* LongRoPE (Phi-3): short and long per-frequency factors, switched where a sequence grows past
 * original_max_position_embeddings, and an attention factor on the rotated dims. */
static int parse_longrope(const cJSON *root, const cJSON *rs, struct model_config *cfg) {
    int rc, half = cfg->rotary_dim / 2;
    const char *keys[2] = {"short_factor", "long_factor"};
    double *dst[2] = {cfg->longrope.short_factor, cfg->longrope.long_factor};
    for (int f = 0; f < 2; f++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(rs, keys[f]);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != half)
            return folio_err(FOLIO_EINVAL, "config.json: rope_scaling.%s must list %d numbers (rotary dim / 2)",
                             keys[f], half);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, a) {
            if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
                return folio_err(FOLIO_EINVAL, "config.json: rope_scaling.%s holds a non-positive factor", keys[f]);
            dst[f][i++] = e->valuedouble;
        }
    }
    /* Phi-3 keeps the pretrained length at the top level and lets max_position_embeddings be
     * the extended one; their ratio sets the default attention factor (transformers'
     * _compute_longrope_parameters). */
    int orig = 0;
    if ((rc = get_int(root, "original_max_position_embeddings", &orig, 1, 1 << 30)) ||
        (!orig && (rc = get_int(rs, "original_max_position_embeddings", &orig, 1, 1 << 30))))
        return rc;
    if (!orig) orig = 4096; /* Phi3Config's default: the attribute always exists there */
    const double factor = (double)cfg->max_position_embeddings / orig;
    cfg->longrope.original_max_position_embeddings = orig;
    double af = factor <= 1.0 ? 1.0 : sqrt(1.0 + log(factor) / log((double)orig));
    if ((rc = get_num(rs, "attention_factor", &af))) return rc;
    if (!(af > 0)) return folio_err(FOLIO_EINVAL, "config.json: rope_scaling.attention_factor must be > 0");
    cfg->longrope.attention_factor = af;
    cfg->rope_scaling.type = ROPE_SCALING_LONGROPE;
    return 0;
}

/* rs: rope_scaling, or transformers v5's rope_parameters (the same keys plus rope_theta). */
static int parse_rope_scaling(const cJSON *root, const cJSON *rs, struct model_config *cfg) {
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return folio_err(FOLIO_EINVAL, "config.json: \"rope_scaling\" must be an object");
    /* Transformers renamed "type" to "rope_type"; checkpoints carry either. */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t)) return folio_err(FOLIO_EINVAL, "config.json: rope_scaling has no \"rope_type\"");
    int rc;
    if (strcmp(t->valuestring, "default") == 0) return 0;
    /* "su" is LongRoPE's first name, still in early Phi-3 configs. */
    if (strcmp(t->valuestring, "longrope") == 0 || strcmp(t->valuestring, "su") == 0) {
        if (cfg->arch != ARCH_PHI3)
            return folio_err(FOLIO_EUNSUP, "config.json: rope_scaling type \"%s\" is supported for Phi3ForCausalLM only",
                             t->valuestring);
        return parse_longrope(root, rs, cfg);
    }
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
    return folio_err(FOLIO_EUNSUP, "config.json: rope_scaling type \"%s\" is not supported (linear, llama3, longrope)",
                     t->valuestring);
}

struct arch_info {
    const char *name;
    enum model_arch arch;
};

static const struct arch_info archs[] = {
    {"LlamaForCausalLM", ARCH_LLAMA},       {"MistralForCausalLM", ARCH_MISTRAL},
    {"MixtralForCausalLM", ARCH_MIXTRAL},   {"Qwen2ForCausalLM", ARCH_QWEN2},
    {"Qwen3ForCausalLM", ARCH_QWEN3},       {"Qwen3MoeForCausalLM", ARCH_QWEN3_MOE},
    {"Gemma2ForCausalLM", ARCH_GEMMA2},     {"Gemma3ForCausalLM", ARCH_GEMMA3},
    {"Gemma3ForConditionalGeneration", ARCH_GEMMA3}, {"Phi3ForCausalLM", ARCH_PHI3},
};

static int is_gemma(const struct model_config *c) { return c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3; }

/* The defaults of transformers' Gemma2Config / Gemma3TextConfig: a Gemma 3 config's
 * text_config leaves out whatever equals them. */
static void gemma_defaults(struct model_config *c) {
    c->vocab_size = c->arch == ARCH_GEMMA2 ? 256000 : 262208;
    c->hidden_size = 2304;
    c->intermediate_size = 9216;
    c->num_layers = 26;
    c->num_heads = 8;
    c->num_kv_heads = 4;
    c->head_dim = 256;
    c->max_position_embeddings = c->arch == ARCH_GEMMA2 ? 8192 : 131072;
    c->rope_theta = c->arch == ARCH_GEMMA2 ? 10000.0 : 1000000.0;
    c->tie_word_embeddings = 1;
    c->sliding_window = 4096;
}

static int parse_act(const cJSON *root, struct model_config *c) {
    /* Gemma reads hidden_activation only (its configs carry hidden_act too, for old code). */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, is_gemma(c) ? "hidden_activation" : "hidden_act");
    c->act = is_gemma(c) ? MODEL_ACT_GELU_TANH : MODEL_ACT_SILU;
    if (!cJSON_IsString(act)) return 0;
    const char *a = act->valuestring;
    if (!strcmp(a, "silu") || !strcmp(a, "swish")) c->act = MODEL_ACT_SILU;
    else if (!strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_tanh")) c->act = MODEL_ACT_GELU_TANH;
    else return folio_err(FOLIO_EUNSUP, "config.json: hidden_act \"%s\" is not supported (silu, gelu_pytorch_tanh)", a);
    return 0;
}

/* Which layers attend through a sliding window: layer_types when the config lists them,
 * else each family's rule. */
static int parse_windows(const cJSON *root, struct model_config *c) {
    int rc, use = c->arch == ARCH_MISTRAL || c->arch == ARCH_MIXTRAL || c->arch == ARCH_PHI3 || is_gemma(c);
    if ((rc = get_bool(root, "use_sliding_window", &use))) return rc;
    /* MistralConfig's default window is 4096 (null turns it off); the others default to none. */
    if (c->arch == ARCH_MISTRAL && !cJSON_GetObjectItemCaseSensitive(root, "sliding_window")) c->sliding_window = 4096;
    if (use && (rc = get_int(root, "sliding_window", &c->sliding_window, 0, 1 << 30))) return rc;
    if (!use || c->sliding_window <= 0) {
        c->sliding_window = 0;
        return 0;
    }
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    int max_window_layers = 0, pattern = 6;
    if (c->arch == ARCH_QWEN2 || c->arch == ARCH_QWEN3 || c->arch == ARCH_QWEN3_MOE) {
        max_window_layers = 28; /* Qwen2Config / Qwen3Config default */
        if ((rc = get_int(root, "max_window_layers", &max_window_layers, 0, 1 << 30))) return rc;
    }
    if (c->arch == ARCH_GEMMA3 && (rc = get_int(root, "sliding_window_pattern", &pattern, 1, 1 << 20))) return rc;
    if (types && !cJSON_IsNull(types) &&
        (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != c->num_layers))
        return folio_err(FOLIO_EINVAL, "config.json: layer_types must list one type per layer (%d)", c->num_layers);
    for (int l = 0; l < c->num_layers; l++) {
        int sliding;
        if (cJSON_IsArray(types)) {
            const cJSON *t = cJSON_GetArrayItem(types, l);
            if (!cJSON_IsString(t) ||
                (strcmp(t->valuestring, "sliding_attention") && strcmp(t->valuestring, "full_attention")))
                return folio_err(FOLIO_EUNSUP, "config.json: layer_types[%d] is not supported "
                                               "(sliding_attention, full_attention)", l);
            sliding = !strcmp(t->valuestring, "sliding_attention");
        } else if (c->arch == ARCH_GEMMA2) {
            sliding = l % 2 == 0;
        } else if (c->arch == ARCH_GEMMA3) {
            sliding = (l + 1) % pattern != 0;
        } else if (c->arch == ARCH_QWEN2 || c->arch == ARCH_QWEN3 || c->arch == ARCH_QWEN3_MOE) {
            sliding = l >= max_window_layers;
        } else {
            sliding = 1;
        }
        if (sliding) c->layer_flags[l] |= LAYER_SLIDING;
    }
    return 0;
}

static int parse_experts(const cJSON *root, struct model_config *c) {
    int rc, step = 1;
    if (c->arch == ARCH_MIXTRAL) {
        c->num_experts = 8;
        c->num_experts_per_tok = 2;
        c->norm_topk_prob = 1; /* Mixtral always renormalizes its top-k */
        if ((rc = get_int(root, "num_local_experts", &c->num_experts, 1, 1024))) return rc;
        c->moe_intermediate_size = c->intermediate_size;
    } else {
        c->num_experts = 128;
        c->num_experts_per_tok = 8;
        c->moe_intermediate_size = 768;
        if ((rc = get_int(root, "num_experts", &c->num_experts, 0, 1024)) ||
            (rc = get_int(root, "moe_intermediate_size", &c->moe_intermediate_size, 1, 1 << 24)) ||
            (rc = get_bool(root, "norm_topk_prob", &c->norm_topk_prob)) ||
            (rc = get_int(root, "decoder_sparse_step", &step, 1, 4096)))
            return rc;
    }
    if ((rc = get_int(root, "num_experts_per_tok", &c->num_experts_per_tok, 1, 64))) return rc;
    if (c->num_experts == 0) return 0; /* a Qwen3-MoE config with no experts is dense */
    if (c->num_experts_per_tok > c->num_experts)
        return folio_err(FOLIO_EINVAL, "config.json: num_experts_per_tok (%d) exceeds the %d experts",
                         c->num_experts_per_tok, c->num_experts);
    for (int l = 0; l < c->num_layers; l++)
        if ((l + 1) % step == 0) c->layer_flags[l] |= LAYER_MOE;
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (dense && !cJSON_IsNull(dense)) {
        if (!cJSON_IsArray(dense)) return folio_err(FOLIO_EINVAL, "config.json: mlp_only_layers must be a list");
        const cJSON *e;
        cJSON_ArrayForEach(e, dense) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
                e->valuedouble >= c->num_layers)
                return folio_err(FOLIO_EINVAL, "config.json: mlp_only_layers holds a non-layer");
            c->layer_flags[(int)e->valuedouble] &= (uint8_t)~LAYER_MOE;
        }
    }
    return 0;
}

/* Soft-caps: a number, or null for none. */
static int get_cap(const cJSON *root, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return 0;
    if (cJSON_IsNull(v)) {
        *out = 0.0f;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return folio_err(FOLIO_EINVAL, "config.json: \"%s\" must be a positive number or null", key);
    *out = (float)v->valuedouble;
    return 0;
}

/* The family switches past the shape: norms, activation, scales, caps, windows, experts. */
static int quant_unsupported(const char *what) {
    return folio_err(FOLIO_EUNSUP,
                     "config.json: quantization_config %s is not supported (supported: fp8 and compressed-tensors "
                     "float8 with per-tensor or per-channel weight scales; awq 4-bit gemm; gptq 4-bit)", what);
}

/* compressed-tensors: only float8 weights ("float-quantized"), one scheme for every Linear. */
static int parse_compressed_tensors(const cJSON *qc, struct model_quant *q) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(qc, "format");
    if (cJSON_IsString(fmt) && strcmp(fmt->valuestring, "float-quantized") &&
        strcmp(fmt->valuestring, "naive-quantized"))
        return quant_unsupported("compressed-tensors in a format other than float-quantized");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    const cJSON *g = cJSON_IsObject(groups) ? groups->child : NULL;
    if (!g || g->next) return quant_unsupported("compressed-tensors without exactly one config group");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights");
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(w, "num_bits");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(w, "type");
    const cJSON *strategy = cJSON_GetObjectItemCaseSensitive(w, "strategy");
    if (!cJSON_IsNumber(bits) || bits->valueint != 8 || !cJSON_IsString(type) || strcmp(type->valuestring, "float"))
        return quant_unsupported("compressed-tensors other than 8-bit float weights");
    if (!cJSON_IsString(strategy) ||
        (strcmp(strategy->valuestring, "tensor") && strcmp(strategy->valuestring, "channel")))
        return quant_unsupported("compressed-tensors with a weight strategy other than tensor or channel");
    q->method = QUANT_FP8;
    q->fp8_channel = !strcmp(strategy->valuestring, "channel");
    return 0;
}

static int parse_quant(const cJSON *root, struct model_quant *q) {
    memset(q, 0, sizeof *q);
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!qc || cJSON_IsNull(qc)) return 0;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (!cJSON_IsObject(qc) || !cJSON_IsString(m))
        return folio_err(FOLIO_EINVAL, "config.json: quantization_config needs a quant_method");
    snprintf(q->name, sizeof q->name, "%s", m->valuestring);
    char what[96];
    snprintf(what, sizeof what, "quant_method \"%.40s\"", m->valuestring);
    if (!strcmp(q->name, "fp8")) {
        if (cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size") &&
            !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size")))
            return quant_unsupported("fp8 with block-wise scales (weight_block_size)");
        q->method = QUANT_FP8;
        return 0;
    }
    if (!strcmp(q->name, "compressed-tensors")) return parse_compressed_tensors(qc, q);
    if (strcmp(q->name, "awq") && strcmp(q->name, "gptq")) return quant_unsupported(what);
    const int awq = q->name[0] == 'a';
    int rc;
    q->bits = q->group_size = 0;
    /* AutoAWQ's own quant_config spells them w_bit and q_group_size */
    if ((rc = get_int(qc, awq ? "w_bit" : "bits", &q->bits, 0, 64)) ||
        (!q->bits && (rc = get_int(qc, "bits", &q->bits, 0, 64))) ||
        (rc = get_int(qc, awq ? "q_group_size" : "group_size", &q->group_size, -1, 1 << 20)) ||
        (!q->group_size && (rc = get_int(qc, "group_size", &q->group_size, -1, 1 << 20))))
        return rc;
    if (q->bits != 4) return quant_unsupported(awq ? "awq with bits other than 4" : "gptq with bits other than 4");
    const int gs = q->group_size;
    if (gs != 32 && gs != 64 && gs != 128 && !(gs == -1 && !awq))
        return quant_unsupported(awq ? "awq with a group size other than 32, 64 or 128"
                                     : "gptq with a group size other than 32, 64, 128 or -1");
    if (awq) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(qc, "version");
        if (cJSON_IsString(v) && strcasecmp(v->valuestring, "gemm"))
            return quant_unsupported("awq with a version other than gemm");
        int zp = 1;
        if ((rc = get_bool(qc, "zero_point", &zp))) return rc;
        q->sym = !zp;
        q->method = QUANT_AWQ;
        return 0;
    }
    int sym = 1, desc = 0;
    if ((rc = get_bool(qc, "sym", &sym)) || (rc = get_bool(qc, "desc_act", &desc))) return rc;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(qc, "checkpoint_format");
    if (cJSON_IsString(fmt) && strcmp(fmt->valuestring, "gptq") && strcmp(fmt->valuestring, "gptq_v2"))
        return quant_unsupported("gptq with a checkpoint_format other than gptq or gptq_v2");
    q->gptq_v2 = cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "gptq_v2");
    q->sym = sym;
    q->desc_act = desc;
    q->method = QUANT_GPTQ;
    return 0;
}

static int parse_family(const cJSON *root, struct model_config *c) {
    int rc;
    if ((rc = parse_act(root, c))) return rc;
    c->qk_norm = c->arch == ARCH_QWEN3 || c->arch == ARCH_QWEN3_MOE || c->arch == ARCH_GEMMA3;
    c->norm_plus_one = c->sandwich_norm = c->embed_scale = is_gemma(c);
    c->fused_qkv = c->arch == ARCH_PHI3;
    c->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    c->rotary_dim = c->head_dim;
    if (is_gemma(c)) {
        double qs = 256.0;
        if ((rc = get_num(root, "query_pre_attn_scalar", &qs))) return rc;
        if (!(qs > 0)) return folio_err(FOLIO_EINVAL, "config.json: query_pre_attn_scalar must be > 0");
        c->attn_scale = (float)(1.0 / sqrt(qs));
        if (c->arch == ARCH_GEMMA2) {
            c->attn_softcap = 50.0f;
            c->final_softcap = 30.0f;
        }
        if ((rc = get_cap(root, "attn_logit_softcapping", &c->attn_softcap)) ||
            (rc = get_cap(root, "final_logit_softcapping", &c->final_softcap)))
            return rc;
    }
    if (c->arch == ARCH_GEMMA3) {
        c->rope_local_theta = 10000.0;
        if ((rc = get_num(root, "rope_local_base_freq", &c->rope_local_theta))) return rc;
        if (!(c->rope_local_theta > 0)) return folio_err(FOLIO_EINVAL, "config.json: rope_local_base_freq must be > 0");
    }
    if (c->arch == ARCH_PHI3) {
        double f = 1.0;
        if ((rc = get_num(root, "partial_rotary_factor", &f))) return rc;
        const int rd = f > 0 && f <= 1 ? (int)(c->head_dim * f) : 0; /* transformers truncates too */
        if (rd < 2 || rd % 2)
            return folio_err(FOLIO_EINVAL, "config.json: partial_rotary_factor %g gives no even rotary dimension", f);
        if (rd / 2 > CONFIG_MAX_ROPE_FACTORS)
            return folio_err(FOLIO_EUNSUP, "config.json: rotary dimension %d exceeds %d", rd, 2 * CONFIG_MAX_ROPE_FACTORS);
        c->rotary_dim = rd;
    }
    if (c->arch == ARCH_MIXTRAL || c->arch == ARCH_QWEN3_MOE) {
        if ((rc = parse_experts(root, c))) return rc;
    }
    return parse_windows(root, c);
}

/* Where a config keeps the language model's fields: the root, or a multimodal Gemma 3's
 * text_config (whose vision tower Folio does not run). */
static const cJSON *text_root(const cJSON *root, const struct model_config *c) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    return c->arch == ARCH_GEMMA3 && cJSON_IsObject(t) ? t : root;
}

int config_parse(const char *json, struct model_config *cfg) {
    int rc = 0;
    cJSON *doc = cJSON_Parse(json);
    const cJSON *root = doc, *top = doc;
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

    const cJSON *arch_list = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch_list) ? cJSON_GetArrayItem(arch_list, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        rc = folio_err(FOLIO_EINVAL, "config.json: missing \"architectures\"");
        goto out;
    }
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", a0->valuestring);
    size_t ai = 0;
    while (ai < sizeof archs / sizeof archs[0] && strcmp(archs[ai].name, a0->valuestring)) ai++;
    if (ai == sizeof archs / sizeof archs[0]) {
        rc = folio_err(FOLIO_EUNSUP, "unsupported architecture \"%s\" (supported: " CONFIG_SUPPORTED_ARCHS ")",
                       a0->valuestring);
        goto out;
    }
    cfg->arch = archs[ai].arch;
    if (cfg->arch == ARCH_QWEN2) cfg->attention_bias = 1; /* Qwen2 always has q/k/v biases; its config has no key */
    if (is_gemma(cfg)) gemma_defaults(cfg);
    if (cfg->arch == ARCH_PHI3 || cfg->arch == ARCH_MIXTRAL) cfg->rms_norm_eps = 1e-5f; /* their config classes' */
    if (cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_QWEN3_MOE) cfg->head_dim = 128;      /* Qwen3Config's */
    root = text_root(top, cfg);

    const int big = 1 << 24;
    if ((rc = get_int(root, "hidden_size", &cfg->hidden_size, 1, big)) ||
        (rc = get_int(root, "intermediate_size", &cfg->intermediate_size, 1, big)) ||
        (rc = get_int(root, "num_hidden_layers", &cfg->num_layers, 1, CONFIG_MAX_LAYERS)) ||
        (rc = get_int(root, "num_attention_heads", &cfg->num_heads, 1, 4096)) ||
        (rc = get_int(root, "vocab_size", &cfg->vocab_size, 1, big)) ||
        (rc = get_int(root, "max_position_embeddings", &cfg->max_position_embeddings, 1, 1 << 30)))
        goto out;
    if (!cfg->hidden_size || !cfg->intermediate_size || !cfg->num_layers || !cfg->num_heads || !cfg->vocab_size) {
        rc = folio_err(FOLIO_EINVAL, "config.json: hidden_size, intermediate_size, num_hidden_layers, "
                                     "num_attention_heads and vocab_size are required");
        goto out;
    }
    if (!cfg->num_kv_heads) cfg->num_kv_heads = cfg->num_heads;
    if ((rc = get_int(root, "num_key_value_heads", &cfg->num_kv_heads, 1, 4096))) goto out;
    if (cfg->num_heads % cfg->num_kv_heads) {
        rc = folio_err(FOLIO_EINVAL, "config.json: num_attention_heads (%d) is not a multiple of "
                                     "num_key_value_heads (%d)", cfg->num_heads, cfg->num_kv_heads);
        goto out;
    }
    if (!cfg->head_dim) cfg->head_dim = cfg->hidden_size / cfg->num_heads;
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
    /* A multimodal Gemma 3 ties its head at the top level. */
    if ((rc = get_bool(top, "tie_word_embeddings", &cfg->tie_word_embeddings)) ||
        (rc = get_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings)) ||
        (rc = get_bool(root, "attention_bias", &cfg->attention_bias)))
        goto out;
    if (cfg->arch == ARCH_QWEN2) cfg->attention_bias = 1;
    if (cfg->attention_bias && cfg->arch != ARCH_QWEN2 && cfg->arch != ARCH_LLAMA && cfg->arch != ARCH_MISTRAL &&
        cfg->arch != ARCH_QWEN3 && cfg->arch != ARCH_QWEN3_MOE) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: attention_bias is not supported for %s", cfg->arch_name);
        goto out;
    }
    int mlp_bias = 0;
    if ((rc = get_bool(root, "mlp_bias", &mlp_bias))) goto out;
    if (mlp_bias) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: mlp_bias is not supported");
        goto out;
    }
    if ((rc = parse_family(root, cfg))) goto out;
    if (cfg->sliding_window >= cfg->max_position_embeddings) { /* a window past the length is none */
        cfg->sliding_window = 0;
        for (int l = 0; l < cfg->num_layers; l++) cfg->layer_flags[l] &= (uint8_t)~LAYER_SLIDING;
    }

    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!cJSON_IsString(td)) td = cJSON_GetObjectItemCaseSensitive(top, "torch_dtype");
    if (!cJSON_IsString(td)) td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (cJSON_IsString(td) && folio_dtype_parse(td->valuestring, &cfg->torch_dtype) != 0) {
        rc = folio_err(FOLIO_EUNSUP, "config.json: torch_dtype \"%s\" is not supported", td->valuestring);
        goto out;
    }

        if ((rc = parse_quant(root, &cfg->quant))) goto out;

    /* transformers v5 writes rope_parameters: rope_theta and the scaling in one object, or one
     * per layer type (Gemma 3: full_attention, sliding_attention). */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (cJSON_IsObject(rp)) {
        const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
        const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
        if (cJSON_IsObject(full)) rp = full;
        if (cJSON_IsObject(slide) && (rc = get_num(slide, "rope_theta", &cfg->rope_local_theta))) goto out;
        if ((rc = get_num(rp, "rope_theta", &cfg->rope_theta))) goto out;
        if (!(cfg->rope_theta > 0) || (cfg->rope_local_theta < 0)) {
            rc = folio_err(FOLIO_EINVAL, "config.json: rope_parameters.rope_theta must be > 0");
            goto out;
        }
        rc = parse_rope_scaling(root, rp, cfg);
    } else {
        rc = parse_rope_scaling(root, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), cfg);
    }
    if (rc) goto out;
    int bos = -1;
    if ((rc = get_int(root, "bos_token_id", &bos, 0, big)) || (bos < 0 && (rc = get_int(top, "bos_token_id", &bos, 0, big))))
        goto out;
    cfg->bos_token_id = bos;
    if ((rc = get_eos_list(root, cfg, "config.json"))) goto out;
    if (!cfg->num_eos_token_ids) rc = get_eos_list(top, cfg, "config.json");
out:
    cJSON_Delete(doc);
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

void config_rope_inv_freq_for(const struct model_config *cfg, int local, int long_factors, double *out) {
    const int half = cfg->rotary_dim / 2;
    const double two_pi = 6.283185307179586;
    const int plain = local && cfg->rope_local_theta > 0; /* Gemma 3's sliding layers: no scaling */
    const double theta = plain ? cfg->rope_local_theta : cfg->rope_theta;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / cfg->rotary_dim);
        if (plain) {
        } else if (cfg->rope_scaling.type == ROPE_SCALING_LINEAR) {
            f /= cfg->rope_scaling.factor;
        } else if (cfg->rope_scaling.type == ROPE_SCALING_LONGROPE) {
            f /= long_factors ? cfg->longrope.long_factor[i] : cfg->longrope.short_factor[i];
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

void config_rope_inv_freq(const struct model_config *cfg, double *out) { config_rope_inv_freq_for(cfg, 0, 0, out); }

/* Elements of one layer's matrices: all of them, and those one token uses. */
static void layer_params(const struct model_config *c, int l, int64_t *all, int64_t *used) {
    const int64_t H = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    const int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t attn = 2 * H * qd + 2 * H * kvd;
    if (c->layer_flags[l] & LAYER_MOE) {
        const int64_t expert = 3 * H * c->moe_intermediate_size, router = (int64_t)c->num_experts * H;
        *all = attn + router + c->num_experts * expert;
        *used = attn + router + c->num_experts_per_tok * expert;
    } else {
        *all = *used = attn + 3 * H * c->intermediate_size;
    }
}

/* Elements of the vectors (norms, biases), which live in fp32. */
static int64_t vector_params(const struct model_config *c) {
    const int64_t H = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    const int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t per_layer = (c->sandwich_norm ? 4 : 2) * H + (c->qk_norm ? 2 * c->head_dim : 0) +
                              (c->attention_bias ? qd + 2 * kvd + (c->arch == ARCH_QWEN2 ? 0 : H) : 0);
    return H + c->num_layers * per_layer;
}

/* Bytes per weight of a matrix dtype (the blocked formats' scales included). */
static double matrix_bytes_per_weight(enum folio_dtype dt) {
    return quant_is_blocked(dt) ? (double)quant_row_bytes(dt, QUANT_BLOCK) / QUANT_BLOCK : (double)folio_dtype_size(dt);
}

enum folio_dtype config_matrix_dtype(const struct model_config *c, enum folio_dtype dtype) {
    switch (c->quant.method) {
    case QUANT_AWQ:
    case QUANT_GPTQ: return FOLIO_Q4Z;
    case QUANT_FP8: return FOLIO_FP8;
    default: return dtype;
    }
}

/* The embedding table keeps a float dtype (the checkpoint's when the matrices are quantized);
 * the LM head is quantized with the layers at load (a tied head as a copy of its own), and
 * stays float in a pre-quantized checkpoint. */
size_t config_weight_bytes(const struct model_config *c, enum folio_dtype dtype) {
    const enum folio_dtype mat = config_matrix_dtype(c, dtype);
    const int quantized = mat != FOLIO_F32 && mat != FOLIO_F16 && mat != FOLIO_BF16;
    const enum folio_dtype flt = quantized ? c->torch_dtype : dtype;
    const double VH = (double)c->vocab_size * c->hidden_size;
    int64_t layers = 0, all, used;
    for (int l = 0; l < c->num_layers; l++) {
        layer_params(c, l, &all, &used);
        layers += all;
    }
    double n = VH * (double)folio_dtype_size(flt) + (double)layers * matrix_bytes_per_weight(mat);
    if (c->quant.method) {
        if (!c->tie_word_embeddings) n += VH * (double)folio_dtype_size(flt);
    } else if (quantized) {
        n += VH * matrix_bytes_per_weight(mat);
    } else if (!c->tie_word_embeddings) {
        n += VH * (double)folio_dtype_size(flt);
    }
    return (size_t)n + (size_t)vector_params(c) * sizeof(float);
}

size_t config_active_weight_bytes(const struct model_config *c, enum folio_dtype dtype) {
    const enum folio_dtype mat = config_matrix_dtype(c, dtype);
    int64_t n = 0, all, used;
    for (int l = 0; l < c->num_layers; l++) {
        layer_params(c, l, &all, &used);
        n += used;
    }
    /* the LM head: quantized with the layers, or the checkpoint's float one */
    const double head = (double)c->vocab_size * c->hidden_size *
                        (c->quant.method ? (double)folio_dtype_size(c->torch_dtype) : matrix_bytes_per_weight(mat));
    return (size_t)((double)n * matrix_bytes_per_weight(mat) + head);
}

void config_param_counts(const struct model_config *c, int64_t *total, int64_t *active) {
    const int64_t VH = (int64_t)c->vocab_size * c->hidden_size;
    int64_t t = VH * (c->tie_word_embeddings ? 1 : 2) + vector_params(c), a = t, all, used;
    for (int l = 0; l < c->num_layers; l++) {
        layer_params(c, l, &all, &used);
        t += all;
        a += used;
    }
    *total = t;
    *active = a;
}

int config_num_sliding_layers(const struct model_config *c) {
    int n = 0;
    for (int l = 0; l < c->num_layers; l++) n += (c->layer_flags[l] & LAYER_SLIDING) != 0;
    return n;
}

int config_kv_split(const struct model_config *c) {
    const int sliding = config_num_sliding_layers(c);
    return sliding > 0 && sliding < c->num_layers;
}

size_t config_kv_block_bytes_layers(const struct model_config *c, int block_size, int sliding,
                                    enum folio_dtype kv_dtype) {
    const size_t n = sliding ? config_num_sliding_layers(c) : c->num_layers - config_num_sliding_layers(c);
    return 2 * n * c->num_kv_heads * c->head_dim * (size_t)block_size * folio_dtype_size(kv_dtype);
}

int config_kv_local_blocks(const struct model_config *c, int block_size, int max_seqs, int max_tokens, int max_len) {
    const long long bs = block_size, per_seq = (c->sliding_window - 1 + bs - 1) / bs + 2;
    long long n = (long long)max_seqs * per_seq + (max_tokens + bs - 1) / bs;
    const long long cap = (long long)max_seqs * ((max_len + bs - 1) / bs);
    if (n > cap) n = cap;
    return n > INT32_MAX / 2 ? INT32_MAX / 2 : (int)n;
}

size_t config_kv_block_bytes(const struct model_config *c, int block_size, enum folio_dtype kv_dtype) {
    return 2 * (size_t)c->num_layers * c->num_kv_heads * c->head_dim * (size_t)block_size *
           folio_dtype_size(kv_dtype);
}

int config_kv_dtype(const char *spec, enum folio_dtype weights, enum folio_dtype *out) {
    static const struct {
        const char *name;
        enum folio_dtype dt;
    } names[] = {{"bfloat16", FOLIO_BF16}, {"bf16", FOLIO_BF16}, {"float32", FOLIO_F32}, {"fp32", FOLIO_F32},
                 {"float", FOLIO_F32},     {"fp8", FOLIO_FP8},   {"fp8_e4m3", FOLIO_FP8}};
    if (!spec || !*spec || !strcmp(spec, "auto")) {
        *out = weights == FOLIO_F32 ? FOLIO_F32 : FOLIO_BF16;
        return 0;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(spec, names[i].name)) {
            *out = names[i].dt;
            return 0;
        }
    return folio_err(FOLIO_EINVAL, "--kv-cache-dtype must be auto, bfloat16, float32 or fp8, not '%s'", spec);
}
