/* api: the OpenAI-compatible HTTP surface of one engine (CivetWeb): /v1/chat/completions,
 * /v1/completions, /v1/models, /tokenize, /detokenize, /health, /version, /metrics and
 * /stats. It listens before the model has loaded, so that /health answers "loading" at once;
 * api_attach hands it the engine once the model is ready. */
#ifndef FOLIO_API_H
#define FOLIO_API_H

#include <stddef.h>

#include "server/api_request.h"
#include "base/version.h"

#define API_MAX_NAMES 8

struct engine;

struct api_params {
    const char *host;               /* "127.0.0.1" (vLLM's default is 0.0.0.0; ours is loopback) */
    int port;                       /* 8000; 0 picks a free port (api_port tells which) */
    const char *names[API_MAX_NAMES]; /* --served-model-name: the first is the `model` id */
    int num_names;
    const char *model_path;         /* --model, the default name */
    const char *api_key;            /* NULL: no auth */
    const char *allowed_origins;    /* CORS: JSON list or comma-separated; NULL: none */
    const char *chat_template;      /* --chat-template file or text; NULL: the model's */
    const char *tool_call_parser;   /* --tool-call-parser NAME (tool_parser.h) or "none"; NULL: from the template */
    const char *reasoning_parser;   /* --reasoning-parser NAME (reasoning.h) or "none"; NULL: from the template */
    size_t max_body;                /* bytes; larger bodies get 413 (16 MiB) */
    int num_threads;                /* HTTP worker threads = concurrent connections (512) */
    struct api_limits limits;       /* per-request limits (api_request.h); zeros: the defaults */
    int timeout_s;                  /* client timeout: headers, body and write stalls (20; http_conn.h) */
    int max_conns_per_client;       /* connections per client address; 0 (the default): no cap */
    const char *server_names[API_MAX_NAMES]; /* Host names allowed on a loopback bind besides localhost */
    int num_server_names;
};

struct api_params api_default_params(void);

struct api;

/* Starts listening. Every endpoint but /health, /version and /metrics answers 503 until
 * api_attach. Free with api_free. */
int api_create(const struct api_params *p, struct api **out);
/* Serves this engine (borrowed: free it after api_free). Loads the chat template. */
int api_attach(struct api *a, struct engine *e);
/* Graceful shutdown, first half: new requests get 503 while those in flight finish;
 * returns how many are still in flight. */
int api_drain(struct api *a);
/* The port it listens on. */
int api_port(const struct api *a);
/* Stops the server: waits for the handler threads, whose requests are aborted. */
void api_free(struct api *a);

#endif
