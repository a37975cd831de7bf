/* gpu-tests: every CUDA op in kernels/ against its CPU reference in engine/backend/cpu/backend_cpu.c.
 *
 * `make test-gpu` builds this file (host C, plain CC), links it with the nvcc objects of the
 * kernels/ .cu files, the CPU backend's objects and libcudart (plus libstdc++ for nvcc's stubs),
 * and runs it on the first CUDA device. Each case fills random inputs, runs the kernel's
 * launcher on a stream and the CPU backend's vtable op on host copies, and compares every
 * output element (in-place outputs included) with max |gpu - cpu| / max(1, |cpu|) <= TOL.
 * Device buffers get a guard row of NaN bytes past the end that must survive, which catches
 * writes out of bounds. It prints `ok NAME` or `FAIL NAME: detail` per case and
 * `N passed, N failed` at the end, exiting 1 on any failure.
 *
 * Without a usable device it prints `no CUDA device: skipping` and exits 1, so that a GPU run
 * cannot pass silently; FOLIO_GPU_OPTIONAL=1 turns that into exit 0 (CI without a GPU).
 * This file holds the elementwise ops (add_rms_norm, glu, scale, softcap); the cases of the
 * other ops are in test_ops_gpu.c, test_attention_gpu.c, test_backend_gpu.c, test_moe_gpu.c
 * and test_quant_gpu.c (helpers in gpu_test.h). `gpu-tests --bench` (make bench-gpu) runs no
 * tests: it times decode paged_attention and the small-batch products (bf16, quantized)
 * against a device-to-device memcpy and prints the bandwidth tables. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"

static int n_pass, n_fail;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
/* Uniform in [lo, hi) from xorshift64*; deterministic, so a failure reproduces. */
float urand(float lo, float hi) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545f4914f6cdd1dull;
    return lo + (hi - lo) * (float)((r >> 40) * (1.0 / 16777216.0));
}

void fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = urand(lo, hi);
}

int irand(int n) {
    int r = (int)(urand(0.0f, 1.0f) * (float)n);
    return r < n ? r : n - 1;
}

/* err: the case's worst relative error, or a negative value when it compared no floats. */
void report(const char *name, const char *detail, double err) {
    if (detail) {
        printf("FAIL %s: %s\n", name, detail);
        n_fail++;
    } else if (err >= 0.0) {
        printf("ok %s (max rel err %.2g)\n", name, err);
        n_pass++;
    } else {
        printf("ok %s\n", name);
        n_pass++;
    }
    fflush(stdout);
}

/* Compares n outputs and raises *err to the worst relative error; on a mismatch writes the
 * worst element into detail and returns -1. A NaN on either side counts as a mismatch. */
int compare(const char *what, const float *gpu, const float *cpu, size_t n, double *err, char *detail,
                   size_t cap) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        double s = fabs((double)cpu[i]) > 1.0 ? fabs((double)cpu[i]) : 1.0;
        double e = d / s;
        if (!(e <= worst)) { /* also takes NaN */
            worst = e;
            at = i;
            if (isnan(e)) break;
        }
    }
    if (worst > *err || isnan(worst)) *err = worst;
    if (!(worst <= TOL)) {
        snprintf(detail, cap, "%s[%zu]: gpu %.9g cpu %.9g (rel err %.3g > %.0e)", what, at, (double)gpu[at],
                 (double)cpu[at], worst, TOL);
        return -1;
    }
    return 0;
}

/* max |g - c| / max |c| over the output: the error against the output's scale; *at is the
 * worst element. */
double scaled_error(const float *g, const float *c, size_t n, size_t *at) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)c[i]) > scale) scale = fabs((double)c[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - (double)c[i]);
        if (!(d <= worst)) { /* also takes NaN, which must then stay */
            worst = d;
            *at = i;
            if (isnan(d)) break;
        }
    }
    return worst / (scale > 0 ? scale : 1.0);
}

/* The guard past n floats of a device buffer must still be the 0xff bytes cudaMemset wrote. */
int check_guard(const char *what, const float *dev, size_t n, size_t guard, char *detail, size_t cap) {
    unsigned char *h = malloc(guard * sizeof(float)); /* [guard] floats as bytes */
    int rc = 0;
    if (!h) {
        snprintf(detail, cap, "out of host memory");
        return -1;
    }
    cudaError_t ce = cudaMemcpy(h, dev + n, guard * sizeof(float), cudaMemcpyDeviceToHost);
    if (ce != cudaSuccess) {
        snprintf(detail, cap, "guard copy of %s: %s", what, cudaGetErrorString(ce));
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < guard * sizeof(float); i++) {
        if (h[i] != 0xff) {
            snprintf(detail, cap, "%s: write past the end (guard byte %zu)", what, i);
            rc = -1;
            goto out;
        }
    }
out:
    free(h);
    return rc;
}

/* Device buffer of n floats plus a guard of g floats filled with 0xff bytes (NaN). */
cudaError_t dev_alloc(float **p, size_t n, size_t g) {
    cudaError_t ce = cudaMalloc((void **)p, (n + g) * sizeof(float));
    if (ce != cudaSuccess) {
        *p = NULL;
        return ce;
    }
    return cudaMemset(*p, 0xff, (n + g) * sizeof(float));
}

cudaError_t dev_alloc_i32(int32_t **p, size_t n, size_t g) { return dev_alloc((float **)p, n, g); }

static void test_add_rms_norm(struct backend *cpu, cudaStream_t st, int rows, int dim, int with_delta) {
    char name[96], detail[256];
    snprintf(name, sizeof name, "add_rms_norm rows=%d dim=%d delta=%s", rows, dim, with_delta ? "yes" : "NULL");
    const size_t n = (size_t)rows * dim, g = (size_t)dim;
    const float eps = 1e-5f;
    double err = 0.0;
    float *h_res = NULL, *h_delta = NULL, *h_out = NULL; /* [rows, dim], CPU side */
    float *h_w = NULL;                                    /* [dim] */
    float *g_res_back = NULL, *g_out_back = NULL;         /* [rows, dim], GPU results */
    float *d_res = NULL, *d_delta = NULL, *d_out = NULL;  /* [rows + 1, dim] on device */
    float *d_w = NULL;                                    /* [dim + dim] on device */
    detail[0] = '\0';

    h_res = cpu->iface->alloc(cpu, n * sizeof(float));
    h_delta = cpu->iface->alloc(cpu, n * sizeof(float));
    h_w = cpu->iface->alloc(cpu, (size_t)dim * sizeof(float));
    h_out = cpu->iface->alloc(cpu, n * sizeof(float));
    g_res_back = malloc(n * sizeof(float));
    g_out_back = malloc(n * sizeof(float));
    if (!h_res || !h_delta || !h_w || !h_out || !g_res_back || !g_out_back) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_res, n, -2.0f, 2.0f);
    fill(h_delta, n, -2.0f, 2.0f);
    fill(h_w, (size_t)dim, 0.5f, 1.5f);

    CK(dev_alloc(&d_res, n, g));
    CK(dev_alloc(&d_delta, n, g));
    CK(dev_alloc(&d_w, (size_t)dim, g));
    CK(dev_alloc(&d_out, n, g));
    CK(cudaMemcpy(d_res, h_res, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_delta, h_delta, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_w, h_w, (size_t)dim * sizeof(float), cudaMemcpyHostToDevice));

    CK(add_rms_norm(d_res, with_delta ? d_delta : NULL, d_w, d_out, rows, dim, eps, st));
    CK(cudaStreamSynchronize(st));
    cpu->iface->add_rms_norm(cpu, h_res, with_delta ? h_delta : NULL, h_w, h_out, rows, dim, eps);
    if (cpu->iface->sync(cpu) != 0) {
        snprintf(detail, sizeof detail, "CPU backend sync failed");
        goto out;
    }

    CK(cudaMemcpy(g_res_back, d_res, n * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(g_out_back, d_out, n * sizeof(float), cudaMemcpyDeviceToHost));
    if (compare("out", g_out_back, h_out, n, &err, detail, sizeof detail)) goto out;
    if (compare("residual", g_res_back, h_res, n, &err, detail, sizeof detail)) goto out;
    if (check_guard("out", d_out, n, g, detail, sizeof detail)) goto out;
    if (check_guard("residual", d_res, n, g, detail, sizeof detail)) goto out;

out:
    cudaFree(d_res);
    cudaFree(d_delta);
    cudaFree(d_w);
    cudaFree(d_out);
    free(g_res_back);
    free(g_out_back);
    cpu->iface->release(cpu, h_res);
    cpu->iface->release(cpu, h_delta);
    cpu->iface->release(cpu, h_w);
    cpu->iface->release(cpu, h_out);
    report(name, detail[0] ? detail : NULL, err);
}

/* alias: out is gate, as model.c calls it to save a buffer. */
static void test_glu(struct backend *cpu, cudaStream_t st, enum backend_act act, int T, int n_cols, int alias) {
    char name[96], detail[256];
    snprintf(name, sizeof name, "glu %s T=%d n=%d out=%s", act == BACKEND_ACT_SILU ? "silu" : "gelu_tanh", T, n_cols,
             alias ? "gate" : "separate");
    const size_t n = (size_t)T * n_cols, g = (size_t)n_cols;
    float *h_gate = NULL, *h_up = NULL, *h_out = NULL; /* [T, n_cols] */
    float *g_back = NULL;                              /* [T, n_cols], GPU result */
    float *d_gate = NULL, *d_up = NULL, *d_out = NULL; /* [T + 1, n_cols] on device */
    float *cpu_out = NULL, *d_result = NULL;          /* where each side's result lands */
    double err = 0.0;
    detail[0] = '\0';

    h_gate = cpu->iface->alloc(cpu, n * sizeof(float));
    h_up = cpu->iface->alloc(cpu, n * sizeof(float));
    h_out = cpu->iface->alloc(cpu, n * sizeof(float));
    g_back = malloc(n * sizeof(float));
    if (!h_gate || !h_up || !h_out || !g_back) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_gate, n, -8.0f, 8.0f);
    fill(h_up, n, -4.0f, 4.0f);

    CK(dev_alloc(&d_gate, n, g));
    CK(dev_alloc(&d_up, n, g));
    CK(cudaMemcpy(d_gate, h_gate, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_up, h_up, n * sizeof(float), cudaMemcpyHostToDevice));
    if (!alias) CK(dev_alloc(&d_out, n, g));

    CK(glu((enum kernel_act)act, d_gate, d_up, alias ? d_gate : d_out, T, n_cols, st));
    CK(cudaStreamSynchronize(st));
    cpu_out = alias ? h_gate : h_out;
    cpu->iface->glu(cpu, act, h_gate, h_up, cpu_out, T, n_cols);
    if (cpu->iface->sync(cpu) != 0) {
        snprintf(detail, sizeof detail, "CPU backend sync failed");
        goto out;
    }

    d_result = alias ? d_gate : d_out;
    CK(cudaMemcpy(g_back, d_result, n * sizeof(float), cudaMemcpyDeviceToHost));
    if (compare("out", g_back, cpu_out, n, &err, detail, sizeof detail)) goto out;
    if (check_guard("out", d_result, n, g, detail, sizeof detail)) goto out;

out:
    cudaFree(d_gate);
    cudaFree(d_up);
    cudaFree(d_out);
    free(g_back);
    cpu->iface->release(cpu, h_gate);
    cpu->iface->release(cpu, h_up);
    cpu->iface->release(cpu, h_out);
    report(name, detail[0] ? detail : NULL, err);
}

/* In-place x *= s (softcap = 0) or x = cap * tanh(x / cap) (softcap = cap) over n floats, with
 * values well past the cap so that tanh saturates. */
static void test_scale_softcap(struct backend *cpu, cudaStream_t st, size_t n, float s, float cap) {
    char name[96], detail[256];
    if (cap > 0.0f)
        snprintf(name, sizeof name, "softcap n=%zu cap=%g", n, (double)cap);
    else
        snprintf(name, sizeof name, "scale n=%zu s=%g", n, (double)s);
    const size_t g = 64;
    double err = 0.0;
    float *h_x = malloc(sizeof(float) * (n ? n : 1)), *g_x = malloc(sizeof(float) * (n ? n : 1)); /* [n] */
    float *d_x = NULL;                                                                           /* [n + g] */
    detail[0] = '\0';
    if (!h_x || !g_x) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, n, -100.0f, 100.0f);
    CK(dev_alloc(&d_x, n, g));
    CK(cudaMemcpy(d_x, h_x, n * sizeof(float), cudaMemcpyHostToDevice));
    if (cap > 0.0f) {
        CK(softcap_f32(d_x, n, cap, st));
        cpu->iface->softcap(cpu, h_x, n, cap);
    } else {
        CK(scale_f32(d_x, n, s, st));
        cpu->iface->scale(cpu, h_x, n, s);
    }
    CK(cudaStreamSynchronize(st));
    CK(cudaMemcpy(g_x, d_x, n * sizeof(float), cudaMemcpyDeviceToHost));
    if (compare("x", g_x, h_x, n, &err, detail, sizeof detail)) goto out;
    check_guard("x", d_x, n, g, detail, sizeof detail);
out:
    cudaFree(d_x);
    free(h_x);
    free(g_x);
    report(name, detail[0] ? detail : NULL, err);
}

/* Empty shapes are a successful no-op that writes nothing. */
static void test_empty(cudaStream_t st) {
    char detail[256];
    float *d = NULL; /* [0] + guard of 64 */
    detail[0] = '\0';
    CK(dev_alloc(&d, 0, 64));
    CK(add_rms_norm(d, NULL, d, d, 0, 64, 1e-5f, st));
    CK(glu(KERNEL_ACT_SILU, d, d, d, 0, 64, st));
    CK(glu(KERNEL_ACT_GELU_TANH, d, d, d, 64, 0, st));
    CK(scale_f32(d, 0, 2.0f, st));
    CK(softcap_f32(d, 0, 30.0f, st));
    if (glu((enum kernel_act)2, d, d, d, 1, 64, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "glu act=2 was not refused");
        goto out;
    }
    CK(cudaStreamSynchronize(st));
    check_guard("buffer", d, 0, 64, detail, sizeof detail);
out:
    cudaFree(d);
    report("empty shapes (rows=0, T=0, n=0), unknown act refused", detail[0] ? detail : NULL, -1.0);
}

int main(int argc, char **argv) {
    static const int rows[] = {1, 3, 64, 257};
    static const int dims[] = {64, 100, 576, 2048, 4096, 11008};
    struct backend *cpu = NULL;
    cudaStream_t st = NULL;
    int count = 0, rc = 1;

    cudaError_t ce = cudaGetDeviceCount(&count);
    if (ce != cudaSuccess || count == 0) {
        printf("no CUDA device: skipping (cudaGetDeviceCount: %s)\n",
               ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
        printf("0 passed, 0 failed\n");
        fflush(stdout);
        const char *opt = getenv("FOLIO_GPU_OPTIONAL");
        if (opt && strcmp(opt, "1") == 0) return 0;
        fprintf(stderr, "gpu-tests: a GPU run needs a CUDA device"
                        " (set FOLIO_GPU_OPTIONAL=1 to allow skipping)\n");
        return 1;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("device 0: %s (sm_%d%d), %d device(s)\n", prop.name, prop.major, prop.minor, count);

    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        ce = cudaStreamCreate(&st);
        if (ce != cudaSuccess) {
            fprintf(stderr, "gpu-tests: cudaStreamCreate: %s\n", cudaGetErrorString(ce));
            return 1;
        }
        double copy_gbs = 0.0;
        rc = gpu_bench_attention(st, &copy_gbs);
        if (copy_gbs > 0 && gpu_bench_matmul(copy_gbs)) rc = 1;
        if (copy_gbs > 0 && gpu_bench_quant(copy_gbs)) rc = 1;
        cudaStreamDestroy(st);
        return rc;
    }
    if (backend_cpu_create(&(struct backend_cpu_params){0}, &cpu) != 0) {
        fprintf(stderr, "gpu-tests: %s\n", folio_last_error());
        goto out;
    }
    ce = cudaStreamCreate(&st);
    if (ce != cudaSuccess) {
        fprintf(stderr, "gpu-tests: cudaStreamCreate: %s\n", cudaGetErrorString(ce));
        goto out;
    }

    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
            for (int with_delta = 0; with_delta <= 1; with_delta++)
                test_add_rms_norm(cpu, st, rows[r], dims[d], with_delta);
    for (int act = BACKEND_ACT_SILU; act <= BACKEND_ACT_GELU_TANH; act++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
                for (int alias = 0; alias <= 1; alias++) test_glu(cpu, st, act, rows[r], dims[d], alias);
    /* More elements than the launcher's 65535 x 256 grid: the grid-stride loop must wrap. */
    test_glu(cpu, st, BACKEND_ACT_SILU, 4099, 4097, 0);
    test_glu(cpu, st, BACKEND_ACT_GELU_TANH, 4099, 4097, 1);
    test_scale_softcap(cpu, st, 1, 0.125f, 0.0f);
    test_scale_softcap(cpu, st, 1000, 45.254834f, 0.0f); /* Gemma's sqrt(hidden) embedding scale */
    test_scale_softcap(cpu, st, (size_t)65535 * 256 + 77, -0.5f, 0.0f);
    test_scale_softcap(cpu, st, 1, 0.0f, 30.0f);
    test_scale_softcap(cpu, st, 256000, 0.0f, 30.0f); /* Gemma 2's final logits */
    test_scale_softcap(cpu, st, (size_t)65535 * 256 + 77, 0.0f, 50.0f);
    test_empty(st);
    gpu_tests_ops(cpu, st);
    gpu_tests_attention(cpu, st);
    gpu_tests_backend(cpu, st);
    gpu_tests_moe(cpu, st);
    gpu_tests_quant(cpu, st);

    printf("%d passed, %d failed\n", n_pass, n_fail);
    rc = n_fail ? 1 : 0;
out:
    if (st) cudaStreamDestroy(st);
    backend_free(cpu);
    return rc;
}
