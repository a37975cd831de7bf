/* conf: see conf.h. */
#include "conf.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Drops blanks around [*s, *e). */
static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r')) (*e)--;
}

int conf_parse(const char *text, size_t len, const char *name,
               int (*set)(void *ud, const char *key, const char *value, int line), void *ud) {
    const char *p = text, *end = text + len;
    int line = 0, rc = 0;
    char key[64], *val = NULL;
    while (!rc && p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *s = p, *e = le;
        p = nl ? nl + 1 : end;
        trim(&s, &e);
        if (s == e || *s == '#') continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq) return folio_err(FOLIO_EINVAL, "%s:%d: expected key = value", name, line);
        const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
        trim(&ks, &ke);
        trim(&vs, &ve);
        if (ks == ke || (size_t)(ke - ks) >= sizeof key)
            return folio_err(FOLIO_EINVAL, "%s:%d: expected key = value", name, line);
        if (memchr(vs, '\0', (size_t)(ve - vs)) || memchr(ks, '\0', (size_t)(ke - ks)))
            return folio_err(FOLIO_EINVAL, "%s:%d: a NUL byte in the line", name, line);
        memcpy(key, ks, (size_t)(ke - ks));
        key[ke - ks] = '\0';
        for (char *c = key; *c; c++)
            if (*c == '-') *c = '_';
        if (!(val = malloc((size_t)(ve - vs) + 1))) return folio_err(FOLIO_ENOMEM, "out of memory");
        memcpy(val, vs, (size_t)(ve - vs));
        val[ve - vs] = '\0';
        rc = set(ud, key, val, line);
        free(val);
    }
    return rc;
}
