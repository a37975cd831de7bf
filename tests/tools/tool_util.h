/* tool_util: what the benchmark tools share: parsing their flags' numbers (errors through
 * folio_err, so a tool prints folio_last_error() and exits) and a seeded random stream for
 * their workloads. */
#ifndef FOLIO_TOOL_UTIL_H
#define FOLIO_TOOL_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/util.h"

static inline int parse_int(const char *flag, const char *s, int lo, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > INT32_MAX)
        return folio_err(FOLIO_EINVAL, "%s: expected an integer >= %d, got '%s'", flag, lo, s);
    *out = (int)v;
    return 0;
}

static inline int parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return folio_err(FOLIO_EINVAL, "%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, s);
    *out = v;
    return 0;
}

/* splitmix64 as a stream: the state advances by the golden-ratio step and folio_mix64 mixes. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t z = folio_mix64(*s);
    *s += 0x9e3779b97f4a7c15ULL;
    return z;
}

static inline int rng_range(uint64_t *s, int lo, int hi) { /* uniform in [lo, hi] */
    return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

#endif
