/* cli_args: the number parsing that the benchmark tools' flags share. Errors go through
 * folio_err, so a tool prints folio_last_error() and exits. */
#ifndef FOLIO_CLI_ARGS_H
#define FOLIO_CLI_ARGS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "util.h"

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

#endif
