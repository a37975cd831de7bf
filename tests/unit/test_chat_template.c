/* Chat-template tests for what the byte-for-byte comparison with @huggingface/jinja
 * (tests/chat_template/) cannot show: error messages and line numbers, the limits that stop a
 * hostile template (steps, recursion, nesting, output size), cycles and escaped `caller`s
 * (run under ASan for leaks), loading a model's template, and concurrent renders of one
 * parsed template. */
#include "chat_template/chat_template.h"
#include "test.h"
#include "base/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Renders src with the JSON context ctx_json (NULL: none). Returns the rc; *out is the
 * output (or NULL) and must be freed. */
static int render(const char *src, const char *ctx_json, char **out) {
    struct chat_template *t = NULL;
    cJSON *ctx = ctx_json ? cJSON_Parse(ctx_json) : NULL;
    size_t len = 0;
    *out = NULL;
    int rc = chat_template_create(src, strlen(src), &t);
    if (rc == 0) rc = chat_template_render(t, ctx, out, &len);
    if (rc == 0) CHECK_EQ_INT(len, strlen(*out));
    chat_template_free(t);
    cJSON_Delete(ctx);
    return rc;
}

static int error_contains(const char *needle) { return strstr(folio_last_error(), needle) != NULL; }

TEST(chat_template_basic_render) {
    char *out;
    const char *src =
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}";
    CHECK_EQ_INT(render(src, "{\"messages\":[{\"role\":\"user\",\"content\":\" hi \"}],"
                             "\"add_generation_prompt\":true}", &out), 0);
    CHECK_STR(out, "<|user|>hi\n<|assistant|>");
    free(out);
    /* no context at all: every variable is undefined */
    CHECK_EQ_INT(render("[{{ x }}]{{ x is defined }}", NULL, &out), 0);
    CHECK_STR(out, "[]false");
    free(out);
    chat_template_free(NULL);
}

TEST(chat_template_syntax_error_names_line) {
    struct chat_template *t = (struct chat_template *)1;
    const char *src = "line one\n{{ ok }}\n{{ 1 + }}\n";
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    CHECK(t == NULL);
    CHECK(error_contains("chat template line 3:"));
    CHECK(error_contains("'}}'"));
    /* lines survive trim_blocks removing newlines before the error */
    src = "{% if a %}\n{% if b %}\n{% endif %}\n{% endfor %}";
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    CHECK(error_contains("line 4"));
    src = "{% if a %}\nnever closed";
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    CHECK(error_contains("end of template"));
    src = "{{ 'unterminated }}";
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    src = "{{ x }}{% raw %}{% endraw %}";
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    CHECK(error_contains("unknown statement 'raw'"));
}

TEST(chat_template_raise_exception) {
    char *out;
    CHECK_EQ_INT(render("a{{ raise_exception('Roles must alternate: ' ~ n) }}b", "{\"n\":3}", &out), FOLIO_EINVAL);
    CHECK(out == NULL);
    CHECK_STR(folio_last_error(), "Roles must alternate: 3");
    /* runtime errors name the line */
    CHECK_EQ_INT(render("x\n\n{{ 'a' < 'b' }}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("line 3"));
}

TEST(chat_template_undefined_values) {
    char *out;
    CHECK_EQ_INT(render("[{{ nope }}][{{ nope.a.b }}][{{ nope is undefined }}][{{ nope|default('d') }}]"
                        "[{% if nope %}y{% else %}n{% endif %}][{{ none }}][{{ nul }}]",
                        "{\"nul\":null}", &out), 0);
    CHECK_STR(out, "[][][true][d][n][][]");
    free(out);
    /* but arithmetic on them is an error, as in the reference */
    CHECK_EQ_INT(render("{{ nope + 1 }}", NULL, &out), FOLIO_EINVAL);
    CHECK_EQ_INT(render("{{ nope[0] }}", NULL, &out), FOLIO_EINVAL);
    /* a context key that shadows a global is refused, as the reference refuses it */
    CHECK_EQ_INT(render("x", "{\"range\":1}", &out), FOLIO_EINVAL);
    CHECK(error_contains("already declared"));
}

TEST(chat_template_js_values) {
    char *out;
    CHECK_EQ_INT(render("{{ a }} {{ b }} {{ c }} {{ 1.0 }} {{ 7 / 2 }} {{ 2 ** 70 }} {{ true }} {{ d }}|{{ d|tojson }}",
                        "{\"a\":1.0,\"b\":0.1,\"c\":1e21,\"d\":{\"x\":1,\"2\":[true,null],\"1\":\"\\u00e9\"}}", &out), 0);
    CHECK_STR(out, "1 0.1 1e+21 1.0 3.5 1.1805916207174113e+21 true {\"1\": \"\xc3\xa9\", \"2\": [true, null], \"x\": 1}"
                   "|{\"1\": \"\xc3\xa9\", \"2\": [true, null], \"x\": 1}");
    free(out);
}

TEST(chat_template_step_limit) {
    char *out;
    double t0 = folio_now();
    CHECK_EQ_INT(render("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
                        "{% endfor %}{% endfor %}{% endfor %}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("steps"));
    CHECK(folio_now() - t0 < 30);
    /* quadratic string building is charged for the bytes it copies */
    CHECK_EQ_INT(render("{% set ns = namespace(s='') %}{% for i in range(1000000) %}{% set ns.s = ns.s ~ 'xxxx' %}"
                        "{% endfor %}", NULL, &out), FOLIO_EINVAL);
}

TEST(chat_template_recursion_limit) {
    char *out;
    CHECK_EQ_INT(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("nest"));
    /* deeply nested source is refused by the parser, before it can exhaust the stack */
    size_t depth = 5000;
    char *src = malloc(depth * 12 + 16);
    size_t k = 0;
    k += (size_t)sprintf(src, "{{ ");
    for (size_t i = 0; i < depth; i++) src[k++] = '(';
    src[k++] = '1';
    for (size_t i = 0; i < depth; i++) src[k++] = ')';
    strcpy(src + k, " }}");
    struct chat_template *t;
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), FOLIO_EINVAL);
    CHECK(error_contains("nests too deeply"));
    k = 0;
    for (size_t i = 0; i < depth; i++) k += (size_t)sprintf(src + k, "{%% if 1 %%}");
    CHECK_EQ_INT(chat_template_create(src, k, &t), FOLIO_EINVAL);
    free(src);
    /* values nested deeper than the limit (built in a loop) */
    CHECK_EQ_INT(render("{% set ns = namespace(a=[]) %}{% for i in range(100000) %}{% set ns.a = [ns.a] %}"
                        "{% endfor %}{{ ns.a|length }}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("nest"));
}

TEST(chat_template_output_limit) {
    char *out;
    CHECK_EQ_INT(render("{% for i in range(1000000) %}0123456789{% endfor %}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("exceeds"));
    CHECK_EQ_INT(render("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s }}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("exceeds"));
    CHECK_EQ_INT(render("{{ range(100000000) }}", NULL, &out), FOLIO_EINVAL);
}

TEST(chat_template_cycles_and_callers) {
    char *out;
    /* a namespace holding itself must not leak (ASan checks) */
    CHECK_EQ_INT(render("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, ns] %}{{ ns.me.me is defined }}",
                        NULL, &out), 0);
    CHECK_STR(out, "true");
    free(out);
    CHECK_EQ_INT(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, &out), FOLIO_EINVAL);
    /* a `caller` that escapes its call block cannot be called afterwards */
    CHECK_EQ_INT(render("{% set ns = namespace() %}{% macro m() %}{% set ns.c = caller %}{{ caller() }}{% endmacro %}"
                        "{% call m() %}in{% endcall %}|{{ ns.c() }}", NULL, &out), FOLIO_EINVAL);
    CHECK(error_contains("caller"));
    CHECK_EQ_INT(render("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}in{% endcall %}", NULL, &out), 0);
    CHECK_STR(out, "[in]");
    free(out);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

TEST(chat_template_load) {
    struct chat_template *t = (struct chat_template *)1;
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/stories260K", test_models_dir());
    CHECK_EQ_INT(chat_template_load_model(dir, &t), 0);
    CHECK(t == NULL);
    /* tokenizer_config.json: a list of named templates, "default" wins */
    snprintf(dir, sizeof(dir), "%s", test_tmp_dir());
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    write_file(path, "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
                     "{\"name\":\"default\",\"template\":\"D{{ 1 + 1 }}\"}]}");
    CHECK_EQ_INT(chat_template_load_model(dir, &t), 0);
    CHECK(t != NULL);
    char *out = NULL;
    size_t len;
    if (t) {
        CHECK_EQ_INT(chat_template_render(t, NULL, &out, &len), 0);
        CHECK_STR(out, "D2");
        free(out);
        chat_template_free(t);
    }
    /* chat_template.jinja takes precedence */
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    write_file(path, "J{{ 'x' }}\n");
    CHECK_EQ_INT(chat_template_load_model(dir, &t), 0);
    if (t) {
        CHECK_EQ_INT(chat_template_render(t, NULL, &out, &len), 0);
        CHECK_STR(out, "Jx");
        free(out);
    }
    chat_template_free(t);
    /* --chat-template: a file, else inline text, else an error */
    CHECK_EQ_INT(chat_template_load_arg(path, &t), 0);
    chat_template_free(t);
    CHECK_EQ_INT(chat_template_load_arg("{{ 'inline' }}", &t), 0);
    if (t) {
        CHECK_EQ_INT(chat_template_render(t, NULL, &out, &len), 0);
        CHECK_STR(out, "inline");
        free(out);
    }
    chat_template_free(t);
    CHECK_EQ_INT(chat_template_load_arg("/no/such/template.jinja", &t), FOLIO_EINVAL);
    CHECK(t == NULL);
    CHECK_EQ_INT(chat_template_load_arg("{{ broken", &t), FOLIO_EINVAL);
}

struct thread_arg {
    const struct chat_template *t;
    const cJSON *ctx;
    const char *want;
    int ok;
};

static void *render_many(void *p) {
    struct thread_arg *a = p;
    a->ok = 1;
    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        size_t len;
        if (chat_template_render(a->t, a->ctx, &out, &len) || strcmp(out, a->want)) a->ok = 0;
        free(out);
    }
    return NULL;
}

TEST(chat_template_concurrent_renders) {
    const char *src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                      "{{ m.role|upper }}:{{ m.content }}{{ ' literal' }}\n{% endfor %}{{ ns.n }}";
    struct chat_template *t;
    CHECK_EQ_INT(chat_template_create(src, strlen(src), &t), 0);
    cJSON *ctx = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}");
    const char *want = "USER:a literal\nASSISTANT:b literal\n2";
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){t, ctx, want, 0};
        pthread_create(&th[i], NULL, render_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].ok);
    }
    cJSON_Delete(ctx);
    chat_template_free(t);
}

TEST(chat_template_large_context) {
    /* many keys, in an object and at the top level: lookups stay fast and correct, and a
     * duplicate key keeps its first position with its last value (as JSON.parse does) */
    size_t n = 50000;
    char *json = malloc(n * 40 + 4096);
    size_t k = (size_t)sprintf(json, "{\"obj\":{");
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(json + k, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    k += (size_t)sprintf(json + k, ",\"k7\":\"dup\",\"3\":\"three\"}");
    for (size_t i = 0; i < 3000; i++) k += (size_t)sprintf(json + k, ",\"v%zu\":%zu", i, i);
    strcpy(json + k, "}");
    char *out;
    double t0 = folio_now();
    CHECK_EQ_INT(render("{{ obj.k49999 }} {{ obj['k7'] }} {{ v2999 }} {{ obj|length }} {{ (obj|items)[0] }} "
                        "{{ (obj|items)[8] }}", json, &out), 0);
    CHECK_STR(out, "49999 dup 2999 50001 [\"3\", \"three\"] [\"k7\", \"dup\"]");
    free(out);
    CHECK(folio_now() - t0 < 10);
    free(json);
}
