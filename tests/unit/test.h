/* Unit-test registry: each TEST(name) registers itself at load time into one table that
 * tests/unit/main.c runs, printing "N passed, N failed". Checks record failures and continue
 * to the end of the test, so one run shows every broken expectation. */
#ifndef FOLIO_TEST_H
#define FOLIO_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Directory of the shared test models (FOLIO_TEST_MODELS, else ../shared/models). */
const char *test_models_dir(void);
/* A fresh scratch directory for this test run (removed by the runner at exit). */
const char *test_tmp_dir(void);

#define TEST(name)                                                                      \
    static void test_##name(void);                                                      \
    __attribute__((constructor)) static void test_reg_##name(void) {                    \
        test_register(#name, test_##name);                                              \
    }                                                                                   \
    static void test_##name(void)

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                 \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long _a = (long long)(a), _b = (long long)(b);                             \
        if (_a != _b) test_fail(__FILE__, __LINE__, "%s == %lld, want %lld", #a, _a, _b); \
    } while (0)
#define CHECK_STR(a, b)                                                                 \
    do {                                                                                \
        const char *_a = (a), *_b = (b);                                                \
        if (!_a || strcmp(_a, _b) != 0)                                                 \
            test_fail(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"", #a, _a ? _a : "(null)", _b); \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                           \
    do {                                                                                \
        double _a = (a), _b = (b);                                                      \
        if (!(fabs(_a - _b) <= (tol)))                                                  \
            test_fail(__FILE__, __LINE__, "%s == %g, want %g +- %g", #a, _a, _b, (double)(tol)); \
    } while (0)

#endif
