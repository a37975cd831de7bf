// activation.cuh: the gated-MLP activations as device functions, for activation.cu's glu and
// moe.cu's fused gate/up epilogue, so that both compute exactly what the CPU backend does.
#ifndef FOLIO_KERNELS_ACTIVATION_CUH
#define FOLIO_KERNELS_ACTIVATION_CUH

#include "kernels.h"

__device__ __forceinline__ float silu_f(float g) { return g / (1.0f + __expf(-g)); }

// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh_f(float x) {
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

template <int ACT>
__device__ __forceinline__ float act_f(float g) {
    return ACT == KERNEL_ACT_SILU ? silu_f(g) : gelu_tanh_f(g);
}

#endif
