/* utf8: the one UTF-8 decoder and encoder, for the tokenizer, the chat template and foliod.
 *
 * Well-formed means Unicode's table 3-7: no overlong forms, no surrogates, nothing past
 * U+10FFFF, which is what TextDecoder, Rust's from_utf8 and JSON parsers accept. An ill-formed
 * sequence is measured by the WHATWG "maximal subpart" rule, so that a lossy decode puts one
 * U+FFFD exactly where TextDecoder and String::from_utf8_lossy put one: the tokenizer's output
 * must match @huggingface/tokenizers byte for byte.
 *
 * The decoders are static inline because they run once per character in the tokenizer's and
 * the chat template's loops; a call across translation units there would cost more than the
 * decoding. */
#ifndef FOLIO_UTF8_H
#define FOLIO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s[0, n), n >= 1. Well-formed: returns its length (1 to 4) and the
 * code point in *cp. Ill-formed: returns 0 and leaves *cp alone; *bad (unless NULL) gets the
 * bytes that one U+FFFD replaces (1 to 3), *trunc (unless NULL) whether the sequence was
 * well-formed as far as it went and only the end of the input cut it short. */
static inline size_t utf8_decode(const char *str, size_t n, uint32_t *cp, size_t *bad, bool *trunc) {
    const unsigned char *s = (const unsigned char *)str;
    const unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t need, k = 1;
    bool cut = false;
    /* The second byte's range is narrower after E0, ED, F0 and F4: that is what rules out
     * overlong forms, surrogates and code points past U+10FFFF. */
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        else if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        else if (b == 0xF4) hi = 0x8F;
    } else {
        goto ill;
    }
    for (; k <= need; k++) {
        if (k >= n) {
            cut = true;
            goto ill;
        }
        if (s[k] < lo || s[k] > hi) goto ill;
        c = (c << 6) | (s[k] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return need + 1;
ill:
    if (bad) *bad = k;
    if (trunc) *trunc = cut;
    return 0;
}

/* For text already known to be well-formed (validated at the edge): the length of the
 * sequence whose lead byte is at s, and its code point. No checks, so they cost a compare or
 * two a character. */
static inline size_t utf8_len_valid(const char *s) {
    const unsigned char c = (unsigned char)*s;
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static inline uint32_t utf8_cp_valid(const char *s, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *adv = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *adv = 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *adv = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *adv = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
           ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}

/* Writes cp to out (room for 4 bytes) and returns the bytes written. Any value below 2^21 is
 * encoded as is, surrogates included: a caller that may hold a lone surrogate (a JSON or JS
 * \u escape) replaces it with U+FFFD first. */
static inline size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Whether s[0, n) is all well-formed. */
bool utf8_valid(const char *s, size_t n);

/* Decodes s[0, n) to well-formed text as TextDecoder does: each maximal ill-formed subpart
 * becomes one U+FFFD. With omit_tail, a sequence that the end of the input cut short is left
 * out instead (a stream's next bytes may complete it); *incomplete (unless NULL) is set to 1
 * when there is one. out needs 3 * n bytes. Returns the bytes written. */
size_t utf8_lossy(const char *s, size_t n, char *out, int omit_tail, int *incomplete);

#endif
