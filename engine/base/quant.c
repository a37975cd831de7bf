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

/* Round to nearest even on the e4m3 grid: 3 mantissa bits, exponents -6..8, subnormals of
 * 2^-9. Done on the magnitude in fp32, where every e4m3 value and midpoint is exact. */
uint8_t quant_f32_to_e4m3(float f) {
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (isnan(f)) return 0x7F;
    if (a >= 448.0f) return sign | 0x7E;
    int e;
    frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int exp = e - 1;  /* a in [2^exp, 2^(exp+1)) */
    if (exp < -6) exp = -6; /* subnormal range shares the smallest normal's spacing */
    const float step = ldexpf(1.0f, exp - 3);
    float q = nearbyintf(a / step) * step; /* a / step is exact: a power-of-two division */
    if (q >= 448.0f) return sign | 0x7E;
    if (q == 0.0f) return sign;
    frexpf(q, &e);
    exp = e - 1;
    if (exp < -6) return sign | (uint8_t)(q / ldexpf(1.0f, -9)); /* subnormal: m * 2^-9 */
    const int mant = (int)(q / ldexpf(1.0f, exp - 3)) - 8;
    return sign | (uint8_t)((exp + 7) << 3) | (uint8_t)mant;
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
