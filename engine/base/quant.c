/* quant: see quant.h. Scalar code only: the loader quantizes once, and these are the
 * references the CPU kernels' SIMD variants are tested against. */
#include "base/quant.h"

#include <math.h>
#include <string.h>

int quant_is_blocked(enum folio_dtype dt) { return dt == FOLIO_Q8 || dt == FOLIO_Q4 || dt == FOLIO_Q4Z; }

size_t quant_row_bytes(enum folio_dtype dt, int64_t K) {
    switch (dt) {
    case FOLIO_Q8: return (size_t)quant_blocks(K) * sizeof(struct quant_q8);
    case FOLIO_Q4: return (size_t)quant_blocks(K) * sizeof(struct quant_q4);
    case FOLIO_Q4Z: return (size_t)quant_blocks(K) * sizeof(struct quant_q4z);
    default: return (size_t)K * folio_dtype_size(dt);
    }
}

float quant_e4m3_to_f32(uint8_t b) { return folio_widen(&b, FOLIO_FP8, 0); }

/* Round to nearest even on the e4m3 grid (3 mantissa bits, exponents -6..8, subnormals of
 * 2^-9), on the fp32 bits: an fp8 KV cache encodes every K and V element it stores in the
 * step loop, so no libm calls. */
uint8_t quant_f32_to_e4m3(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint8_t sign = (uint8_t)(bits >> 24 & 0x80u);
    const uint32_t mag = bits & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return 0x7F;        /* NaN */
    if (mag >= 0x43E00000u) return sign | 0x7E; /* >= 448 (and inf): saturate */
    if (mag < 0x3C800000u) {                    /* below 2^-6: the subnormal grid, exact in fp32 */
        float a;
        memcpy(&a, &mag, sizeof a);
        return sign | (uint8_t)nearbyintf(a * 512.0f); /* 8 is the smallest normal's code */
    }
    /* the 23-bit mantissa rounded to 3 bits (to even; a carry bumps the exponent), then the
     * exponent rebiased from 127 to 7 */
    const uint32_t r = (mag + 0x7FFFFu + (mag >> 20 & 1u)) >> 20;
    return sign | (uint8_t)(r - ((127u - 7u) << 3));
}

static int nibble(const uint8_t *n, int i) { return i < QUANT_BLOCK / 2 ? n[i] & 15 : n[i - QUANT_BLOCK / 2] >> 4; }

void quant_row(enum folio_dtype dt, const float *x, int64_t K, void *dst) {
    for (int64_t b = 0; b < quant_blocks(K); b++) {
        float v[QUANT_BLOCK] = {0};
        const int64_t k0 = b * QUANT_BLOCK, n = K - k0 < QUANT_BLOCK ? K - k0 : QUANT_BLOCK;
        memcpy(v, x + k0, sizeof(float) * (size_t)n);
        if (dt == FOLIO_Q8) {
            struct quant_q8 *blk = (struct quant_q8 *)dst + b;
            float amax = 0.0f;
            for (int i = 0; i < QUANT_BLOCK; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
            blk->d = folio_f32_to_f16(amax / 127.0f);
            const float d = folio_f16_to_f32(blk->d), id = d > 0.0f ? 1.0f / d : 0.0f;
            for (int i = 0; i < QUANT_BLOCK; i++) {
                const float q = nearbyintf(v[i] * id);
                blk->q[i] = (int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
            }
        } else { /* FOLIO_Q4 */
            struct quant_q4 *blk = (struct quant_q4 *)dst + b;
            float ext = 0.0f; /* the value of largest magnitude, signed */
            for (int i = 0; i < QUANT_BLOCK; i++) ext = fabsf(v[i]) > fabsf(ext) ? v[i] : ext;
            blk->d = folio_f32_to_f16(ext / -8.0f);
            const float d = folio_f16_to_f32(blk->d), id = d != 0.0f ? 1.0f / d : 0.0f;
            memset(blk->n, 0, sizeof blk->n);
            for (int i = 0; i < QUANT_BLOCK; i++) {
                float q = nearbyintf(v[i] * id) + 8.0f;
                const int n4 = q > 15.0f ? 15 : q < 0.0f ? 0 : (int)q;
                blk->n[i % 16] |= (uint8_t)(i < 16 ? n4 : n4 << 4);
            }
        }
    }
}

void quant_dequant_row(enum folio_dtype dt, const void *src, int64_t K, float scale, float *dst) {
    if (dt == FOLIO_FP8 || !quant_is_blocked(dt)) {
        for (int64_t k = 0; k < K; k++) dst[k] = folio_widen(src, dt, (size_t)k) * (dt == FOLIO_FP8 ? scale : 1.0f);
        return;
    }
    for (int64_t k = 0; k < K; k++) {
        const int64_t b = k / QUANT_BLOCK;
        const int i = (int)(k % QUANT_BLOCK);
        if (dt == FOLIO_Q8) {
            const struct quant_q8 *blk = (const struct quant_q8 *)src + b;
            dst[k] = folio_f16_to_f32(blk->d) * (float)blk->q[i];
        } else if (dt == FOLIO_Q4) {
            const struct quant_q4 *blk = (const struct quant_q4 *)src + b;
            dst[k] = folio_f16_to_f32(blk->d) * (float)(nibble(blk->n, i) - 8);
        } else {
            const struct quant_q4z *blk = (const struct quant_q4z *)src + b;
            dst[k] = folio_f16_to_f32(blk->d) * (float)(nibble(blk->n, i) - blk->z);
        }
    }
}

void quant_row_x8(const float *x, const int32_t *perm, int K, struct quant_x8 *dst) {
    for (int b = 0; b < (int)quant_blocks(K); b++) {
        float v[QUANT_BLOCK] = {0};
        for (int i = 0; i < QUANT_BLOCK && b * QUANT_BLOCK + i < K; i++) {
            const int k = b * QUANT_BLOCK + i;
            v[i] = x[perm ? perm[k] : k];
        }
        float amax = 0.0f;
        for (int i = 0; i < QUANT_BLOCK; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < QUANT_BLOCK; i++) {
            dst[b].q[i] = (int8_t)nearbyintf(v[i] * id);
            sum += dst[b].q[i];
        }
        dst[b].d = amax / 127.0f;
        dst[b].qsum = sum;
    }
}

int quant_parse_method(const char *s, enum folio_dtype *out) {
    if (!s || !*s || !strcmp(s, "none")) *out = (enum folio_dtype)0;
    else if (!strcmp(s, "int8")) *out = FOLIO_Q8;
    else if (!strcmp(s, "int4")) *out = FOLIO_Q4;
    else if (!strcmp(s, "fp8")) *out = FOLIO_FP8;
    else return folio_err(FOLIO_EINVAL, "unknown quantization '%s' (expected int8, int4, fp8 or none)", s);
    return 0;
}

const char *quant_method_name(enum folio_dtype dt) {
    return dt == FOLIO_Q8 ? "int8" : dt == FOLIO_Q4 ? "int4" : dt == FOLIO_FP8 ? "fp8" : "none";
}
