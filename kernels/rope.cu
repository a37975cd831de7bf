// rope: rotate-half rotary embedding in place on q and k. Per token the angles
// positions[t] * inv_freq[i] are computed once in double (as the CPU backend does: a float
// product is already ~1e-2 rad off at position 1e5) into shared memory and reused by every
// head, so the few double sincos per token cost little even on GPUs with slow fp64. The rest
// is a read-modify-write of q and k: bandwidth-bound, one CTA per token. The rotation uses
// uncontracted float multiplies and adds (__fmul_rn, __fadd_rn), like the CPU's ISO C build,
// so the two agree bit for bit.
#include "kernels.h"

template <int HALF>
__global__ void rope_kernel(float *q,                  // [T, q_stride] holding nh heads of 2 * HALF
                            int q_stride,
                            float *k,                  // [T, k_stride] holding nkv heads
                            int k_stride,
                            const int32_t *positions,  // [T]
                            const float *inv_freq,     // [HALF]
                            int nh, int nkv) {
    __shared__ float cs[HALF], sn[HALF];
    const int t = blockIdx.x;
    const double pos = (double)positions[t];
    for (int i = threadIdx.x; i < HALF; i += blockDim.x) {
        double s, c;
        sincos(pos * (double)inv_freq[i], &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
    __syncthreads();
    const int pairs = (nh + nkv) * HALF;
    for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
        const int h = j / HALF, i = j % HALF;
        float *x = h < nh ? q + (size_t)t * q_stride + (size_t)h * 2 * HALF
                          : k + (size_t)t * k_stride + (size_t)(h - nh) * 2 * HALF;
        const float x0 = x[i], x1 = x[i + HALF];
        x[i] = __fsub_rn(__fmul_rn(x0, cs[i]), __fmul_rn(x1, sn[i]));
        x[i + HALF] = __fadd_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x0, sn[i]));
    }
}

extern "C" cudaError_t rope(float *q, int q_stride, float *k, int k_stride, const int32_t *positions,
                            const float *inv_freq, int T, int nh, int nkv, int head_dim, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    switch (head_dim) {
#define ROPE_CASE(HD)                                                                                          \
    case HD: rope_kernel<HD / 2><<<T, 128, 0, stream>>>(q, q_stride, k, k_stride, positions, inv_freq, nh, nkv); \
        break;
        ROPE_CASE(8)
        ROPE_CASE(16)
        ROPE_CASE(32)
        ROPE_CASE(64)
        ROPE_CASE(80)
        ROPE_CASE(96)
        ROPE_CASE(128)
        ROPE_CASE(256)
#undef ROPE_CASE
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
