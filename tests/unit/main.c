/* Unit-test runner: runs every registered TEST (or those whose name contains any argument). */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_TESTS 1024

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int num_tests;
static int current_failed;
static char tmp_dir[256];

void test_register(const char *name, test_fn fn) {
    if (num_tests < MAX_TESTS) {
        tests[num_tests].name = name;
        tests[num_tests].fn = fn;
        num_tests++;
    }
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    current_failed = 1;
}

const char *test_models_dir(void) {
    const char *d = getenv("FOLIO_TEST_MODELS");
    return d && *d ? d : "../shared/models";
}

const char *test_tmp_dir(void) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/folio-unit-XXXXXX");
        if (!mkdtemp(tmp_dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmp_dir;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    /* FOLIO_TEST_SHARD=I/N (tests/run_all.sh): of the tests wanted, every Nth from the Ith. */
    int shard = 0, shards = 1, nth = 0;
    const char *sh = getenv("FOLIO_TEST_SHARD");
    if (sh && (sscanf(sh, "%d/%d", &shard, &shards) != 2 || shards < 1 || shard < 0 || shard >= shards)) {
        fprintf(stderr, "FOLIO_TEST_SHARD=%s: want I/N, 0 <= I < N\n", sh);
        return 2;
    }
    for (int i = 0; i < num_tests; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc && !wanted; a++) wanted = strstr(tests[i].name, argv[a]) != NULL;
        if (!wanted || nth++ % shards != shard) continue;
        current_failed = 0;
        tests[i].fn();
        if (current_failed) {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        } else {
            passed++;
            printf("ok   %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    if (tmp_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
