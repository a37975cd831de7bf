/* responses: foliod's stored /v1/responses (daemon/responses.c) on a real store in scratch
 * space: the rows (TTL, owner, the size bound with the oldest out), a turn's expanded body,
 * and the capture of an engine's answer, JSON or SSE, cut at every byte. */
#include "json_model.h"
#include "responses.h"
#include "store.h"
#include "test.h"
#include "base/util.h"

#include <stdlib.h>
#include <time.h>

static struct store *open_store(const char *name) {
    char path[512];
    const char *d = getenv("FOLIO_DB_DIR");
    snprintf(path, sizeof path, "%s/%s", test_tmp_dir(), name);
    struct store *s = NULL;
    CHECK_EQ_INT(store_open(path, d && *d ? d : "db", &s), 0);
    return s;
}

static int64_t wall_ms(void) { return (int64_t)time(NULL) * 1000; }

static struct store_response row(const char *id, int64_t owner, const char *items, const char *output, int64_t expires) {
    struct store_response r = {.owner = owner, .created_at = 1, .expires_at = expires};
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.model, sizeof r.model, "m");
    r.request_items = (char *)items;
    r.request_items_len = strlen(items);
    r.output = (char *)output;
    r.output_len = strlen(output);
    r.response = (char *)"{}";
    r.response_len = 2;
    return r;
}

TEST(json_model_members_finds_several) {
    const char *s = "{\"model\":\"m\",\"inp\\u0075t\":[1,{\"input\":2}],\"store\":false,\"x\":{\"store\":1}}";
    struct json_member m[4] = {{.name = "model"}, {.name = "input"}, {.name = "store"}, {.name = "previous_response_id"}};
    CHECK_EQ_INT(json_model_members(s, strlen(s), m, 4), 0);
    CHECK_EQ_INT(m[0].kind, JSON_MODEL_STRING);
    CHECK_EQ_INT(m[1].kind, JSON_MODEL_OTHER); /* the escaped name, at the top level only */
    CHECK(!strncmp(s + m[1].start, "[1,{\"input\":2}]", m[1].end - m[1].start));
    CHECK_EQ_INT(m[2].kind, JSON_MODEL_OTHER);
    CHECK(!strncmp(s + m[2].start, "false", 5));
    CHECK_EQ_INT(m[3].kind, JSON_MODEL_ABSENT);
    CHECK_EQ_INT(m[3].start, 1);
    const char *twice = "{\"input\":1,\"input\":2}";
    CHECK(json_model_members(twice, strlen(twice), m, 4) != 0);
    CHECK(strstr(folio_last_error(), "\"input\" is given twice") != NULL);
}

TEST(store_responses_ttl_owner_and_size_bound) {
    struct store *s = open_store("responses_rows.db");
    if (!s) return;
    const int64_t now = wall_ms();
    struct store_response a = row("resp_a", 0, "[1]", "[2]", now + 10000);
    int ev = -1;
    CHECK_EQ_INT(store_response_put(s, &a, 1000, now, &ev), 0);
    CHECK_EQ_INT(ev, 0);
    CHECK_EQ_INT(store_response_put(s, &a, 1000, now, NULL), FOLIO_EEXIST);
    struct store_response got;
    CHECK_EQ_INT(store_response_get(s, "resp_a", 0, now, STORE_RESP_ITEMS, &got), 0);
    CHECK_STR(got.request_items, "[1]");
    CHECK(got.output == NULL && got.response == NULL); /* not asked for */
    store_response_clear(&got);
    CHECK_EQ_INT(store_response_get(s, "resp_a", 7, now, STORE_RESP_ITEMS, &got), FOLIO_ENOTFOUND); /* another key's */
    CHECK_EQ_INT(store_response_get(s, "resp_a", 0, now + 10000, 0, &got), FOLIO_ENOTFOUND);        /* expired */
    CHECK_EQ_INT(store_response_delete(s, "resp_a", 7, now), FOLIO_ENOTFOUND);
    /* The bound: each row is 3 + 3 + 2 + 6 + 1 = 15 bytes; 40 bytes keep two. */
    struct store_response b = row("resp_b", 0, "[1]", "[2]", now + 10000), c = row("resp_c", 0, "[1]", "[2]", now + 10000);
    CHECK_EQ_INT(store_response_put(s, &b, 40, now, &ev), 0);
    CHECK_EQ_INT(ev, 0);
    CHECK_EQ_INT(store_response_put(s, &c, 40, now, &ev), 0);
    CHECK_EQ_INT(ev, 1);
    CHECK_EQ_INT(store_response_get(s, "resp_a", 0, now, 0, &got), FOLIO_ENOTFOUND); /* the oldest went */
    CHECK_EQ_INT(store_response_get(s, "resp_c", 0, now, 0, &got), 0);
    int64_t bytes = 0, rows = 0;
    CHECK_EQ_INT(store_response_usage(s, &bytes, &rows), 0);
    CHECK_EQ_INT(bytes, 30);
    CHECK_EQ_INT(rows, 2);
    struct store_response big = row("resp_d", 0, "[1111111111111111111111111111111111111]", "[]", now + 1);
    CHECK_EQ_INT(store_response_put(s, &big, 40, now, &ev), FOLIO_EINVAL); /* over the bound alone */
    struct store_response bad = row("resp d", 0, "[]", "[]", now + 1);
    CHECK_EQ_INT(store_response_put(s, &bad, 40, now, &ev), FOLIO_EINVAL);
    /* Expired rows are purged by the next put, and by purge. */
    struct store_response e = row("resp_e", 0, "[]", "[]", now + 1);
    CHECK_EQ_INT(store_response_put(s, &e, 1000, now, &ev), 0);
    int n = 0;
    CHECK_EQ_INT(store_response_purge(s, now + 1, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(store_response_delete(s, "resp_b", 0, now), 0);
    CHECK_EQ_INT(store_response_usage(s, &bytes, &rows), 0);
    CHECK_EQ_INT(bytes, 15);
    CHECK_EQ_INT(rows, 1);
    store_close(s);
}

static struct responses *open_responses(struct store *s, size_t max_body) {
    struct responses_params p = responses_default_params();
    p.store = s;
    p.max_body = max_body;
    struct responses *r = NULL;
    CHECK_EQ_INT(responses_create(&p, &r), 0);
    return r;
}

/* A turn's answer, fed to the capture in pieces of `step` bytes (0: all at once). */
static void feed(struct responses_turn *t, const char *ctype, const char *text, size_t step) {
    responses_turn_on_head(t, 200, ctype);
    const size_t n = strlen(text);
    if (!step) step = n;
    for (size_t i = 0; i < n; i += step) responses_turn_on_body(t, text + i, i + step > n ? n - i : step);
    responses_turn_on_end(t);
}

TEST(responses_turn_expands_and_captures) {
    struct store *s = open_store("responses_turns.db");
    struct responses *r = s ? open_responses(s, 4096) : NULL;
    if (!r) goto out;
    struct responses_error err;
    struct responses_turn *t = NULL;
    const char *b1 = "{\"model\":\"m\",\"input\":\"Hi \\\"you\\\"\",\"max_output_tokens\":4}";
    CHECK_EQ_INT(responses_turn_begin(r, 3, b1, strlen(b1), &t, &err), 0);
    if (!t) goto out;
    CHECK_STR(responses_turn_headers(t), "X-Folio-Store: 1\r\n");
    size_t len = 0;
    CHECK(responses_turn_body(t, &len) == b1);
    feed(t, "application/json",
         "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":5,\"status\":\"completed\",\"model\":\"m\","
         "\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"A\"}]}]}",
         7);
    CHECK_STR(responses_turn_stored(t), "resp_1");
    responses_turn_free(t);

    /* The second turn: stored input, stored output, then this one; model from the row. */
    const char *b2 = "{ \"previous_response_id\" : \"resp_1\", \"input\": [{\"role\":\"user\",\"content\":\"Q\"}] }";
    CHECK_EQ_INT(responses_turn_begin(r, 3, b2, strlen(b2), &t, &err), 0);
    if (!t) goto out;
    CHECK_STR(responses_turn_headers(t), "X-Folio-Store: 1\r\nX-Folio-Previous-Response-Id: resp_1\r\n");
    CHECK_STR(responses_turn_body(t, &len),
              "{\"model\":\"m\", \"previous_response_id\" : null, \"input\": [{\"role\":\"user\",\"content\":\"Hi "
              "\\\"you\\\"\"},{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
              "\"text\":\"A\"}]},{\"role\":\"user\",\"content\":\"Q\"}] }");
    /* Streamed, cut at every byte, with CRLF lines: only the final event is kept. */
    const char *sse =
        "event: response.created\r\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"status\":"
        "\"in_progress\",\"output\":[]}}\r\n\r\n"
        ": a comment\n"
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\n"
        "data: \"response\":{\"id\":\"resp_2\",\"created_at\":6,\"status\":\"completed\",\"model\":\"m\",\"output\":[]}}\n\n";
    feed(t, "text/event-stream", sse, 1);
    CHECK_STR(responses_turn_stored(t), "resp_2");
    responses_turn_free(t);
    struct store_response got;
    CHECK_EQ_INT(store_response_get(s, "resp_2", 3, wall_ms(), STORE_RESP_ITEMS | STORE_RESP_RESPONSE, &got), 0);
    CHECK(got.request_items && strstr(got.request_items, "\"content\":\"Q\"}]") != NULL);
    CHECK_STR(got.response, "{\"id\":\"resp_2\",\"created_at\":6,\"status\":\"completed\",\"model\":\"m\",\"output\":[]}");
    CHECK_EQ_INT(got.created_at, 6);
    store_response_clear(&got);

    /* No input, no model, a null model: inserted or replaced. store:false: no header, no row. */
    const char *b3 = "{\"previous_response_id\":\"resp_2\",\"store\":false}";
    CHECK_EQ_INT(responses_turn_begin(r, 3, b3, strlen(b3), &t, &err), 0);
    if (!t) goto out;
    CHECK_STR(responses_turn_headers(t), "X-Folio-Previous-Response-Id: resp_2\r\n");
    const char *body3 = responses_turn_body(t, &len);
    CHECK(!strncmp(body3, "{\"model\":\"m\",\"input\":[{\"role\":\"user\"", 36));
    CHECK(strstr(body3, "\"previous_response_id\":null,\"store\":false}") != NULL);
    feed(t, "application/json", "{\"id\":\"resp_3\",\"status\":\"completed\",\"output\":[]}", 0);
    CHECK(responses_turn_stored(t) == NULL);
    responses_turn_free(t);

    /* Errors: unknown (or another key's) id 404, a bad id or input 400, too long 400. */
    CHECK(responses_turn_begin(r, 4, b2, strlen(b2), &t, &err) != 0);
    CHECK_EQ_INT(err.status, 404);
    CHECK_STR(err.param, "previous_response_id");
    const char *b4 = "{\"previous_response_id\":\"resp 1\"}";
    CHECK(responses_turn_begin(r, 3, b4, strlen(b4), &t, &err) != 0);
    CHECK_EQ_INT(err.status, 400);
    const char *b5 = "{\"previous_response_id\":\"resp_1\",\"input\":{}}";
    CHECK(responses_turn_begin(r, 3, b5, strlen(b5), &t, &err) != 0);
    CHECK_STR(err.param, "input");
    char big[4200];
    snprintf(big, sizeof big, "{\"previous_response_id\":\"resp_1\",\"input\":\"%04000d\"}", 0);
    CHECK(responses_turn_begin(r, 3, big, strlen(big), &t, &err) != 0);
    CHECK_EQ_INT(err.status, 400);
    CHECK(strstr(err.message, "conversation is too long") != NULL);
    CHECK(t == NULL);

    /* A failed answer, an error status, an answer over max_body: nothing kept. */
    CHECK_EQ_INT(responses_turn_begin(r, 3, b1, strlen(b1), &t, &err), 0);
    if (!t) goto out;
    feed(t, "text/event-stream",
         "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_9\",\"status\":"
         "\"failed\",\"output\":[]}}\n\n",
         3);
    CHECK(responses_turn_stored(t) == NULL);
    responses_turn_free(t);
    CHECK_EQ_INT(responses_turn_begin(r, 3, b1, strlen(b1), &t, &err), 0);
    if (!t) goto out;
    responses_turn_on_head(t, 400, "application/json");
    responses_turn_on_body(t, "{\"id\":\"resp_8\",\"status\":\"completed\",\"output\":[]}", 47);
    responses_turn_on_end(t);
    CHECK(responses_turn_stored(t) == NULL);
    responses_turn_free(t);
    CHECK_EQ_INT(responses_turn_begin(r, 3, b1, strlen(b1), &t, &err), 0);
    if (!t) goto out;
    char *huge = malloc(5000);
    if (huge) {
        snprintf(huge, 5000, "{\"id\":\"resp_7\",\"status\":\"completed\",\"output\":[],\"pad\":\"%04900d\"}", 0);
        feed(t, "application/json", huge, 1000);
        CHECK(responses_turn_stored(t) == NULL);
    }
    free(huge);
    responses_turn_free(t);

    /* Reads: GET, input_items (shown as OpenAI lists them, paged), DELETE. */
    char *json = NULL;
    CHECK_EQ_INT(responses_get(r, "resp_2", 3, &json, &err), 0);
    CHECK(json && strstr(json, "\"id\":\"resp_2\"") != NULL);
    free(json);
    const struct responses_list_query q = {.order = "asc", .limit = "2"};
    CHECK_EQ_INT(responses_input_items(r, "resp_2", 3, &q, &json, &err), 0);
    CHECK_STR(json, "{\"object\":\"list\",\"data\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":"
                    "\"Hi \\\"you\\\"\"}],\"type\":\"message\",\"id\":\"item_0\"},{\"type\":\"message\",\"role\":"
                    "\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"A\"}],\"id\":\"item_1\"}],"
                    "\"first_id\":\"item_0\",\"last_id\":\"item_1\",\"has_more\":true}");
    free(json);
    const struct responses_list_query q2 = {.after = "item_1"};
    CHECK_EQ_INT(responses_input_items(r, "resp_2", 3, &q2, &json, &err), 0);
    CHECK(json && strstr(json, "\"first_id\":\"item_0\",\"last_id\":\"item_0\",\"has_more\":false") != NULL);
    free(json);
    CHECK(responses_delete(r, "resp_2", 4, &json, &err) != 0);
    CHECK_EQ_INT(err.status, 404);
    CHECK_EQ_INT(responses_delete(r, "resp_2", 3, &json, &err), 0);
    CHECK_STR(json, "{\"id\":\"resp_2\",\"object\":\"response\",\"deleted\":true}");
    free(json);
    CHECK(responses_get(r, "resp_2", 3, &json, &err) != 0);
    CHECK_EQ_INT(err.status, 404);
out:
    responses_free(r);
    store_close(s);
}
