/* utf8: see utf8.h. The whole-string passes; the per-character decoder is inline there. */
#include "base/utf8.h"

#include <string.h>

bool utf8_valid(const char *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_decode(s + i, n - i, &cp, NULL, NULL);
        if (!k) return false;
        i += k;
    }
    return true;
}

size_t utf8_lossy(const char *s, size_t n, char *out, int omit_tail, int *incomplete) {
    size_t o = 0;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t bad;
        bool trunc;
        size_t k = utf8_decode(s + i, n - i, &cp, &bad, &trunc);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (trunc && incomplete) *incomplete = 1;
        if (trunc && omit_tail) break;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += bad;
    }
    return o;
}
