/* arena: a bump allocator freed all at once, for what lives exactly as long as its owner: a
 * tokenizer's vocabulary strings, a chat template's tokens and parse tree. One malloc serves
 * thousands of small objects, and freeing the owner is one walk over a few blocks.
 *
 * Blocks never move, so a pointer stays valid until arena_free. The struct is embedded in its
 * owner (no allocation of its own); a zeroed one is an empty arena with the default block
 * size. Not thread-safe: the owner fills it while loading, and it is read-only afterwards. */
#ifndef FOLIO_ARENA_H
#define FOLIO_ARENA_H

#include <stddef.h>

#define ARENA_DEFAULT_BLOCK 16384

struct arena_block;

struct arena {
    struct arena_block *head; /* the block being filled; older ones follow */
    size_t block_size;        /* bytes per block (0: ARENA_DEFAULT_BLOCK); a larger request
                               * gets a block of its own size */
};

/* n zeroed bytes, aligned for any object up to 16 bytes; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);
/* A copy of s[0, n) with a NUL after it, unaligned (strings pack tightly); NULL when out of
 * memory. */
char *arena_dup(struct arena *a, const char *s, size_t n);
/* Frees every block. The arena is empty again, keeps its block size, and may be reused. */
void arena_free(struct arena *a);

#endif
