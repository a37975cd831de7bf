/* utf8_check: UTF-8 validity through utf8proc, an implementation independent of the
 * tokenizer's own, for the tests that check what the detokenizer emits. */
#ifndef FOLIO_UTF8_CHECK_H
#define FOLIO_UTF8_CHECK_H

#include <stddef.h>
#include <utf8proc.h>

static inline int utf8_check(const unsigned char *s, size_t n) {
    utf8proc_int32_t cp;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

#endif
