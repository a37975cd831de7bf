/* responses: see responses.h. Three parts: the turn (a request's members, the expanded body),
 * the capture (the engine's answer, a JSON body or an SSE stream, read as it passes), and the
 * reads of what is stored (GET, DELETE, input_items). */
#include "responses.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_model.h"
#include "store.h"
#include "base/sbuf.h"
#include "base/util.h"

#define RESP_ID_MAX 64

struct responses {
    struct store *store;
    int64_t ttl_s, max_bytes;
    size_t max_body;
};

/* Where a line of the SSE stream is (the capture reads it a byte run at a time). */
enum sse_at { SSE_LINE_START, SSE_NAME, SSE_SPACE, SSE_VALUE };
enum sse_field { SSE_OTHER, SSE_EVENT, SSE_DATA };

struct responses_turn {
    struct responses *r;
    int64_t owner;
    int store;                /* the answer is to be kept: X-Folio-Store was sent */
    char headers[160];
    const char *body;         /* for the engine: the caller's, or own_body */
    size_t len;
    char *own_body;
    const char *items;        /* this turn's whole input conversation, a JSON array, for its row */
    size_t items_len;
    char *own_items;

    /* The capture. */
    enum { CAP_NONE, CAP_JSON, CAP_SSE } mode;
    int finished;             /* stored, or nothing more to look at */
    int overflow;             /* the JSON body or the current event is over max_body: not kept */
    struct sbuf buf;          /* the JSON body, or the current event's data */
    enum sse_at at;
    enum sse_field field;
    int after_cr;             /* the last byte ended a line with \r: a \n next is the same end */
    int data_lines;
    char name[16];            /* the field name being read */
    size_t name_len;
    char event[48];           /* the current event's name ("" when none, or too long) */
    size_t event_len;
    char stored[RESP_ID_MAX + 1];
};

struct responses_params responses_default_params(void) {
    return (struct responses_params){.ttl_s = 30 * 86400, .max_bytes = (int64_t)1 << 30, .max_body = 16u << 20};
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_err(struct responses_error *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int set_err(struct responses_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status == 404 ? FOLIO_ENOTFOUND : status >= 500 ? FOLIO_EIO : FOLIO_EINVAL;
}

int responses_create(const struct responses_params *p, struct responses **out) {
    *out = NULL;
    if (!p->store || p->ttl_s < 0 || p->max_bytes <= 0 || p->max_body == 0)
        return folio_err(FOLIO_EINVAL, "responses: bad parameters");
    struct responses *r = calloc(1, sizeof *r);
    if (!r) return folio_err(FOLIO_ENOMEM, "out of memory");
    r->store = p->store;
    r->ttl_s = p->ttl_s;
    r->max_bytes = p->max_bytes;
    r->max_body = p->max_body;
    /* Rows expired while foliod was down; later ones go as each new response is stored. */
    int rc = store_response_purge(r->store, now_ms(), NULL);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void responses_free(struct responses *r) { free(r); }

/* A response id: what OpenAI's look like (resp_<hex>), 1-64 of [A-Za-z0-9_-]. Checked before
 * an id goes into a header, a message or a query. */
static int id_ok(const char *id) {
    const size_t n = strlen(id);
    return n > 0 && n <= RESP_ID_MAX &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* ---- the turn ---- */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The elements of the JSON array text[0..len) as one span (between the brackets, blanks
 * trimmed; empty for []). The text was validated by the scan or written by us. */
static void array_inner(const char *text, size_t len, const char **p, size_t *n) {
    size_t a = 0, b = len;
    while (a < b && is_ws(text[a])) a++;
    while (b > a && is_ws(text[b - 1])) b--;
    if (b - a < 2 || text[a] != '[' || text[b - 1] != ']') {
        *p = text;
        *n = 0;
        return;
    }
    a++;
    b--;
    while (a < b && is_ws(text[a])) a++;
    while (b > a && is_ws(text[b - 1])) b--;
    *p = text + a;
    *n = b - a;
}

/* The message a string input stands for, {"role":"user","content":<the literal>}: the
 * literal is copied as it was sent (escapes and all). */
static const char user_open[] = "{\"role\":\"user\",\"content\":";

/* An edit of the request body: [start, end) replaced by text (start == end: inserted). */
struct edit {
    size_t start, end;
    const char *text;
    size_t n;
    int items; /* this edit's text is the turn's input array (recorded where it lands) */
};

/* The body, less and plus the edits, into out; *items_at is where the edit marked items
 * landed. Inserts (start == end) at one place go in the order given. */
static int apply_edits(const char *body, size_t len, struct edit *ed, int n, struct sbuf *out, size_t *items_at) {
    /* By position, stable (inserts keep their order): five at most. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ed[j].start < ed[j - 1].start; j--) {
            struct edit x = ed[j];
            ed[j] = ed[j - 1];
            ed[j - 1] = x;
        }
    size_t at = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = sbuf_put(out, body + at, ed[i].start - at);
        if (ed[i].items) *items_at = out->n;
        if (!rc) rc = sbuf_put(out, ed[i].text, ed[i].n);
        at = ed[i].end;
    }
    return rc ? rc : sbuf_put(out, body + at, len - at);
}

/* With previous_response_id: the body the engine gets. Its input is the stored turn's
 * request_items, then its output items, then this request's input (a string as a user
 * message); previous_response_id becomes null (the engine refuses any other value) and an
 * absent or null model becomes the stored turn's. The stored texts are freed as soon as the
 * new input array is built from them: at most the body, the array and the new body are held. */
static int expand(struct responses_turn *t, const char *prev, const struct json_member *mm, struct responses_error *err) {
    const struct json_member *model = &mm[0], *input = &mm[1], *prid = &mm[3];
    struct responses *r = t->r;
    struct store_response row;
    struct sbuf arr = {0}, lit = {0}, out = {0};
    int rc = store_response_get(r->store, prev, t->owner, now_ms(), STORE_RESP_ITEMS | STORE_RESP_OUTPUT, &row);
    if (rc == FOLIO_ENOTFOUND) {
        rc = set_err(err, 404, "invalid_request_error", "previous_response_id",
                     "Previous response with id '%s' not found.", prev);
        goto out;
    }
    if (rc) {
        rc = set_err(err, 500, "server_error", NULL, "cannot read the stored responses: %s", folio_last_error());
        goto out;
    }
    /* The new input array's parts: the stored turn's input, its output, this input. */
    const char *parts[3] = {NULL, NULL, NULL};
    size_t part_n[3] = {0, 0, 0};
    array_inner(row.request_items, row.request_items_len, &parts[0], &part_n[0]);
    array_inner(row.output, row.output_len, &parts[1], &part_n[1]);
    const int as_message = input->kind == JSON_MODEL_STRING;
    if (input->kind == JSON_MODEL_OTHER && t->body[input->start] == '[') {
        array_inner(t->body + input->start, input->end - input->start, &parts[2], &part_n[2]);
    } else if (input->kind == JSON_MODEL_OTHER) {
        rc = set_err(err, 400, "invalid_request_error", "input", "input must be a string or an array of input items");
        goto out;
    }
    const size_t in_span = input->kind == JSON_MODEL_ABSENT ? 0 : input->end - input->start;
    if (sbuf_put_json_string(&lit, row.model, strlen(row.model))) goto oom;

    /* The size first: a conversation over the limit is refused before it is built. */
    size_t arr_n = 2, nparts = 0;
    for (int i = 0; i < 3; i++) arr_n += part_n[i], nparts += part_n[i] > 0;
    if (as_message) arr_n += sizeof user_open - 1 + in_span + 1, nparts++;
    if (nparts > 1) arr_n += nparts - 1;
    static const char model_key[] = "\"model\":", input_key[] = "\"input\":";
    size_t total = t->len - in_span + arr_n - (prid->end - prid->start) + 4;
    if (input->kind == JSON_MODEL_ABSENT) total += sizeof input_key - 1 + 1;
    if (model->kind == JSON_MODEL_ABSENT) total += sizeof model_key - 1 + lit.n + 1;
    if (model->kind == JSON_MODEL_NULL) total += lit.n - 4;
    if (total > r->max_body) {
        rc = set_err(err, 400, "invalid_request_error", "input",
                     "the conversation is too long: with the turns before previous_response_id '%s' the request "
                     "would be %zu KiB, over foliod's limit of %zu KiB on a request body (--max-body)",
                     prev, (total + 1023) >> 10, r->max_body >> 10);
        goto out;
    }
    int any = 0;
    if (sbuf_reserve(&arr, arr_n) || sbuf_put(&arr, "[", 1)) goto oom;
    for (int i = 0; i < 3; i++) {
        if (!part_n[i]) continue;
        if ((any && sbuf_put(&arr, ",", 1)) || sbuf_put(&arr, parts[i], part_n[i])) goto oom;
        any = 1;
    }
    if (as_message && ((any && sbuf_put(&arr, ",", 1)) || sbuf_put(&arr, user_open, sizeof user_open - 1) ||
                       sbuf_put(&arr, t->body + input->start, in_span) || sbuf_put(&arr, "}", 1)))
        goto oom;
    if (sbuf_put(&arr, "]", 1)) goto oom;
    store_response_clear(&row); /* copied: not held while the turn streams */

    /* Inserts go just after the '{' (the object holds previous_response_id, so a comma after
     * each is right), replacements where their members are. */
    size_t open = 0;
    while (open < t->len && t->body[open] != '{') open++;
    open++;
    struct edit ed[8];
    int ne = 0;
    if (model->kind == JSON_MODEL_ABSENT) {
        ed[ne++] = (struct edit){open, open, model_key, sizeof model_key - 1, 0};
        ed[ne++] = (struct edit){open, open, lit.p, lit.n, 0};
        ed[ne++] = (struct edit){open, open, ",", 1, 0};
    } else if (model->kind == JSON_MODEL_NULL) {
        ed[ne++] = (struct edit){model->start, model->end, lit.p, lit.n, 0};
    }
    if (input->kind == JSON_MODEL_ABSENT) {
        ed[ne++] = (struct edit){open, open, input_key, sizeof input_key - 1, 0};
        ed[ne++] = (struct edit){open, open, arr.p, arr.n, 1};
        ed[ne++] = (struct edit){open, open, ",", 1, 0};
    } else {
        ed[ne++] = (struct edit){input->start, input->end, arr.p, arr.n, 1};
    }
    ed[ne++] = (struct edit){prid->start, prid->end, "null", 4, 0};
    size_t items_at = 0;
    if (sbuf_reserve(&out, total) || apply_edits(t->body, t->len, ed, ne, &out, &items_at)) goto oom;
    t->own_body = out.p;
    t->body = out.p;
    t->len = out.n;
    t->items = out.p + items_at;
    t->items_len = arr.n;
    out = (struct sbuf){0};
    rc = 0;
    goto out;
oom:
    rc = set_err(err, 500, "server_error", NULL, "out of memory");
out:
    store_response_clear(&row);
    sbuf_free(&arr);
    sbuf_free(&lit);
    sbuf_free(&out);
    return rc;
}

int responses_turn_begin(struct responses *r, int64_t owner, const char *body, size_t len,
                         struct responses_turn **out, struct responses_error *err) {
    *out = NULL;
    struct json_member mm[4] = {{.name = "model"}, {.name = "input"}, {.name = "store"},
                                {.name = "previous_response_id"}};
    const struct json_member *input = &mm[1], *store = &mm[2], *prid = &mm[3];
    if (json_model_members(body, len, mm, 4))
        return set_err(err, 400, "invalid_request_error", NULL, "%s", folio_last_error());
    char prev[RESP_ID_MAX + 1] = "";
    if (prid->kind == JSON_MODEL_STRING) {
        if (json_model_decode(body, prid->start, prid->end, prev, sizeof prev) || !id_ok(prev))
            return set_err(err, 400, "invalid_request_error", "previous_response_id",
                           "previous_response_id must be a response id: 1-64 of A-Z a-z 0-9 _ -");
    } else if (prid->kind == JSON_MODEL_OTHER) {
        return set_err(err, 400, "invalid_request_error", "previous_response_id",
                       "previous_response_id must be a string");
    }
    struct responses_turn *t = calloc(1, sizeof *t);
    if (!t) return set_err(err, 500, "server_error", NULL, "out of memory");
    t->r = r;
    t->owner = owner;
    t->body = body;
    t->len = len;
    /* OpenAI's default is to store; only a literal false opts out (any other non-boolean is
     * the engine's to refuse). */
    const int store_false =
        store->kind == JSON_MODEL_OTHER && store->end - store->start == 5 && !memcmp(body + store->start, "false", 5);
    t->store = r->ttl_s > 0 && !store_false;
    int rc = 0;
    if (prev[0]) {
        rc = expand(t, prev, mm, err);
    } else if (!t->store) {
        /* Nothing will be kept: the items are not needed. */
    } else if (input->kind == JSON_MODEL_STRING) {
        /* The row keeps the input as the message it stands for. */
        struct sbuf b = {0};
        rc = sbuf_put(&b, "[", 1) || sbuf_put(&b, user_open, sizeof user_open - 1) ||
             sbuf_put(&b, body + input->start, input->end - input->start) || sbuf_put(&b, "}]", 2);
        if (rc) {
            sbuf_free(&b);
            rc = set_err(err, 500, "server_error", NULL, "out of memory");
        } else {
            t->own_items = b.p;
            t->items = b.p;
            t->items_len = b.n;
        }
    } else if (input->kind == JSON_MODEL_OTHER && body[input->start] == '[') {
        t->items = body + input->start;
        t->items_len = input->end - input->start;
    } else {
        t->items = "[]";
        t->items_len = 2;
    }
    if (rc) {
        responses_turn_free(t);
        return rc;
    }
    snprintf(t->headers, sizeof t->headers, "%s%s%s%s", t->store ? "X-Folio-Store: 1\r\n" : "",
             prev[0] ? "X-Folio-Previous-Response-Id: " : "", prev, prev[0] ? "\r\n" : "");
    *out = t;
    return 0;
}

const char *responses_turn_body(const struct responses_turn *t, size_t *len) {
    *len = t->len;
    return t->body;
}

const char *responses_turn_headers(const struct responses_turn *t) { return t->headers; }

const char *responses_turn_stored(const struct responses_turn *t) { return t->stored[0] ? t->stored : NULL; }

void responses_turn_free(struct responses_turn *t) {
    if (!t) return;
    free(t->own_body);
    free(t->own_items);
    sbuf_free(&t->buf);
    free(t);
}

/* ---- the capture ---- */

/* A string member's value decoded into out, or "" when it is not a string or does not fit. */
static void member_string(const char *text, const struct json_member *m, char *out, size_t cap) {
    out[0] = '\0';
    if (m->kind != JSON_MODEL_STRING || json_model_decode(text, m->start, m->end, out, cap)) out[0] = '\0';
}

/* The final response object text[0..len): stored when it is a finished response with an id
 * and its output items. A failure costs the client nothing but the row; it is logged. */
static void keep(struct responses_turn *t, const char *text, size_t len) {
    t->finished = 1;
    struct json_member mm[5] = {{.name = "id"}, {.name = "model"}, {.name = "status"}, {.name = "created_at"},
                                {.name = "output"}};
    if (json_model_members(text, len, mm, 5)) {
        fprintf(stderr, "foliod: responses: the engine's response is not a JSON object: %s\n", folio_last_error());
        return;
    }
    struct store_response row = {0};
    char status[32];
    member_string(text, &mm[0], row.id, sizeof row.id);
    member_string(text, &mm[1], row.model, sizeof row.model);
    member_string(text, &mm[2], status, sizeof status);
    if (!id_ok(row.id) || (strcmp(status, "completed") != 0 && strcmp(status, "incomplete") != 0) ||
        mm[4].kind != JSON_MODEL_OTHER || text[mm[4].start] != '[')
        return; /* failed, cancelled, or not a response: nothing to continue from */
    if (mm[3].kind == JSON_MODEL_OTHER) row.created_at = strtoll(text + mm[3].start, NULL, 10);
    const int64_t now = now_ms();
    row.owner = t->owner;
    row.expires_at = now + t->r->ttl_s * 1000;
    row.request_items = (char *)t->items;
    row.request_items_len = t->items_len;
    row.output = (char *)text + mm[4].start;
    row.output_len = mm[4].end - mm[4].start;
    row.response = (char *)text;
    row.response_len = len;
    int evicted = 0;
    if (store_response_put(t->r->store, &row, t->r->max_bytes, now, &evicted)) {
        fprintf(stderr, "foliod: responses: not stored: %s\n", folio_last_error());
        return;
    }
    memcpy(t->stored, row.id, sizeof t->stored);
}

void responses_turn_on_head(void *turn, int status, const char *content_type) {
    struct responses_turn *t = turn;
    t->mode = CAP_NONE;
    if (!t->store || status != 200) return;
    if (!strncmp(content_type, "text/event-stream", 17)) t->mode = CAP_SSE;
    else if (!strncmp(content_type, "application/json", 16)) t->mode = CAP_JSON;
}

/* Appends to the capture buffer unless that would pass max_body. */
static void cap_put(struct responses_turn *t, const char *p, size_t n) {
    if (t->overflow) return;
    if (t->buf.n + n > t->r->max_body || sbuf_put(&t->buf, p, n)) {
        t->overflow = 1;
        if (t->mode == CAP_JSON) sbuf_free(&t->buf);
    }
}

/* An event ended: the final one (response.completed / response.incomplete, named by its
 * event: line or by its data's "type") is the response to keep. */
static void sse_dispatch(struct responses_turn *t) {
    if (t->data_lines && !t->overflow) {
        struct json_member mm[2] = {{.name = "type"}, {.name = "response"}};
        char type[48] = "";
        const char *kind = t->event;
        if (!json_model_members(t->buf.p, t->buf.n, mm, 2)) {
            member_string(t->buf.p, &mm[0], type, sizeof type);
            if (!kind[0]) kind = type;
            if ((!strcmp(kind, "response.completed") || !strcmp(kind, "response.incomplete")) &&
                mm[1].kind == JSON_MODEL_OTHER && t->buf.p[mm[1].start] == '{')
                keep(t, t->buf.p + mm[1].start, mm[1].end - mm[1].start);
        }
        if (!strcmp(kind, "response.failed") || !strcmp(kind, "error")) t->finished = 1;
    }
    t->buf.n = 0; /* the memory stays for the next event: the largest one is what is held */
    t->overflow = 0;
    t->data_lines = 0;
    t->event[0] = '\0';
    t->event_len = 0;
}

static void sse_line_end(struct responses_turn *t) {
    if (t->at == SSE_LINE_START) {
        sse_dispatch(t);
    } else if (t->at == SSE_NAME && t->name_len == 4 && !memcmp(t->name, "data", 4)) {
        /* "data" alone: a data line with an empty value. */
        if (t->data_lines++) cap_put(t, "\n", 1);
    }
    t->at = SSE_LINE_START;
    t->name_len = 0;
    t->field = SSE_OTHER;
}

static void sse_feed(struct responses_turn *t, const char *p, size_t n) {
    for (size_t i = 0; i < n && !t->finished; i++) {
        const char c = p[i];
        if (t->after_cr && c == '\n') {
            t->after_cr = 0;
            continue;
        }
        t->after_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            sse_line_end(t);
            continue;
        }
        switch (t->at) {
        case SSE_LINE_START:
        case SSE_NAME:
            t->at = SSE_NAME;
            if (c != ':') {
                if (t->name_len < sizeof t->name) t->name[t->name_len] = c;
                t->name_len++;
                break;
            }
            t->field = t->name_len == 4 && !memcmp(t->name, "data", 4)    ? SSE_DATA
                       : t->name_len == 5 && !memcmp(t->name, "event", 5) ? SSE_EVENT
                                                                           : SSE_OTHER;
            if (t->field == SSE_DATA && t->data_lines++) cap_put(t, "\n", 1);
            if (t->field == SSE_EVENT) t->event_len = 0, t->event[0] = '\0';
            t->at = SSE_SPACE;
            break;
        case SSE_SPACE:
            t->at = SSE_VALUE;
            if (c == ' ') break;
            /* Not a space: the value's first byte. */
            /* fall through */
        case SSE_VALUE: {
            /* The rest of the line in one run: a final event may be megabytes. */
            size_t j = i;
            while (j < n && p[j] != '\n' && p[j] != '\r') j++;
            if (t->field == SSE_DATA) {
                cap_put(t, p + i, j - i);
            } else if (t->field == SSE_EVENT) {
                for (size_t k = i; k < j; k++) {
                    if (t->event_len + 1 < sizeof t->event) t->event[t->event_len] = p[k];
                    t->event_len++;
                }
                /* A name too long for the buffer is no name this capture looks for. */
                if (t->event_len < sizeof t->event) t->event[t->event_len] = '\0';
                else t->event[0] = '\0';
            }
            i = j - 1;
            break;
        }
        }
    }
}

void responses_turn_on_body(void *turn, const char *p, size_t n) {
    struct responses_turn *t = turn;
    if (t->finished) return;
    if (t->mode == CAP_JSON) cap_put(t, p, n);
    else if (t->mode == CAP_SSE) sse_feed(t, p, n);
}

void responses_turn_on_end(void *turn) {
    struct responses_turn *t = turn;
    if (t->finished) return;
    if (t->mode == CAP_JSON && !t->overflow && t->buf.p) keep(t, t->buf.p, t->buf.n);
    t->finished = 1;
}

/* ---- what is stored ---- */

static int not_found(struct responses_error *err, const char *id) {
    if (!id_ok(id)) return set_err(err, 404, "invalid_request_error", NULL, "No response with that id.");
    return set_err(err, 404, "invalid_request_error", NULL, "Response with id '%s' not found.", id);
}

/* A store read that failed: 404 for a row that is not there (or not this key's), else 500. */
static int read_failed(struct responses_error *err, int rc, const char *id) {
    if (rc == FOLIO_ENOTFOUND) return not_found(err, id);
    return set_err(err, 500, "server_error", NULL, "cannot read the stored responses: %s", folio_last_error());
}

int responses_get(struct responses *r, const char *id, int64_t owner, char **json, struct responses_error *err) {
    *json = NULL;
    if (!id_ok(id)) return not_found(err, id);
    struct store_response row;
    int rc = store_response_get(r->store, id, owner, now_ms(), STORE_RESP_RESPONSE, &row);
    if (rc) {
        store_response_clear(&row);
        return read_failed(err, rc, id);
    }
    *json = row.response; /* handed over */
    row.response = NULL;
    store_response_clear(&row);
    return 0;
}

int responses_delete(struct responses *r, const char *id, int64_t owner, char **json, struct responses_error *err) {
    *json = NULL;
    if (!id_ok(id)) return not_found(err, id);
    int rc = store_response_delete(r->store, id, owner, now_ms());
    if (rc) return read_failed(err, rc, id);
    const size_t cap = strlen(id) + 64;
    *json = malloc(cap);
    if (!*json) return set_err(err, 500, "server_error", NULL, "out of memory");
    snprintf(*json, cap, "{\"id\":\"%s\",\"object\":\"response\",\"deleted\":true}", id);
    return 0;
}

/* An input item as OpenAI lists it: {"role","content"} is a message, string content becomes
 * one text part, and an item without an id gets item_<index>. The stored conversation itself
 * stays as sent: it is what the engine reads again. */
static int show_item(cJSON *it, int index) {
    if (!cJSON_IsObject(it)) return 0;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
    if (!cJSON_HasObjectItem(it, "type") && cJSON_IsString(role) && !cJSON_AddStringToObject(it, "type", "message"))
        return FOLIO_ENOMEM;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
    cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "message") && cJSON_IsString(content)) {
        const int assistant = cJSON_IsString(role) && !strcmp(role->valuestring, "assistant");
        cJSON *parts = cJSON_CreateArray(), *part = cJSON_CreateObject();
        if (!parts || !part || !cJSON_AddStringToObject(part, "type", assistant ? "output_text" : "input_text") ||
            !cJSON_AddStringToObject(part, "text", content->valuestring) ||
            (assistant && !cJSON_AddArrayToObject(part, "annotations"))) {
            cJSON_Delete(parts);
            cJSON_Delete(part);
            return FOLIO_ENOMEM;
        }
        cJSON_AddItemToArray(parts, part);
        cJSON_ReplaceItemInObjectCaseSensitive(it, "content", parts);
    }
    if (!cJSON_HasObjectItem(it, "id")) {
        char id[32];
        snprintf(id, sizeof id, "item_%d", index);
        if (!cJSON_AddStringToObject(it, "id", id)) return FOLIO_ENOMEM;
    }
    return 0;
}

/* The position of the item with this id in order[0..n), or -1. */
static int find_item(cJSON **order, int n, const char *id) {
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(order[i], "id");
        if (cJSON_IsString(v) && !strcmp(v->valuestring, id)) return i;
    }
    return -1;
}

int responses_input_items(struct responses *r, const char *id, int64_t owner, const struct responses_list_query *q,
                          char **json, struct responses_error *err) {
    *json = NULL;
    int limit = 20, desc = 1;
    if (q->limit) {
        char *end = NULL;
        long v = strtol(q->limit, &end, 10);
        if (!*q->limit || *end || v < 1 || v > 100)
            return set_err(err, 400, "invalid_request_error", "limit", "limit must be an integer from 1 to 100");
        limit = (int)v;
    }
    if (q->order) {
        if (strcmp(q->order, "asc") != 0 && strcmp(q->order, "desc") != 0)
            return set_err(err, 400, "invalid_request_error", "order", "order must be asc or desc");
        desc = !strcmp(q->order, "desc");
    }
    if (!id_ok(id)) return not_found(err, id);
    struct store_response row;
    int rc = store_response_get(r->store, id, owner, now_ms(), STORE_RESP_ITEMS, &row);
    if (rc) {
        store_response_clear(&row);
        return read_failed(err, rc, id);
    }
    cJSON *items = cJSON_ParseWithLength(row.request_items, row.request_items_len);
    store_response_clear(&row);
    cJSON *page = NULL, **order = NULL;
    char *text = NULL;
    if (!cJSON_IsArray(items)) {
        rc = set_err(err, 500, "server_error", NULL, "the stored input of response %s is not a JSON array", id);
        goto out;
    }
    const int n = cJSON_GetArraySize(items);
    order = calloc((size_t)n + 1, sizeof *order);
    if (!order) goto oom;
    int k = 0;
    for (cJSON *it = items->child; it; it = it->next, k++) {
        if (show_item(it, k)) goto oom;
        order[desc ? n - 1 - k : k] = it;
    }
    /* The page: after an id, before an id, or from the start of the order. */
    int lo = 0, hi = n;
    if (q->after && q->after[0]) {
        const int p = find_item(order, n, q->after);
        if (p < 0) {
            rc = set_err(err, 400, "invalid_request_error", "after", "No input item with id '%.64s' in response %s.",
                         q->after, id);
            goto out;
        }
        lo = p + 1;
    }
    if (q->before && q->before[0]) {
        const int p = find_item(order, n, q->before);
        if (p < 0) {
            rc = set_err(err, 400, "invalid_request_error", "before", "No input item with id '%.64s' in response %s.",
                         q->before, id);
            goto out;
        }
        hi = p < hi ? p : hi;
        /* Before a cursor the page is the items just before it. */
        if (hi - lo > limit) lo = hi - limit;
    }
    if (lo > hi) lo = hi;
    const int end = hi - lo > limit ? lo + limit : hi;
    /* In OpenAI's member order: object, data, first_id, last_id, has_more. */
    page = cJSON_CreateObject();
    if (!page || !cJSON_AddStringToObject(page, "object", "list")) goto oom;
    cJSON *data = cJSON_AddArrayToObject(page, "data");
    if (!data) goto oom;
    for (int i = lo; i < end; i++) {
        cJSON *dup = cJSON_Duplicate(order[i], 1);
        if (!dup) goto oom;
        cJSON_AddItemToArray(data, dup);
    }
    for (int which = 0; which < 2; which++) {
        const cJSON *v = end > lo ? cJSON_GetObjectItemCaseSensitive(order[which ? end - 1 : lo], "id") : NULL;
        const char *key = which ? "last_id" : "first_id";
        if (!(cJSON_IsString(v) ? cJSON_AddStringToObject(page, key, v->valuestring) : cJSON_AddNullToObject(page, key)))
            goto oom;
    }
    /* More in the listing's direction; before a cursor, more before the page. */
    const int more = q->before && q->before[0] ? lo > 0 : end < hi;
    if (!cJSON_AddBoolToObject(page, "has_more", more)) goto oom;
    text = cJSON_PrintUnformatted(page);
    if (!text) goto oom;
    *json = text;
    rc = 0;
    goto out;
oom:
    rc = set_err(err, 500, "server_error", NULL, "out of memory");
out:
    cJSON_Delete(items);
    cJSON_Delete(page);
    free(order);
    return rc;
}

int responses_usage(struct responses *r, int64_t *bytes, int64_t *rows) {
    return store_response_usage(r->store, bytes, rows);
}
