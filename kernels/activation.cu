// activation: SwiGLU's silu(gate) * up, elementwise and purely memory-bound (two reads and
// one write per element), so it uses a grid-stride loop sized to fill the device.
#include "kernels.h"

__global__ void silu_mul_kernel(const float *gate,  // [T, n]
                                const float *up,    // [T, n]
                                float *out,         // [T, n]
                                size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + __expf(-g)) * up[i];
    }
}

extern "C" cudaError_t silu_mul(const float *gate, const float *up, float *out, int T, int n, cudaStream_t stream) {
    size_t count = (size_t)T * n;
    if (count == 0) return cudaSuccess;
    unsigned blocks = (unsigned)((count + 255) / 256);
    if (blocks > 65535u) blocks = 65535u;
    silu_mul_kernel<<<blocks, 256, 0, stream>>>(gate, up, out, count);
    return cudaGetLastError();
}
