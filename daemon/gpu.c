/* gpu: NVML through dlopen, so that one foliod binary runs on machines with and without an
 * NVIDIA driver (no NVML headers or libraries are needed to build it).
 *
 * The few NVML types and entry points used are declared here with NVML's ABI. NVML is loaded
 * and initialized once per process (pthread_once) and never shut down: foliod asks for GPU
 * state for as long as it runs, and nvmlShutdown at exit buys nothing. */
#include "gpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t; /* an enum in nvml.h: 0 = NVML_SUCCESS */
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used; /* bytes */
} nvmlMemory_t;
typedef struct {
    unsigned int gpu, memory; /* percent of the last sample period */
} nvmlUtilization_t;

#define NVML_SUCCESS 0
#define NVML_TEMPERATURE_GPU 0
/* NVML_DEVICE_NAME_V2_BUFFER_SIZE and NVML_DEVICE_UUID_V2_BUFFER_SIZE are both 96, the size
 * of gpu_info's fields. */
#define GPU_NVML_STR 96

static struct {
    void *lib;
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*count)(unsigned int *n);
    nvmlReturn_t (*handle)(unsigned int index, nvmlDevice_t *dev);
    nvmlReturn_t (*name)(nvmlDevice_t dev, char *name, unsigned int len);
    nvmlReturn_t (*uuid)(nvmlDevice_t dev, char *uuid, unsigned int len);
    nvmlReturn_t (*memory)(nvmlDevice_t dev, nvmlMemory_t *mem);
    nvmlReturn_t (*util)(nvmlDevice_t dev, nvmlUtilization_t *u);
    nvmlReturn_t (*temp)(nvmlDevice_t dev, int sensor, unsigned int *t);
    const char *(*error_string)(nvmlReturn_t r);
    int ok;
    char why[256]; /* set once by gpu_init when !ok, read-only after */
} nvml;

static pthread_once_t gpu_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t gpu_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *nvml_err(nvmlReturn_t r) {
    const char *s = nvml.error_string ? nvml.error_string(r) : NULL;
    return s ? s : "unknown NVML error";
}

static void *nvml_sym(const char *name) {
    void *p = dlsym(nvml.lib, name);
    if (!p && !nvml.why[0])
        snprintf(nvml.why, sizeof nvml.why, "NVML lacks %s (driver too old?)", name);
    return p;
}

static void gpu_init(void) {
    /* Only the versioned soname: the unversioned libnvidia-ml.so comes with dev packages (or
     * the CUDA toolkit's stubs, which load but fail every call). */
    nvml.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml.lib) {
        snprintf(nvml.why, sizeof nvml.why, "NVML not found (no NVIDIA driver): %s", dlerror());
        return;
    }
    /* The _v2 entry points are the ones nvml.h has mapped the plain names to since CUDA 5;
     * the v1 symbols remain only for old binaries. */
    nvml.init = (nvmlReturn_t (*)(void))nvml_sym("nvmlInit_v2");
    nvml.count = (nvmlReturn_t (*)(unsigned int *))nvml_sym("nvmlDeviceGetCount_v2");
    nvml.handle = (nvmlReturn_t (*)(unsigned int, nvmlDevice_t *))nvml_sym("nvmlDeviceGetHandleByIndex_v2");
    nvml.name = (nvmlReturn_t (*)(nvmlDevice_t, char *, unsigned int))nvml_sym("nvmlDeviceGetName");
    nvml.uuid = (nvmlReturn_t (*)(nvmlDevice_t, char *, unsigned int))nvml_sym("nvmlDeviceGetUUID");
    nvml.memory = (nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t *))nvml_sym("nvmlDeviceGetMemoryInfo");
    nvml.util = (nvmlReturn_t (*)(nvmlDevice_t, nvmlUtilization_t *))nvml_sym("nvmlDeviceGetUtilizationRates");
    nvml.temp = (nvmlReturn_t (*)(nvmlDevice_t, int, unsigned int *))nvml_sym("nvmlDeviceGetTemperature");
    nvml.error_string = (const char *(*)(nvmlReturn_t))nvml_sym("nvmlErrorString");
    if (nvml.why[0]) return;
    nvmlReturn_t r = nvml.init();
    if (r != NVML_SUCCESS) {
        /* Typically "Driver/library version mismatch" after a driver upgrade without a
         * reboot, or "Driver Not Loaded" in a container started without --gpus. */
        snprintf(nvml.why, sizeof nvml.why, "NVML init failed: %s", nvml_err(r));
        return;
    }
    nvml.ok = 1;
}

/* One device's entry; fields NVML cannot report stay unknown (0 bytes, -1). */
static void gpu_fill(unsigned int index, struct gpu_info *g) {
    nvmlDevice_t dev;
    nvmlMemory_t mem;
    nvmlUtilization_t u;
    unsigned int t;
    memset(g, 0, sizeof *g);
    g->index = (int)index;
    g->util_gpu = g->util_mem = g->temperature = -1;
    nvmlReturn_t r = nvml.handle(index, &dev);
    if (r != NVML_SUCCESS) {
        /* A GPU that has fallen off the bus still counts; say so instead of dropping it. */
        snprintf(g->name, sizeof g->name, "unavailable: %s", nvml_err(r));
        return;
    }
    if (nvml.name(dev, g->name, sizeof g->name) != NVML_SUCCESS) g->name[0] = '\0';
    if (nvml.uuid(dev, g->uuid, sizeof g->uuid) != NVML_SUCCESS) g->uuid[0] = '\0';
    g->name[sizeof g->name - 1] = g->uuid[sizeof g->uuid - 1] = '\0';
    if (nvml.memory(dev, &mem) == NVML_SUCCESS) {
        g->mem_total = mem.total;
        g->mem_used = mem.used;
        g->mem_free = mem.free;
    }
    /* Not supported on MIG instances and some boards: left at -1. */
    if (nvml.util(dev, &u) == NVML_SUCCESS) {
        g->util_gpu = (int)u.gpu;
        g->util_mem = (int)u.memory;
    }
    if (nvml.temp(dev, NVML_TEMPERATURE_GPU, &t) == NVML_SUCCESS) g->temperature = (int)t;
}

int gpu_query(struct gpu_info *out, int max, const char **why) {
    int n = 0;
    if (why) *why = NULL;
    pthread_once(&gpu_once, gpu_init);
    if (!nvml.ok) {
        if (why) *why = nvml.why;
        return 0;
    }
    if (!out || max < 0) max = 0;

    pthread_mutex_lock(&gpu_mu);
    unsigned int count = 0;
    nvmlReturn_t r = nvml.count(&count);
    if (r != NVML_SUCCESS) {
        if (why) *why = nvml_err(r); /* NVML's strings are static */
        goto out_unlock;
    }
    if (count == 0) {
        if (why) *why = "NVML reports no GPUs";
        goto out_unlock;
    }
    for (unsigned int i = 0; i < count && n < max; i++) gpu_fill(i, &out[n++]);
out_unlock:
    pthread_mutex_unlock(&gpu_mu);
    return n;
}
