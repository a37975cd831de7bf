// cache: the two writes into the paged KV cache. reshape_and_cache scatters each new token's
// K and V rows ([nkv, head_dim] each) to its slot; copy_blocks duplicates whole blocks for
// copy-on-write. Both are pure copies, bandwidth-bound: 16-byte vector loads and stores (every
// supported head_dim is a multiple of 4), one CTA per token or per (pair, cache), so that a
// block's contiguous span is streamed by one CTA.
#include "kernels.h"

template <int HD>
__global__ void reshape_and_cache_kernel(const float *k,              // [T, stride] holding [nkv, HD]
                                         const float *v,              // [T, stride] holding [nkv, HD]
                                         int stride,
                                         const int32_t *slot_mapping,  // [T]
                                         float *k_cache,              // [num_blocks, nkv, block_size, HD]
                                         float *v_cache,              // [num_blocks, nkv, block_size, HD]
                                         int nkv, int block_size) {
    const int t = blockIdx.x;
    const int32_t slot = slot_mapping[t];
    if (slot < 0) return;
    const size_t blk = (size_t)(slot / block_size), off = (size_t)(slot % block_size);
    constexpr int V4 = HD / 4; // float4 per head row
    for (int j = threadIdx.x; j < nkv * V4; j += blockDim.x) {
        const int h = j / V4, c = j % V4;
        const size_t src = (size_t)t * stride + (size_t)h * HD + 4 * c;
        const size_t dst = ((blk * nkv + h) * block_size + off) * HD + 4 * c;
        // stride is a multiple of 4 here (checked by the launcher), so src is 16-byte aligned.
        *(float4 *)(k_cache + dst) = *(const float4 *)(k + src);
        *(float4 *)(v_cache + dst) = *(const float4 *)(v + src);
    }
}

extern "C" cudaError_t reshape_and_cache(const float *k, const float *v, int stride, const int32_t *slot_mapping,
                                         float *k_cache, float *v_cache, int T, int nkv, int head_dim,
                                         int block_size, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    if (stride % 4 || ((uintptr_t)k | (uintptr_t)v | (uintptr_t)k_cache | (uintptr_t)v_cache) % 16 || block_size <= 0)
        return cudaErrorInvalidValue;
    switch (head_dim) {
#define RC_CASE(HD)                                                                                             \
    case HD:                                                                                                    \
        reshape_and_cache_kernel<HD><<<T, 128, 0, stream>>>(k, v, stride, slot_mapping, k_cache, v_cache, nkv, \
                                                            block_size);                                        \
        break;
        RC_CASE(8)
        RC_CASE(16)
        RC_CASE(32)
        RC_CASE(64)
        RC_CASE(80)
        RC_CASE(96)
        RC_CASE(128)
        RC_CASE(256)
#undef RC_CASE
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

// VEC floats per access: 4 when blocks and caches start 16-byte aligned, else 1.
template <int VEC>
__global__ void copy_blocks_kernel(float *pool,            // [num_caches, cache_elems] = each [num_blocks, block_elems]
                                   size_t cache_elems, size_t block_elems,
                                   const int32_t *pairs) {  // [n, 2] (src, dst)
    float *cache = pool + (size_t)blockIdx.y * cache_elems;
    const float *src = cache + (size_t)pairs[2 * blockIdx.x] * block_elems;
    float *dst = cache + (size_t)pairs[2 * blockIdx.x + 1] * block_elems;
    if (VEC == 4) {
        for (size_t i = threadIdx.x; i < block_elems / 4; i += blockDim.x)
            ((float4 *)dst)[i] = ((const float4 *)src)[i];
    } else {
        for (size_t i = threadIdx.x; i < block_elems; i += blockDim.x) dst[i] = src[i];
    }
}

extern "C" cudaError_t copy_blocks(float *pool, int num_caches, size_t cache_elems, size_t block_elems,
                                   const int32_t *pairs, int n, cudaStream_t stream) {
    if (n <= 0 || num_caches <= 0 || block_elems == 0) return cudaSuccess;
    if (num_caches > 65535) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)n, (unsigned)num_caches);
    if (block_elems % 4 == 0 && cache_elems % 4 == 0 && (uintptr_t)pool % 16 == 0)
        copy_blocks_kernel<4><<<grid, 256, 0, stream>>>(pool, cache_elems, block_elems, pairs);
    else
        copy_blocks_kernel<1><<<grid, 256, 0, stream>>>(pool, cache_elems, block_elems, pairs);
    return cudaGetLastError();
}
