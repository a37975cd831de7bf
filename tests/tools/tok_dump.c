/* tok_dump: drives the tokenizer and the detokenizer for tests/tokenizer/run.sh, so one process
 * answers every string of the comparison corpus.
 *
 *   tok_dump DIR                 JSON lines on stdin -> JSON lines on stdout:
 *       {"hex": "<utf-8 bytes>"}  ->  {"ids": [..], "ids_ns": [..], "dec": hex, "dec_skip": hex,
 *                                      "detok": "ok" | "<what went wrong>"}
 *       {"ids": [..]}             ->  {"dec": hex, "dec_skip": hex, "detok": ...}
 *     ids: encode with add_special_tokens, ids_ns: without; dec/dec_skip: tok_decode(ids) with
 *     and without skip_special. Text travels as hex so that NUL and friends survive.
 *     "detok" checks the streaming detokenizer against tok_decode on the same ids (with and
 *     without skip_special, without and with a prompt), with a 64-byte output buffer, and
 *     that no delta holds invalid or partial UTF-8.
 *   tok_dump DIR --text STRING   prints the ids and the pieces (debugging)
 *   tok_dump DIR --bench FILE [N] encodes FILE N times, prints ms per encode */
#include "text/detok.h"
#include "text/tokenizer.h"
#include "base/sbuf.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utf8_check.h"


static void put_hex(const char *s, size_t n) {
    static const char hx[] = "0123456789abcdef";
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        putchar(hx[c >> 4]);
        putchar(hx[c & 15]);
    }
    putchar('"');
}

static int from_hex(const char *h, char **out, size_t *n) {
    size_t len = strlen(h);
    if (len % 2) return -1;
    char *s = malloc(len / 2 + 1);
    if (!s) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) {
            free(s);
            return -1;
        }
        s[i] = (char)v;
    }
    s[len / 2] = '\0';
    *out = s;
    *n = len / 2;
    return 0;
}

static void put_ids(const int32_t *ids, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    putchar(']');
}

/* Streams gen through a detok (with prompt context) and compares with want. */
static int stream_check(const struct tokenizer *tok, const int32_t *prompt, int np,
                        const int32_t *gen, int ng, int skip, const char *want, size_t want_len,
                        char *msg, size_t msgcap) {
    int rc = 0;
    struct detok *d = detok_create(tok, prompt, np, skip);
    struct sbuf acc = {0};
    char buf[64];
    if (!d) {
        snprintf(msg, msgcap, "detok_create: %s", folio_last_error());
        return -1;
    }
    for (int i = 0; i <= ng; i++) {
        for (int round = 0;; round++) {
            size_t n = 0;
            int r = i < ng ? (round == 0 ? detok_push(d, gen[i], buf, sizeof buf, &n)
                                         : detok_push(d, -1, buf, sizeof buf, &n))
                           : detok_flush(d, buf, sizeof buf, &n);
            if (r) {
                snprintf(msg, msgcap, "detok error at %d: %s", i, folio_last_error());
                rc = -1;
                goto out;
            }
            if (!utf8_check((const unsigned char *)buf, n)) {
                snprintf(msg, msgcap, "delta %d (skip=%d, prompt=%d) is not valid UTF-8", i, skip, np);
                rc = -1;
                goto out;
            }
            if (sbuf_put(&acc, buf, n)) { rc = -1; goto out; }
            /* a full buffer may have left text queued: drain it (pushing an out-of-range id
             * adds nothing) before the next real token, or loop on flush until empty */
            if (n < sizeof buf - 8) break;
            if (i < ng && round > 1000) break;
        }
    }
    if (acc.n != want_len || (want_len && memcmp(acc.p, want, want_len) != 0)) {
        snprintf(msg, msgcap, "streamed text differs from tok_decode (skip=%d, prompt=%d): got %zu bytes, want %zu",
                 skip, np, acc.n, want_len);
        rc = -1;
    }
out:
    sbuf_free(&acc);
    detok_free(d);
    return rc;
}

static void check_detok(const struct tokenizer *tok, const int32_t *ids, int n, const char *dec,
                        size_t dec_n, const char *dsk, size_t dsk_n, char *msg, size_t cap) {
    snprintf(msg, cap, "ok");
    if (stream_check(tok, NULL, 0, ids, n, 0, dec, dec_n, msg, cap)) return;
    if (stream_check(tok, NULL, 0, ids, n, 1, dsk, dsk_n, msg, cap)) return;
    /* prompt context: the first half as prompt, the rest streamed. A prompt that ends inside
     * a character is left out: the detok then emits the whole character, which tok_decode of
     * the prompt alone shows as U+FFFD. */
    int k = n / 2;
    char *pd = NULL;
    size_t pd_n = 0;
    int incomplete = 1;
    size_t wcap = tok_decode_work_size(tok, k);
    void *work = malloc(wcap ? wcap : 1);
    const char *wt;
    size_t wl;
    if (work && k > 0) tok_decode_window(tok, ids, k, TOK_DECODE_STREAM, work, wcap, &wt, &wl, &incomplete);
    free(work);
    if (k > 0 && !incomplete && tok_decode(tok, ids, k, 0, &pd, &pd_n) == 0 && pd_n <= dec_n &&
        memcmp(pd, dec, pd_n) == 0) {
        stream_check(tok, ids, k, ids + k, n - k, 0, dec + pd_n, dec_n - pd_n, msg, cap);
    }
    free(pd);
}

static int handle(const struct tokenizer *tok, const char *line) {
    int rc = 0;
    cJSON *j = cJSON_Parse(line);
    char *text = NULL, *dec = NULL, *dsk = NULL;
    int32_t *ids = NULL, *ids_ns = NULL;
    int n = 0, n_ns = 0;
    size_t text_n = 0, dec_n = 0, dsk_n = 0;
    char msg[256];
    if (!j) {
        printf("{\"error\":\"bad json\"}\n");
        return 0;
    }
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(j, "hex");
    const cJSON *jids = cJSON_GetObjectItemCaseSensitive(j, "ids");
    bool encode = cJSON_IsString(hex);
    if (encode) {
        if (from_hex(hex->valuestring, &text, &text_n)) {
            printf("{\"error\":\"bad hex\"}\n");
            goto out;
        }
        if (tokenizer_encode(tok, text, text_n, 1, &ids, &n) || tokenizer_encode(tok, text, text_n, 0, &ids_ns, &n_ns)) {
            cJSON *e = cJSON_CreateString(folio_last_error());
            char *es = cJSON_PrintUnformatted(e);
            printf("{\"error\":%s}\n", es);
            free(es);
            cJSON_Delete(e);
            goto out;
        }
    } else if (cJSON_IsArray(jids)) {
        n = cJSON_GetArraySize(jids);
        ids = malloc(sizeof *ids * (size_t)(n + 1));
        if (!ids) { rc = -1; goto out; }
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, jids) ids[i++] = (int32_t)it->valuedouble;
    } else {
        printf("{\"error\":\"need hex or ids\"}\n");
        goto out;
    }
    if (tok_decode(tok, ids, n, 0, &dec, &dec_n) || tok_decode(tok, ids, n, 1, &dsk, &dsk_n)) {
        printf("{\"error\":\"decode failed\"}\n");
        goto out;
    }
    check_detok(tok, ids, n, dec, dec_n, dsk, dsk_n, msg, sizeof msg);
    putchar('{');
    if (encode) {
        printf("\"ids\":");
        put_ids(ids, n);
        printf(",\"ids_ns\":");
        put_ids(ids_ns, n_ns);
        putchar(',');
    }
    printf("\"dec\":");
    put_hex(dec, dec_n);
    printf(",\"dec_skip\":");
    put_hex(dsk, dsk_n);
    cJSON *m = cJSON_CreateString(msg);
    char *ms = cJSON_PrintUnformatted(m);
    printf(",\"detok\":%s}\n", ms);
    free(ms);
    cJSON_Delete(m);
out:
    cJSON_Delete(j);
    free(text);
    free(dec);
    free(dsk);
    free(ids);
    free(ids_ns);
    return rc;
}

int main(int argc, char **argv) {
    struct tokenizer *tok = NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR [--text S | --bench FILE [N]]\n", argv[0]);
        return 2;
    }
    double t0 = folio_now();
    if (tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "tok_dump: %s\n", folio_last_error());
        return 1;
    }
    double t_load = folio_now() - t0;
    if (argc >= 4 && !strcmp(argv[2], "--text")) {
        int32_t *ids;
        int n;
        if (tokenizer_encode(tok, argv[3], strlen(argv[3]), 1, &ids, &n)) {
            fprintf(stderr, "tok_dump: %s\n", folio_last_error());
            tokenizer_free(tok);
            return 1;
        }
        for (int i = 0; i < n; i++) printf("%d\t%s\n", ids[i], tokenizer_id_to_piece(tok, ids[i]));
        free(ids);
    } else if (argc >= 4 && !strcmp(argv[2], "--bench")) {
        char *text;
        size_t len;
        int iters = argc >= 5 ? atoi(argv[4]) : 20;
        if (folio_read_file(argv[3], &text, &len)) {
            fprintf(stderr, "tok_dump: %s\n", folio_last_error());
            tokenizer_free(tok);
            return 1;
        }
        int n = 0;
        double t1 = folio_now();
        for (int i = 0; i < iters; i++) {
            int32_t *ids;
            if (tokenizer_encode(tok, text, len, 1, &ids, &n)) {
                fprintf(stderr, "tok_dump: %s\n", folio_last_error());
                break;
            }
            free(ids);
        }
        double dt = (folio_now() - t1) / iters;
        printf("load %.1f ms; encode %zu bytes -> %d tokens: %.2f ms\n", t_load * 1e3, len, n, dt * 1e3);
        free(text);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        while ((got = getline(&line, &cap, stdin)) > 0) {
            if (got <= 1) continue;
            if (handle(tok, line)) break;
            fflush(stdout);
        }
        free(line);
    }
    tokenizer_free(tok);
    return 0;
}
