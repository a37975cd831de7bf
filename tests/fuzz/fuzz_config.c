/* libFuzzer target: config.json and generation_config.json parsing, and what a parsed config
 * implies: the RoPE tables (global, local, LongRoPE's long factors), the parameter and byte
 * counts, and the sliding layers' KV pool. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct model_config c;
    if (config_parse(text, &c) == 0) {
        double *f = malloc(sizeof(double) * (size_t)(c.head_dim / 2 + 1));
        if (f)
            for (int local = 0; local < 2; local++)
                for (int lng = 0; lng < 2; lng++) config_rope_inv_freq_for(&c, local, lng, f);
        free(f);
        int64_t total, active;
        config_param_counts(&c, &total, &active);
        (void)config_weight_bytes(&c, FOLIO_BF16);
        (void)config_active_weight_bytes(&c, FOLIO_BF16);
        if (config_kv_split(&c)) (void)config_kv_local_blocks(&c, 16, 256, 2048, c.max_position_embeddings);
    }
    config_parse_generation(text, &c);
    free(text);
    return 0;
}
