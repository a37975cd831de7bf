/* tok_utf8: the JS notion of whitespace that added tokens' lstrip/rstrip and the Strip
 * normalizer trim, over text already validated (the decoding itself is base/utf8.h). */
#include "text/tok_internal.h"

/* JS String.prototype.trim whitespace (WhiteSpace + LineTerminator), which is what
 * @huggingface/tokenizers uses for the lstrip/rstrip of added tokens. */
static bool js_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

size_t tok_trim_start_len(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t adv;
        uint32_t c = utf8_cp_valid(s + i, &adv);
        if (!js_space(c)) break;
        i += adv;
    }
    return i;
}

size_t tok_trim_end_len(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        size_t adv;
        if (!js_space(utf8_cp_valid(s + st, &adv))) break;
        end = st;
    }
    return n - end;
}
