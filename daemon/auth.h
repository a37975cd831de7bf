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

/* In-memory admin sessions; every call is thread-safe. */
struct auth_sessions;
/* NULL unless ttl_seconds > 0. The caller frees with auth_sessions_free (NULL is a no-op). */
struct auth_sessions *auth_sessions_create(double ttl_seconds);
void auth_sessions_free(struct auth_sessions *s);
/* A new session token (hex). */
int auth_session_new(struct auth_sessions *s, char token[AUTH_SESSION_HEX]);
/* 1 when the token is a live session (its expiry slides forward), else 0. */
int auth_session_check(struct auth_sessions *s, const char *token);
void auth_session_end(struct auth_sessions *s, const char *token);

#endif
