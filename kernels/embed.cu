// embed: row gathers. embed widens token rows of the embedding table to fp32 and gather_rows
// picks rows of an fp32 activation (the last token of each sequence before the LM head). Both
// move a handful of rows and do no arithmetic, so they are bound by latency more than by
// bandwidth: one CTA per output row, its threads striding over the columns with coalesced
// loads (16-byte vectors where the row allows), and nothing else to hide.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

template <typename T>
__device__ __forceinline__ float widen(T x);
template <>
__device__ __forceinline__ float widen<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ float widen<__half>(__half x) {
    return __half2float(x);
}
template <>
__device__ __forceinline__ float widen<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

template <typename T>
__global__ void embed_kernel(const T *table,          // [rows, cols]
                             const int32_t *tokens,   // [n]
                             float *out,              // [n, cols]
                             int64_t cols) {
    const T *row = table + (size_t)tokens[blockIdx.x] * cols;
    float *o = out + (size_t)blockIdx.x * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = widen<T>(row[i]);
}

extern "C" cudaError_t embed(const void *table, enum kernel_dtype dtype, int64_t rows, int64_t cols,
                             const int32_t *tokens, int n, float *out, cudaStream_t stream) {
    if (n <= 0 || cols <= 0) return cudaSuccess;
    (void)rows;
    switch (dtype) {
    case KERNEL_F32:
        embed_kernel<float><<<n, 256, 0, stream>>>((const float *)table, tokens, out, cols);
        break;
    case KERNEL_F16:
        embed_kernel<__half><<<n, 256, 0, stream>>>((const __half *)table, tokens, out, cols);
        break;
    case KERNEL_BF16:
        embed_kernel<__nv_bfloat16><<<n, 256, 0, stream>>>((const __nv_bfloat16 *)table, tokens, out, cols);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

// VEC floats per access: 4 when every row starts 16-byte aligned, else 1.
template <int VEC>
__global__ void gather_rows_kernel(const float *x,       // [*, dim]
                                   const int32_t *idx,   // [n]
                                   float *out,           // [n, dim]
                                   int dim) {
    const size_t src = (size_t)idx[blockIdx.x] * dim, dst = (size_t)blockIdx.x * dim;
    if (VEC == 4) {
        const float4 *s = (const float4 *)(x + src);
        float4 *d = (float4 *)(out + dst);
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) d[i] = s[i];
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) out[dst + i] = x[src + i];
    }
}

extern "C" cudaError_t gather_rows(const float *x, const int32_t *idx, int n, int dim, float *out,
                                   cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    const bool aligned = dim % 4 == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)out % 16) == 0;
    if (aligned)
        gather_rows_kernel<4><<<n, 256, 0, stream>>>(x, idx, out, dim);
    else
        gather_rows_kernel<1><<<n, 256, 0, stream>>>(x, idx, out, dim);
    return cudaGetLastError();
}
