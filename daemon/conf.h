/* conf: foliod's configuration file, `key = value` lines with # comments (the format of
 * /etc/folio/foliod.conf). Keys may use - or _; surrounding blanks are dropped. Parsing is
 * separate from main.c so that it is fuzzed. */
#ifndef FOLIO_CONF_H
#define FOLIO_CONF_H

#include <stddef.h>

/* Calls set(ud, key, value, line) for each setting in text[0..len) (keys with - turned into
 * _); set returns 0 or a negative code, which stops the parse. A line without '=' or with an
 * empty key is FOLIO_EINVAL naming `name` and the line. */
int conf_parse(const char *text, size_t len, const char *name,
               int (*set)(void *ud, const char *key, const char *value, int line), void *ud);

#endif
