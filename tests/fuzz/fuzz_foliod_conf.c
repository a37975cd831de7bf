/* libFuzzer target for foliod's configuration file parser (daemon/conf.c): arbitrary text;
 * every key handed over must be non-empty, without '-' or blanks at its ends, and every value
 * NUL-free. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"

static int check(void *ud, const char *key, const char *value, int line) {
    size_t kl = strlen(key), vl = strlen(value);
    assert(kl > 0 && !strchr(key, '-') && key[0] != ' ' && key[kl - 1] != ' ');
    assert(vl == 0 || (value[0] != ' ' && value[vl - 1] != ' '));
    assert(line > 0);
    (*(int *)ud)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int n = 0;
    conf_parse((const char *)data, size, "fuzz.conf", check, &n);
    return 0;
}
