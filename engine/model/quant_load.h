/* quant_load: pre-quantized checkpoints' packings into base/quant.h's formats. AWQ and GPTQ
 * 4-bit weights are repacked, not dequantized: their integers, scales and zero points are
 * carried over exactly into Q4Z blocks, so the kernels compute with the checkpoint's own
 * numbers. Pure functions over host arrays, tested against tests/reference/quantize_ref.py's
 * packings. */
#ifndef FOLIO_QUANT_LOAD_H
#define FOLIO_QUANT_LOAD_H

#include <stdint.h>

#include "base/quant.h"

/* AWQ (GEMM packing): qweight [in, out/8] and qzeros [in/gs, out/8] int32 words whose nibble
 * i holds output column 8j + {0, 2, 4, 6, 1, 3, 5, 7}[i]; scales [in/gs, out] f16;
 * w[o, k] = (q - z) * s. dst: [out, ceil(in/32)] blocks. gs must be a multiple of 32. */
int quant_repack_awq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t in, int64_t out,
                     int gs, struct quant_q4z *dst);

/* GPTQ: qweight [in/8, out] with nibble i of word r holding input row 8r + i; qzeros
 * [groups, out/8] sequential nibbles; scales [groups, out] f16; g_idx [in] the group of each
 * input column (NULL: k / gs). v1 checkpoints store each zero minus one (v2 = 0 adds it
 * back). Columns are reordered by group (stable), so that each 32-block lies in one group:
 * perm[k] = the input column stored at k, and *has_perm = 0 when that is the identity.
 * dst: [out, ceil(in/32)] blocks. */
int quant_repack_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                      int64_t in, int64_t out, int gs, int groups, int v2, struct quant_q4z *dst, int32_t *perm,
                      int *has_perm);

#endif
