/* libFuzzer target: safetensors header parsing on arbitrary bytes. Any input must give either
 * a valid set whose every tensor lies inside the input, or an error; never a crash. */
#include <stdint.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct safetensors_set *s = NULL;
    if (safetensors_open_buffer(data, size, &s) == 0) {
        for (int i = 0; i < safetensors_num_tensors(s); i++) {
            const struct safetensors_tensor *t = safetensors_tensor_at(s, i);
            const uint8_t *p = t->data;
            if (p < data || p + t->nbytes > data + size) __builtin_trap();
            volatile uint8_t sink = 0;
            for (size_t k = 0; k < t->nbytes; k += 64) sink ^= p[k]; /* touch it: ASan checks bounds */
            (void)sink;
        }
        safetensors_free(s);
    }
    return 0;
}
