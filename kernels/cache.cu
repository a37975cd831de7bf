// cache: the two writes into the paged KV cache. reshape_and_cache scatters each new token's
// K and V rows ([nkv, head_dim] each) to its slot, converted to the cache's dtype
// (kv_dtype.cuh); copy_blocks duplicates whole blocks for copy-on-write, as bytes. Both are
// bandwidth-bound: vector loads and stores of 4 elements (every supported head_dim is a
// multiple of 4) or 16 bytes, one CTA per token or per (pair, cache), so that a block's
// contiguous span is streamed by one CTA.
#include "kernels.h"
#include "kv_dtype.cuh"

template <int HD, int DT>
__global__ void reshape_and_cache_kernel(const float *k,              // [T, stride] holding [nkv, HD]
                                         const float *v,              // [T, stride] holding [nkv, HD]
                                         int stride,
                                         const int32_t *slot_mapping,  // [T]
                                         typename kv_elem<DT>::T *k_cache, // [num_blocks, nkv, block_size, HD]
                                         typename kv_elem<DT>::T *v_cache, // [num_blocks, nkv, block_size, HD]
                                         int nkv, int block_size, float k_inv, float v_inv) {
    const int t = blockIdx.x;
    const int32_t slot = slot_mapping[t];
    if (slot < 0) return;
    const size_t blk = (size_t)(slot / block_size), off = (size_t)(slot % block_size);
    constexpr int V4 = HD / 4; // 4-element groups per head row
    for (int j = threadIdx.x; j < nkv * V4; j += blockDim.x) {
        const int h = j / V4, c = j % V4;
        const size_t src = (size_t)t * stride + (size_t)h * HD + 4 * c;
        const size_t dst = ((blk * nkv + h) * block_size + off) * HD + 4 * c;
        // stride is a multiple of 4 here (checked by the launcher), so src is 16-byte aligned.
        kv_elem<DT>::store4(k_cache + dst, *(const float4 *)(k + src), k_inv);
        kv_elem<DT>::store4(v_cache + dst, *(const float4 *)(v + src), v_inv);
    }
}

template <int DT>
static cudaError_t reshape_and_cache_dt(const float *k, const float *v, int stride, const int32_t *slot_mapping,
                                        void *k_cache, void *v_cache, float k_inv, float v_inv, int T, int nkv,
                                        int head_dim, int block_size, cudaStream_t stream) {
    typedef typename kv_elem<DT>::T E;
    switch (head_dim) {
#define RC_CASE(HD)                                                                                                \
    case HD:                                                                                                       \
        reshape_and_cache_kernel<HD, DT><<<T, 128, 0, stream>>>(k, v, stride, slot_mapping, (E *)k_cache,         \
                                                                (E *)v_cache, nkv, block_size, k_inv, v_inv);      \
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

extern "C" cudaError_t reshape_and_cache(const float *k, const float *v, int stride, const int32_t *slot_mapping,
                                         void *k_cache, void *v_cache, enum kernel_kv_dtype kv_dtype, float k_scale,
                                         float v_scale, int T, int nkv, int head_dim, int block_size,
                                         cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    const size_t es = kv_elem_size(kv_dtype);
    if (!es || stride % 4 || ((uintptr_t)k | (uintptr_t)v) % 16 ||
        ((uintptr_t)k_cache | (uintptr_t)v_cache) % (4 * es) || block_size <= 0)
        return cudaErrorInvalidValue;
    // The CPU backend multiplies by the reciprocal too, so both round the same quotient.
    const float k_inv = 1.0f / k_scale, v_inv = 1.0f / v_scale;
    switch (kv_dtype) {
    case KERNEL_KV_BF16:
        return reshape_and_cache_dt<KERNEL_KV_BF16>(k, v, stride, slot_mapping, k_cache, v_cache, k_inv, v_inv, T, nkv,
                                                    head_dim, block_size, stream);
    case KERNEL_KV_FP8:
        if (!(k_scale > 0.0f) || !(v_scale > 0.0f)) return cudaErrorInvalidValue;
        return reshape_and_cache_dt<KERNEL_KV_FP8>(k, v, stride, slot_mapping, k_cache, v_cache, k_inv, v_inv, T, nkv,
                                                   head_dim, block_size, stream);
    default:
        return reshape_and_cache_dt<KERNEL_KV_F32>(k, v, stride, slot_mapping, k_cache, v_cache, k_inv, v_inv, T, nkv,
                                                   head_dim, block_size, stream);
    }
}

// W-sized words per access: 16 bytes (uint4) when blocks and caches start 16-byte aligned,
// else 4 or 1.
template <typename W>
__global__ void copy_blocks_kernel(char *pool,             // [num_caches, cache_bytes], each [num_blocks, block_bytes]
                                   size_t cache_bytes, size_t block_bytes,
                                   const int32_t *pairs) {  // [n, 2] (src, dst)
    char *cache = pool + (size_t)blockIdx.y * cache_bytes;
    const W *src = (const W *)(cache + (size_t)pairs[2 * blockIdx.x] * block_bytes);
    W *dst = (W *)(cache + (size_t)pairs[2 * blockIdx.x + 1] * block_bytes);
    for (size_t i = threadIdx.x; i < block_bytes / sizeof(W); i += blockDim.x) dst[i] = src[i];
}

extern "C" cudaError_t copy_blocks(void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                                   const int32_t *pairs, int n, cudaStream_t stream) {
    if (n <= 0 || num_caches <= 0 || block_bytes == 0) return cudaSuccess;
    if (num_caches > 65535) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)n, (unsigned)num_caches);
    const size_t align = block_bytes | cache_bytes | (uintptr_t)pool;
    if (align % 16 == 0)
        copy_blocks_kernel<uint4><<<grid, 256, 0, stream>>>((char *)pool, cache_bytes, block_bytes, pairs);
    else if (align % 4 == 0)
        copy_blocks_kernel<uint32_t><<<grid, 256, 0, stream>>>((char *)pool, cache_bytes, block_bytes, pairs);
    else
        copy_blocks_kernel<uint8_t><<<grid, 256, 0, stream>>>((char *)pool, cache_bytes, block_bytes, pairs);
    return cudaGetLastError();
}
