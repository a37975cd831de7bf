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
