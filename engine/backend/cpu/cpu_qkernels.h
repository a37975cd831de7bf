/* cpu_qkernels: the CPU's GEMMs over quantized weights (base/quant.h), for cpu_kernels.h's
 * tables. Q8, Q4 and Q4Z multiply int8 activation blocks (quantize_x8) with integer dot
 * products: AVX-512 VNNI or AVX-VNNI (vpdpbusd) where the CPU has it, AVX2 (vpmaddubsw +
 * vpmaddwd), and portable C. */
#ifndef FOLIO_CPU_QKERNELS_H
#define FOLIO_CPU_QKERNELS_H

#include "base/quant.h"

/* The CPU keeps Q4 weights (not Q8 or Q4Z) in groups of four rows, block by block: a group's
 * block b holds the four rows' scales, then their 16 bytes of nibbles each (base/quant.h's
 * nibble order), so one 64-byte load feeds a 512-bit register with four rows and one 8-byte
 * load their scales. Rows are padded to a multiple of four with zero weights. Same 18 bytes
 * per 32 weights as struct quant_q4. */
struct cpu_q4x4 {
    uint16_t d[4];                      /* f16 */
    uint8_t n[4][QUANT_BLOCK / 2];
};
_Static_assert(sizeof(struct cpu_q4x4) == 72, "four q4 blocks");

/* quant_q4 rows [rows, ceil(K/32)] into ceil(rows/4) groups of cpu_q4x4 [ceil(K/32)]. */
void cpu_q4x4_pack(const struct quant_q4 *src, int64_t rows, int64_t K, struct cpu_q4x4 *dst);
size_t cpu_q4x4_bytes(int64_t rows, int64_t K);

/* out[t, n] = bias[n] + sum_k x[t, k] * w[n, k] for t < T, n0 <= n < n1 (n0 a multiple of 4),
 * with x given as T rows of ceil(K / 32) activation blocks. w: [N] rows of blocks (Q4:
 * cpu_q4x4 groups); out: [T, ldo]. */
typedef void (*cpu_gemm_q_fn)(const struct quant_x8 *x, int T, int K, const void *w, int n0, int n1, float *out,
                              int ldo, const float *bias);

#define CPU_QKERNELS_DECL(isa)                                                                                    \
    void cpu_gemm_q8_##isa(const struct quant_x8 *x, int T, int K, const void *w, int n0, int n1, float *out, int ldo, \
                       const float *bias);                                                                        \
    void cpu_gemm_q4_##isa(const struct quant_x8 *x, int T, int K, const void *w, int n0, int n1, float *out, int ldo, \
                       const float *bias);                                                                        \
    void cpu_gemm_q4z_##isa(const struct quant_x8 *x, int T, int K, const void *w, int n0, int n1, float *out,         \
                        int ldo, const float *bias);
CPU_QKERNELS_DECL(vnni)
CPU_QKERNELS_DECL(avx2)
CPU_QKERNELS_DECL(avxvnni)
CPU_QKERNELS_DECL(scalar)
#undef CPU_QKERNELS_DECL

/* quant_row_x8 (base/quant.h), bit for bit, with AVX2. */
void cpu_quantize_x8_avx2(const float *x, const int32_t *perm, int K, struct quant_x8 *dst);

#endif
