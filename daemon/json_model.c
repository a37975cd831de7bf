/* json_model: see json_model.h. A recursive-descent validator over the bytes, remembering
 * the spans of the top-level members asked for ("model", or /v1/responses' few). */
#include "json_model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "base/util.h"

struct scan {
    const unsigned char *p, *end, *base;
    int depth;
    const char *why;
    char dup[96]; /* "\"name\" is given twice", when why points here */
};

static void ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string at s->p (the opening quote); on success s->p is past the closing quote. */
static int string(struct scan *s) {
    if (s->p >= s->end || *s->p != '"') return s->why = "expected a string", -1;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20) return s->why = "a control character in a string", -1;
        if (c == '\\') {
            if (s->end - s->p < 2) break;
            unsigned char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6) break;
                for (int i = 2; i < 6; i++)
                    if (hexval(s->p[i]) < 0) return s->why = "a bad \\u escape", -1;
                s->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                s->p += 2;
            } else {
                return s->why = "a bad escape in a string", -1;
            }
            continue;
        }
        uint32_t cp;
        size_t l = utf8_decode((const char *)s->p, (size_t)(s->end - s->p), &cp, NULL, NULL);
        if (!l) return s->why = "invalid UTF-8 in a string", -1;
        s->p += l;
    }
    return s->why = "an unterminated string", -1;
}

static int number(struct scan *s) {
    const unsigned char *p = s->p;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end) return s->why = "a bad number", -1;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9')
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    else return s->why = "unexpected character", -1;
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9') return s->why = "a bad number", -1;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        if (p >= s->end || *p < '0' || *p > '9') return s->why = "a bad number", -1;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    s->p = p;
    return 0;
}

static int literal(struct scan *s, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return s->why = "unexpected character", -1;
    s->p += n;
    return 0;
}

static int value(struct scan *s);

/* Whether the string literal [p, end) holds the escape \u0000 (an escaped backslash before
 * "u0000" is not one). */
static int has_escaped_nul(const unsigned char *p, const unsigned char *end) {
    for (; p < end; p++) {
        if (*p != '\\') continue;
        if (end - p >= 6 && p[1] == 'u' && !memcmp(p + 2, "0000", 4)) return 1;
        p++; /* skip the escaped character */
    }
    return 0;
}

/* Which of the wanted members (m[0..n)) the top-level name [ks, ke) is, or -1. Compared
 * decoded: "mod\u0065l" is "model" to every JSON parser after us. */
static int member_index(struct scan *s, const unsigned char *ks, const unsigned char *ke, const struct json_member *m,
                        int n) {
    const size_t raw = (size_t)(ke - ks);
    for (int i = 0; i < n; i++) {
        const size_t nl = strlen(m[i].name);
        if (raw == nl + 2 && !memcmp(ks + 1, m[i].name, nl)) return i;
    }
    if (!memchr(ks, '\\', raw)) return -1;
    /* "model\u0000x" is "model" to a C parser (cJSON in the engine): refuse the ambiguity
     * rather than route by one reading and serve by the other. */
    if (has_escaped_nul(ks, ke)) return s->why = "a \\u0000 in a member name", -2;
    /* Without a NUL, a wanted name (at most 32 bytes) is at most 32 six-byte escapes long. */
    char key[200];
    const char *b = (const char *)s->base;
    if (raw > 6 * 32 + 2 ||
        json_model_decode(b, (size_t)(ks - s->base), (size_t)(ke - s->base), key, sizeof key) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(key, m[i].name)) return i;
    return -1;
}

/* An object at s->p ('{'). At the top level (m set) the wanted members are recorded. */
static int object(struct scan *s, struct json_member *m, int n) {
    if (++s->depth > JSON_MODEL_MAX_DEPTH) return s->why = "nested too deeply", -1;
    s->p++; /* '{' */
    for (int i = 0; i < n; i++) m[i].start = m[i].end = (size_t)(s->p - s->base);
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        ws(s);
        const unsigned char *ks = s->p;
        if (string(s)) return -1;
        const int w = m ? member_index(s, ks, s->p, m, n) : -1;
        if (w == -2) return -1;
        ws(s);
        if (s->p >= s->end || *s->p != ':') return s->why = "expected ':' after a member name", -1;
        s->p++;
        ws(s);
        const unsigned char *vs = s->p;
        if (value(s)) return -1;
        if (w >= 0) {
            if (m[w].kind != JSON_MODEL_ABSENT) {
                snprintf(s->dup, sizeof s->dup, "\"%.64s\" is given twice", m[w].name);
                return s->why = s->dup, -1;
            }
            m[w].kind = *vs == '"' ? JSON_MODEL_STRING : *vs == 'n' ? JSON_MODEL_NULL : JSON_MODEL_OTHER;
            m[w].start = (size_t)(vs - s->base);
            m[w].end = (size_t)(s->p - s->base);
        }
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            s->depth--;
            return 0;
        }
        return s->why = "expected ',' or '}' in an object", -1;
    }
}

static int array(struct scan *s) {
    if (++s->depth > JSON_MODEL_MAX_DEPTH) return s->why = "nested too deeply", -1;
    s->p++; /* '[' */
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        ws(s);
        if (value(s)) return -1;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            s->depth--;
            return 0;
        }
        return s->why = "expected ',' or ']' in an array", -1;
    }
}

static int value(struct scan *s) {
    if (s->p >= s->end) return s->why = "unexpected end of the text", -1;
    switch (*s->p) {
    case '{': return object(s, NULL, 0);
    case '[': return array(s);
    case '"': return string(s);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default: return number(s);
    }
}

int json_model_members(const char *text, size_t len, struct json_member *m, int n) {
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len, (const unsigned char *)text, 0, NULL,
                     ""};
    for (int i = 0; i < n; i++) {
        m[i].kind = JSON_MODEL_ABSENT;
        m[i].start = m[i].end = 0;
    }
    if (!text) return folio_err(FOLIO_EINVAL, "the request body is not a JSON object");
    ws(&s);
    if (s.p >= s.end || *s.p != '{') return folio_err(FOLIO_EINVAL, "the request body is not a JSON object");
    if (object(&s, m, n)) goto bad;
    ws(&s);
    if (s.p != s.end) {
        s.why = "text after the JSON object";
        goto bad;
    }
    return 0;
bad:
    return folio_err(FOLIO_EINVAL, "the request body is not valid JSON: %s at byte %zu", s.why ? s.why : "malformed",
                     (size_t)(s.p - s.base));
}

int json_model_find(const char *text, size_t len, size_t *start, size_t *end) {
    struct json_member m = {.name = "model"};
    int rc = json_model_members(text, len, &m, 1);
    if (rc) return rc;
    *start = m.start;
    *end = m.end;
    return m.kind;
}

static uint32_t hex4(const char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 4 | (uint32_t)hexval((unsigned char)p[i]);
    return v;
}

int json_model_decode(const char *text, size_t start, size_t end, char *out, size_t cap) {
    if (!text || !out || cap == 0 || end < start + 2 || text[start] != '"' || text[end - 1] != '"')
        return folio_err(FOLIO_EINVAL, "model must be a string");
    size_t n = 0;
    for (size_t i = start + 1; i < end - 1;) {
        char tmp[4];
        size_t tl;
        if (text[i] != '\\') {
            tmp[0] = text[i++];
            tl = 1;
        } else {
            char e = text[i + 1];
            i += 2;
            if (e == 'u' && i + 4 <= end - 1) {
                uint32_t cp = hex4(text + i);
                i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= end - 1 && text[i] == '\\' && text[i + 1] == 'u') {
                    uint32_t lo = hex4(text + i + 2);
                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                if (cp == 0) return folio_err(FOLIO_EINVAL, "model holds a NUL character");
                if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; /* a lone surrogate */
                tl = utf8_encode(cp, tmp);
            } else {
                const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", e);
                if (!e || !map || ((map - "\"\"\\\\//b\bf\fn\nr\rt\t") & 1))
                    return folio_err(FOLIO_EINVAL, "model holds a bad escape");
                tmp[0] = map[1];
                tl = 1;
            }
        }
        if (n + tl >= cap) return folio_err(FOLIO_EINVAL, "model is longer than %zu bytes", cap - 1);
        memcpy(out + n, tmp, tl);
        n += tl;
    }
    out[n] = '\0';
    return 0;
}

int json_model_splice(const char *text, size_t len, int kind, size_t start, size_t end, const char *name, char **out,
                      size_t *out_len) {
    size_t nl = strlen(name), lit = 2;
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        lit += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    const int absent = kind == JSON_MODEL_ABSENT;
    int comma = 0;
    if (absent) { /* a member besides others needs a comma after it */
        size_t i = start;
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
        comma = i < len && text[i] != '}';
        end = start;
    }
    if (start > end || end > len) return folio_err(FOLIO_EINVAL, "json_model_splice: bad span");
    const size_t total = start + (absent ? 8 : 0) + lit + (size_t)comma + (len - end);
    char *o = malloc(total + 1);
    if (!o) return folio_err(FOLIO_ENOMEM, "out of memory");
    size_t n = 0;
    memcpy(o, text, start);
    n = start;
    if (absent) {
        memcpy(o + n, "\"model\":", 8);
        n += 8;
    }
    o[n++] = '"';
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '"' || c == '\\') {
            o[n++] = '\\';
            o[n++] = (char)c;
        } else if (c < 0x20) {
            static const char hx[] = "0123456789abcdef";
            memcpy(o + n, "\\u00", 4);
            o[n + 4] = hx[c >> 4];
            o[n + 5] = hx[c & 15];
            n += 6;
        } else {
            o[n++] = (char)c;
        }
    }
    o[n++] = '"';
    if (comma) o[n++] = ',';
    memcpy(o + n, text + end, len - end);
    n += len - end;
    o[n] = '\0';
    *out = o;
    *out_len = n;
    return 0;
}
