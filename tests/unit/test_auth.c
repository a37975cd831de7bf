/* Unit tests for daemon/auth (keys, SHA-256, password hashing, sessions) and daemon/gpu
 * (NVML by dlopen, which must degrade to "no GPUs, and why" on a machine without a driver). */
#include "auth.h"
#include "gpu.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static const char base62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_key(const void *a, const void *b) { return strcmp(a, b); }

TEST(auth_random_fills) {
    unsigned char a[4096], b[4096];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK_EQ_INT(auth_random(a, sizeof a), 0);
    CHECK_EQ_INT(auth_random(b, sizeof b), 0);
    CHECK_EQ_INT(auth_random(a, 0), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
    int zeros = 0;
    for (size_t i = 0; i < sizeof a; i++) zeros += a[i] == 0;
    CHECK(zeros < 100); /* expected 16 */
}

TEST(auth_key_format_unique) {
    enum { N = 1000 };
    char(*keys)[AUTH_KEY_LEN + 1] = malloc(N * sizeof *keys);
    CHECK(keys != NULL);
    if (!keys) return;
    for (int i = 0; i < N; i++) {
        char hash[AUTH_HASH_HEX], want[AUTH_HASH_HEX];
        CHECK_EQ_INT(auth_key_new(keys[i], hash), 0);
        CHECK_EQ_INT(strlen(keys[i]), AUTH_KEY_LEN);
        CHECK(strncmp(keys[i], "folio-", 6) == 0);
        CHECK_EQ_INT(strspn(keys[i] + 6, base62), AUTH_KEY_LEN - 6);
        CHECK_EQ_INT(strlen(hash), 64);
        CHECK_EQ_INT(strspn(hash, "0123456789abcdef"), 64);
        CHECK_EQ_INT(auth_sha256_hex(keys[i], strlen(keys[i]), want), 0);
        CHECK_STR(hash, want);
    }
    qsort(keys, N, sizeof *keys, cmp_key);
    int dups = 0;
    for (int i = 1; i < N; i++) dups += strcmp(keys[i - 1], keys[i]) == 0;
    CHECK_EQ_INT(dups, 0);
    free(keys);
}

/* 100k symbols: ~1613 expected per symbol with a standard deviation of ~40, so a +-25% band is
 * ten sigma wide and cannot flake, yet a modulo bias (the first 8 symbols 5/4 as likely) or a
 * truncated alphabet falls outside it. */
TEST(auth_key_uniform) {
    enum { KEYS = 2500 };
    long counts[62] = {0};
    long total = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[AUTH_KEY_LEN + 1], hash[AUTH_HASH_HEX];
        CHECK_EQ_INT(auth_key_new(key, hash), 0);
        for (int i = 6; i < AUTH_KEY_LEN; i++) {
            const char *p = strchr(base62, key[i]);
            if (p && key[i]) {
                counts[p - base62]++;
                total++;
            }
        }
    }
    CHECK_EQ_INT(total, (long)KEYS * (AUTH_KEY_LEN - 6));
    double expect = (double)total / 62;
    for (int c = 0; c < 62; c++) {
        if (counts[c] < 0.75 * expect || counts[c] > 1.25 * expect)
            test_fail(__FILE__, __LINE__, "symbol '%c' drawn %ld times, expected ~%.0f",
                      base62[c], counts[c], expect);
    }
}

TEST(auth_sha256_vectors) {
    char h[AUTH_HASH_HEX];
    CHECK_EQ_INT(auth_sha256_hex("", 0, h), 0);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_EQ_INT(auth_sha256_hex("abc", 3, h), 0);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK_EQ_INT(auth_sha256_hex(two_blocks, strlen(two_blocks), h), 0);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* n, not the NUL, bounds the input. */
    CHECK_EQ_INT(auth_sha256_hex("abcdef", 3, h), 0);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(auth_key_match_cases) {
    enum { N = 5 };
    char keys[N][AUTH_KEY_LEN + 1];
    char hashes[N][AUTH_HASH_HEX];
    for (int i = 0; i < N; i++) CHECK_EQ_INT(auth_key_new(keys[i], hashes[i]), 0);
    const char(*hs)[AUTH_HASH_HEX] = (const char(*)[AUTH_HASH_HEX])hashes;
    for (int i = 0; i < N; i++) CHECK_EQ_INT(auth_key_match(keys[i], AUTH_KEY_LEN, hs, N), i);

    char other[AUTH_KEY_LEN + 1], other_hash[AUTH_HASH_HEX];
    CHECK_EQ_INT(auth_key_new(other, other_hash), 0);
    CHECK_EQ_INT(auth_key_match(other, AUTH_KEY_LEN, hs, N), -1);

    char last[AUTH_KEY_LEN + 1];
    memcpy(last, keys[3], sizeof last);
    last[AUTH_KEY_LEN - 1] = last[AUTH_KEY_LEN - 1] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(auth_key_match(last, AUTH_KEY_LEN, hs, N), -1);
    CHECK_EQ_INT(auth_key_match(keys[3], AUTH_KEY_LEN - 1, hs, N), -1);
    CHECK_EQ_INT(auth_key_match("", 0, hs, N), -1);

    CHECK_EQ_INT(auth_key_match(keys[0], AUTH_KEY_LEN, hs, 0), -1);
    CHECK_EQ_INT(auth_key_match(keys[0], AUTH_KEY_LEN, NULL, 0), -1);
    CHECK_EQ_INT(auth_key_match(NULL, 0, hs, N), -1);
    /* Only the first n entries count. */
    CHECK_EQ_INT(auth_key_match(keys[4], AUTH_KEY_LEN, hs, 4), -1);
    CHECK_EQ_INT(auth_key_match(keys[0], AUTH_KEY_LEN, hs, 1), 0);
}

TEST(auth_equal_cases) {
    CHECK_EQ_INT(auth_equal("abc", 3, "abc", 3), 1);
    CHECK_EQ_INT(auth_equal("abc", 3, "abd", 3), 0);
    CHECK_EQ_INT(auth_equal("xbc", 3, "abc", 3), 0);
    CHECK_EQ_INT(auth_equal("abc", 3, "abcd", 4), 0);
    CHECK_EQ_INT(auth_equal("abcd", 4, "abc", 3), 0);
    CHECK_EQ_INT(auth_equal("", 0, "", 0), 1);
    CHECK_EQ_INT(auth_equal("", 0, "a", 1), 0);
    CHECK_EQ_INT(auth_equal(NULL, 0, "", 0), 1);
    CHECK_EQ_INT(auth_equal(NULL, 1, "a", 1), 0);
    CHECK_EQ_INT(auth_equal("a\0b", 3, "a\0c", 3), 0); /* bytes, not C strings */
    CHECK_EQ_INT(auth_equal("a\0b", 3, "a\0b", 3), 1);
}

TEST(auth_password) {
    char h1[256], h2[256];
    CHECK_EQ_INT(auth_password_hash("correct horse battery staple", h1, sizeof h1), 0);
    CHECK(strncmp(h1, "$y$", 3) == 0);
    CHECK_EQ_INT(auth_password_check("correct horse battery staple", h1), 1);
    CHECK_EQ_INT(auth_password_check("correct horse battery stapl", h1), 0);
    CHECK_EQ_INT(auth_password_check("correct horse battery staple ", h1), 0);
    CHECK_EQ_INT(auth_password_check("", h1), 0);
    CHECK_EQ_INT(auth_password_check(NULL, h1), 0);

    /* A fresh salt each time. */
    CHECK_EQ_INT(auth_password_hash("correct horse battery staple", h2, sizeof h2), 0);
    CHECK(strcmp(h1, h2) != 0);
    CHECK_EQ_INT(auth_password_check("correct horse battery staple", h2), 1);

    CHECK_EQ_INT(auth_password_hash("", h2, sizeof h2), 0);
    CHECK_EQ_INT(auth_password_check("", h2), 1);
    CHECK_EQ_INT(auth_password_check("x", h2), 0);

    char tiny[8];
    CHECK(auth_password_hash("pw", tiny, sizeof tiny) < 0);

    /* A stored hash cut short is a non-match, not a crash. */
    char cut[256];
    snprintf(cut, sizeof cut, "%.*s", (int)strlen(h1) - 5, h1);
    CHECK_EQ_INT(auth_password_check("correct horse battery staple", cut), 0);
}

TEST(auth_password_malformed) {
    const char *bad[] = {"", "*0", "*1", "$y$garbage", "$y$", "$", "plain", "ab", "$1$",
                         "$6$rounds=1$", "$99$zzz$zzz"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (auth_password_check("plain", bad[i]) != 0)
            test_fail(__FILE__, __LINE__, "\"%s\" accepted as a stored hash", bad[i]);
        if (auth_password_check("", bad[i]) != 0)
            test_fail(__FILE__, __LINE__, "\"%s\" accepted the empty password", bad[i]);
    }
    CHECK_EQ_INT(auth_password_check("plain", NULL), 0);
}

static int is_hex64(const char *t) {
    return strlen(t) == 64 && strspn(t, "0123456789abcdef") == 64;
}

TEST(auth_sessions_basic) {
    struct auth_sessions *s = auth_sessions_create(60);
    CHECK(s != NULL);
    if (!s) return;
    char a[AUTH_SESSION_HEX], b[AUTH_SESSION_HEX];
    CHECK_EQ_INT(auth_session_new(s, a), 0);
    CHECK_EQ_INT(auth_session_new(s, b), 0);
    CHECK(is_hex64(a));
    CHECK(is_hex64(b));
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(auth_session_check(s, a), 1);
    CHECK_EQ_INT(auth_session_check(s, b), 1);

    char wrong[AUTH_SESSION_HEX];
    memcpy(wrong, a, sizeof wrong);
    wrong[63] = wrong[63] == '0' ? '1' : '0';
    CHECK_EQ_INT(auth_session_check(s, wrong), 0);
    wrong[63] = '\0';
    CHECK_EQ_INT(auth_session_check(s, wrong), 0); /* a prefix of a live token */
    CHECK_EQ_INT(auth_session_check(s, ""), 0);
    CHECK_EQ_INT(auth_session_check(s, NULL), 0);
    char zeros[AUTH_SESSION_HEX] = {0};
    CHECK_EQ_INT(auth_session_check(s, zeros), 0);

    auth_session_end(s, a);
    CHECK_EQ_INT(auth_session_check(s, a), 0);
    CHECK_EQ_INT(auth_session_check(s, b), 1);
    auth_session_end(s, a); /* twice: harmless */
    auth_session_end(s, NULL);
    auth_session_end(s, "short");
    CHECK_EQ_INT(auth_session_check(s, b), 1);
    auth_sessions_free(s);
    auth_sessions_free(NULL);

    CHECK(auth_sessions_create(0) == NULL);
    CHECK(auth_sessions_create(-1) == NULL);
    CHECK(auth_sessions_create(NAN) == NULL);
}

TEST(auth_sessions_expiry) {
    struct auth_sessions *s = auth_sessions_create(0.3);
    CHECK(s != NULL);
    if (!s) return;
    char a[AUTH_SESSION_HEX];
    CHECK_EQ_INT(auth_session_new(s, a), 0);
    CHECK_EQ_INT(auth_session_check(s, a), 1);
    sleep_s(0.5);
    CHECK_EQ_INT(auth_session_check(s, a), 0);
    CHECK_EQ_INT(auth_session_check(s, a), 0); /* stays gone */
    auth_sessions_free(s);
    s = NULL;

    /* Sliding: each check pushes the expiry forward, so a session used every 0.2 s outlives
     * a 1 s ttl, then lapses once left alone. A check counts only when the clock says it came
     * well inside the ttl of the one before: a loaded machine (TSan, suites side by side) may
     * oversleep a 0.2 s sleep past 1 s, and then the session has rightly lapsed. */
    int judged = 0;
    for (int attempt = 0; attempt < 3 && judged < 3; attempt++) {
        auth_sessions_free(s);
        s = auth_sessions_create(1.0);
        CHECK(s != NULL);
        if (!s) return;
        CHECK_EQ_INT(auth_session_new(s, a), 0);
        double last = now_s();
        judged = 0;
        for (int i = 0; i < 7; i++) {
            sleep_s(0.2);
            const double before = now_s();
            const int alive = auth_session_check(s, a);
            if (before - last > 0.8) break; /* overslept: the rest proves nothing */
            CHECK_EQ_INT(alive, 1);
            judged++;
            last = before;
        }
    }
    CHECK(judged >= 3);
    sleep_s(1.3);
    CHECK_EQ_INT(auth_session_check(s, a), 0);
    auth_sessions_free(s);
}

TEST(auth_sessions_bounded) {
    enum { N = AUTH_SESSIONS_MAX + 1 };
    struct auth_sessions *s = auth_sessions_create(3600);
    char(*tok)[AUTH_SESSION_HEX] = malloc(N * sizeof *tok);
    CHECK(s != NULL && tok != NULL);
    if (!s || !tok) goto out;
    for (int i = 0; i < AUTH_SESSIONS_MAX; i++) CHECK_EQ_INT(auth_session_new(s, tok[i]), 0);
    /* Touch the oldest, so the least recently used is now tok[1]. */
    CHECK_EQ_INT(auth_session_check(s, tok[0]), 1);
    CHECK_EQ_INT(auth_session_new(s, tok[N - 1]), 0);
    CHECK_EQ_INT(auth_session_check(s, tok[1]), 0);
    CHECK_EQ_INT(auth_session_check(s, tok[0]), 1);
    CHECK_EQ_INT(auth_session_check(s, tok[2]), 1);
    CHECK_EQ_INT(auth_session_check(s, tok[N - 1]), 1);
    int live = 0;
    for (int i = 0; i < N; i++) live += auth_session_check(s, tok[i]);
    CHECK_EQ_INT(live, AUTH_SESSIONS_MAX);
    /* An ended session frees its slot: the next one evicts nobody. */
    auth_session_end(s, tok[5]);
    char extra[AUTH_SESSION_HEX];
    CHECK_EQ_INT(auth_session_new(s, extra), 0);
    live = auth_session_check(s, extra);
    for (int i = 0; i < N; i++) live += auth_session_check(s, tok[i]);
    CHECK_EQ_INT(live, AUTH_SESSIONS_MAX);
    CHECK_EQ_INT(auth_session_check(s, tok[5]), 0);
    CHECK_EQ_INT(auth_session_check(s, tok[0]), 1);
out:
    free(tok);
    auth_sessions_free(s);
}

/* Every session's token is unique across a table's lifetime and concurrent creators. */
static struct auth_sessions *thread_sessions;
static void *session_worker(void *arg) {
    char t[AUTH_SESSION_HEX];
    int *ok = arg;
    *ok = 1;
    for (int i = 0; i < 200; i++) {
        if (auth_session_new(thread_sessions, t) != 0 || auth_session_check(thread_sessions, t) != 1)
            *ok = 0;
        auth_session_end(thread_sessions, t);
        if (auth_session_check(thread_sessions, t) != 0) *ok = 0;
    }
    return NULL;
}

TEST(auth_sessions_threads) {
    enum { T = 4 };
    pthread_t th[T];
    int ok[T];
    thread_sessions = auth_sessions_create(60);
    CHECK(thread_sessions != NULL);
    if (!thread_sessions) return;
    for (int i = 0; i < T; i++) CHECK_EQ_INT(pthread_create(&th[i], NULL, session_worker, &ok[i]), 0);
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(ok[i], 1);
    }
    auth_sessions_free(thread_sessions);
    thread_sessions = NULL;
}

static void check_gpu_entries(const struct gpu_info *g, int n) {
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(g[i].index, i);
        CHECK(g[i].name[0] != '\0');
        CHECK(memchr(g[i].name, '\0', sizeof g[i].name) != NULL);
        CHECK(memchr(g[i].uuid, '\0', sizeof g[i].uuid) != NULL);
        CHECK(g[i].mem_used <= g[i].mem_total);
        CHECK(g[i].util_gpu >= -1 && g[i].util_gpu <= 100);
        CHECK(g[i].temperature >= -1 && g[i].temperature < 150);
    }
}

/* Without a driver (the CPU build machines) this is 0 GPUs and a reason; on a GPU machine the
 * entries must be sane. Either way, nothing crashes. */
TEST(gpu_query_degrades) {
    struct gpu_info g[GPU_MAX];
    const char *why = "sentinel";
    memset(g, 0xab, sizeof g);
    int n = gpu_query(g, GPU_MAX, &why);
    CHECK(n >= 0 && n <= GPU_MAX);
    if (n == 0) {
        CHECK(why != NULL && why[0] != '\0');
        if (why) printf("    (gpu_query: %s)\n", why);
    } else {
        CHECK(why == NULL);
        check_gpu_entries(g, n);
        printf("    (gpu_query: %d GPU(s), first %s, %llu MiB)\n", n, g[0].name,
               (unsigned long long)(g[0].mem_total >> 20));
    }
    /* A second call gives the same answer (init happens once). */
    const char *why2 = NULL;
    CHECK_EQ_INT(gpu_query(g, GPU_MAX, &why2), n);
    if (n == 0) CHECK(why2 == why);

    CHECK_EQ_INT(gpu_query(g, 0, NULL), 0);
    CHECK_EQ_INT(gpu_query(NULL, 0, &why2), 0);
    CHECK_EQ_INT(gpu_query(NULL, 5, NULL), 0);
    CHECK_EQ_INT(gpu_query(g, -3, NULL), 0);
    if (n > 1) CHECK_EQ_INT(gpu_query(g, 1, NULL), 1);
}

static void *gpu_worker(void *arg) {
    struct gpu_info g[GPU_MAX];
    const char *why;
    *(int *)arg = gpu_query(g, GPU_MAX, &why);
    return NULL;
}

TEST(gpu_query_threads) {
    enum { T = 4 };
    pthread_t th[T];
    int n[T];
    for (int i = 0; i < T; i++) CHECK_EQ_INT(pthread_create(&th[i], NULL, gpu_worker, &n[i]), 0);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < T; i++) CHECK_EQ_INT(n[i], n[0]);
}

/* Sessions end at their absolute lifetime even while used, and when the credential
 * generation they were created under changes (a password reset by another process). */
TEST(auth_sessions_max_age_and_gen) {
    struct auth_sessions *s = auth_sessions_create(60);
    CHECK(s != NULL);
    if (!s) return;
    auth_sessions_set_max_age(s, 1.0);
    char a[AUTH_SESSION_HEX], b[AUTH_SESSION_HEX];
    /* Used while the clock says it is well inside its 1 s (a loaded machine may oversleep). */
    const double t0 = now_s();
    CHECK_EQ_INT(auth_session_new_gen(s, a, "gen1"), 0);
    int used = 0;
    while (now_s() - t0 < 0.6) {
        CHECK_EQ_INT(auth_session_check_gen(s, a, "gen1", 1), 1);
        used++;
        sleep_s(0.05);
    }
    CHECK(used >= 1);
    sleep_s(1.2 - (now_s() - t0) > 0 ? 1.2 - (now_s() - t0) : 0);
    CHECK_EQ_INT(auth_session_check_gen(s, a, "gen1", 1), 0); /* past 1 s, though never idle */
    auth_sessions_set_max_age(s, 0);
    CHECK_EQ_INT(auth_session_new_gen(s, b, "gen1"), 0);
    CHECK_EQ_INT(auth_session_check_gen(s, b, "gen1", 0), 1);
    CHECK_EQ_INT(auth_session_check_gen(s, b, "gen2", 1), 0); /* the password changed */
    CHECK_EQ_INT(auth_session_check_gen(s, b, "gen1", 1), 0); /* and it stays ended */
    auth_sessions_free(s);
}

TEST(auth_throttle_backoff) {
    struct auth_throttle_params p = auth_throttle_default_params();
    CHECK_EQ_INT(p.capacity, 4096);
    CHECK_EQ_INT(p.free_failures, 5);
    struct auth_throttle *t = auth_throttle_create(&p);
    CHECK(t != NULL);
    if (!t) return;
    double now = 1000;
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", now), 0, 0);
        CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 0, 0); /* four cost nothing */
    }
    CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 1, 1e-9); /* the fifth starts the wait */
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", now + 0.25), 0.75, 1e-9);
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.2", now), 0, 0); /* per address */
    now += 1;
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", now), 0, 0);
    CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 2, 1e-9);
    CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 4, 1e-9);
    CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 8, 1e-9);
    double w = 0;
    for (int i = 0; i < 100; i++) w = auth_throttle_fail(t, "10.0.0.1", now);
    CHECK_NEAR(w, 300, 1e-9); /* capped at 5 minutes */
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", now), 300, 1e-9);
    auth_throttle_ok(t, "10.0.0.1"); /* a success starts over */
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", now), 0, 0);
    CHECK_NEAR(auth_throttle_fail(t, "10.0.0.1", now), 0, 0);
    CHECK_EQ_INT(auth_throttle_size(t), 1);
    auth_throttle_free(t);
    auth_throttle_free(NULL);
    p.capacity = 0;
    CHECK(auth_throttle_create(&p) == NULL);
}

TEST(auth_throttle_bounded_lru) {
    struct auth_throttle_params p = auth_throttle_default_params();
    p.capacity = 8;
    p.free_failures = 1; /* every failure waits */
    struct auth_throttle *t = auth_throttle_create(&p);
    CHECK(t != NULL);
    if (!t) return;
    char a[32];
    for (int i = 0; i < 8; i++) {
        snprintf(a, sizeof a, "10.0.0.%d", i);
        CHECK_NEAR(auth_throttle_fail(t, a, 100 + i), 1, 1e-9);
    }
    CHECK_EQ_INT(auth_throttle_size(t), 8);
    auth_throttle_fail(t, "10.0.0.0", 200); /* refreshed: now the newest */
    auth_throttle_fail(t, "10.9.9.9", 201); /* evicts 10.0.0.1, the least recently failed */
    CHECK_EQ_INT(auth_throttle_size(t), 8);
    CHECK_NEAR(auth_throttle_wait(t, "10.0.0.1", 101.5), 0, 0);
    CHECK(auth_throttle_wait(t, "10.0.0.0", 200.5) > 0);
    CHECK(auth_throttle_wait(t, "10.0.0.2", 102.5) > 0);
    CHECK(auth_throttle_wait(t, "10.9.9.9", 201.5) > 0);
    for (int i = 0; i < 10000; i++) {
        snprintf(a, sizeof a, "fd00::%d", i);
        auth_throttle_fail(t, a, 300 + i);
    }
    CHECK_EQ_INT(auth_throttle_size(t), 8);
    auth_throttle_free(t);
}
