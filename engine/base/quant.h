/* quant: the quantized weight formats folio computes with, and the scalar (reference)
 * conversions into and out of them. Every backend reads the same layouts; a backend may
 * repack them privately at load (the CUDA one does), but this is what load_weight receives.
 *
 * Block formats cover a row in blocks of QUANT_BLOCK (32) weights along K (in_features). A
 * row of K weights takes ceil(K / 32) blocks; the padding of the last block holds weights
 * that are exactly zero, so K need not be a multiple of 32 (stories260K's MLP is 172 wide).
 *
 *   int8   (FOLIO_Q8):  {f16 d; int8 q[32]}            w[i] = d * q[i]             34 bytes
 *   int4   (FOLIO_Q4):  {f16 d; u8 n[16]}              w[i] = d * (nib(i) - 8)     18 bytes
 *   int4+z (FOLIO_Q4Z): {f16 d; u8 z; u8 pad; u8 n[16]} w[i] = d * (nib(i) - z)   20 bytes
 *
 * with nib(i) = n[i] & 15 for i < 16 and n[i - 16] >> 4 for i >= 16: the low nibbles hold
 * the block's first half, so one shift and mask unpack a block into K order. Q4Z carries
 * AWQ's and GPTQ's asymmetric groups (a group of 32, 64 or 128 repeats its d and z in each of
 * its blocks). FP8 (FOLIO_FP8) is not blocked: [rows, K] e4m3fn bytes and one fp32 scale per
 * row (a per-tensor scale repeated), w = scale[row] * e4m3(byte).
 *
 * Integer kernels multiply these by activations quantized per block of 32 to int8
 * (struct quant_x8), symmetric with an fp32 scale, so a block's dot product is exact in
 * int32 and only the block sums are floating point. */
#ifndef FOLIO_QUANT_H
#define FOLIO_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define QUANT_BLOCK 32

struct quant_q8 {
    uint16_t d; /* f16 */
    int8_t q[QUANT_BLOCK];
};

struct quant_q4 {
    uint16_t d; /* f16 */
    uint8_t n[QUANT_BLOCK / 2];
};

struct quant_q4z {
    uint16_t d; /* f16 */
    uint8_t z;  /* zero point, 0..15 */
    uint8_t pad;
    uint8_t n[QUANT_BLOCK / 2];
};

/* An activation block: x[i] ~= d * q[i], q in [-127, 127]; qsum = sum(q) (for Q4Z's
 * zero-point term, z * qsum, exact in integers). */
struct quant_x8 {
    float d;
    int32_t qsum;
    int8_t q[QUANT_BLOCK];
};

_Static_assert(sizeof(struct quant_q8) == 34, "q8 block is 34 bytes");
_Static_assert(sizeof(struct quant_q4) == 18, "q4 block is 18 bytes");
_Static_assert(sizeof(struct quant_q4z) == 20, "q4z block is 20 bytes");
_Static_assert(sizeof(struct quant_x8) == 40, "x8 block is 40 bytes");

/* Blocks per row of K weights. */
static inline int64_t quant_blocks(int64_t K) { return (K + QUANT_BLOCK - 1) / QUANT_BLOCK; }

/* 1 for the blocked integer formats (Q8, Q4, Q4Z). */
int quant_is_blocked(enum folio_dtype dt);
/* Bytes of one row of K weights in dt (any dtype a weight may have). */
size_t quant_row_bytes(enum folio_dtype dt, int64_t K);

/* e4m3fn (OCP FP8, max 448, no infinities) <-> fp32; the way down rounds to nearest even and
 * saturates at +-448. */
float quant_e4m3_to_f32(uint8_t b);
uint8_t quant_f32_to_e4m3(float f);

/* Quantizes a row of K floats into ceil(K / 32) blocks of dt (Q8 or Q4): per block, absmax
 * scaling (Q8: d = amax / 127; Q4: d = -max / 8 of the signed extreme, so it maps to -8
 * exactly), d rounded to f16 first and the values rounded to nearest with that d. */
void quant_row(enum folio_dtype dt, const float *x, int64_t K, void *dst);
/* The row's K weights back in fp32 (Q8, Q4, Q4Z, or FP8 with scale). */
void quant_dequant_row(enum folio_dtype dt, const void *src, int64_t K, float scale, float *dst);

/* Activations: ceil(K / 32) blocks of x[perm[k]] (perm NULL: x[k]). d = amax / 127 and
 * q = nearest-even(x * (127 / amax)); a block of zeros has d = 0. The SIMD variants in the
 * CPU kernels compute exactly this. */
void quant_row_x8(const float *x, const int32_t *perm, int K, struct quant_x8 *dst);

/* --quantization (vLLM's spelling): "int8" -> FOLIO_Q8, "int4" -> FOLIO_Q4, "fp8" ->
 * FOLIO_FP8; NULL, "" and "none" -> 0 (no quantization at load). */
int quant_parse_method(const char *s, enum folio_dtype *out);
/* Its inverse: "int8", "int4", "fp8", or "none" for anything else. */
const char *quant_method_name(enum folio_dtype dt);

#endif
