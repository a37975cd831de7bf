/* quant_load: see quant_load.h. */
#include "model/quant_load.h"

#include <stdlib.h>
#include <string.h>

static int nibble_of(int32_t word, int i) { return (int)(((uint32_t)word >> (4 * i)) & 15u); }

static void put_nibble(struct quant_q4z *blk, int i, int v) {
    blk->n[i % 16] |= (uint8_t)(i < 16 ? v : v << 4);
}

/* AWQ's nibble for output column c within its word: the inverse of {0, 2, 4, 6, 1, 3, 5, 7}. */
static const int awq_nibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

int quant_repack_awq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t in, int64_t out,
                     int gs, struct quant_q4z *dst) {
    if (gs % QUANT_BLOCK || in % gs || out % 8)
        return folio_err(FOLIO_EUNSUP, "awq: in_features %lld and out_features %lld do not fit group size %d",
                         (long long)in, (long long)out, gs);
    const int64_t nb = quant_blocks(in), words = out / 8;
    memset(dst, 0, sizeof *dst * (size_t)(out * nb));
    for (int64_t o = 0; o < out; o++) {
        const int64_t j = o / 8;
        const int nib = awq_nibble[o % 8];
        for (int64_t b = 0; b < nb; b++) {
            struct quant_q4z *blk = dst + o * nb + b;
            const int64_t g = b * QUANT_BLOCK / gs;
            blk->d = scales[g * out + o];
            blk->z = (uint8_t)nibble_of(qzeros[g * words + j], nib);
            for (int i = 0; i < QUANT_BLOCK; i++) put_nibble(blk, i, nibble_of(qweight[(b * QUANT_BLOCK + i) * words + j], nib));
        }
    }
    return 0;
}

struct col_group {
    int32_t group, col;
};

static int by_group(const void *a, const void *b) {
    const struct col_group *x = a, *y = b;
    if (x->group != y->group) return x->group < y->group ? -1 : 1;
    return x->col < y->col ? -1 : x->col > y->col; /* stable */
}

int quant_repack_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                      int64_t in, int64_t out, int gs, int groups, int v2, struct quant_q4z *dst, int32_t *perm,
                      int *has_perm) {
    if (in % 8 || out % 8) return folio_err(FOLIO_EUNSUP, "gptq: in_features %lld and out_features %lld must be multiples of 8",
                                            (long long)in, (long long)out);
    struct col_group *cg = malloc(sizeof *cg * (size_t)in);
    if (!cg) return folio_err(FOLIO_ENOMEM, "out of memory");
    int rc = 0;
    for (int64_t k = 0; k < in; k++) {
        cg[k].col = (int32_t)k;
        cg[k].group = g_idx ? g_idx[k] : (gs > 0 ? (int32_t)(k / gs) : 0);
        if (cg[k].group < 0 || cg[k].group >= groups) {
            rc = folio_err(FOLIO_EINVAL, "gptq: g_idx[%lld] = %d is outside the %d groups", (long long)k, cg[k].group,
                           groups);
            goto out;
        }
    }
    qsort(cg, (size_t)in, sizeof *cg, by_group);
    *has_perm = 0;
    for (int64_t k = 0; k < in; k++) {
        perm[k] = cg[k].col;
        *has_perm |= perm[k] != k;
    }
    const int64_t nb = quant_blocks(in), words = out / 8;
    /* every 32-block must lie in one group, or a block would need two scales */
    for (int64_t b = 0; b < nb; b++)
        for (int64_t k = b * QUANT_BLOCK + 1; k < in && k < (b + 1) * QUANT_BLOCK; k++)
            if (cg[k].group != cg[b * QUANT_BLOCK].group) {
                rc = folio_err(FOLIO_EUNSUP, "gptq: a group boundary falls inside a 32-column block (column %lld)",
                               (long long)k);
                goto out;
            }
    memset(dst, 0, sizeof *dst * (size_t)(out * nb));
    for (int64_t o = 0; o < out; o++) {
        for (int64_t b = 0; b < nb; b++) {
            struct quant_q4z *blk = dst + o * nb + b;
            const int32_t g = cg[b * QUANT_BLOCK].group;
            const int z = nibble_of(qzeros[(int64_t)g * words + o / 8], (int)(o % 8)) + (v2 ? 0 : 1);
            blk->d = scales[(int64_t)g * out + o];
            blk->z = (uint8_t)z;
            for (int i = 0; i < QUANT_BLOCK; i++) {
                const int64_t k = b * QUANT_BLOCK + i;
                /* padding past in: a weight of exactly zero */
                const int q = k < in ? nibble_of(qweight[(perm[k] / 8) * out + o], perm[k] % 8) : z;
                put_nibble(blk, i, q & 15);
            }
        }
    }
out:
    free(cg);
    return rc;
}
