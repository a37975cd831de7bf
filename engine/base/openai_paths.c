/* openai_paths: see openai_paths.h. */
#include "base/openai_paths.h"

#include <stddef.h>
#include <string.h>

const struct openai_path openai_paths[OPENAI_NUM_PATHS] = {
    [OPENAI_MODELS] = {"/v1/models", "GET", 1},
    [OPENAI_CHAT_COMPLETIONS] = {"/v1/chat/completions", "POST", 0},
    [OPENAI_COMPLETIONS] = {"/v1/completions", "POST", 0},
    [OPENAI_TOKENIZE] = {"/tokenize", "POST", 0},
    [OPENAI_DETOKENIZE] = {"/detokenize", "POST", 0},
    [OPENAI_RESPONSES] = {"/v1/responses", "POST", 1},
};

int openai_paths_find(const char *uri, const char **item) {
    if (item) *item = NULL;
    if (!uri) return -1;
    for (int i = 0; i < OPENAI_NUM_PATHS; i++) {
        const size_t n = strlen(openai_paths[i].path);
        if (strncmp(uri, openai_paths[i].path, n) != 0) continue;
        if (uri[n] == '\0') return i;
        if (openai_paths[i].has_items && uri[n] == '/') {
            if (item) *item = uri + n + 1;
            return i;
        }
    }
    return -1;
}
