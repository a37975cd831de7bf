// activation: the elementwise ops: a gated MLP's act(gate) * up (SwiGLU's silu, GeGLU's
// tanh GELU), scaling, and soft-capping. Each is purely memory-bound (one or two reads and
// one write per element), so each is a grid-stride loop sized to fill the device.
#include "activation.cuh"

// Threads per CTA and the grid's cap; the grid-stride loops wrap past it.
#define EW_THREADS 256
#define EW_MAX_BLOCKS 65535u

static unsigned ew_blocks(size_t count) {
    const size_t b = (count + EW_THREADS - 1) / EW_THREADS;
    return b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : (unsigned)b;
}

template <int ACT>
__global__ void glu_kernel(const float *gate, // [T, n]
                           const float *up,   // [T, n]
                           float *out,        // [T, n]; may alias gate
                           size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = act_f<ACT>(g) * up[i];
    }
}

extern "C" cudaError_t glu(enum kernel_act act, const float *gate, const float *up, float *out, int T, int n,
                           cudaStream_t stream) {
    if (act != KERNEL_ACT_SILU && act != KERNEL_ACT_GELU_TANH) return cudaErrorInvalidValue;
    const size_t count = (size_t)T * n;
    if (T <= 0 || n <= 0) return cudaSuccess;
    if (act == KERNEL_ACT_SILU)
        glu_kernel<KERNEL_ACT_SILU><<<ew_blocks(count), EW_THREADS, 0, stream>>>(gate, up, out, count);
    else
        glu_kernel<KERNEL_ACT_GELU_TANH><<<ew_blocks(count), EW_THREADS, 0, stream>>>(gate, up, out, count);
    return cudaGetLastError();
}

__global__ void scale_kernel(float *x, // [n]
                             size_t n, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

extern "C" cudaError_t scale_f32(float *x, size_t n, float s, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    scale_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(x, n, s);
    return cudaGetLastError();
}

// The accurate tanhf and an IEEE division, as the CPU computes cap * tanhf(x / cap).
__global__ void softcap_kernel(float *x, // [n]
                               size_t n, float cap) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

extern "C" cudaError_t softcap_f32(float *x, size_t n, float cap, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    softcap_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(x, n, cap);
    return cudaGetLastError();
}
