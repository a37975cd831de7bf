/* libFuzzer target: config.json and generation_config.json parsing, and the RoPE table a
 * parsed config produces. */
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
        if (f) config_rope_inv_freq(&c, f);
        free(f);
    }
    config_parse_generation(text, &c);
    free(text);
    return 0;
}
