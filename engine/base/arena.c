/* arena: see arena.h. */
#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

/* n bytes at an offset aligned to align (a power of two), from the head block or a new one.
 * The rest of a head block too small for n is left unused: the objects are small next to a
 * block, so little is lost, and no free list is needed. */
static void *take(struct arena *a, size_t n, size_t align) {
    struct arena_block *b = a->head;
    size_t off = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || off > b->cap || b->cap - off < n) {
        const size_t bs = a->block_size ? a->block_size : ARENA_DEFAULT_BLOCK;
        const size_t cap = n > bs ? n : bs;
        if (cap > SIZE_MAX - sizeof *b) return NULL;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        off = 0;
    }
    b->used = off + n;
    return b->data + off;
}

void *arena_alloc(struct arena *a, size_t n) {
    void *p = take(a, n, 16);
    if (p) memset(p, 0, n);
    return p;
}

char *arena_dup(struct arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = take(a, n + 1, 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void arena_free(struct arena *a) {
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
