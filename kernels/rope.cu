// rope: rotate-half rotary embedding in place on q and k. Per token the angles
// positions[t] * inv_freq[i] are computed once in double (as the CPU backend does: a float
// product is already ~1e-2 rad off at position 1e5) into shared memory and reused by every
// head, so the few double sincos per token cost little even on GPUs with slow fp64. cos and
// sin are multiplied by mscale in double before rounding to float, as on the CPU (LongRoPE's
// attention factor). LongRoPE's long_sel picks each token's row of the two inv_freq tables.
// Only the first rot_dim dimensions of a head rotate (partial rotary); the rest are not
// touched. The rest is a read-modify-write of q and k: bandwidth-bound, one CTA per token.
// The rotation uses uncontracted float multiplies and adds (__fmul_rn, __fadd_rn), like the
// CPU's ISO C build, so the two agree bit for bit.
#include "kernels.h"

// HALF = head_dim / 2 (a template parameter, so that the pair index splits with a constant
// division); half = rot_dim / 2 <= HALF pairs of each head rotate.
template <int HALF>
__global__ void rope_kernel(float *q,                  // [T, q_stride] holding nh heads of 2 * HALF
                            int q_stride,
                            float *k,                  // [T, k_stride] holding nkv heads
                            int k_stride,
                            const int32_t *positions,  // [T]
                            const float *inv_freq,     // [half], or [2, half] with long_sel
                            const int32_t *long_sel,   // [T] or nullptr
                            int nh, int nkv, int half, float mscale) {
    __shared__ float cs[HALF], sn[HALF];
    const int t = blockIdx.x;
    const double pos = (double)positions[t];
    const float *inv = inv_freq + (long_sel && long_sel[t] ? half : 0);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(pos * (double)inv[i], &s, &c);
        cs[i] = (float)(c * (double)mscale);
        sn[i] = (float)(s * (double)mscale);
    }
    __syncthreads();
    const int pairs = (nh + nkv) * HALF;
    for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
        const int h = j / HALF, i = j % HALF;
        if (i >= half) continue; // past rot_dim: passes through
        float *x = h < nh ? q + (size_t)t * q_stride + (size_t)h * 2 * HALF
                          : k + (size_t)t * k_stride + (size_t)(h - nh) * 2 * HALF;
        const float x0 = x[i], x1 = x[i + half];
        x[i] = __fsub_rn(__fmul_rn(x0, cs[i]), __fmul_rn(x1, sn[i]));
        x[i + half] = __fadd_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x0, sn[i]));
    }
}

extern "C" cudaError_t rope(const struct rope_params *p, cudaStream_t stream) {
    if (p->rot_dim < 2 || p->rot_dim % 2 || p->rot_dim > p->head_dim) return cudaErrorInvalidValue;
    if (p->T <= 0) return cudaSuccess;
    const int half = p->rot_dim / 2;
    switch (p->head_dim) {
#define ROPE_CASE(HD)                                                                                        \
    case HD:                                                                                                 \
        rope_kernel<HD / 2><<<p->T, 128, 0, stream>>>(p->q, p->q_stride, p->k, p->k_stride, p->positions,     \
                                                      p->inv_freq, p->long_sel, p->nh, p->nkv, half, p->mscale); \
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
