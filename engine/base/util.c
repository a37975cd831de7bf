/* util: see util.h. */
#include "base/util.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static _Thread_local char last_error[512];

int folio_err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *folio_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

int folio_read_file(const char *path, char **out, size_t *len) {
    int rc = FOLIO_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return folio_err(FOLIO_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = folio_err(FOLIO_EIO, "%s is not a regular file", path);
        goto out_close;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory reading %s", path);
        goto out_close;
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        rc = folio_err(FOLIO_EIO, "short read on %s", path);
        goto out_close;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    if (len) *len = (size_t)st.st_size;
    buf = NULL;
out_close:
    free(buf);
    fclose(f);
    return rc;
}

int folio_path_join(char *dst, size_t cap, const char *dir, const char *name) {
    int n = snprintf(dst, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return folio_err(FOLIO_EINVAL, "path too long: %s/%s", dir, name);
    return FOLIO_OK;
}

int folio_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

double folio_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

float folio_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t folio_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float folio_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t folio_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffffu;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1);
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (uint32_t)(exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

size_t folio_dtype_size(enum folio_dtype dt) {
    switch (dt) {
    case FOLIO_F32:
    case FOLIO_I32: return 4;
    case FOLIO_F16:
    case FOLIO_BF16: return 2;
    case FOLIO_FP8: return 1;
    default: return 0;
    }
}

const char *folio_dtype_name(enum folio_dtype dt) {
    switch (dt) {
    case FOLIO_F32: return "float32";
    case FOLIO_F16: return "float16";
    case FOLIO_BF16: return "bfloat16";
    case FOLIO_FP8: return "float8_e4m3";
    case FOLIO_I32: return "int32";
    case FOLIO_Q8: return "int8";
    case FOLIO_Q4: return "int4";
    case FOLIO_Q4Z: return "int4_zp";
    }
    return "?";
}

int folio_dtype_parse(const char *s, enum folio_dtype *out) {
    static const struct {
        const char *name;
        enum folio_dtype dt;
    } names[] = {
        {"float32", FOLIO_F32}, {"float", FOLIO_F32},  {"fp32", FOLIO_F32},
        {"float16", FOLIO_F16}, {"half", FOLIO_F16},   {"fp16", FOLIO_F16},
        {"bfloat16", FOLIO_BF16}, {"bf16", FOLIO_BF16},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].dt;
            return FOLIO_OK;
        }
    }
    return folio_err(FOLIO_EINVAL, "unknown dtype '%s' (expected float32, float16 or bfloat16)", s);
}

float folio_widen(const void *src, enum folio_dtype dt, size_t i) {
    if (dt == FOLIO_F32) {
        float f;
        memcpy(&f, (const char *)src + 4 * i, 4);
        return f;
    }
    if (dt == FOLIO_FP8) { /* e4m3fn through its f16 bit pattern: the exponent bias differs by 8 */
        const uint8_t b = ((const uint8_t *)src)[i];
        return folio_f16_to_f32((uint16_t)((b & 0x80u) << 8 | (b & 0x7Fu) << 7)) * 256.0f;
    }
    uint16_t h;
    memcpy(&h, (const char *)src + 2 * i, 2);
    return dt == FOLIO_F16 ? folio_f16_to_f32(h) : folio_bf16_to_f32(h);
}

long long folio_json_count_values(const char *s, size_t n, long long max) {
    long long count = 0;
    int in_scalar = 0; /* inside a number or literal: its bytes after the first count nothing */
    for (size_t i = 0; i < n && count <= max; i++) {
        const char c = s[i];
        if (c == '"') {
            count++;
            in_scalar = 0;
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            continue;
        }
        if (c == '{' || c == '[') {
            count++;
            in_scalar = 0;
        } else if (c == '}' || c == ']' || c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' ||
                   c == '\r') {
            in_scalar = 0;
        } else if (!in_scalar) {
            count++;
            in_scalar = 1;
        }
    }
    return count;
}

int folio_json_max_depth(const char *s, size_t n, int limit) {
    int depth = 0, deepest = 0;
    for (size_t i = 0; i < n && deepest <= limit; i++) {
        const char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '{' || c == '[') {
            if (++depth > deepest) deepest = depth;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

/* 256 KiB: above the per-request buffers of an ordinary request, below a big request's
 * arrays (a parse tree's strings, long token lists, a large response). */
#define FOLIO_MMAP_THRESHOLD (256 << 10)
/* The engine's step loop does not allocate; HTTP handlers do, briefly. A few arenas keep
 * their contention low while bounding how many heaps hold freed memory at once. */
#define FOLIO_ARENA_MAX 4

void folio_malloc_tune(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, FOLIO_MMAP_THRESHOLD);
    mallopt(M_ARENA_MAX, FOLIO_ARENA_MAX);
#endif
}

void folio_malloc_release(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
