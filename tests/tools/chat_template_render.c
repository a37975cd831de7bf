/* chat_template_render: renders a chat template with a JSON context, for
 * tests/chat_template/run.sh and for trying templates by hand.
 *
 *   chat_template_render TEMPLATE_FILE CONTEXT_JSON_FILE
 *       prints the rendered text exactly (no newline added), or "error: MESSAGE" on stderr
 *       and exits 1.
 *   chat_template_render --batch CASES_JSON_FILE
 *       CASES: {"templates": {"NAME": "SOURCE", ...},
 *               "cases": [{"template": "NAME", "context": {...}}, ...]}
 *       prints one JSON array, an element per case: {"ok": true, "out": "TEXT"} or
 *       {"ok": false, "error": "MESSAGE"}. Each template is parsed once. */
#include "chat_template/chat_template.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON string escaping that passes UTF-8 through byte for byte. */
static void put_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            putchar('\\');
            putchar(c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static int batch(const char *path) {
    char *text = NULL;
    size_t len = 0;
    int rc = 1;
    if (folio_read_file(path, &text, &len)) {
        fprintf(stderr, "error: %s\n", folio_last_error());
        return 1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *tmpls = cJSON_GetObjectItemCaseSensitive(root, "templates");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    if (!cJSON_IsObject(tmpls) || !cJSON_IsArray(cases)) {
        fprintf(stderr, "error: %s: expected {\"templates\": {...}, \"cases\": [...]}\n", path);
        goto out;
    }
    int nt = cJSON_GetArraySize(tmpls);
    struct chat_template **parsed = calloc((size_t)nt + 1, sizeof(*parsed));
    char **perr = calloc((size_t)nt + 1, sizeof(*perr));
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, tmpls) {
        const char *src = cJSON_IsString(it) ? it->valuestring : "";
        if (chat_template_create(src, strlen(src), &parsed[i])) perr[i] = strdup(folio_last_error());
        i++;
    }
    putchar('[');
    int first = 1;
    cJSON_ArrayForEach(it, cases) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "template");
        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(it, "context");
        int k = 0, found = -1;
        const cJSON *t;
        cJSON_ArrayForEach(t, tmpls) {
            if (cJSON_IsString(name) && !strcmp(t->string, name->valuestring)) found = k;
            k++;
        }
        if (!first) putchar(',');
        first = 0;
        fputs("\n{\"ok\": ", stdout);
        const char *err = NULL;
        char *out = NULL;
        size_t out_len = 0;
        if (found < 0) err = "no such template";
        else if (!parsed[found]) err = perr[found];
        else if (chat_template_render(parsed[found], ctx, &out, &out_len)) err = folio_last_error();
        if (err) {
            fputs("false, \"error\": ", stdout);
            put_json_string(err, strlen(err));
        } else {
            fputs("true, \"out\": ", stdout);
            put_json_string(out, out_len);
        }
        putchar('}');
        free(out);
    }
    fputs("\n]\n", stdout);
    for (i = 0; i < nt; i++) {
        chat_template_free(parsed[i]);
        free(perr[i]);
    }
    free(parsed);
    free(perr);
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--batch")) return batch(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: %s TEMPLATE_FILE CONTEXT_JSON_FILE\n       %s --batch CASES_JSON_FILE\n",
                argv[0], argv[0]);
        return 2;
    }
    struct chat_template *t = NULL;
    char *ctx_text = NULL, *out = NULL;
    size_t ctx_len = 0, out_len = 0;
    cJSON *ctx = NULL;
    int rc = 1;
    if (chat_template_load_arg(argv[1], &t)) goto fail;
    if (folio_read_file(argv[2], &ctx_text, &ctx_len)) goto fail;
    ctx = cJSON_ParseWithLength(ctx_text, ctx_len);
    if (!ctx) {
        fprintf(stderr, "error: %s: invalid JSON\n", argv[2]);
        goto out;
    }
    if (chat_template_render(t, ctx, &out, &out_len)) goto fail;
    fwrite(out, 1, out_len, stdout);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "error: %s\n", folio_last_error());
out:
    free(out);
    cJSON_Delete(ctx);
    free(ctx_text);
    chat_template_free(t);
    return rc;
}
