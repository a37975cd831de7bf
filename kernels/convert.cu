// convert: fp32 activations narrowed to the weights' 16-bit type, so that a bf16/f16 weight
// meets an operand of its own type in cuBLAS (whose half-precision GEMMs take A and B of one
// type and accumulate in fp32). One read and one half-width write per element: purely
// memory-bound, so a grid-stride loop sized to fill the device. Next to the GEMM that reads
// its output (2 bytes per element, reused across all N columns) it is a few percent of a
// layer at most.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

template <typename T>
__device__ __forceinline__ T narrow(float x);
template <>
__device__ __forceinline__ __half narrow<__half>(float x) {
    return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

template <typename T>
__global__ void cast_f32_kernel(const float *__restrict__ x,  // [n]
                                T *__restrict__ out,          // [n]
                                size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = narrow<T>(x[i]);
}

extern "C" cudaError_t cast_f32(const float *x, void *out, enum kernel_dtype dtype, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (blocks > 65535u) blocks = 65535u;
    switch (dtype) {
    case KERNEL_F16: cast_f32_kernel<__half><<<blocks, 256, 0, stream>>>(x, (__half *)out, n); break;
    case KERNEL_BF16:
        cast_f32_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(x, (__nv_bfloat16 *)out, n);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
