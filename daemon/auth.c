/* auth: API keys, the admin password and admin sessions (see auth.h for the scheme).
 *
 * Everything that compares a secret does so in time that depends only on public lengths:
 * key hashes with CRYPTO_memcmp over every stored entry, passwords by comparing the whole
 * crypt(3) output, session tokens by scanning the whole table. Secrets that pass through a
 * buffer of ours are wiped before the buffer is released. */
#include "auth.h"

#include "base/util.h"

#include <crypt.h>
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define AUTH_KEY_PREFIX "folio-"
#define AUTH_KEY_PREFIX_LEN 6
#define AUTH_KEY_RANDOM (AUTH_KEY_LEN - AUTH_KEY_PREFIX_LEN)
#define AUTH_SESSION_BYTES 32

static const char base62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static void hex_encode(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* All ones when x == 0, else 0, without a data-dependent branch. */
static unsigned ct_is_zero_mask(unsigned x) {
    return 0u - (((x | (0u - x)) >> (sizeof x * 8 - 1)) ^ 1u);
}

int auth_random(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        /* Flags 0: block until the pool is initialized (only at early boot) rather than hand
         * out predictable keys; requests over 256 bytes may come back short or EINTR. */
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return folio_err(FOLIO_EIO, "getrandom: %s", strerror(errno));
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int auth_sha256_hex(const char *s, size_t n, char hash[AUTH_HASH_HEX]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!s && n > 0) return folio_err(FOLIO_EINVAL, "sha256: NULL input");
    if (!EVP_Digest(n ? s : "", n, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return folio_err(FOLIO_EIO, "sha256: EVP_Digest failed");
    hex_encode(md, md_len, hash);
    return 0;
}

int auth_key_new(char key[AUTH_KEY_LEN + 1], char hash[AUTH_HASH_HEX]) {
    unsigned char pool[64];
    size_t have = 0, used = 0;
    int rc = 0;
    memcpy(key, AUTH_KEY_PREFIX, AUTH_KEY_PREFIX_LEN);
    for (int i = AUTH_KEY_PREFIX_LEN; i < AUTH_KEY_LEN;) {
        if (used == have) {
            rc = auth_random(pool, sizeof pool);
            if (rc) goto out;
            have = sizeof pool;
            used = 0;
        }
        unsigned char b = pool[used++];
        /* 248 = 4 * 62: bytes at or above it would make the first 8 symbols likelier. */
        if (b >= 248) continue;
        key[i++] = base62[b % 62];
    }
    key[AUTH_KEY_LEN] = '\0';
    rc = auth_sha256_hex(key, AUTH_KEY_LEN, hash);
out:
    OPENSSL_cleanse(pool, sizeof pool);
    if (rc) OPENSSL_cleanse(key, AUTH_KEY_LEN + 1);
    return rc;
}

int auth_key_match(const char *key, size_t key_len, const char (*hashes)[AUTH_HASH_HEX], int n) {
    char h[AUTH_HASH_HEX];
    unsigned found = ~0u; /* -1 as unsigned: no match */
    if (!key || !hashes || n <= 0) return -1;
    if (auth_sha256_hex(key, key_len, h)) return -1;
    for (int i = 0; i < n; i++) {
        unsigned diff = (unsigned)CRYPTO_memcmp(h, hashes[i], 64);
        unsigned m = ct_is_zero_mask(diff);
        found = (found & ~m) | ((unsigned)i & m);
    }
    return (int)found;
}

int auth_equal(const char *a, size_t an, const char *b, size_t bn) {
    if ((!a && an) || (!b && bn)) return 0;
    size_t m = an < bn ? an : bn;
    /* Compare the common prefix even when the lengths differ, so the time depends on the
     * lengths alone and never on where the contents diverge. */
    int diff = m ? CRYPTO_memcmp(a, b, m) : 0;
    return (diff == 0) & (an == bn);
}

int auth_password_hash(const char *password, char *out, size_t cap) {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = NULL;
    int rc = 0;
    if (!password || !out) return folio_err(FOLIO_EINVAL, "password hash: NULL argument");
    /* NULL random bytes: libxcrypt draws the salt from the kernel itself. Count 0 is
     * yescrypt's recommended default cost. */
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) {
        rc = folio_err(FOLIO_EIO, "crypt_gensalt($y$): %s", strerror(errno));
        goto out;
    }
    /* struct crypt_data is 32 KiB: on the heap, not on an HTTP handler's stack. */
    cd = calloc(1, sizeof *cd);
    if (!cd) {
        rc = folio_err(FOLIO_ENOMEM, "password hash: out of memory");
        goto out;
    }
    const char *h = crypt_rn(password, salt, cd, (int)sizeof *cd);
    if (!h || h[0] == '*' || strncmp(h, "$y$", 3) != 0) {
        rc = folio_err(FOLIO_EIO, "crypt(yescrypt) failed");
        goto out;
    }
    size_t len = strlen(h);
    if (len + 1 > cap) {
        rc = folio_err(FOLIO_EINVAL, "password hash: %zu-byte buffer, need %zu", cap, len + 1);
        goto out;
    }
    memcpy(out, h, len + 1);
out:
    if (cd) {
        OPENSSL_cleanse(cd, sizeof *cd);
        free(cd);
    }
    return rc;
}

int auth_password_check(const char *password, const char *hash) {
    struct crypt_data *cd = NULL;
    int ok = 0;
    /* Only modern "$id$" settings: legacy DES ("ab...") silently truncates passwords to eight
     * characters, and nothing of ours ever writes one. */
    if (!password || !hash || hash[0] != '$') return 0;
    cd = calloc(1, sizeof *cd);
    if (!cd) goto out;
    const char *h = crypt_rn(password, hash, cd, (int)sizeof *cd);
    /* crypt_rn returns NULL for a setting it cannot parse; crypt_r's "*0"/"*1" failure tokens
     * are checked too, in case a libcrypt variant returns them here. */
    if (!h || h[0] == '*') goto out;
    ok = auth_equal(h, strlen(h), hash, strlen(hash));
out:
    if (cd) {
        OPENSSL_cleanse(cd, sizeof *cd);
        free(cd);
    }
    return ok;
}

struct auth_session {
    char token[AUTH_SESSION_HEX]; /* "" when the slot is free */
    double expires;               /* folio_now() seconds: idle expiry */
    double deadline;              /* absolute expiry, or 0 */
    char gen[AUTH_GEN_HEX];       /* the credential generation it was created under */
};

struct auth_sessions {
    pthread_mutex_t mu;
    double ttl, max_age;
    struct auth_session slot[AUTH_SESSIONS_MAX];
};

struct auth_sessions *auth_sessions_create(double ttl_seconds) {
    if (!(ttl_seconds > 0) || !isfinite(ttl_seconds)) {
        folio_err(FOLIO_EINVAL, "sessions: ttl must be a positive number of seconds");
        return NULL;
    }
    struct auth_sessions *s = calloc(1, sizeof *s);
    if (!s) {
        folio_err(FOLIO_ENOMEM, "sessions: out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        folio_err(FOLIO_EIO, "sessions: mutex init failed");
        return NULL;
    }
    s->ttl = ttl_seconds;
    return s;
}

void auth_sessions_free(struct auth_sessions *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    OPENSSL_cleanse(s->slot, sizeof s->slot);
    free(s);
}

/* The slot holding token, or -1. Scans every slot whatever matches, so the time does not tell
 * how far into the table (or into a token) a guess got. Caller holds s->mu. */
static int session_find(struct auth_sessions *s, const char *token) {
    unsigned found = ~0u;
    for (unsigned i = 0; i < AUTH_SESSIONS_MAX; i++) {
        /* A free slot is all NULs and never equals a 64-hex-digit token. */
        unsigned diff = (unsigned)CRYPTO_memcmp(s->slot[i].token, token, AUTH_SESSION_HEX - 1);
        unsigned m = ct_is_zero_mask(diff);
        found = (found & ~m) | (i & m);
    }
    return (int)found;
}

/* Tokens are exactly 64 characters; anything else (the length is public) is not one. */
static int session_token_ok(const char *token) {
    return token && strnlen(token, AUTH_SESSION_HEX) == AUTH_SESSION_HEX - 1;
}

void auth_sessions_set_max_age(struct auth_sessions *s, double max_age_seconds) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->max_age = max_age_seconds > 0 && isfinite(max_age_seconds) ? max_age_seconds : 0;
    pthread_mutex_unlock(&s->mu);
}

int auth_session_new(struct auth_sessions *s, char token[AUTH_SESSION_HEX]) { return auth_session_new_gen(s, token, ""); }

int auth_session_new_gen(struct auth_sessions *s, char token[AUTH_SESSION_HEX], const char *gen) {
    unsigned char raw[AUTH_SESSION_BYTES];
    int rc;
    if (!s || !token) return folio_err(FOLIO_EINVAL, "session: NULL argument");
    rc = auth_random(raw, sizeof raw);
    if (rc) goto out;
    hex_encode(raw, sizeof raw, token);

    pthread_mutex_lock(&s->mu);
    double now = folio_now();
    /* A free or expired slot if there is one, else the least recently used session. */
    int victim = 0;
    for (int i = 0; i < AUTH_SESSIONS_MAX; i++) {
        struct auth_session *e = &s->slot[i];
        if (!e->token[0] || e->expires <= now) {
            victim = i;
            break;
        }
        if (e->expires < s->slot[victim].expires) victim = i;
    }
    memcpy(s->slot[victim].token, token, AUTH_SESSION_HEX);
    s->slot[victim].expires = now + s->ttl;
    s->slot[victim].deadline = s->max_age > 0 ? now + s->max_age : 0;
    snprintf(s->slot[victim].gen, sizeof s->slot[victim].gen, "%s", gen ? gen : "");
    pthread_mutex_unlock(&s->mu);
out:
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

int auth_session_check(struct auth_sessions *s, const char *token) { return auth_session_check_gen(s, token, NULL, 1); }

int auth_session_check_gen(struct auth_sessions *s, const char *token, const char *gen, int slide) {
    int live = 0;
    if (!s || !session_token_ok(token)) return 0;
    pthread_mutex_lock(&s->mu);
    int i = session_find(s, token);
    if (i >= 0) {
        struct auth_session *e = &s->slot[i];
        double now = folio_now();
        const int gen_ok = !gen || auth_equal(e->gen, strlen(e->gen), gen, strlen(gen));
        if (e->expires > now && (e->deadline <= 0 || e->deadline > now) && gen_ok) {
            if (slide) e->expires = now + s->ttl;
            live = 1;
        } else {
            OPENSSL_cleanse(e, sizeof *e);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return live;
}

void auth_session_end(struct auth_sessions *s, const char *token) {
    if (!s || !session_token_ok(token)) return;
    pthread_mutex_lock(&s->mu);
    int i = session_find(s, token);
    if (i >= 0) OPENSSL_cleanse(&s->slot[i], sizeof s->slot[i]);
    pthread_mutex_unlock(&s->mu);
}

/* ---- back-off on failures ---- */

struct throttle_entry {
    char addr[AUTH_THROTTLE_ADDR]; /* "" when free */
    int fails;
    double until;                  /* may try again at (0: now) */
    double last;                   /* the last failure: the LRU order */
};

struct auth_throttle {
    pthread_mutex_t mu;
    struct auth_throttle_params p;
    int n;                         /* entries in use: e[0..n) */
    struct throttle_entry *e;
};

struct auth_throttle_params auth_throttle_default_params(void) {
    return (struct auth_throttle_params){.capacity = 4096, .free_failures = 5, .base_s = 1, .cap_s = 300};
}

struct auth_throttle *auth_throttle_create(const struct auth_throttle_params *p) {
    struct auth_throttle_params d = p ? *p : auth_throttle_default_params();
    if (d.capacity < 1 || d.free_failures < 1 || !(d.base_s > 0) || !(d.cap_s >= d.base_s)) {
        folio_err(FOLIO_EINVAL, "throttle: bad parameters");
        return NULL;
    }
    struct auth_throttle *t = calloc(1, sizeof *t);
    if (t) t->e = calloc((size_t)d.capacity, sizeof *t->e);
    if (!t || !t->e || pthread_mutex_init(&t->mu, NULL) != 0) {
        if (t) free(t->e);
        free(t);
        folio_err(FOLIO_ENOMEM, "throttle: out of memory");
        return NULL;
    }
    t->p = d;
    return t;
}

void auth_throttle_free(struct auth_throttle *t) {
    if (!t) return;
    pthread_mutex_destroy(&t->mu);
    free(t->e);
    free(t);
}

/* The entry of addr, or -1. Caller holds t->mu. */
static int throttle_find(struct auth_throttle *t, const char *addr) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].addr, addr)) return i;
    return -1;
}

double auth_throttle_wait(struct auth_throttle *t, const char *addr, double now) {
    if (!t || !addr) return 0;
    double w = 0;
    pthread_mutex_lock(&t->mu);
    int i = throttle_find(t, addr);
    if (i >= 0 && t->e[i].until > now) w = t->e[i].until - now;
    pthread_mutex_unlock(&t->mu);
    return w;
}

double auth_throttle_fail(struct auth_throttle *t, const char *addr, double now) {
    if (!t || !addr) return 0;
    pthread_mutex_lock(&t->mu);
    int i = throttle_find(t, addr);
    if (i < 0) {
        if (t->n < t->p.capacity) {
            i = t->n++;
        } else { /* evict the least recently failed address */
            i = 0;
            for (int k = 1; k < t->n; k++)
                if (t->e[k].last < t->e[i].last) i = k;
        }
        memset(&t->e[i], 0, sizeof t->e[i]);
        snprintf(t->e[i].addr, sizeof t->e[i].addr, "%s", addr);
    }
    struct throttle_entry *e = &t->e[i];
    if (e->fails < 1000000) e->fails++;
    e->last = now;
    double w = 0;
    /* The free_failures-th failure starts the wait: after 5 wrong passwords the 6th try waits. */
    if (e->fails >= t->p.free_failures) {
        w = t->p.base_s;
        for (int k = e->fails - t->p.free_failures; k > 0 && w < t->p.cap_s; k--) w *= 2;
        if (w > t->p.cap_s) w = t->p.cap_s;
        e->until = now + w;
    }
    pthread_mutex_unlock(&t->mu);
    return w;
}

void auth_throttle_ok(struct auth_throttle *t, const char *addr) {
    if (!t || !addr) return;
    pthread_mutex_lock(&t->mu);
    int i = throttle_find(t, addr);
    if (i >= 0) t->e[i] = t->e[--t->n];
    pthread_mutex_unlock(&t->mu);
}

int auth_throttle_size(struct auth_throttle *t) {
    if (!t) return 0;
    pthread_mutex_lock(&t->mu);
    int n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}
