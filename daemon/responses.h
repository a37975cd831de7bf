/* responses: foliod's half of the OpenAI Responses API. folio-engine serves POST /v1/responses
 * and keeps nothing; foliod keeps each answer (unless the request says "store": false) in the
 * store's responses table, so that a later request may continue it with previous_response_id
 * and GET/DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items work.
 *
 * A request on its way (a "turn"): responses_turn_begin reads its top-level members by a scan
 * (json_model.h: no tree of a 16 MiB body) and, with previous_response_id, builds the body the
 * engine gets: input = the stored turn's whole input, its output items, then this input. The
 * proxy's taps (proxy.h) pass the engine's answer through the turn as it goes to the client:
 * a JSON body is kept whole (up to max_body), an SSE stream one event at a time, so that only
 * the final response.completed / response.incomplete event is ever held. That response is
 * stored before the last of it reaches the client.
 *
 * Socket-free: front.c does the HTTP; every function here is thread-safe (the store locks). */
#ifndef FOLIO_RESPONSES_H
#define FOLIO_RESPONSES_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct responses;
struct responses_turn;

struct responses_params {
    struct store *store;
    int64_t ttl_s;     /* how long a response is kept (30 days); 0: none is (every "store" is false) */
    int64_t max_bytes; /* all stored responses together (1 GiB): the oldest go to make room */
    size_t max_body;   /* the largest body an engine gets, an expanded conversation included, and the
                        * largest answer kept (16 MiB: foliod's --max-body) */
};
struct responses_params responses_default_params(void);

/* Deletes the expired rows once, then serves. Free with responses_free; NULL does nothing. */
int responses_create(const struct responses_params *p, struct responses **out);
void responses_free(struct responses *r);

/* What a failed call answers the client: an OpenAI error (base/openai_error.h). */
struct responses_error {
    int status;
    const char *type;  /* "invalid_request_error", "server_error" */
    const char *param; /* or NULL */
    char message[512];
};

/* ---- POST /v1/responses ---- */

/* Begins the turn of a request body (body[0..len), which must outlive the turn unless
 * responses_turn_body returns another pointer: then the turn holds nothing of it). owner is
 * the API key's id (0: none, see db/schema.sql): stored responses belong to it. On failure
 * *err says what to answer (400 bad body, 404 unknown previous_response_id, 400 an expanded
 * conversation over max_body, 500) and *out is NULL. Free with responses_turn_free. */
int responses_turn_begin(struct responses *r, int64_t owner, const char *body, size_t len,
                         struct responses_turn **out, struct responses_error *err);
/* The body for the engine: the caller's, or the expanded copy that the turn owns. */
const char *responses_turn_body(const struct responses_turn *t, size_t *len);
/* Request header lines for the engine (each ending in \r\n; "" for none): X-Folio-Store: 1
 * when the answer will be stored, X-Folio-Previous-Response-Id so that the engine's response
 * object names the turn it continues. */
const char *responses_turn_headers(const struct responses_turn *t);
/* The proxy's taps (struct proxy_extra), ud = the turn. */
void responses_turn_on_head(void *turn, int status, const char *content_type);
void responses_turn_on_body(void *turn, const char *p, size_t n);
void responses_turn_on_end(void *turn);
/* The id of the response the turn stored, or NULL (not stored, not yet, or it failed). */
const char *responses_turn_stored(const struct responses_turn *t);
void responses_turn_free(struct responses_turn *t);

/* ---- /v1/responses/{id} ----
 * Each returns 0 with *json malloc'd (the caller frees), or a negative code with *err set. */

/* GET: the response object as the client got it. */
int responses_get(struct responses *r, const char *id, int64_t owner, char **json, struct responses_error *err);
/* DELETE: {"id", "object":"response", "deleted":true}. */
int responses_delete(struct responses *r, const char *id, int64_t owner, char **json, struct responses_error *err);

/* GET .../input_items: OpenAI's list page, {"object":"list","data","first_id","last_id",
 * "has_more"}. Items are shown as OpenAI shows them (a "type", content parts, an "id": those
 * sent without one get item_<index>, the same in every later turn of the conversation). */
struct responses_list_query {
    const char *limit;  /* "1".."100" (20); the query's strings, or NULL */
    const char *order;  /* "asc" or "desc" (desc) */
    const char *after;  /* an item id: the page starts after it */
    const char *before; /* an item id: the page ends before it */
};
int responses_input_items(struct responses *r, const char *id, int64_t owner, const struct responses_list_query *q,
                          char **json, struct responses_error *err);

/* Stored rows and their bytes, for /metrics. */
int responses_usage(struct responses *r, int64_t *bytes, int64_t *rows);

#endif
