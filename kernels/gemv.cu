// gemv: the products of the smallest batches (T <= GEMV_MAX_T rows) with a 16-bit weight. At such T
// a product reads the whole weight to do 2T flops per element, so it is bound by memory
// bandwidth, and cuBLAS's GEMM tiles (built for large T) leave much of it unused; so does
// narrowing the activations first. Here each warp streams whole weight rows in 16-byte loads
// (8 elements a lane), multiplies them with the fp32 activations (read from L1/L2: every
// warp of a CTA reads the same x) and reduces across the warp: one pass over the weight.
// The x rows stay fp32, which is also nearer the CPU backend than bf16-narrowed activations.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels.h"

#define ROWS_PER_CTA 8 // one warp per output row
#define UNROLL 4       // 16-byte loads in flight per lane

// 8 packed 16-bit values widened to fp32.
__device__ __forceinline__ void widen8(uint4 v, bool bf16, float f[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (bf16) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        } else {
            const __half2 h = *reinterpret_cast<const __half2 *>(&w[i]);
            const float2 p = __half22float2(h);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
}

template <int T, bool BF16>
__global__ void __launch_bounds__(32 * ROWS_PER_CTA) gemv_kernel(const uint16_t *__restrict__ w, // [N, K]
                                                                  const float *__restrict__ x,    // [T, K]
                                                                  float *__restrict__ out,        // [T, N]
                                                                  int N, int K) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * ROWS_PER_CTA + threadIdx.x / 32;
    if (n >= N) return;
    const uint4 *row = reinterpret_cast<const uint4 *>(w + (size_t)n * K); // K / 8 vectors
    const int nv = K / 8;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0.0f;
    for (int v0 = lane; v0 < nv; v0 += 32 * UNROLL) {
        uint4 wv[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int v = v0 + 32 * u;
            wv[u] = v < nv ? row[v] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int v = v0 + 32 * u;
            if (v >= nv) break;
            float f[8];
            widen8(wv[u], BF16, f);
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)t * K + 8 * (size_t)v);
                const float4 a = xv[0], b = xv[1];
                acc[t] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y + f[6] * b.z +
                          f[7] * b.w;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float s = acc[t];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) out[(size_t)t * N + n] = s;
    }
}

template <bool BF16>
static cudaError_t launch(const void *w, const float *x, float *out, int T, int N, int K, cudaStream_t stream) {
    const dim3 grid((unsigned)((N + ROWS_PER_CTA - 1) / ROWS_PER_CTA)), block(32 * ROWS_PER_CTA);
    const uint16_t *wp = (const uint16_t *)w;
    switch (T) {
    case 1: gemv_kernel<1, BF16><<<grid, block, 0, stream>>>(wp, x, out, N, K); break;
    default: return cudaErrorInvalidValue; /* more rows: see GEMV_MAX_T */
    }
    return cudaGetLastError();
}

extern "C" int gemv_supported(enum kernel_dtype dtype, int T, int K, const void *w, const float *x) {
    return (dtype == KERNEL_BF16 || dtype == KERNEL_F16) && T >= 1 && T <= GEMV_MAX_T && K > 0 && K % 8 == 0 &&
           (uintptr_t)w % 16 == 0 && (uintptr_t)x % 16 == 0;
}

extern "C" cudaError_t gemv(const void *w, enum kernel_dtype dtype, const float *x, float *out, int T, int N, int K,
                            cudaStream_t stream) {
    if (N <= 0) return cudaSuccess;
    if (!gemv_supported(dtype, T, K, w, x)) return cudaErrorInvalidValue;
    return dtype == KERNEL_BF16 ? launch<true>(w, x, out, T, N, K, stream) : launch<false>(w, x, out, T, N, K, stream);
}
