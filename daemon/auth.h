/* auth: API keys, the admin password and admin sessions.
 *
 * API keys are "folio-" plus 40 random base62 characters (from getrandom); only their SHA-256
 * (OpenSSL EVP, hex) is stored, and a presented key is hashed and compared against every
 * stored hash with CRYPTO_memcmp, so neither the comparison nor the scan order leaks where a
 * guess differs. The admin password is hashed with crypt(3) yescrypt ("$y$") and checked with
 * crypt_r. Sessions are 32 random bytes (hex) kept in memory with an expiry; a foliod
 * restart logs everyone out. */
#ifndef FOLIO_AUTH_H
#define FOLIO_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_LEN 46     /* "folio-" + 40 */
#define AUTH_HASH_HEX 65    /* 64 hex + NUL */
#define AUTH_SESSION_HEX 65
/* Live sessions kept at most; a new one past this evicts the least recently used, so a login
 * loop cannot grow the table without bound. */
#define AUTH_SESSIONS_MAX 1024

/* Random bytes from getrandom(2); FOLIO_EIO if the kernel cannot give them. */
int auth_random(void *buf, size_t n);
/* A new key (NUL-terminated, AUTH_KEY_LEN + 1 bytes) and its hash. */
int auth_key_new(char key[AUTH_KEY_LEN + 1], char hash[AUTH_HASH_HEX]);
/* hex SHA-256 of s. */
int auth_sha256_hex(const char *s, size_t n, char hash[AUTH_HASH_HEX]);
/* The index in hashes[n] whose hash matches key, or -1. Every entry is compared (constant time
 * in the key and in which entry matches). */
int auth_key_match(const char *key, size_t key_len, const char (*hashes)[AUTH_HASH_HEX], int n);
/* Constant-time equality of two strings of possibly different lengths (the length itself is
 * not secret). */
int auth_equal(const char *a, size_t an, const char *b, size_t bn);

/* yescrypt hash of a password into out (cap >= 128); FOLIO_EINVAL when it does not fit. */
int auth_password_hash(const char *password, char *out, size_t cap);
/* 1 when password matches the crypt(3) string, else 0 (also for a NULL, empty, malformed or
 * legacy-DES stored hash). */
int auth_password_check(const char *password, const char *hash);

/* In-memory admin sessions; every call is thread-safe. A session ends when it has been idle
 * for ttl_seconds (sliding), at max_age seconds after its login whatever its use (absolute;
 * auth_sessions_set_max_age, default none), or once the credential generation it was created
 * under changes (e.g. a hash of the stored admin password hash: another process's
 * --reset-admin-password ends every session at its next use). */
#define AUTH_GEN_HEX 65
struct auth_sessions;
/* NULL unless ttl_seconds > 0. The caller frees with auth_sessions_free (NULL is a no-op). */
struct auth_sessions *auth_sessions_create(double ttl_seconds);
void auth_sessions_free(struct auth_sessions *s);
/* The absolute lifetime of sessions created from now on (<= 0: none). */
void auth_sessions_set_max_age(struct auth_sessions *s, double max_age_seconds);
/* A new session token (hex); gen ("" or NULL for none) is remembered with it. */
int auth_session_new(struct auth_sessions *s, char token[AUTH_SESSION_HEX]);
int auth_session_new_gen(struct auth_sessions *s, char token[AUTH_SESSION_HEX], const char *gen);
/* 1 when the token is a live session (its expiry slides forward), else 0. */
int auth_session_check(struct auth_sessions *s, const char *token);
/* Same, also 0 (and the session ends) when gen differs from the session's; slide = 0 checks
 * without extending the idle expiry (a long-lived stream re-checking its session). */
int auth_session_check_gen(struct auth_sessions *s, const char *token, const char *gen, int slide);
void auth_session_end(struct auth_sessions *s, const char *token);

/* Per-address back-off on failed authentication (logins, admin tokens, API keys). A bounded
 * table keyed by the client address: an address may fail `free_failures` times; that
 * failure and each one after it make the address wait base_s, 2 base_s, 4 base_s ... capped
 * at cap_s before its next attempt is even checked (with 5: the sixth try waits 1 s). A success forgets the address. Past `capacity`
 * addresses the least recently failed one is evicted. Every call is thread-safe; `now` is
 * seconds on any monotonic clock (folio_now()). */
#define AUTH_THROTTLE_ADDR 64
struct auth_throttle_params {
    int capacity;      /* 4096 */
    int free_failures; /* 5 (at least 1) */
    double base_s;     /* 1 */
    double cap_s;      /* 300 */
};
struct auth_throttle_params auth_throttle_default_params(void);
struct auth_throttle;
/* NULL on bad params or no memory. The caller frees with auth_throttle_free (NULL: no-op). */
struct auth_throttle *auth_throttle_create(const struct auth_throttle_params *p);
void auth_throttle_free(struct auth_throttle *t);
/* 0 when addr may try now, else the seconds it must still wait (> 0). */
double auth_throttle_wait(struct auth_throttle *t, const char *addr, double now);
/* Records a failure; returns the wait it imposes (0 while failures are still free). */
double auth_throttle_fail(struct auth_throttle *t, const char *addr, double now);
/* A success: the address starts over. */
void auth_throttle_ok(struct auth_throttle *t, const char *addr);
/* Addresses tracked now (for tests). */
int auth_throttle_size(struct auth_throttle *t);

#endif
