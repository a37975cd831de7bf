/* kernels: CUDA C launchers for the CUDA backend (engine/backend_cuda.c), one .cu per op
 * family, each with a CPU reference in engine/backend_cpu.c that tests compare against.
 *
 * Status: compiled by every build where nvcc exists (make kernels-check), not yet linked into
 * folio-engine; the CUDA backend issue wires them in and verifies them on a GPU. */
#ifndef FOLIO_KERNELS_H
#define FOLIO_KERNELS_H

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* residual[r] += delta[r] (delta may be NULL); out[r] = residual[r] * rsqrt(mean(residual[r]^2) + eps) * w.
 * residual, delta, out: [rows, dim] fp32; w: [dim] fp32. */
cudaError_t add_rms_norm(float *residual, const float *delta, const float *w, float *out, int rows, int dim,
                         float eps, cudaStream_t stream);

/* out[t, i] = silu(gate[t, i]) * up[t, i]; all [T, n] fp32. out may alias gate. */
cudaError_t silu_mul(const float *gate, const float *up, float *out, int T, int n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
