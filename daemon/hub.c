/* hub: see hub.h. */
#include "hub.h"
#include "base/version.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sbuf.h"
#include "base/util.h"

#define USER_AGENT "folio/" FOLIO_VERSION " (foliod; libcurl)"
#define MAX_REDIRECTS 5

int hub_global_init(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : folio_err(FOLIO_EIO, "libcurl did not start");
}

int hub_wanted(const char *name) {
    static const char *const wanted[] = {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
        "chat_template.jinja", "chat_template.json", "*.safetensors", "model.safetensors.index.json",
    };
    if (!name[0] || strchr(name, '/') || strchr(name, '\\') || name[0] == '.') return 0;
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        if (fnmatch(wanted[i], name, 0) == 0) return 1;
    return 0;
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int hub_parse_repo(const char *json, size_t len, struct hub_repo *out) {
    memset(out, 0, sizeof *out);
    int rc = 0;
    cJSON *j = cJSON_ParseWithLength(json, len);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(j, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(j, "siblings");
    if (!cJSON_IsObject(j) || !cJSON_IsString(sha) || !is_hex(sha->valuestring, 40) || !cJSON_IsArray(sib)) {
        rc = folio_err(FOLIO_EINVAL, "the Hub's answer has no commit sha and file list");
        goto out;
    }
    memcpy(out->sha, sha->valuestring, 41);
    const cJSON *s;
    cJSON_ArrayForEach(s, sib) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
        if (!cJSON_IsString(name)) continue;
        if (!hub_wanted(name->valuestring)) {
            out->num_skipped++;
            continue;
        }
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(s, "size");
        const cJSON *blob = cJSON_GetObjectItemCaseSensitive(s, "blobId");
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(s, "lfs");
        const cJSON *lsha = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
        const cJSON *lsize = cJSON_GetObjectItemCaseSensitive(lfs, "size");
        if (cJSON_IsNumber(lsize)) size = lsize;
        if (!cJSON_IsNumber(size) || size->valuedouble < 0 || size->valuedouble > 1e15 ||
            strlen(name->valuestring) >= sizeof out->files[0].name) {
            rc = folio_err(FOLIO_EINVAL, "the Hub gave no usable size for %.200s (ask for ?blobs=true)",
                           name->valuestring);
            goto out;
        }
        if (lfs && !(cJSON_IsString(lsha) && is_hex(lsha->valuestring, 64))) {
            rc = folio_err(FOLIO_EINVAL, "the Hub gave no sha256 for the LFS file %.200s", name->valuestring);
            goto out;
        }
        if (out->num_files == HUB_MAX_FILES) {
            rc = folio_err(FOLIO_EINVAL, "the repo has more than %d files to download", HUB_MAX_FILES);
            goto out;
        }
        struct hub_file *f = &out->files[out->num_files++];
        snprintf(f->name, sizeof f->name, "%s", name->valuestring);
        f->size = (int64_t)size->valuedouble;
        if (lfs) memcpy(f->sha256, lsha->valuestring, 65);
        if (cJSON_IsString(blob) && is_hex(blob->valuestring, 40)) memcpy(f->blob_id, blob->valuestring, 41);
        out->total += f->size;
    }
    if (out->num_files == 0) rc = folio_err(FOLIO_EINVAL, "the repo has no files a model needs (config.json, *.safetensors)");
out:
    cJSON_Delete(j);
    return rc;
}

int hub_valid_repo(const char *r) {
    const char *slash = strchr(r, '/');
    if (!slash || slash == r || !slash[1] || strchr(slash + 1, '/') || strlen(r) > 200) return 0;
    for (const char *p = r; *p; p++)
        if (!(*p == '/' || *p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return strstr(r, "..") == NULL;
}

static void base_url(const struct hub_conn *c, char *out, size_t cap) {
    snprintf(out, cap, "%s", c->endpoint && *c->endpoint ? c->endpoint : "https://huggingface.co");
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/') out[--n] = '\0';
}

/* Whether url has the endpoint's scheme, host and port: only then may the token go along. */
static int same_origin(const char *endpoint, const char *url) {
    CURLU *a = curl_url(), *b = curl_url();
    int same = 0;
    if (a && b && curl_url_set(a, CURLUPART_URL, endpoint, 0) == CURLUE_OK &&
        curl_url_set(b, CURLUPART_URL, url, 0) == CURLUE_OK) {
        same = 1;
        static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
        for (size_t i = 0; i < 3 && same; i++) {
            char *x = NULL, *y = NULL;
            curl_url_get(a, parts[i], &x, CURLU_DEFAULT_PORT);
            curl_url_get(b, parts[i], &y, CURLU_DEFAULT_PORT);
            same = x && y && strcasecmp(x, y) == 0;
            curl_free(x);
            curl_free(y);
        }
    }
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return same;
}

static struct curl_slist *auth_header(const struct hub_conn *c, const char *url, const char *endpoint) {
    if (!c->token || !*c->token || !same_origin(endpoint, url)) return NULL;
    char h[1100];
    snprintf(h, sizeof h, "Authorization: Bearer %.1000s", c->token);
    struct curl_slist *l = curl_slist_append(NULL, h);
    memset(h, 0, sizeof h);
    return l;
}

static void common_opts(CURL *h, const struct hub_conn *c) {
    curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)(c->stall_s > 0 ? c->stall_s : 30));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
}

static double backoff(int attempt) {
    double s = 0.5;
    for (int i = 1; i < attempt && s < 8; i++) s *= 2;
    return s < 8 ? s : 8;
}

static int max_attempts(const struct hub_conn *c) { return c->max_attempts > 0 ? c->max_attempts : 6; }

/* ---- the revision API ---- */

/* A revision listing or config.json, into an sbuf; no revision listing is 64 MiB. */
static size_t mem_write(char *data, size_t sz, size_t nm, void *ud) {
    struct sbuf *m = ud;
    const size_t n = sz * nm;
    if (m->n + n > ((size_t)64 << 20) || sbuf_put(m, data, n)) return 0;
    return n;
}

/* One GET of url into body (the token only to the endpoint's origin, no redirect followed):
 * the curl result, *code the HTTP status, *loc (owned by h) a redirect's target or NULL. */
static CURLcode get_to_memory(CURL *h, const struct hub_conn *c, const char *base, const char *url, long timeout_s,
                              struct sbuf *body, char cerr[CURL_ERROR_SIZE], long *code, char **loc) {
    struct curl_slist *hdrs = auth_header(c, url, base);
    cerr[0] = '\0';
    curl_easy_reset(h);
    common_opts(h, c);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    const CURLcode cr = curl_easy_perform(h);
    *code = 0;
    *loc = NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, loc);
    curl_slist_free_all(hdrs);
    return cr;
}

static enum hub_status http_status_class(long code) {
    if (code == 401 || code == 403) return HUB_UNAUTHORIZED;
    if (code == 404) return HUB_NOT_FOUND;
    if (code == 429 || code >= 500 || code == 0) return HUB_TRANSIENT;
    return HUB_BAD;
}

static void gated_message(const struct hub_conn *c, const char *repo, char *err, size_t cap) {
    if (c->token && *c->token)
        snprintf(err, cap, "repo %s is gated or private and the token may not read it: accept its license on the Hub "
                           "with the token's account, or set another HF_TOKEN", repo);
    else
        snprintf(err, cap, "repo %s is gated: accept its license on the Hub and set HF_TOKEN", repo);
}

enum hub_status hub_resolve(const struct hub_conn *c, const char *repo, const char *rev, struct hub_repo *out,
                            char *err, size_t cap) {
    char base[512], url[1400];
    if (!hub_valid_repo(repo)) {
        snprintf(err, cap, "\"%.200s\" is not a Hub repo id (org/name)", repo);
        return HUB_BAD;
    }
    base_url(c, base, sizeof base);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, cap, "out of memory");
        return HUB_TRANSIENT;
    }
    char *erev = curl_easy_escape(h, rev && *rev ? rev : "main", 0);
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", base, repo, erev ? erev : "main");
    curl_free(erev);
    enum hub_status st = HUB_TRANSIENT;
    for (int attempt = 1;; attempt++) {
        struct sbuf body = {0};
        char cerr[CURL_ERROR_SIZE], *loc;
        long code;
        const CURLcode cr = get_to_memory(h, c, base, url, 120, &body, cerr, &code, &loc);
        if (cr == CURLE_OK && code == 200) {
            st = hub_parse_repo(body.p ? body.p : "", body.n, out) ? HUB_BAD : HUB_OK;
            if (st) snprintf(err, cap, "%s: %s", repo, folio_last_error());
        } else {
            st = cr != CURLE_OK ? HUB_TRANSIENT : http_status_class(code);
            if (st == HUB_UNAUTHORIZED) gated_message(c, repo, err, cap);
            else if (st == HUB_NOT_FOUND && body.p && strstr(body.p, "Revision"))
                snprintf(err, cap, "revision %s not found in %s", rev && *rev ? rev : "main", repo);
            else if (st == HUB_NOT_FOUND)
                snprintf(err, cap, "repo %s not found on %s (check the id; a private repo needs HF_TOKEN)", repo, base);
            else if (cr != CURLE_OK)
                snprintf(err, cap, "cannot reach %s: %s", base, cerr[0] ? cerr : curl_easy_strerror(cr));
            else
                snprintf(err, cap, "%s answered HTTP %ld for %s", base, code, repo);
        }
        free(body.p);
        if (st != HUB_TRANSIENT || attempt >= max_attempts(c)) break;
        usleep((useconds_t)(backoff(attempt) * 1e6));
    }
    curl_easy_cleanup(h);
    return st;
}

enum hub_status hub_fetch(const struct hub_conn *c, const char *repo, const char *sha, const char *file, char **out,
                          char *err, size_t cap) {
    char base[512], url[2048];
    *out = NULL;
    if (!hub_valid_repo(repo) || !hub_wanted(file)) {
        snprintf(err, cap, "bad repo or file");
        return HUB_BAD;
    }
    base_url(c, base, sizeof base);
    snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", base, repo, sha, file);
    CURL *h = curl_easy_init();
    enum hub_status st = HUB_TRANSIENT;
    for (int hop = 0; h && hop <= MAX_REDIRECTS; hop++) {
        struct sbuf body = {0};
        char cerr[CURL_ERROR_SIZE], *loc;
        long code;
        const CURLcode cr = get_to_memory(h, c, base, url, 60, &body, cerr, &code, &loc);
        if (cr == CURLE_OK && code >= 300 && code < 400 && loc && strlen(loc) < sizeof url) {
            snprintf(url, sizeof url, "%s", loc);
            free(body.p);
            continue;
        }
        if (cr == CURLE_OK && code == 200) {
            *out = body.p ? body.p : calloc(1, 1);
            st = *out ? HUB_OK : HUB_TRANSIENT;
        } else {
            free(body.p);
            st = cr != CURLE_OK ? HUB_TRANSIENT : http_status_class(code);
            if (st == HUB_UNAUTHORIZED) gated_message(c, repo, err, cap);
            else snprintf(err, cap, "%s of %s: %s", file, repo, cr != CURLE_OK ? curl_easy_strerror(cr) : "not found");
        }
        break;
    }
    if (h) curl_easy_cleanup(h);
    return st;
}

/* ---- downloads ---- */

struct xfer {
    const struct hub_file *f;
    char part[2048], final[2048];
    char resolve_url[2048], url[2048]; /* url: where the next request goes (a redirect's target) */
    FILE *fp;
    EVP_MD_CTX *md;      /* SHA-256 (LFS) or git's blob sha1; NULL: the size is all we can check */
    int64_t done;        /* bytes in the .part file, all hashed */
    CURL *h;
    struct curl_slist *hdrs;
    int active, finished, redirects, attempts;
    double retry_at;
    int body_started, restart, too_long, write_errno;
    char errbody[256];
    size_t errlen;
    char cerr[CURL_ERROR_SIZE];
    struct hub_dl *dl;
};

static int cancelled(const struct hub_download *d) { return __atomic_load_n(d->cancel, __ATOMIC_RELAXED) != 0; }

struct hub_dl {
    const struct hub_download *d;
    char base[512];
    struct xfer *x;
    int64_t *done;
};

static int hash_start(struct xfer *x) {
    const struct hub_file *f = x->f;
    if (x->md) EVP_MD_CTX_free(x->md);
    x->md = NULL;
    if (!f->sha256[0] && !f->blob_id[0]) return 0;
    if (!(x->md = EVP_MD_CTX_new())) return -1;
    if (EVP_DigestInit_ex(x->md, f->sha256[0] ? EVP_sha256() : EVP_sha1(), NULL) != 1) return -1;
    if (!f->sha256[0]) { /* git hashes "blob <size>\0" then the content */
        char hdr[40];
        int n = snprintf(hdr, sizeof hdr, "blob %lld", (long long)f->size);
        if (EVP_DigestUpdate(x->md, hdr, (size_t)n + 1) != 1) return -1;
    }
    return 0;
}

static int hash_matches(struct xfer *x) {
    if (!x->md) return 1;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (EVP_DigestFinal_ex(x->md, d, &n) != 1) return 0;
    for (unsigned i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return strcmp(hex, x->f->sha256[0] ? x->f->sha256 : x->f->blob_id) == 0;
}

/* Opens (or reopens) the .part file and hashes what it already holds, so a transfer resumes
 * where any earlier one, in this process or another, stopped. */
static int part_open(struct xfer *x) {
    if (x->fp) fclose(x->fp);
    x->fp = fopen(x->part, "a+b");
    if (!x->fp) return -1;
    x->done = 0;
    if (hash_start(x)) return -1;
    struct stat st;
    if (fstat(fileno(x->fp), &st) != 0) return -1;
    if (st.st_size > x->f->size) {
        if (ftruncate(fileno(x->fp), 0) != 0) return -1;
        return 0;
    }
    char *buf = malloc(1 << 20);
    if (!buf) return -1;
    rewind(x->fp);
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, x->fp)) > 0) {
        if (x->md && EVP_DigestUpdate(x->md, buf, n) != 1) break;
        x->done += (int64_t)n;
    }
    free(buf);
    fseek(x->fp, 0, SEEK_END);
    return x->done == st.st_size ? 0 : -1;
}

static int part_reset(struct xfer *x) {
    if (!x->fp || ftruncate(fileno(x->fp), 0) != 0) return -1;
    fseek(x->fp, 0, SEEK_END);
    x->done = 0;
    return hash_start(x);
}

static size_t on_header(char *data, size_t sz, size_t nm, void *ud) {
    struct xfer *x = ud;
    if (nm * sz > 5 && strncmp(data, "HTTP/", 5) == 0) x->body_started = 0; /* a new response */
    return sz * nm;
}

static size_t on_body(char *data, size_t sz, size_t nm, void *ud) {
    struct xfer *x = ud;
    const size_t n = sz * nm;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 && code != 206) { /* an error page: keep its start for the message */
        size_t k = n < sizeof x->errbody - 1 - x->errlen ? n : sizeof x->errbody - 1 - x->errlen;
        memcpy(x->errbody + x->errlen, data, k);
        x->errlen += k;
        x->errbody[x->errlen] = '\0';
        return n;
    }
    if (cancelled(x->dl->d)) return 0;
    if (!x->body_started) {
        x->body_started = 1;
        curl_off_t start = -1;
        if (code == 206) {
            /* The Range answer must start where the .part ends. */
            struct curl_header *ch = NULL;
            long long a = -1;
            if (curl_easy_header(x->h, "Content-Range", 0, CURLH_HEADER, -1, &ch) == CURLHE_OK &&
                sscanf(ch->value, "bytes %lld-", &a) == 1)
                start = a;
            if (start != x->done) {
                x->restart = 1;
                return 0;
            }
        } else if (x->done > 0 && part_reset(x)) { /* 200: the whole file again */
            x->write_errno = errno ? errno : EIO;
            return 0;
        }
    }
    if (x->done + (int64_t)n > x->f->size) {
        x->too_long = 1;
        return 0;
    }
    if (fwrite(data, 1, n, x->fp) != n) {
        x->write_errno = errno ? errno : EIO;
        return 0;
    }
    if (x->md) EVP_DigestUpdate(x->md, data, n);
    x->done += (int64_t)n;
    x->dl->done[x - x->dl->x] = x->done;
    return n;
}

static int xfer_start(struct hub_dl *dl, CURLM *multi, struct xfer *x) {
    const struct hub_download *d = dl->d;
    if (!x->h && !(x->h = curl_easy_init())) return -1;
    curl_easy_reset(x->h);
    common_opts(x->h, d->conn);
    curl_slist_free_all(x->hdrs);
    x->hdrs = auth_header(d->conn, x->url, dl->base);
    char range[64];
    if (x->done > 0) {
        snprintf(range, sizeof range, "%lld-", (long long)x->done);
        curl_easy_setopt(x->h, CURLOPT_RANGE, range);
    }
    curl_easy_setopt(x->h, CURLOPT_URL, x->url);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->cerr);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    x->cerr[0] = '\0';
    x->errlen = 0;
    x->errbody[0] = '\0';
    x->body_started = x->restart = x->too_long = 0;
    x->retry_at = 0;
    if (curl_multi_add_handle(multi, x->h) != CURLM_OK) return -1;
    x->active = 1;
    return 0;
}

static void note(struct hub_dl *dl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct hub_dl *dl, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (dl->d->progress) dl->d->progress(dl->d->arg, dl->done, msg);
}

/* Schedules another attempt of x, or gives up: HUB_OK when one is scheduled. */
static enum hub_status retry(struct hub_dl *dl, struct xfer *x, const char *why, char *err, size_t cap) {
    if (++x->attempts >= max_attempts(dl->d->conn)) {
        snprintf(err, cap, "%s: gave up after %d attempts: %s", x->f->name, x->attempts, why);
        return HUB_TRANSIENT;
    }
    const double wait = backoff(x->attempts);
    x->retry_at = folio_now() + wait;
    /* From the Hub again: a CDN's signed URL may have expired meanwhile. */
    memcpy(x->url, x->resolve_url, sizeof x->url);
    x->redirects = 0;
    note(dl, "%s: %s; retrying in %.1f s (attempt %d of %d)", x->f->name, why, wait, x->attempts + 1,
         max_attempts(dl->d->conn));
    return HUB_OK;
}

/* All of x's bytes are in its .part: rename it into place if its hash matches, else discard
 * it and schedule another attempt. */
static enum hub_status finish_file(struct hub_dl *dl, struct xfer *x, char *err, size_t cap) {
    if (!hash_matches(x)) {
        unlink(x->part);
        if (part_open(x)) {
            snprintf(err, cap, "cannot reopen %s: %s", x->part, strerror(errno));
            return HUB_DISK;
        }
        char why[320];
        snprintf(why, sizeof why, "checksum mismatch for %s: file discarded", x->f->name);
        enum hub_status st = retry(dl, x, why, err, cap);
        if (st) snprintf(err, cap, "checksum mismatch for %s: file discarded, gave up after %d attempts",
                         x->f->name, x->attempts);
        return st ? HUB_BAD : HUB_OK;
    }
    if (fflush(x->fp) != 0 || fsync(fileno(x->fp)) != 0 || fclose(x->fp) != 0) {
        x->fp = NULL;
        snprintf(err, cap, "cannot write %s: %s", x->part, strerror(errno));
        return HUB_DISK;
    }
    x->fp = NULL;
    if (rename(x->part, x->final) != 0) {
        snprintf(err, cap, "cannot rename %s: %s", x->part, strerror(errno));
        return HUB_DISK;
    }
    x->finished = 1;
    return HUB_OK;
}

/* A transfer ended: the file is done, another attempt is scheduled, or the pull stops. */
static enum hub_status xfer_done(struct hub_dl *dl, struct xfer *x, CURLcode cr, char *err, size_t cap) {
    const struct hub_download *d = dl->d;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (cancelled(d)) return HUB_CANCELLED;
    if (x->write_errno) {
        snprintf(err, cap, "cannot write %s: %s", x->part, strerror(x->write_errno));
        return HUB_DISK;
    }
    if (code == 301 || code == 302 || code == 303 || code == 307 || code == 308) {
        char *loc = NULL;
        curl_easy_getinfo(x->h, CURLINFO_REDIRECT_URL, &loc);
        if (!loc || ++x->redirects > MAX_REDIRECTS || strlen(loc) >= sizeof x->url) {
            snprintf(err, cap, "%s: too many or bad redirects", x->f->name);
            return HUB_BAD;
        }
        snprintf(x->url, sizeof x->url, "%s", loc);
        x->retry_at = folio_now();
        return HUB_OK;
    }
    if (cr == CURLE_OK && (code == 200 || code == 206) && x->done == x->f->size) return finish_file(dl, x, err, cap);
    if (x->restart || x->too_long || code == 416) { /* the server and the .part disagree: start over */
        if (part_reset(x)) {
            snprintf(err, cap, "cannot truncate %s: %s", x->part, strerror(errno));
            return HUB_DISK;
        }
        return retry(dl, x, x->too_long ? "more bytes than the Hub announced" : "the range did not match", err, cap);
    }
    if (cr == CURLE_OK && code != 200 && code != 206) {
        const enum hub_status st = http_status_class(code);
        if (st == HUB_UNAUTHORIZED) {
            gated_message(d->conn, d->repo, err, cap);
            return st;
        }
        if (st == HUB_NOT_FOUND) {
            snprintf(err, cap, "%s not found in %s at %s", x->f->name, d->repo, d->info->sha);
            return st;
        }
        if (st == HUB_BAD) {
            snprintf(err, cap, "%s: unexpected HTTP %ld", x->f->name, code);
            return st;
        }
    }
    char why[300];
    if (cr != CURLE_OK)
        snprintf(why, sizeof why, "%s", x->cerr[0] ? x->cerr : curl_easy_strerror(cr));
    else if (code != 200 && code != 206)
        snprintf(why, sizeof why, "HTTP %ld", code);
    else
        snprintf(why, sizeof why, "the transfer ended at %lld of %lld bytes", (long long)x->done, (long long)x->f->size);
    return retry(dl, x, why, err, cap);
}

enum hub_status hub_download(const struct hub_download *d, char *err, size_t cap) {
    const int n = d->info->num_files, par = d->parallel > 0 ? d->parallel : 4;
    struct hub_dl dl = {.d = d};
    enum hub_status st = HUB_OK;
    CURLM *multi = curl_multi_init();
    dl.x = calloc((size_t)n, sizeof *dl.x);
    dl.done = calloc((size_t)n, sizeof *dl.done);
    err[0] = '\0';
    if (!multi || !dl.x || !dl.done) {
        snprintf(err, cap, "out of memory");
        st = HUB_TRANSIENT;
        goto out;
    }
    base_url(d->conn, dl.base, sizeof dl.base);
    for (int i = 0; i < n && !st; i++) {
        struct xfer *x = &dl.x[i];
        x->f = &d->info->files[i];
        x->dl = &dl;
        snprintf(x->final, sizeof x->final, "%s/%s", d->dir, x->f->name);
        snprintf(x->part, sizeof x->part, "%s/%s.part", d->dir, x->f->name);
        snprintf(x->resolve_url, sizeof x->resolve_url, "%s/%s/resolve/%s/%s", dl.base, d->repo, d->info->sha,
                 x->f->name);
        memcpy(x->url, x->resolve_url, sizeof x->url);
        struct stat sb;
        if (stat(x->final, &sb) == 0 && sb.st_size == x->f->size) { /* verified by an earlier run */
            x->finished = 1;
            dl.done[i] = x->f->size;
            continue;
        }
        if (part_open(x)) {
            snprintf(err, cap, "cannot open %s: %s", x->part, strerror(errno));
            st = HUB_DISK;
        }
        dl.done[i] = x->done;
    }
    double last = 0;
    for (;;) {
        if (st) break;
        if (cancelled(d)) {
            st = HUB_CANCELLED;
            break;
        }
        int left = 0, active = 0;
        const double now = folio_now();
        for (int i = 0; i < n; i++) {
            left += !dl.x[i].finished;
            active += dl.x[i].active;
        }
        if (!left) break;
        for (int i = 0; i < n && active < par && !st; i++) {
            struct xfer *x = &dl.x[i];
            if (x->finished || x->active || x->retry_at > now) continue;
            if (x->done == x->f->size) { /* a complete .part from before: verify it without asking */
                st = finish_file(&dl, x, err, cap);
                dl.done[i] = x->finished ? x->f->size : x->done;
                continue;
            }
            if (xfer_start(&dl, multi, x)) {
                snprintf(err, cap, "cannot start a transfer");
                st = HUB_TRANSIENT;
            }
            active++;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int q;
        while (!st && (msg = curl_multi_info_read(multi, &q))) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            const CURLcode cr = msg->data.result;
            curl_multi_remove_handle(multi, msg->easy_handle);
            x->active = 0;
            st = xfer_done(&dl, x, cr, err, cap);
            dl.done[x - dl.x] = x->finished ? x->f->size : x->done;
        }
        if (d->progress && (folio_now() - last >= 0.2)) {
            d->progress(d->arg, dl.done, NULL);
            last = folio_now();
        }
        if (!st) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    if (d->progress) d->progress(d->arg, dl.done, NULL);
out:
    for (int i = 0; dl.x && i < n; i++) {
        struct xfer *x = &dl.x[i];
        if (x->h) {
            if (x->active) curl_multi_remove_handle(multi, x->h);
            curl_easy_cleanup(x->h);
        }
        curl_slist_free_all(x->hdrs);
        if (x->fp) fclose(x->fp);
        if (x->md) EVP_MD_CTX_free(x->md);
    }
    if (st == HUB_CANCELLED && !err[0]) snprintf(err, cap, "cancelled");
    free(dl.x);
    free(dl.done);
    curl_multi_cleanup(multi);
    return st;
}
