// sample: greedy decoding's argmax on the GPU, so that a step where every row is greedy moves
// one int per row to the host instead of the whole [rows, vocab] fp32 logits (128k-vocab
// models at batch 256: 128 MiB per step over PCIe, several ms, against a few bytes).
//
// One CTA per row. Each thread scans a strided slice of the vocabulary, then the CTA reduces
// (value, index) pairs by warp shuffles and shared memory. The rule is the CPU sampler's
// (engine/sampler.c): the largest value wins, the lowest index on ties, NaN never wins, and a
// row with nothing comparable gives 0. A read of 4 bytes per logit: bandwidth-bound, and
// 1024 threads per row keep enough loads in flight for vocabularies of 32k and more.
#include "kernels.h"

#define ARGMAX_THREADS 1024

// Whether candidate (v, i) beats the current best (bv, bi); bi < 0 means no best yet.
__device__ __forceinline__ bool beats(float v, int i, float bv, int bi) {
    if (i < 0 || isnan(v)) return false;
    if (bi < 0) return true;
    return v > bv || (v == bv && i < bi);
}

// Lane 0 ends with the warp's best (value, index) under beats().
__device__ __forceinline__ void warp_best(float *bv, int *bi) {
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_down_sync(0xffffffffu, *bv, off);
        const int oi = __shfl_down_sync(0xffffffffu, *bi, off);
        if (beats(ov, oi, *bv, *bi)) {
            *bv = ov;
            *bi = oi;
        }
    }
}

__global__ void argmax_kernel(const float *__restrict__ logits,  // [n, vocab]
                              int32_t *__restrict__ ids,         // [n]
                              int vocab) {
    const float *row = logits + (size_t)blockIdx.x * vocab;
    float bv = 0.0f;
    int bi = -1;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = row[i];
        if (beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    warp_best(&bv, &bi);
    __shared__ float s_v[ARGMAX_THREADS / 32];
    __shared__ int s_i[ARGMAX_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) {
        s_v[warp] = bv;
        s_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < warps ? s_v[lane] : 0.0f;
        bi = lane < warps ? s_i[lane] : -1;
        warp_best(&bv, &bi);
        if (lane == 0) ids[blockIdx.x] = bi < 0 ? 0 : bi;
    }
}

extern "C" cudaError_t argmax_rows(const float *logits, int n, int vocab, int32_t *ids, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (vocab <= 0) return cudaErrorInvalidValue;
    argmax_kernel<<<n, ARGMAX_THREADS, 0, stream>>>(logits, ids, vocab);
    return cudaGetLastError();
}
