/* gpu_test: the helpers that the gpu-tests cases share (defined in test_kernels_gpu.c, which
 * also holds main): a deterministic RNG, the relative-error comparison, NaN guards past the
 * end of device buffers, and the per-case report. Each test file exposes one entry point that
 * main calls. */
#ifndef FOLIO_GPU_TEST_H
#define FOLIO_GPU_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend_impl.h"
#include "kernels.h"

#define TOL 1e-5

/* Uniform in [lo, hi), deterministic (xorshift64*), so a failure reproduces. */
float urand(float lo, float hi);
void fill(float *x, size_t n, float lo, float hi);
/* Uniform integer in [0, n). */
int irand(int n);
/* Prints `ok NAME` or `FAIL NAME: detail` and counts it; err < 0: the case compared no floats. */
void report(const char *name, const char *detail, double err);
/* max |gpu - cpu| / max(1, |cpu|) over n floats must be <= TOL (NaN fails); raises *err to the
 * worst error, writes the worst element into detail on a mismatch and returns -1. */
int compare(const char *what, const float *gpu, const float *cpu, size_t n, double *err, char *detail, size_t cap);
/* max |gpu - cpu| / max |cpu| over n floats (the error against the output's scale), the
 * worst element in *at. */
double scaled_error(const float *gpu, const float *cpu, size_t n, size_t *at);
/* The guard of `guard` floats past n floats of dev must still be 0xff bytes. */
int check_guard(const char *what, const float *dev, size_t n, size_t guard, char *detail, size_t cap);
/* Device buffer of n floats plus a guard of g floats, all filled with 0xff bytes (NaN). */
cudaError_t dev_alloc(float **p, size_t n, size_t g);
/* The same for int32 data (guard of g ints of 0xff bytes). */
cudaError_t dev_alloc_i32(int32_t **p, size_t n, size_t g);

/* Records a CUDA failure in `detail` and jumps to the case's `out:` cleanup. */
#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t ce_ = (call);                                                                 \
        if (ce_ != cudaSuccess) {                                                                 \
            snprintf(detail, sizeof detail, "%s: %s", #call, cudaGetErrorString(ce_));            \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)

/* Suites in the other files. */
void gpu_tests_ops(struct backend *cpu, cudaStream_t st);       /* test_ops_gpu.c */
void gpu_tests_attention(struct backend *cpu, cudaStream_t st); /* test_attention_gpu.c */
int gpu_bench_attention(cudaStream_t st, double *copy_gbs);     /* test_attention_gpu.c */
int gpu_bench_matmul(double copy_gbs);                          /* test_backend_gpu.c */
void gpu_tests_backend(struct backend *cpu, cudaStream_t st);   /* test_backend_gpu.c */
void gpu_tests_moe(struct backend *cpu, cudaStream_t st);       /* test_moe_gpu.c */
void gpu_tests_quant(struct backend *cpu, cudaStream_t st);     /* test_quant_gpu.c */
int gpu_bench_quant(double copy_gbs);                           /* test_quant_gpu.c */

#endif
