// kv_dtype: the KV cache's element types on the device (enum kernel_kv_dtype), for the
// writes (cache.cu) and the reads (attention.cu). The conversions are those of the CPU
// backend (folio_f32_to_bf16, quant_f32_to_e4m3), bit for bit, so that the two backends
// store the same cache. Four elements move at a time: every head_dim is a multiple of 4.
#pragma once

#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

// fp32 to bf16 bits, nearest even; a NaN stays a (quiet) NaN.
__device__ __forceinline__ uint32_t kv_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

// fp32 to e4m3fn: nearest even on the e4m3 grid (3 mantissa bits, exponents -6..8, subnormals
// of 2^-9), saturating at +-448, NaN to 0x7F. The magnitude is rounded in fp32, where every
// e4m3 value and midpoint is exact.
__device__ __forceinline__ uint32_t kv_f32_to_e4m3(float f) {
    const uint32_t sign = signbit(f) ? 0x80u : 0u;
    const float a = fabsf(f);
    if (isnan(f)) return 0x7Fu;
    if (a >= 448.0f) return sign | 0x7Eu;
    int e;
    frexpf(a, &e);
    int ex = e - 1 < -6 ? -6 : e - 1; // a in [2^ex, 2^(ex+1)), or the subnormal range
    const float q = rintf(a / ldexpf(1.0f, ex - 3)) * ldexpf(1.0f, ex - 3);
    if (q >= 448.0f) return sign | 0x7Eu;
    if (q == 0.0f) return sign;
    frexpf(q, &e);
    ex = e - 1;
    if (ex < -6) return sign | (uint32_t)(q * 512.0f); // subnormal: m * 2^-9
    return sign | (uint32_t)((ex + 7) << 3) | (uint32_t)((int)(q / ldexpf(1.0f, ex - 3)) - 8);
}

// Two e4m3 bytes (the low 16 bits of u) as floats times 2^-8: their bits moved into f16's
// (4 exponent bits into 5, 3 mantissa bits on top of 10) give each value divided by 2^8,
// subnormals included; the callers fold the 2^8 into their scales.
__device__ __forceinline__ float2 kv_e4m3x2_div256(uint32_t u) {
    const uint32_t h = ((u & 0x80u) << 8) | ((u & 0x7fu) << 7) | ((u & 0x8000u) << 16) | ((u & 0x7f00u) << 15);
    __half2 v;
    memcpy(&v, &h, sizeof v);
    return __half22float2(v);
}

template <int DT> struct kv_elem;

template <> struct kv_elem<KERNEL_KV_F32> {
    typedef float T;
    static constexpr float unit = 1.0f; // what load4 multiplies the stored value by
    __device__ static __forceinline__ float4 load4(const T *p) { return *(const float4 *)p; }
    __device__ static __forceinline__ void store4(T *p, float4 x, float inv_scale) { *(float4 *)p = x; }
};

template <> struct kv_elem<KERNEL_KV_BF16> {
    typedef uint16_t T;
    static constexpr float unit = 1.0f;
    __device__ static __forceinline__ float4 load4(const T *p) {
        const uint2 u = *(const uint2 *)p; // little-endian: element 0 in the low half
        return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                           __uint_as_float(u.y & 0xffff0000u));
    }
    __device__ static __forceinline__ void store4(T *p, float4 x, float inv_scale) {
        *(uint2 *)p = make_uint2(kv_f32_to_bf16(x.x) | kv_f32_to_bf16(x.y) << 16,
                                 kv_f32_to_bf16(x.z) | kv_f32_to_bf16(x.w) << 16);
    }
};

template <> struct kv_elem<KERNEL_KV_FP8> {
    typedef uint8_t T;
    static constexpr float unit = 1.0f / 256.0f;
    __device__ static __forceinline__ float4 load4(const T *p) {
        const uint32_t u = *(const uint32_t *)p;
        const float2 a = kv_e4m3x2_div256(u), b = kv_e4m3x2_div256(u >> 16);
        return make_float4(a.x, a.y, b.x, b.y);
    }
    __device__ static __forceinline__ void store4(T *p, float4 x, float inv_scale) {
        *(uint32_t *)p = kv_f32_to_e4m3(x.x * inv_scale) | kv_f32_to_e4m3(x.y * inv_scale) << 8 |
                         kv_f32_to_e4m3(x.z * inv_scale) << 16 | kv_f32_to_e4m3(x.w * inv_scale) << 24;
    }
};

// Bytes of one element (0: not a KV dtype).
static inline size_t kv_elem_size(enum kernel_kv_dtype dt) {
    return dt == KERNEL_KV_F32 ? 4 : dt == KERNEL_KV_BF16 ? 2 : dt == KERNEL_KV_FP8 ? 1 : 0;
}
