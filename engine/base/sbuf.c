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
