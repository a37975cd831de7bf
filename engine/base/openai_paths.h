/* openai_paths: the OpenAI API's paths as folio serves them, in one list: folio-engine
 * answers them (server/api.c maps each to its handler) and foliod relays them to the engine
 * of the request's model (daemon/front.c), so that the two cannot drift apart. */
#ifndef FOLIO_OPENAI_PATHS_H
#define FOLIO_OPENAI_PATHS_H

enum openai_path_id {
    OPENAI_MODELS,           /* GET /v1/models, and /v1/models/{id} (models.retrieve) */
    OPENAI_CHAT_COMPLETIONS, /* POST /v1/chat/completions */
    OPENAI_COMPLETIONS,      /* POST /v1/completions */
    OPENAI_TOKENIZE,         /* POST /tokenize (vLLM's) */
    OPENAI_DETOKENIZE,       /* POST /detokenize (vLLM's) */
    OPENAI_RESPONSES,        /* POST /v1/responses; /v1/responses/{id} is foliod's store */
    OPENAI_NUM_PATHS
};

struct openai_path {
    const char *path;   /* "/v1/chat/completions" */
    const char *method; /* the one method it takes */
    int has_items;      /* path/{id} names one item of it */
};

/* Indexed by enum openai_path_id. */
extern const struct openai_path openai_paths[OPENAI_NUM_PATHS];

/* Which OpenAI path uri is: its enum openai_path_id, or -1. For a path with items, uri may
 * also be path/{id}: then *item (when item is not NULL) points at the id, which may be empty;
 * for the path itself *item is NULL. */
int openai_paths_find(const char *uri, const char **item);

#endif
