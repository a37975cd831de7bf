/* sbuf: a growable byte string. After the first put, p holds n bytes and a NUL after them, so
 * it can be handed to anything that takes a C string; before it, p is NULL. A zeroed struct
 * is an empty buffer; sbuf_free releases it.
 *
 * The fields are open: callers read p and n, write into the room that sbuf_reserve made (and
 * the NUL after it), and set n = 0 to reuse the memory (the NUL follows again with the next
 * put). The puts are static inline because the tokenizer and the chat template append a
 * piece at a time in their loops; only growing calls out. A caller with a limit (the chat
 * template's output cap) checks it before putting. */
#ifndef FOLIO_SBUF_H
#define FOLIO_SBUF_H

#include <stddef.h>
#include <string.h>

struct sbuf {
    char *p; /* [cap] n bytes, then a NUL; NULL until the first put */
    size_t n, cap;
};

/* Grows the buffer to hold extra more bytes and the NUL: 0, or FOLIO_ENOMEM (the buffer is
 * unchanged). The slow half of sbuf_reserve. */
int sbuf_grow(struct sbuf *b, size_t extra);

/* Makes room for extra more bytes after p[n] (and the NUL), without changing n. */
static inline int sbuf_reserve(struct sbuf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    return sbuf_grow(b, extra);
}

/* Appends s[0, n): 0 or FOLIO_ENOMEM. Putting nothing still allocates p, so that p is a valid
 * empty string afterwards. */
static inline int sbuf_put(struct sbuf *b, const char *s, size_t n) {
    int rc = sbuf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static inline int sbuf_puts(struct sbuf *b, const char *s) { return sbuf_put(b, s, strlen(s)); }

/* Appends s[0, n) as a JSON string literal, quotes included: '"', '\\' and control bytes
 * escaped, everything else (UTF-8 included) as it is. 0 or FOLIO_ENOMEM. */
int sbuf_put_json_string(struct sbuf *b, const char *s, size_t n);
/* Frees p; b is an empty buffer again. */
void sbuf_free(struct sbuf *b);

#endif
