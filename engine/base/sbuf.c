/* sbuf: see sbuf.h. */
#include "base/sbuf.h"

#include "base/util.h"

#include <stdint.h>
#include <stdlib.h>

int sbuf_grow(struct sbuf *b, size_t extra) {
    if (extra > SIZE_MAX / 4 - b->n) return folio_err(FOLIO_ENOMEM, "out of memory: a string of %zu bytes", extra);
    const size_t need = b->n + extra + 1;
    if (need <= b->cap) return 0;
    /* Doubling keeps appends amortized O(1). 256 bytes holds most short strings at once:
     * the chat template builds many (each rendered value, each concatenation). */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return folio_err(FOLIO_ENOMEM, "out of memory");
    b->p = p;
    b->cap = cap;
    return 0;
}

void sbuf_free(struct sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int sbuf_put_json_string(struct sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    /* at most 6 bytes a byte, and the quotes: one reservation */
    if (n > ((size_t)-1 - 3) / 6 || sbuf_reserve(b, 6 * n + 2)) return FOLIO_ENOMEM;
    char *w = b->p + b->n;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
        } else if (c < 0x20) {
            const char *short_form = c == '\n' ? "n" : c == '\r' ? "r" : c == '\t' ? "t" : NULL;
            *w++ = '\\';
            if (short_form) {
                *w++ = *short_form;
            } else {
                memcpy(w, "u00", 3);
                w[3] = hex[c >> 4];
                w[4] = hex[c & 15];
                w += 5;
            }
        } else {
            *w++ = (char)c;
        }
    }
    *w++ = '"';
    b->n = (size_t)(w - b->p);
    b->p[b->n] = '\0';
    return 0;
}
