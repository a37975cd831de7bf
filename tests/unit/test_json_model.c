/* Unit tests for daemon/json_model (the /v1 "model" scanner and alias splice) and
 * daemon/validate (model names, directories, chat template paths). */
#include "json_model.h"
#include "test.h"
#include "base/util.h"
#include "validate.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int find(const char *s, size_t *a, size_t *b) { return json_model_find(s, strlen(s), a, b); }

TEST(json_model_finds_top_level) {
    size_t a = 0, b = 0;
    const char *s = "{\"messages\":[{\"model\":\"inner\"}],\"x\":{\"model\":1},\"model\":\"m1\",\"y\":\"\\\"model\\\":\"}";
    CHECK_EQ_INT(find(s, &a, &b), JSON_MODEL_STRING);
    CHECK_EQ_INT(b - a, 4);
    CHECK(!strncmp(s + a, "\"m1\"", 4));
    char name[64];
    CHECK_EQ_INT(json_model_decode(s, a, b, name, sizeof name), 0);
    CHECK_STR(name, "m1");
    CHECK_EQ_INT(find("  {\"model\" : null } \n", &a, &b), JSON_MODEL_NULL);
    CHECK_EQ_INT(find("{\"model\":[1]}", &a, &b), JSON_MODEL_OTHER);
    CHECK_EQ_INT(find("{\"prompt\":\"x\"}", &a, &b), JSON_MODEL_ABSENT);
    CHECK_EQ_INT(a, 1);
    CHECK_EQ_INT(find("{}", &a, &b), JSON_MODEL_ABSENT);
    /* An escaped key is still "model"; escapes in the value decode. */
    s = "{\"mod\\u0065l\":\"st\\u00f6\\ud83d\\ude00\\n\"}";
    CHECK_EQ_INT(find(s, &a, &b), JSON_MODEL_STRING);
    CHECK_EQ_INT(json_model_decode(s, a, b, name, sizeof name), 0);
    CHECK_STR(name, "st\xc3\xb6\xf0\x9f\x98\x80\n");
    CHECK(json_model_decode("\"\\u0000\"", 0, 8, name, sizeof name) != 0); /* a NUL */
    CHECK(json_model_decode("\"abcdef\"", 0, 8, name, 4) != 0);           /* too long */
}

TEST(json_model_rejects) {
    static const char *const bad[] = {"", "[]", "\"model\"", "1", "null", "{", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":01}",
                                      "{\"a\":1.}", "{\"a\":-}", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
                                      "{\"a\":\"\\u12G4\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}", "{} {}",
                                      "{\"model\":\"a\",\"model\":\"b\"}", "{\"a\":[1,]}", "{\"a\":\"unterminated}",
                                      "{'a':1}", "{\"a\":1}x",
                                      /* "model" to cJSON, which stops at the NUL: ambiguous */
                                      "{\"model\\u0000x\":\"a\"}",
                                      "{\"model\\u0000xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":1}"};
    size_t a, b;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int k = find(bad[i], &a, &b);
        if (k >= 0) test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    }
    char deep[1200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"a\":");
    for (int i = 0; i < 300; i++) deep[n++] = '[';
    for (int i = 0; i < 300; i++) deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    CHECK(find(deep, &a, &b) < 0);
    CHECK(strstr(folio_last_error(), "deeply") != NULL);
}

TEST(json_model_splice_rewrites_in_a_copy) {
    size_t a, b, len;
    char *out = NULL;
    const char *s = "{\"model\":\"default\",\"prompt\":\"p\"}";
    int k = find(s, &a, &b);
    CHECK_EQ_INT(json_model_splice(s, strlen(s), k, a, b, "stories260K", &out, &len), 0);
    CHECK_STR(out, "{\"model\":\"stories260K\",\"prompt\":\"p\"}");
    CHECK_EQ_INT(len, strlen(out));
    free(out);
    s = "{ \"prompt\":\"p\"}";
    k = find(s, &a, &b);
    CHECK_EQ_INT(json_model_splice(s, strlen(s), k, a, b, "m", &out, &len), 0);
    CHECK_STR(out, "{\"model\":\"m\", \"prompt\":\"p\"}");
    free(out);
    s = " { } ";
    k = find(s, &a, &b);
    CHECK_EQ_INT(json_model_splice(s, strlen(s), k, a, b, "q\"\\", &out, &len), 0);
    CHECK_STR(out, " {\"model\":\"q\\\"\\\\\" } ");
    free(out);
    s = "{\"model\":null}";
    k = find(s, &a, &b);
    CHECK_EQ_INT(json_model_splice(s, strlen(s), k, a, b, "m", &out, &len), 0);
    CHECK_STR(out, "{\"model\":\"m\"}");
    free(out);
}

TEST(validate_names_dirs_templates) {
    CHECK_EQ_INT(validate_model_name("stories260K"), 0);
    CHECK_EQ_INT(validate_model_name("Qwen/Qwen2.5-0.5B:rev_1"), 0);
    CHECK(validate_model_name("--chat-template") != 0);
    CHECK(validate_model_name("-x") != 0);
    CHECK(validate_model_name(".x") != 0);
    CHECK(validate_model_name("default") != 0);
    CHECK(validate_model_name("a b") != 0);
    CHECK(validate_model_name("") != 0);
    char dir[512], sub[600], real[PATH_MAX], f[700];
    snprintf(dir, sizeof dir, "%s/validate-model", test_tmp_dir());
    mkdir(dir, 0755);
    CHECK(validate_model_dir(dir, real, sizeof real) != 0); /* no config.json */
    snprintf(f, sizeof f, "%s/config.json", dir);
    FILE *fp = fopen(f, "w");
    if (fp) fclose(fp);
    snprintf(sub, sizeof sub, "%s/./", dir);
    CHECK_EQ_INT(validate_model_dir(sub, real, sizeof real), 0);
    CHECK(strstr(real, "/./") == NULL && real[strlen(real) - 1] != '/');
    CHECK(validate_model_dir("relative", real, sizeof real) != 0);
    CHECK(validate_model_dir(f, real, sizeof real) != 0); /* a file */
    CHECK_EQ_INT(validate_template_inline("{{ bos_token }}"), 1);
    CHECK_EQ_INT(validate_template_inline("{% for m in messages %}"), 1);
    CHECK_EQ_INT(validate_template_inline("t.jinja"), 0);
    snprintf(f, sizeof f, "%s/t.jinja", dir);
    fp = fopen(f, "w");
    if (fp) fclose(fp);
    snprintf(sub, sizeof sub, "%s/out.jinja", dir);
    CHECK_EQ_INT(symlink("/etc/passwd", sub), 0);
    CHECK_EQ_INT(validate_template_file("t.jinja", dir, real, sizeof real), 0);
    CHECK_EQ_INT(validate_template_file(f, dir, real, sizeof real), 0);
    CHECK(validate_template_file("out.jinja", dir, real, sizeof real) != 0);
    CHECK(validate_template_file("/etc/passwd", dir, real, sizeof real) != 0);
    CHECK(validate_template_file("../validate-model/t.jinja/..", dir, real, sizeof real) != 0);
    CHECK(validate_template_file(".", dir, real, sizeof real) != 0);
    CHECK(validate_template_file("t.jinja", "", real, sizeof real) != 0);
}
