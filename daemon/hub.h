/* hub: a Hugging Face Hub client over libcurl, for foliod's model pulls (pull.c).
 *
 * hub_resolve asks /api/models/{repo}/revision/{rev} for the commit sha and the file list
 * (sizes, LFS sha256, git blob ids) and keeps only what serving needs (hub_wanted).
 * hub_download fetches those files from /{repo}/resolve/{sha}/{file} into a staging dir, several
 * at once through curl multi: each goes to NAME.part, resumes with a Range request after any
 * interruption (also one from an earlier process), and is renamed to NAME only once its size
 * and hash (SHA-256 for LFS files, the git blob sha1 otherwise) match. Redirects are followed by
 * hand so that the token goes only to the endpoint's own origin, never to a CDN. */
#ifndef FOLIO_HUB_H
#define FOLIO_HUB_H

#include <stddef.h>
#include <stdint.h>

#define HUB_MAX_FILES 128

struct hub_file {
    char name[256];   /* rfilename: top-level names only (hub_wanted) */
    int64_t size;
    char sha256[65];  /* LFS files: the content's SHA-256; "" otherwise */
    char blob_id[41]; /* git blob sha1 of the content, or "" when the Hub gave none */
};

struct hub_repo {
    char sha[41];     /* the commit the revision resolved to */
    int num_files;
    struct hub_file files[HUB_MAX_FILES];
    int num_skipped;  /* files in the repo that serving does not need */
    int64_t total;    /* bytes of files[] */
};

/* Outcomes, for the caller's retry policy and its message. */
enum hub_status {
    HUB_OK = 0,
    HUB_TRANSIENT,    /* network, 5xx, 429, a cut transfer: retried inside, then given up */
    HUB_UNAUTHORIZED, /* 401/403: gated or private, a missing or wrong token */
    HUB_NOT_FOUND,    /* 404: no such repo, revision or file */
    HUB_BAD,          /* bytes that never verified, or an answer that makes no sense */
    HUB_DISK,         /* a local write failed (the disk is full) */
    HUB_CANCELLED,
};

struct hub_conn {
    const char *endpoint; /* "https://huggingface.co" (HF_ENDPOINT), no trailing slash needed */
    const char *token;    /* or NULL */
    double stall_s;       /* a transfer that moves nothing this long is retried (30) */
    int max_attempts;     /* per file and for the API (6) */
};

/* Whether r is a repo id as the Hub spells one: "org/name" of [A-Za-z0-9._-]. */
int hub_valid_repo(const char *r);
/* Whether serving needs a repo file: config.json, generation_config.json, tokenizer files,
 * *.safetensors and their index, chat templates; not .bin, .pt, GGUF, ONNX or subdirectories. */
int hub_wanted(const char *name);
/* Parses the revision API's JSON into out (wanted files only). FOLIO_EINVAL with a message. */
int hub_parse_repo(const char *json, size_t len, struct hub_repo *out);

/* Resolves repo at rev. err gets a message that says what to do. */
enum hub_status hub_resolve(const struct hub_conn *c, const char *repo, const char *rev, struct hub_repo *out,
                            char *err, size_t cap);

/* A small file of the repo at commit sha (config.json for a fit estimate), into a malloc'd,
 * NUL-terminated *out (caller frees). */
enum hub_status hub_fetch(const struct hub_conn *c, const char *repo, const char *sha, const char *file, char **out,
                          char *err, size_t cap);

struct hub_download {
    const struct hub_conn *conn;
    const char *repo;
    const struct hub_repo *info;
    const char *dir;                   /* the staging dir (exists) */
    int *cancel;                       /* nonzero (set atomically by another thread): stop at once */
    int parallel;                      /* transfers at once (4) */
    /* Bytes of each file done so far (on disk, verified or not), about every 200 ms and at the
     * end; also a line for each retry (note may be NULL). */
    void (*progress)(void *arg, const int64_t *done, const char *note);
    void *arg;
};

/* Downloads every file of d->info into d->dir. HUB_OK: all are there, verified, under their
 * names. Otherwise the .part files stay for a later resume (the caller deletes them when it
 * gives up). */
enum hub_status hub_download(const struct hub_download *d, char *err, size_t cap);

/* Call once before any thread uses the hub (curl_global_init). */
int hub_global_init(void);

#endif
