/* front (foliod's HTTP port) without main.c: foliod_open on a real SQLite store in a scratch
 * directory, front_start on a free loopback port, then raw HTTP/1.1 requests through both
 * route tables (front.c's and admin_api.c's) and the shared OpenAI pieces of engine/base:
 * status codes, Allow headers, the order of the checks (credentials before the method, a
 * model before the method), the exact error body, and the body limit before buffering. Also
 * openai_paths_find, the path list the engine's router and foliod's proxy share. */
#include "admin_api.h"
#include "foliod.h"
#include "front.h"
#include "test.h"
#include "base/openai_error.h"
#include "base/openai_paths.h"

#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

TEST(openai_paths_find) {
    const char *item = "unset";
    CHECK_EQ_INT(openai_paths_find("/v1/chat/completions", &item), OPENAI_CHAT_COMPLETIONS);
    CHECK(item == NULL);
    CHECK_EQ_INT(openai_paths_find("/v1/completions", NULL), OPENAI_COMPLETIONS);
    CHECK_EQ_INT(openai_paths_find("/tokenize", NULL), OPENAI_TOKENIZE);
    CHECK_EQ_INT(openai_paths_find("/detokenize", NULL), OPENAI_DETOKENIZE);
    CHECK_EQ_INT(openai_paths_find("/v1/models", &item), OPENAI_MODELS);
    CHECK(item == NULL);
    CHECK_EQ_INT(openai_paths_find("/v1/models/org/name", &item), OPENAI_MODELS);
    CHECK_STR(item, "org/name");
    CHECK_EQ_INT(openai_paths_find("/v1/models/", &item), OPENAI_MODELS);
    CHECK_STR(item, "");
    /* Only a path that takes items has them; a longer name is another path. */
    CHECK_EQ_INT(openai_paths_find("/v1/completions/x", &item), -1);
    CHECK(item == NULL);
    CHECK_EQ_INT(openai_paths_find("/v1/modelsx", NULL), -1);
    CHECK_EQ_INT(openai_paths_find("/v1/chat", NULL), -1);
    CHECK_EQ_INT(openai_paths_find("/tokenizer", NULL), -1);
    CHECK_EQ_INT(openai_paths_find(NULL, NULL), -1);
    for (int k = 0; k < OPENAI_NUM_PATHS; k++) {
        CHECK(openai_paths[k].path && openai_paths[k].path[0] == '/');
        CHECK(!strcmp(openai_paths[k].method, k == OPENAI_MODELS ? "GET" : "POST"));
    }
}

TEST(openai_error_json_shape) {
    char *s = openai_error_json(404, "NotFoundError", NULL, "no \"x\"");
    CHECK_STR(s, "{\"error\":{\"message\":\"no \\\"x\\\"\",\"type\":\"NotFoundError\",\"param\":null,\"code\":404}}");
    free(s);
    s = openai_error_json(400, "BadRequestError", "temperature", "bad");
    CHECK_STR(s, "{\"error\":{\"message\":\"bad\",\"type\":\"BadRequestError\",\"param\":\"temperature\",\"code\":400}}");
    free(s);
    s = openai_error_json(400, "BadRequestError", "", "bad");
    CHECK(s && strstr(s, "\"param\":null"));
    free(s);
}

/* One response, read whole (the request asks the server to close). */
struct resp {
    int status;
    char head[2048];
    char body[8192];
};

static int http(int port, const char *method, const char *path, const char *headers, const char *body,
                struct resp *r) {
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    size_t cap = blen + 2048;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s", method, path, port,
                     headers ? headers : "");
    if (body && !strstr(headers ? headers : "", "Transfer-Encoding"))
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) memcpy(req + n, body, blen);
    const size_t total = (size_t)n + blen;
    const int sent = send(fd, req, total, MSG_NOSIGNAL) == (ssize_t)total;
    free(req);
    static char buf[65536];
    size_t got = 0;
    while (sent && got + 1 < sizeof buf) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) break;
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!sent || !end || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) return -1;
    snprintf(r->head, sizeof r->head, "%.*s", (int)(end - buf) + 2, buf);
    snprintf(r->body, sizeof r->body, "%s", end + 4);
    return 0;
}

/* db/ of this checkout: beside the working directory, or two levels above the binary. */
static int find_db_dir(char *out, size_t cap) {
    if (access("db/schema.sql", R_OK) == 0) return snprintf(out, cap, "db"), 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    snprintf(out, cap, "%s/../../db", dirname(exe));
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/schema.sql", out);
    return access(probe, R_OK) == 0 ? 0 : -1;
}

#define ADMIN_TOKEN "front-test-admin-token-0123456789abcdef"
#define AUTH_ADMIN "Authorization: Bearer " ADMIN_TOKEN "\r\n"
#define JSON "Content-Type: application/json\r\n"

/* One request and what its response must show. */
struct want {
    const char *method, *path, *headers, *body;
    int status;
    const char *in_body; /* a part of the body, or NULL; "" for an empty body */
    const char *in_head; /* a header line, or NULL; a leading ! for one that must be absent */
};

static void expect(int port, const struct want *w, struct resp *r) {
    if (http(port, w->method, w->path, w->headers, w->body, r)) {
        test_fail(__FILE__, __LINE__, "%s %.80s: no response", w->method, w->path);
        return;
    }
    const int absent = w->in_head && w->in_head[0] == '!';
    if (r->status != w->status || (w->in_body && !*w->in_body && *r->body) ||
        (w->in_body && !strstr(r->body, w->in_body)) ||
        (w->in_head && (strstr(r->head, w->in_head + absent) != NULL) == absent))
        test_fail(__FILE__, __LINE__, "%s %.80s: %d %s%s, want %d with %s / %s", w->method, w->path, r->status,
                  r->head, r->body, w->status, w->in_body ? w->in_body : "-", w->in_head ? w->in_head : "-");
}

/* Before any API key exists. */
static const struct want before_keys[] = {
    /* Ops routes, any method; /metrics takes GET only, another method is no route at all. */
    {"GET", "/health", NULL, NULL, 200, "{\"status\":\"ok\"}", NULL},
    {"POST", "/metrics", NULL, NULL, 404, "no route for POST /metrics", NULL},
    /* No route: the OpenAI error body, byte for byte. */
    {"GET", "/no/such", NULL, NULL, 404,
     "{\"error\":{\"message\":\"no route for GET /no/such\",\"type\":\"NotFoundError\",\"param\":null,\"code\":404}}",
     "Content-Type: application/json\r\n"},
    /* The console's files: GET or HEAD; another method is a JSON 405 without Allow. */
    {"GET", "/admin", NULL, NULL, 301, NULL, "Location: /admin/\r\n"},
    {"DELETE", "/admin/index.html", NULL, NULL, 405, "only GET here", "!Allow:"},
    /* The admin API: login is open (its method is checked at once); the rest needs credentials
     * before anything else, unknown routes included. */
    {"GET", "/api/login", NULL, NULL, 405, "\"message\":\"use POST\"", NULL},
    {"GET", "/api/keys", NULL, NULL, 401, "log in first", NULL},
    {"GET", "/api/nothing", NULL, NULL, 401, "log in first", NULL},
    {"GET", "/api/nothing", AUTH_ADMIN, NULL, 404, "no route GET /api/nothing", NULL},
    {"GET", "/api/keys", AUTH_ADMIN, NULL, 200, "{\"keys\":[]}", NULL},
    {"PUT", "/api/keys", AUTH_ADMIN, NULL, 405, "use GET or POST on /api/keys, DELETE on /api/keys/{id}", NULL},
    {"GET", "/api/keys/1", AUTH_ADMIN, NULL, 405, "use GET or POST on /api/keys", NULL},
    {"GET", "/api/models/", AUTH_ADMIN, NULL, 200, "{\"models\":[]}", NULL},
    {"DELETE", "/api/settings", AUTH_ADMIN, NULL, 405, "use GET or PUT", NULL},
    /* A model route looks the model up before it checks the method. */
    {"PUT", "/api/models/nope", AUTH_ADMIN, NULL, 404, "no model nope", NULL},
    {"PUT", "/api/models/org/nope/load", AUTH_ADMIN, NULL, 404, "no model org/nope", NULL},
    /* Bodies are JSON only. */
    {"POST", "/api/login", "Content-Type: text/plain\r\n", "{}", 415, "application/json", NULL},
    /* The OpenAI routes: open while no key exists; a method other than the path's is a bare
     * 405 with Allow for the relayed ones, a JSON one for /v1/models. */
    {"GET", "/v1/chat/completions", NULL, NULL, 405, "", "Allow: POST\r\n"},
    {"GET", "/tokenize", NULL, NULL, 405, "", "Allow: POST\r\n"},
    {"POST", "/v1/models", NULL, NULL, 405, "only GET here", "!Allow:"},
    {"GET", "/v1/models", NULL, NULL, 200, "{\"object\":\"list\",\"data\":[]}", NULL},
    {"GET", "/v1/models/nope", NULL, NULL, 404, "The model `nope` does not exist.", NULL},
    {"POST", "/v1/completions", JSON, "{\"model\":\"nope\"}", 404, "The model `nope` does not exist.", NULL},
};

TEST(front_routes_without_main) {
    char data[PATH_MAX], db_dir[PATH_MAX];
    snprintf(data, sizeof data, "%s/front", test_tmp_dir());
    CHECK_EQ_INT(mkdir(data, 0700), 0);
    if (find_db_dir(db_dir, sizeof db_dir)) {
        CHECK(!"db/schema.sql not found (run from the checkout)");
        return;
    }
    struct foliod d = {0};
    d.cfg = (struct foliod_config){.host = "127.0.0.1", .port = 0, .data_dir = data, .db_dir = db_dir,
                                   .admin_token = ADMIN_TOKEN, .threads = 8, .max_body = 1 << 20,
                                   .header_timeout = 5, .hf_endpoint = "http://127.0.0.1:1"};
    foliod_init(&d);
    struct front *f = NULL;
    if (foliod_open(&d) || front_start(&d, &f)) {
        CHECK(!"foliod_open / front_start");
        foliod_close(&d);
        return;
    }
    const int port = front_port(f);
    CHECK(port > 0);
    struct resp r;
    for (size_t i = 0; i < sizeof before_keys / sizeof *before_keys; i++) expect(port, &before_keys[i], &r);

    /* An {id} too long to name a model. */
    char longref[400];
    snprintf(longref, sizeof longref, "/api/models/%0300d/load", 7);
    expect(port, &(struct want){"GET", longref, AUTH_ADMIN, NULL, 404, "\"no such model\"", NULL}, &r);
    /* The login's 4 KiB limit holds before buffering, declared or chunked. */
    static char big[6000], chunked[6100];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    snprintf(chunked, sizeof chunked, "%zx\r\n%s\r\n0\r\n\r\n", strlen(big), big);
    expect(port, &(struct want){"POST", "/api/login", JSON, big, 413, "the request body exceeds 4 KiB", NULL}, &r);
    expect(port, &(struct want){"POST", "/api/login", JSON "Transfer-Encoding: chunked\r\n", chunked, 413,
                                "the request body exceeds 4 KiB", NULL},
           &r);

    /* Once a key exists, the key is checked before the method. */
    expect(port, &(struct want){"POST", "/api/keys", AUTH_ADMIN JSON, "{\"name\":\"t\"}", 201, "\"key\":\"", NULL}, &r);
    char key[128] = "", hdr[200];
    const char *k = strstr(r.body, "\"key\":\"");
    if (k) sscanf(k + 7, "%127[^\"]", key);
    CHECK(key[0] != '\0');
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", key);
    expect(port, &(struct want){"GET", "/v1/chat/completions", NULL, NULL, 401, "Incorrect API key provided.", NULL}, &r);
    expect(port, &(struct want){"GET", "/v1/chat/completions", hdr, NULL, 405, "", "Allow: POST\r\n"}, &r);
    expect(port, &(struct want){"GET", "/v1/models", hdr, NULL, 200, "{\"object\":\"list\",\"data\":[]}", NULL}, &r);

    front_stop(f);
    foliod_stop(&d);
    CHECK(foliod_stopping(&d));
    foliod_close(&d);
}
