/* tok_utf8: the UTF-8 rules the tokenizer must share with HF, in one place: validation and
 * lossy decoding by the WHATWG "maximal subpart" rule (one U+FFFD per ill-formed run, as
 * TextDecoder and String::from_utf8_lossy do), and the JS notion of whitespace that
 * added tokens' lstrip/rstrip and the Strip normalizer trim. */
#include "text/tok_internal.h"

size_t tok_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
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

/* Length of the well-formed sequence starting at s[i] (WHATWG/Unicode "maximal subpart"
 * rules), or 0 when s[i] starts an ill-formed one; *sub gets the bytes the ill-formed prefix
 * covers (one U+FFFD replaces them), *trunc whether it only ran out of input. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i, size_t *sub, int *trunc) {
    unsigned char b = s[i];
    *trunc = 0;
    *sub = 1;
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    size_t j = i + 1;
    for (size_t k = 0; k < need; k++, j++) {
        if (j >= n) {
            *trunc = 1;
            *sub = j - i;
            return 0;
        }
        unsigned char lim_lo = k == 0 ? lo : 0x80, lim_hi = k == 0 ? hi : 0xBF;
        if (s[j] < lim_lo || s[j] > lim_hi) {
            *sub = j - i;
            return 0;
        }
    }
    return need + 1;
}

bool tok_utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t sub;
        int trunc;
        size_t k = utf8_seq((const unsigned char *)s, n, i, &sub, &trunc);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Decodes bytes to text as TextDecoder / String::from_utf8_lossy do (one U+FFFD per maximal
 * ill-formed subpart). With omit_tail, an incomplete final sequence is left out and
 * reported through *incomplete. out needs 3 * n bytes. */
size_t tok_utf8_lossy(const unsigned char *s, size_t n, char *out, int omit_tail,
                      int *incomplete) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t sub;
        int trunc;
        size_t k = utf8_seq(s, n, i, &sub, &trunc);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (trunc && incomplete) *incomplete = 1;
        if (trunc && omit_tail) break;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += sub;
    }
    return o;
}

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
        uint32_t c = tok_utf8_cp(s + i, &adv);
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
        if (!js_space(tok_utf8_cp(s + st, &adv))) break;
        end = st;
    }
    return n - end;
}
