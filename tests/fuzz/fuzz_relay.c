/* libFuzzer target for foliod's relay parsing (daemon/relay.c): arbitrary bytes as an
 * engine's response, through the head parser and the chunk decoder, the way proxy.c
 * consumes them. Every payload must lie inside the input, every step must consume, and the
 * copied header values must hold no line break. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    struct relay_head h;
    long hl = relay_parse_head(buf, size, &h);
    if (hl <= 0) return 0;
    assert((size_t)hl <= size);
    assert(h.status >= 100 && h.status <= 999);
    assert(!strpbrk(h.content_type, "\r\n") && !strpbrk(h.cache_control, "\r\n") && !strpbrk(h.allow, "\r\n"));
    size_t at = (size_t)hl;
    for (;;) {
        const char *p;
        size_t plen, used;
        int k = relay_next_chunk(buf + at, size - at, 4096, &p, &plen, &used);
        if (k <= 0) break;
        assert(used > 0 && used <= size - at);
        assert(p >= buf + at && p + plen <= buf + at + used && plen <= 4096);
        at += used;
        if (k == 2) break;
    }
    return 0;
}
