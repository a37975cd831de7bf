/* util: error reporting and small file/JSON helpers shared by every engine module.
 *
 * Errors follow one convention: a function returns 0 or a negative FOLIO_E* code and, on
 * failure, records a one-line message with folio_err(). The message lives in a thread-local
 * buffer, so the caller that finally reports it (main, or an HTTP handler) reads it with
 * folio_last_error() without any module having to thread an error buffer through. */
#ifndef FOLIO_UTIL_H
#define FOLIO_UTIL_H

#include <stddef.h>
#include <stdint.h>

enum {
    FOLIO_OK = 0,
    FOLIO_EINVAL = -1,   /* bad input: malformed file, bad parameter */
    FOLIO_EIO = -2,      /* open/read/mmap failed */
    FOLIO_ENOMEM = -3,   /* allocation failed */
    FOLIO_EUNSUP = -4,   /* well-formed but unsupported (architecture, dtype, ...) */
    FOLIO_EBUSY = -5,    /* valid, but no room now (a full queue): retry later */
    FOLIO_ENOTFOUND = -6, /* no such thing (a model id, a key) */
    FOLIO_EEXIST = -7,   /* already exists (a model name) */
};

/* Records a printf-style message for the current thread and returns `code`, so that error
 * paths read `rc = folio_err(FOLIO_EINVAL, "...", ...); goto out;`. */
int folio_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *folio_last_error(void);

/* Element types of weights and activations. FP8 is e4m3fn; I32 only appears in checkpoints
 * (AWQ/GPTQ packed words); Q8, Q4 and Q4Z are the blocked weight formats of base/quant.h. */
enum folio_dtype {
    FOLIO_F32 = 0,
    FOLIO_F16 = 1,
    FOLIO_BF16 = 2,
    FOLIO_FP8 = 3,
    FOLIO_I32 = 4,
    FOLIO_Q8 = 5,
    FOLIO_Q4 = 6,
    FOLIO_Q4Z = 7,
};
#define FOLIO_NDTYPES 8
/* Bytes per element; 0 for the blocked formats (quant_row_bytes sizes those). */
size_t folio_dtype_size(enum folio_dtype dt);
/* "float32", "float16", "bfloat16", "float8_e4m3", "int32", "int8", "int4", "int4_zp" */
const char *folio_dtype_name(enum folio_dtype dt);
/* Accepts HF/vLLM spellings: float32/float/fp32, float16/half/fp16, bfloat16/bf16. */
int folio_dtype_parse(const char *s, enum folio_dtype *out);

/* Element i of an array of dtype dt (F32, F16, BF16 or FP8), widened to fp32 (src need not
 * be aligned). */
float folio_widen(const void *src, enum folio_dtype dt, size_t i);

/* Reads a whole file into a NUL-terminated malloc'd buffer; caller frees *out. */
int folio_read_file(const char *path, char **out, size_t *len);

/* path join into a caller buffer; returns FOLIO_EINVAL when it does not fit. */
int folio_path_join(char *dst, size_t cap, const char *dir, const char *name);

int folio_file_exists(const char *path);

/* splitmix64's step: adds the golden-ratio increment, then a full-avalanche finalizer, so
 * every input bit reaches every output bit. A bijection on 64 bits; used for hashing (prefix
 * blocks), counter-based random numbers (sampling) and seed streams. */
static inline uint64_t folio_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Counts the values in a JSON text without building it, stopping once the count passes max:
 * every scalar, string, array and object counts one, and so does every object key (cJSON
 * allocates each). Strings and their escapes are skipped byte by byte, so brackets or commas
 * inside them count nothing. Malformed text is counted as well as it goes (the parser rejects
 * it later). A parse tree costs ~64-80 bytes per value, so this bounds a body's tree before
 * it is built. */
long long folio_json_count_values(const char *s, size_t n, long long max);

/* The deepest nesting of arrays and objects in a JSON text, scanned like the count above,
 * stopping once it passes limit. HTTP handler threads run on CivetWeb's 100 KiB stacks and
 * cJSON (like the chat template's value conversion) recurses per level, so a body of a few
 * thousand '[' would overflow one: bodies are checked with this before they are parsed. */
int folio_json_max_depth(const char *s, size_t n, int limit);
/* The nesting every JSON body may have (requests need a handful of levels). */
#define FOLIO_JSON_MAX_DEPTH 64

/* Memory: glibc raises its mmap threshold whenever a large mmapped block is freed, so later
 * large buffers come from the heap, and keeps what a request freed in its arenas: after one
 * big request RSS stays at the high-water mark. folio_malloc_tune (once, at startup, before
 * any thread) fixes the mmap threshold, so buffers of 256 KiB or more are mmapped and unmapped
 * on free, and caps the arenas; folio_malloc_release returns the heaps' free pages to the OS
 * (malloc_trim), for after a request that allocated a lot. No-ops without glibc. */
void folio_malloc_tune(void);
void folio_malloc_release(void);

/* Monotonic clock in seconds. */
double folio_now(void);

/* bf16/f16 <-> f32 scalar conversions (round-to-nearest-even on the way down). */
float folio_bf16_to_f32(uint16_t h);
uint16_t folio_f32_to_bf16(float f);
float folio_f16_to_f32(uint16_t h);
uint16_t folio_f32_to_f16(float f);

#endif
