/* gpu: the machine's NVIDIA GPUs through NVML, opened with dlopen("libnvidia-ml.so.1") so
 * that foliod runs (and reports "gpus": []) on machines without a driver. */
#ifndef FOLIO_GPU_H
#define FOLIO_GPU_H

#include <stddef.h>
#include <stdint.h>

#define GPU_MAX 16

struct gpu_info {
    int index;
    char name[96];
    char uuid[96];
    uint64_t mem_total, mem_used, mem_free; /* bytes */
    int util_gpu, util_mem;                 /* percent, -1 when unknown */
    int temperature;                        /* Celsius, -1 when unknown */
};

/* Fills up to max entries of out (caller-owned); returns how many it filled (0 without NVML
 * or a driver). Thread-safe; NVML is initialized once, on the first call. *why (may be NULL)
 * is a static string saying why there are none, or NULL when NVML answered with GPUs. */
int gpu_query(struct gpu_info *out, int max, const char **why);

#endif
