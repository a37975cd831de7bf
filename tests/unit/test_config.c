/* config.json / generation_config.json parsing, and the RoPE frequency scalings. */
#include "model/config.h"
#include "test.h"

static const char *llama =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":172,"
    "\"num_hidden_layers\":5,\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":512,"
    "\"max_position_embeddings\":512,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"hidden_act\":\"silu\","
    "\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":2,\"torch_dtype\":\"bfloat16\"}";

TEST(config_llama_fields) {
    struct model_config c;
    CHECK_EQ_INT(config_parse(llama, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_LLAMA);
    CHECK_EQ_INT(c.hidden_size, 64);
    CHECK_EQ_INT(c.num_layers, 5);
    CHECK_EQ_INT(c.num_kv_heads, 4);
    CHECK_EQ_INT(c.head_dim, 8);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.attention_bias, 0);
    CHECK_EQ_INT(c.torch_dtype, FOLIO_BF16);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
    CHECK_EQ_INT(c.num_eos_token_ids, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_NONE);
    /* generation_config.json overrides with a list. */
    CHECK_EQ_INT(config_parse_generation("{\"bos_token_id\":1,\"eos_token_id\":[2,1],\"temperature\":0.6,"
                                         "\"top_p\":0.9}", &c), 0);
    CHECK_EQ_INT(c.num_eos_token_ids, 2);
    CHECK_EQ_INT(c.eos_token_ids[1], 1);
    CHECK_NEAR(c.default_temperature, 0.6, 1e-6);
    CHECK_NEAR(c.default_top_p, 0.9, 1e-6);
    CHECK_EQ_INT(c.default_top_k, -1);
}

TEST(config_qwen2_mistral_headdim) {
    struct model_config c;
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":896,\"intermediate_size\":4864,"
                              "\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                              "\"vocab_size\":151936,\"use_sliding_window\":false,\"sliding_window\":131072,"
                              "\"max_position_embeddings\":32768,\"rope_theta\":1000000.0}", &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_QWEN2);
    CHECK_EQ_INT(c.attention_bias, 1); /* implicit for Qwen2 */
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                              "\"head_dim\":32,\"vocab_size\":10,\"sliding_window\":16,"
                              "\"max_position_embeddings\":64}", &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_MISTRAL);
    CHECK_EQ_INT(c.head_dim, 32);
    CHECK_EQ_INT(c.sliding_window, 16);
    CHECK_EQ_INT(c.tie_word_embeddings, 0); /* MistralConfig's default when the key is absent */
}

TEST(config_errors_are_clear) {
    struct model_config c;
    CHECK(config_parse("{not json", &c) < 0);
    CHECK(strstr(folio_last_error(), "JSON") != NULL);
    /* found by fuzz_config: an id past INT32_MAX must be refused, not converted */
    CHECK(config_parse_generation("{\"eos_token_id\":[5555555555555555555555, 1]}", &c) < 0);
    CHECK(config_parse_generation("{\"eos_token_id\":2.5}", &c) < 0);
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"GPT2LMHeadModel\"]}", &c), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "GPT2LMHeadModel") != NULL);
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64}", &c) < 0);
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64.5,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}", &c) < 0);
    CHECK(strstr(folio_last_error(), "hidden_size") != NULL);
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":3,"
                       "\"vocab_size\":10}", &c) < 0);
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                       "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}", &c) == FOLIO_EUNSUP);
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                       "\"hidden_act\":\"gelu\"}", &c) == FOLIO_EUNSUP);
}

TEST(config_rope_scaling) {
    struct model_config c;
    double f[32];
    /* Llama-3.2-1B's scaling, checked against values computed independently from the
     * published formula (wavelengths above 8192 slowed 32x, below 2048 kept). */
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":2048,\"intermediate_size\":8192,"
                              "\"num_hidden_layers\":16,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
                              "\"vocab_size\":128256,\"rope_theta\":500000.0,\"max_position_embeddings\":131072,"
                              "\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
                              "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}", &c), 0);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_LLAMA3);
    config_rope_inv_freq(&c, f);
    CHECK_NEAR(f[0], 1.0, 1e-12);                                   /* short wavelength: kept */
    double unscaled31 = 1.0 / pow(500000.0, 62.0 / 64.0);
    CHECK_NEAR(f[31] / unscaled31, 1.0 / 32.0, 1e-12);              /* long wavelength: / factor */
    for (int i = 0; i < 32; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / 64.0);
        CHECK(f[i] <= base * (1 + 1e-12) && f[i] >= base / 32.0 * (1 - 1e-12));
    }
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                              "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", &c), 0);
    config_rope_inv_freq(&c, f);
    CHECK_NEAR(f[0], 0.5, 1e-12);
    CHECK_NEAR(f[1], 0.5 / pow(10000.0, 2.0 / 16.0), 1e-12);
}

/* The config.json files of real Hub checkpoints (verbatim but for keys that change no math),
 * and their published parameter counts, which the arithmetic must reproduce. */
static const char *qwen3_8b =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\",\"hidden_size\":4096,"
    "\"initializer_range\":0.02,\"intermediate_size\":12288,\"max_position_embeddings\":40960,"
    "\"max_window_layers\":36,\"model_type\":\"qwen3\",\"num_attention_heads\":32,\"num_hidden_layers\":36,"
    "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";
static const char *qwen3_30b_a3b =
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"decoder_sparse_step\":1,\"eos_token_id\":151645,\"head_dim\":128,"
    "\"hidden_act\":\"silu\",\"hidden_size\":2048,\"initializer_range\":0.02,\"intermediate_size\":6144,"
    "\"max_position_embeddings\":40960,\"max_window_layers\":48,\"mlp_only_layers\":[],\"model_type\":\"qwen3_moe\","
    "\"moe_intermediate_size\":768,\"norm_topk_prob\":true,\"num_attention_heads\":32,\"num_experts\":128,"
    "\"num_experts_per_tok\":8,\"num_hidden_layers\":48,\"num_key_value_heads\":4,\"output_router_logits\":false,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000.0,\"router_aux_loss_coef\":0.001,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";
static const char *mixtral_8x7b =
    "{\"architectures\":[\"MixtralForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,\"intermediate_size\":14336,"
    "\"max_position_embeddings\":32768,\"model_type\":\"mixtral\",\"num_attention_heads\":32,"
    "\"num_experts_per_tok\":2,\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"num_local_experts\":8,"
    "\"output_router_logits\":false,\"rms_norm_eps\":1e-05,\"rope_theta\":1000000.0,\"router_aux_loss_coef\":0.02,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"vocab_size\":32000}";
static const char *gemma2_2b =
    "{\"architectures\":[\"Gemma2ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"attn_logit_softcapping\":50.0,\"bos_token_id\":2,\"cache_implementation\":\"hybrid\",\"eos_token_id\":[1,107],"
    "\"final_logit_softcapping\":30.0,\"head_dim\":256,\"hidden_act\":\"gelu_pytorch_tanh\","
    "\"hidden_activation\":\"gelu_pytorch_tanh\",\"hidden_size\":2304,\"initializer_range\":0.02,"
    "\"intermediate_size\":9216,\"max_position_embeddings\":8192,\"model_type\":\"gemma2\",\"num_attention_heads\":8,"
    "\"num_hidden_layers\":26,\"num_key_value_heads\":4,\"pad_token_id\":0,\"query_pre_attn_scalar\":256,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":10000.0,\"sliding_window\":4096,\"torch_dtype\":\"float32\","
    "\"use_cache\":true,\"vocab_size\":256000}";
static const char *gemma3_1b =
    "{\"architectures\":[\"Gemma3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"attn_logit_softcapping\":null,\"bos_token_id\":2,\"cache_implementation\":\"hybrid\",\"eos_token_id\":[1,106],"
    "\"final_logit_softcapping\":null,\"head_dim\":256,\"hidden_activation\":\"gelu_pytorch_tanh\","
    "\"hidden_size\":1152,\"initializer_range\":0.02,\"intermediate_size\":6912,\"max_position_embeddings\":32768,"
    "\"model_type\":\"gemma3_text\",\"num_attention_heads\":4,\"num_hidden_layers\":26,\"num_key_value_heads\":1,"
    "\"pad_token_id\":0,\"query_pre_attn_scalar\":256,\"rms_norm_eps\":1e-06,\"rope_local_base_freq\":10000,"
    "\"rope_scaling\":null,\"rope_theta\":1000000,\"sliding_window\":512,\"sliding_window_pattern\":6,"
    "\"torch_dtype\":\"bfloat16\",\"use_cache\":true,\"vocab_size\":262144}";
/* gemma-3-4b-it: the text model's fields sit in text_config, which leaves out Gemma3TextConfig's
 * defaults (heads, head_dim, vocabulary, RoPE bases). */
static const char *gemma3_4b =
    "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"boi_token_index\":255999,\"eoi_token_index\":256000,"
    "\"eos_token_id\":[1,106],\"image_token_index\":262144,\"initializer_range\":0.02,\"mm_tokens_per_image\":256,"
    "\"model_type\":\"gemma3\",\"text_config\":{\"hidden_size\":2560,\"intermediate_size\":10240,"
    "\"model_type\":\"gemma3_text\",\"num_hidden_layers\":34,\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"linear\"},"
    "\"sliding_window\":1024},\"torch_dtype\":\"bfloat16\",\"vision_config\":{\"hidden_size\":1152,"
    "\"image_size\":896,\"intermediate_size\":4304,\"model_type\":\"siglip_vision_model\",\"num_attention_heads\":16,"
    "\"num_hidden_layers\":27,\"patch_size\":14,\"vision_use_head\":false}}";
static const char *phi3_mini =
    "{\"architectures\":[\"Phi3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,\"bos_token_id\":1,"
    "\"embd_pdrop\":0.0,\"eos_token_id\":32000,\"hidden_act\":\"silu\",\"hidden_size\":3072,"
    "\"initializer_range\":0.02,\"intermediate_size\":8192,\"max_position_embeddings\":4096,\"model_type\":\"phi3\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":32,"
    "\"original_max_position_embeddings\":4096,\"pad_token_id\":32000,\"resid_pdrop\":0.0,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":null,\"rope_theta\":10000.0,\"sliding_window\":2047,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"bfloat16\",\"use_cache\":true,\"vocab_size\":32064}";

static int64_t billions_x100(int64_t n) { return (n + 5000000) / 10000000; }

TEST(config_qwen3_dense_and_moe) {
    struct model_config c;
    int64_t total, active;
    CHECK_EQ_INT(config_parse(qwen3_8b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_QWEN3);
    CHECK_EQ_INT(c.qk_norm, 1);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.attention_bias, 0);
    CHECK_EQ_INT(c.num_experts, 0);
    CHECK_EQ_INT(c.sliding_window, 0);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 819); /* "8.2B" */
    CHECK(total == active);

    CHECK_EQ_INT(config_parse(qwen3_30b_a3b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_QWEN3_MOE);
    CHECK_EQ_INT(c.num_experts, 128);
    CHECK_EQ_INT(c.num_experts_per_tok, 8);
    CHECK_EQ_INT(c.moe_intermediate_size, 768);
    CHECK_EQ_INT(c.norm_topk_prob, 1);
    for (int l = 0; l < c.num_layers; l++) CHECK_EQ_INT(c.layer_flags[l], LAYER_MOE);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 3053);  /* "30.5B in total" */
    CHECK_EQ_INT(billions_x100(active), 335);  /* "3.3B activated" */
    /* Decode reads the active experts' bytes, not all of them. */
    CHECK(config_active_weight_bytes(&c, FOLIO_BF16) < config_weight_bytes(&c, FOLIO_BF16) / 8);

    /* decoder_sparse_step and mlp_only_layers pick the dense layers. */
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
                              "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"vocab_size\":100,\"num_experts\":4,"
                              "\"num_experts_per_tok\":2,\"moe_intermediate_size\":32,\"decoder_sparse_step\":2,"
                              "\"mlp_only_layers\":[3]}", &c), 0);
    CHECK_EQ_INT(c.norm_topk_prob, 0); /* Qwen3MoeConfig's default */
    const int moe[6] = {0, LAYER_MOE, 0, 0, 0, LAYER_MOE};
    for (int l = 0; l < 6; l++) CHECK_EQ_INT(c.layer_flags[l], moe[l]);
    CHECK(config_parse("{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"num_experts\":4,"
                       "\"num_experts_per_tok\":5}", &c) < 0);
    CHECK(strstr(folio_last_error(), "num_experts_per_tok") != NULL);
}

TEST(config_mixtral) {
    struct model_config c;
    int64_t total, active;
    CHECK_EQ_INT(config_parse(mixtral_8x7b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_MIXTRAL);
    CHECK_EQ_INT(c.num_experts, 8);
    CHECK_EQ_INT(c.num_experts_per_tok, 2);
    CHECK_EQ_INT(c.moe_intermediate_size, 14336);
    CHECK_EQ_INT(c.norm_topk_prob, 1);
    CHECK_EQ_INT(c.sliding_window, 0);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 4670);  /* "46.7B total" */
    CHECK_EQ_INT(billions_x100(active), 1288); /* "12.9B per token" */
}

TEST(config_gemma2_gemma3) {
    struct model_config c;
    int64_t total, active;
    double f[128];
    CHECK_EQ_INT(config_parse(gemma2_2b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_GEMMA2);
    CHECK_EQ_INT(c.act, MODEL_ACT_GELU_TANH);
    CHECK_EQ_INT(c.norm_plus_one && c.sandwich_norm && c.embed_scale, 1);
    CHECK_EQ_INT(c.qk_norm, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 1); /* Gemma2Config's default */
    CHECK_NEAR(c.attn_scale, 1.0 / 16.0, 1e-9);
    CHECK_NEAR(c.attn_softcap, 50.0, 0);
    CHECK_NEAR(c.final_softcap, 30.0, 0);
    CHECK_EQ_INT(c.sliding_window, 4096);
    for (int l = 0; l < c.num_layers; l++) CHECK_EQ_INT(c.layer_flags[l], l % 2 == 0 ? LAYER_SLIDING : 0);
    CHECK_EQ_INT(c.num_eos_token_ids, 2);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 261); /* "2.61B" */

    CHECK_EQ_INT(config_parse(gemma3_1b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_GEMMA3);
    CHECK_EQ_INT(c.qk_norm, 1);
    CHECK_NEAR(c.attn_softcap, 0, 0);
    CHECK_NEAR(c.final_softcap, 0, 0);
    CHECK_EQ_INT(c.sliding_window, 512);
    for (int l = 0; l < c.num_layers; l++) CHECK_EQ_INT(c.layer_flags[l], (l + 1) % 6 ? LAYER_SLIDING : 0);
    CHECK_NEAR(c.rope_local_theta, 10000.0, 0);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 100); /* "1B" */

    CHECK_EQ_INT(config_parse(gemma3_4b, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_GEMMA3);
    CHECK_EQ_INT(c.hidden_size, 2560);
    CHECK_EQ_INT(c.num_layers, 34);
    CHECK_EQ_INT(c.num_heads, 8);
    CHECK_EQ_INT(c.num_kv_heads, 4);
    CHECK_EQ_INT(c.head_dim, 256);
    CHECK_EQ_INT(c.vocab_size, 262208);
    CHECK_EQ_INT(c.torch_dtype, FOLIO_BF16);
    CHECK_EQ_INT(c.num_eos_token_ids, 2);
    CHECK_EQ_INT(c.eos_token_ids[1], 106);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_LINEAR);
    /* Global layers: base 1e6 slowed 8x; local layers: base 1e4, unscaled. */
    config_rope_inv_freq_for(&c, 0, 0, f);
    CHECK_NEAR(f[1], 1.0 / pow(1e6, 2.0 / 256) / 8.0, 1e-15);
    config_rope_inv_freq_for(&c, 1, 0, f);
    CHECK_NEAR(f[1], 1.0 / pow(1e4, 2.0 / 256), 1e-15);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 388); /* the language model of "4B" (its vision tower is 0.4B) */
    CHECK(config_parse("{\"architectures\":[\"Gemma2ForCausalLM\"],\"hidden_activation\":\"gelu\"}", &c) == FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "gelu") != NULL);
}

TEST(config_phi3) {
    struct model_config c;
    int64_t total, active;
    CHECK_EQ_INT(config_parse(phi3_mini, &c), 0);
    CHECK_EQ_INT(c.arch, ARCH_PHI3);
    CHECK_EQ_INT(c.fused_qkv, 1);
    CHECK_EQ_INT(c.rotary_dim, 96);
    CHECK_EQ_INT(c.sliding_window, 2047);
    CHECK_EQ_INT(c.layer_flags[31], LAYER_SLIDING);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 382); /* "3.8B" */
    /* Phi-4-mini: 3/4 of each head rotates, LongRoPE with 48 factor pairs. */
    char json[8192], shortf[1024] = "", longf[1024] = "";
    for (int i = 0; i < 48; i++) {
        snprintf(shortf + strlen(shortf), sizeof shortf - strlen(shortf), "%s%g", i ? "," : "", 1.0 + i / 100.0);
        snprintf(longf + strlen(longf), sizeof longf - strlen(longf), "%s%g", i ? "," : "", 1.0 + i);
    }
    snprintf(json, sizeof json,
             "{\"architectures\":[\"Phi3ForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":199999,"
             "\"eos_token_id\":199999,\"full_attn_mod\":1,\"hidden_act\":\"silu\",\"hidden_size\":3072,"
             "\"intermediate_size\":8192,\"interpolate_factor\":1,\"lm_head_bias\":false,"
             "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"phi3\",\"num_attention_heads\":24,"
             "\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"original_max_position_embeddings\":4096,"
             "\"pad_token_id\":199999,\"partial_rotary_factor\":0.75,\"resid_pdrop\":0.0,\"rms_norm_eps\":1e-05,"
             "\"rope_scaling\":{\"long_factor\":[%s],\"short_factor\":[%s],\"type\":\"longrope\"},"
             "\"rope_theta\":10000.0,\"sliding_window\":262144,\"tie_word_embeddings\":true,"
             "\"torch_dtype\":\"bfloat16\",\"vocab_size\":200064}",
             longf, shortf);
    CHECK_EQ_INT(config_parse(json, &c), 0);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.rotary_dim, 96);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_LONGROPE);
    CHECK_EQ_INT(c.longrope.original_max_position_embeddings, 4096);
    CHECK_NEAR(c.longrope.attention_factor, sqrt(1.0 + log(32.0) / log(4096.0)), 1e-12);
    CHECK_EQ_INT(c.sliding_window, 0); /* past the length */
    double f[48];
    config_rope_inv_freq_for(&c, 0, 1, f);
    CHECK_NEAR(f[5], 1.0 / (6.0 * pow(10000.0, 10.0 / 96)), 1e-15);
    config_rope_inv_freq_for(&c, 0, 0, f);
    CHECK_NEAR(f[5], 1.0 / (1.05 * pow(10000.0, 10.0 / 96)), 1e-15);
    config_param_counts(&c, &total, &active);
    CHECK_EQ_INT(billions_x100(total), 384); /* "3.8B" */
    /* A factor list of the wrong length is refused, naming the key. */
    char *p = strstr(json, "\"short_factor\":[1,");
    CHECK(p != NULL);
    memmove(p + 16, p + 18, strlen(p + 18) + 1); /* drop the first factor */
    CHECK(config_parse(json, &c) < 0);
    CHECK(strstr(folio_last_error(), "short_factor") != NULL);
}

TEST(config_unknown_architectures_list_the_supported) {
    struct model_config c;
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"]}", &c), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "DeepseekV3ForCausalLM") != NULL);
    CHECK(strstr(folio_last_error(), "Qwen3MoeForCausalLM") != NULL);
    CHECK(strstr(folio_last_error(), "Gemma3ForCausalLM") != NULL);
    CHECK(strstr(folio_last_error(), "Phi3ForCausalLM") != NULL);
    /* A known architecture with an unsupported option names the option. */
    CHECK(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                       "\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1],\"long_factor\":[1]}}", &c) ==
          FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "longrope") != NULL);
    /* found by fuzz_config: a factor far past 1 must be refused before it becomes an int */
    CHECK(config_parse("{\"architectures\":[\"Phi3ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                       "\"partial_rotary_factor\":4.4e13}", &c) == FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "partial_rotary_factor") != NULL);
    CHECK(config_parse("{\"architectures\":[\"Gemma2ForCausalLM\"],\"attention_bias\":true}", &c) == FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "attention_bias") != NULL);
    CHECK(config_parse("{\"architectures\":[\"Gemma3ForCausalLM\"],\"layer_types\":[\"chunked_attention\"],"
                       "\"num_hidden_layers\":1}", &c) == FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "layer_types") != NULL);
}

/* What the config classes default to when a key is absent, and transformers v5's
 * rope_parameters (one object, or one per layer type). */
TEST(config_class_defaults_and_rope_parameters) {
    struct model_config c;
    double f[128];
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":1024,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":16,\"vocab_size\":10}", &c), 0);
    CHECK_EQ_INT(c.head_dim, 128); /* Qwen3Config's, not hidden / heads */
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                              "\"max_position_embeddings\":32768}", &c), 0);
    CHECK_EQ_INT(c.sliding_window, 4096); /* MistralConfig's; null turns it off */
    CHECK_NEAR(c.rms_norm_eps, 1e-6, 1e-12);
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Phi3ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}", &c), 0);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
    /* Gemma reads hidden_activation only: a stray hidden_act does not change its MLP. */
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Gemma2ForCausalLM\"],\"hidden_act\":\"silu\"}", &c), 0);
    CHECK_EQ_INT(c.act, MODEL_ACT_GELU_TANH);
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"Gemma3ForCausalLM\"],\"num_hidden_layers\":6,"
                              "\"rope_parameters\":{\"full_attention\":{\"rope_theta\":1000000.0,\"rope_type\":\"linear\","
                              "\"factor\":8.0},\"sliding_attention\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}}}",
                              &c), 0);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_LINEAR);
    config_rope_inv_freq_for(&c, 0, 0, f);
    CHECK_NEAR(f[1], 1.0 / pow(1e6, 2.0 / 256) / 8.0, 1e-15);
    config_rope_inv_freq_for(&c, 1, 0, f);
    CHECK_NEAR(f[1], 1.0 / pow(1e4, 2.0 / 256), 1e-15);
    CHECK_EQ_INT(config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                              "\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":32.0,"
                              "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                              "\"original_max_position_embeddings\":8192}}", &c), 0);
    CHECK_NEAR(c.rope_theta, 500000.0, 0);
    CHECK_EQ_INT(c.rope_scaling.type, ROPE_SCALING_LLAMA3);
}
