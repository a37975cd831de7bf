/* safetensors header validation on in-memory images: every lie a header can tell must be an
 * error, and a valid file must give exact pointers, shapes and dtypes. */
#include <stdlib.h>

#include "model/safetensors.h"
#include "test.h"

/* Builds header + data into buf; returns the total length. */
static size_t image(char *buf, const char *header, size_t data_len) {
    uint64_t n = strlen(header);
    for (int i = 0; i < 8; i++) buf[i] = (char)(n >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (char)i;
    return 8 + n + data_len;
}

TEST(safetensors_valid) {
    char buf[512];
    size_t len = image(buf, "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                            "\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}",
                       32);
    struct safetensors_set *s = NULL;
    CHECK_EQ_INT(safetensors_open_buffer(buf, len, &s), 0);
    if (!s) return;
    CHECK_EQ_INT(safetensors_num_tensors(s), 2);
    const struct safetensors_tensor *a = safetensors_find(s, "a"), *b = safetensors_find(s, "b");
    CHECK(a && b && !safetensors_find(s, "c"));
    if (a && b) {
        CHECK_EQ_INT(a->dtype, FOLIO_F32);
        CHECK_EQ_INT(a->ndim, 2);
        CHECK_EQ_INT(a->shape[1], 3);
        CHECK_EQ_INT(a->nbytes, 24);
        CHECK_EQ_INT(b->dtype, FOLIO_BF16);
        CHECK_EQ_INT((const char *)b->data - buf, len - 8);
    }
    safetensors_free(s);
}

static void expect_error(const char *header, size_t data_len, const char *keyword) {
    char buf[1024];
    size_t len = image(buf, header, data_len);
    struct safetensors_set *s = NULL;
    int rc = safetensors_open_buffer(buf, len, &s);
    CHECK(rc < 0);
    CHECK(s == NULL);
    if (rc < 0 && !strstr(folio_last_error(), keyword))
        test_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", folio_last_error(), keyword);
    safetensors_free(s);
}

TEST(safetensors_lies_are_errors) {
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "outside");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "shape needs");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 8, "outside");
    expect_error("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unsupported dtype");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8, "shape");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 8, "");
    expect_error("{\"a\":{\"dtype\":\"F32\"}}", 8, "needs");
    expect_error("[1,2]", 0, "JSON object");
    expect_error("{\"a\":", 0, "JSON");
}

TEST(safetensors_truncated_header) {
    char buf[256];
    size_t len = image(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    struct safetensors_set *s = NULL;
    CHECK(safetensors_open_buffer(buf, 20, &s) < 0); /* header length exceeds what is there */
    CHECK(strstr(folio_last_error(), "exceeds") != NULL);
    CHECK(safetensors_open_buffer(buf, 5, &s) < 0);
    CHECK(safetensors_open_buffer(buf, len, &s) == 0);
    safetensors_free(s);
    safetensors_free(NULL);
}

TEST(safetensors_shared_model_dir) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    struct safetensors_set *s = NULL;
    CHECK_EQ_INT(safetensors_open_dir(dir, &s), 0);
    if (!s) return;
    const struct safetensors_tensor *t = safetensors_find(s, "model.embed_tokens.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_INT(t->shape[0], 512);
        CHECK_EQ_INT(t->shape[1], 64);
    }
    safetensors_free(s);
    CHECK(safetensors_open_dir("/nonexistent-dir", &s) < 0);
}
