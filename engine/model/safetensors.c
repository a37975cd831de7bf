/* safetensors: see safetensors.h.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
 * data section, offsets relative to its start. */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's own limit */

struct st_map {
    void *base;
    size_t len;
    int owned; /* munmap at free */
};

struct safetensors_set {
    struct safetensors_tensor *tensors;
    int num, cap;
    /* Open addressing over tensors by name (-1 = empty), 2 * cap slots: a MoE checkpoint holds
     * tens of thousands of tensors (Qwen3-30B-A3B: 18,867), which a linear search per lookup
     * would make quadratic at load. */
    int32_t *index;
    size_t index_mask;
    struct st_map *maps;
    int num_maps;
};

void safetensors_free(struct safetensors_set *s) {
    if (!s) return;
    for (int i = 0; i < s->num; i++) free((char *)s->tensors[i].name);
    for (int i = 0; i < s->num_maps; i++)
        if (s->maps[i].owned) munmap(s->maps[i].base, s->maps[i].len);
    free(s->tensors);
    free(s->index);
    free(s->maps);
    free(s);
}

static uint64_t name_hash(const char *name) {
    uint64_t h = 0x6a09e667f3bcc909ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = folio_mix64(h + *p);
    return h;
}

const struct safetensors_tensor *safetensors_find(const struct safetensors_set *s, const char *name) {
    if (!s->index) return NULL;
    for (size_t i = name_hash(name) & s->index_mask; s->index[i] >= 0; i = (i + 1) & s->index_mask)
        if (strcmp(s->tensors[s->index[i]].name, name) == 0) return &s->tensors[s->index[i]];
    return NULL;
}

static void index_insert(struct safetensors_set *s, int32_t t) {
    size_t i = name_hash(s->tensors[t].name) & s->index_mask;
    while (s->index[i] >= 0) i = (i + 1) & s->index_mask;
    s->index[i] = t;
}

/* Room for one more tensor: the array and the index (kept at most half full) grow together. */
static int grow(struct safetensors_set *s) {
    if (s->num < s->cap) return 0;
    const int cap = s->cap ? 2 * s->cap : 64;
    struct safetensors_tensor *nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
    if (!nt) return folio_err(FOLIO_ENOMEM, "out of memory");
    s->tensors = nt;
    int32_t *idx = malloc(2 * (size_t)cap * sizeof *idx);
    if (!idx) return folio_err(FOLIO_ENOMEM, "out of memory");
    free(s->index);
    s->index = idx;
    s->index_mask = 2 * (size_t)cap - 1;
    s->cap = cap;
    memset(s->index, 0xff, 2 * (size_t)cap * sizeof *idx);
    for (int t = 0; t < s->num; t++) index_insert(s, t);
    return 0;
}

int safetensors_num_tensors(const struct safetensors_set *s) { return s->num; }
const struct safetensors_tensor *safetensors_tensor_at(const struct safetensors_set *s, int i) {
    return i >= 0 && i < s->num ? &s->tensors[i] : NULL;
}

static int parse_dtype(const char *s, enum folio_dtype *dt) {
    if (strcmp(s, "F32") == 0) *dt = FOLIO_F32;
    else if (strcmp(s, "F16") == 0) *dt = FOLIO_F16;
    else if (strcmp(s, "BF16") == 0) *dt = FOLIO_BF16;
    else if (strcmp(s, "F8_E4M3") == 0) *dt = FOLIO_FP8; /* FP8 checkpoints' weights */
    else if (strcmp(s, "I32") == 0) *dt = FOLIO_I32;     /* AWQ/GPTQ packed words, g_idx */
    else return -1;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const struct safetensors_tensor *x = *(const struct safetensors_tensor *const *)a, *y = *(const struct safetensors_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Reads a JSON number as a non-negative integer below 2^53 (exact in a double). */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

static int parse_entry(const cJSON *e, const char *file, const char *data, uint64_t data_len,
                       struct safetensors_tensor *t) {
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
        cJSON_GetArraySize(offs) != 2)
        return folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" needs dtype, shape and data_offsets", file, name);
    if (parse_dtype(dt->valuestring, &t->dtype))
        return folio_err(FOLIO_EUNSUP, "%s: tensor \"%s\" has unsupported dtype %s (F32, F16, BF16, F8_E4M3, I32)", file,
                         name, dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > SAFETENSORS_MAX_DIMS) return folio_err(FOLIO_EUNSUP, "%s: tensor \"%s\" has %d dims", file, name, nd);
    t->ndim = nd;
    uint64_t count = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_u64(cJSON_GetArrayItem(shape, i), &d))
            return folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" has a bad shape", file, name);
        t->shape[i] = (int64_t)d;
        if (d && count > UINT64_MAX / d) return folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" is too large", file, name);
        count *= d;
    }
    uint64_t begin, end;
    if (json_u64(cJSON_GetArrayItem(offs, 0), &begin) || json_u64(cJSON_GetArrayItem(offs, 1), &end))
        return folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" has bad data_offsets", file, name);
    if (end < begin || end > data_len)
        return folio_err(FOLIO_EINVAL,
                         "%s: tensor \"%s\" data_offsets [%llu, %llu] lie outside the %llu-byte data section "
                         "(truncated file?)", file, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_len);
    size_t es = folio_dtype_size(t->dtype);
    if (count > UINT64_MAX / es || end - begin != count * es)
        return folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" spans %llu bytes but its shape needs %llu", file, name,
                         (unsigned long long)(end - begin), (unsigned long long)(count * es));
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    t->name = strdup(name);
    if (!t->name) return folio_err(FOLIO_ENOMEM, "out of memory");
    return 0;
}

/* Parses one file image into `s` (appending). `file` names it in messages. */
static int parse_image(struct safetensors_set *s, const char *file, const char *img, size_t len) {
    int rc = 0;
    cJSON *root = NULL;
    const struct safetensors_tensor **order = NULL;
    int first = s->num;
    if (len < 8) return folio_err(FOLIO_EINVAL, "%s: file is too short to be safetensors (%zu bytes)", file, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)img[i];
    if (hlen > len - 8 || hlen > ST_MAX_HEADER)
        return folio_err(FOLIO_EINVAL, "%s: header length %llu exceeds the file (%zu bytes; truncated?)", file,
                         (unsigned long long)hlen, len);
    root = cJSON_ParseWithLength(img + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        rc = folio_err(FOLIO_EINVAL, "%s: header is not a JSON object", file);
        goto out;
    }
    const char *data = img + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if (safetensors_find(s, e->string)) {
            rc = folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" appears twice", file, e->string);
            goto out;
        }
        if ((rc = grow(s))) goto out;
        memset(&s->tensors[s->num], 0, sizeof s->tensors[s->num]);
        if ((rc = parse_entry(e, file, data, data_len, &s->tensors[s->num]))) goto out;
        index_insert(s, s->num++);
    }
    /* Overlapping tensors mean the offsets lie: two weights would alias each other. */
    int n = s->num - first;
    order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) order[i] = &s->tensors[first + i];
    qsort(order, (size_t)n, sizeof *order, cmp_by_offset);
    for (int i = 1; i < n; i++) {
        const char *prev_end = (const char *)order[i - 1]->data + order[i - 1]->nbytes;
        if ((const char *)order[i]->data < prev_end) {
            rc = folio_err(FOLIO_EINVAL, "%s: tensors \"%s\" and \"%s\" overlap", file, order[i - 1]->name,
                           order[i]->name);
            goto out;
        }
    }
out:
    free(order);
    cJSON_Delete(root);
    return rc;
}

static int add_map(struct safetensors_set *s, void *base, size_t len, int owned) {
    struct st_map *m = realloc(s->maps, (size_t)(s->num_maps + 1) * sizeof *m);
    if (!m) return folio_err(FOLIO_ENOMEM, "out of memory");
    s->maps = m;
    s->maps[s->num_maps++] = (struct st_map){base, len, owned};
    return 0;
}

static int map_file(struct safetensors_set *s, const char *path) {
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return folio_err(FOLIO_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = folio_err(FOLIO_EIO, "%s is not a regular file", path);
        goto out_close;
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) {
        rc = folio_err(FOLIO_EINVAL, "%s: file is too short to be safetensors (%zu bytes)", path, len);
        goto out_close;
    }
    void *base = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
        rc = folio_err(FOLIO_EIO, "cannot mmap %s: %s", path, strerror(errno));
        goto out_close;
    }
    if ((rc = add_map(s, base, len, 1))) {
        munmap(base, len);
        goto out_close;
    }
    rc = parse_image(s, path, base, len);
out_close:
    close(fd);
    return rc;
}

int safetensors_open_buffer(const void *data, size_t len, struct safetensors_set **out) {
    struct safetensors_set *s = calloc(1, sizeof *s);
    if (!s) return folio_err(FOLIO_ENOMEM, "out of memory");
    int rc = parse_image(s, "buffer", data, len);
    if (rc) {
        safetensors_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* A shard name comes from a file we do not trust: it must stay inside the model dir. */
static int shard_name_ok(const char *n) {
    return n[0] && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

static int open_index(struct safetensors_set *s, const char *dir, const char *index_path) {
    int rc;
    char *text = NULL;
    cJSON *root = NULL;
    char path[4096];
    if ((rc = folio_read_file(index_path, &text, NULL))) return rc;
    root = cJSON_Parse(text);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        rc = folio_err(FOLIO_EINVAL, "%s: not valid JSON with a \"weight_map\" object", index_path);
        goto out;
    }
    /* Map each distinct shard once, in order of first mention. */
    const cJSON *e, *prev;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            rc = folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" maps to a bad shard name", index_path, e->string);
            goto out;
        }
        int seen = 0;
        for (prev = wm->child; prev != e; prev = prev->next)
            if (strcmp(prev->valuestring, e->valuestring) == 0) {
                seen = 1;
                break;
            }
        if (seen) continue;
        if ((rc = folio_path_join(path, sizeof path, dir, e->valuestring))) goto out;
        if (!folio_file_exists(path)) {
            rc = folio_err(FOLIO_EIO, "%s names shard %s, which is missing", index_path, e->valuestring);
            goto out;
        }
        if ((rc = map_file(s, path))) goto out;
    }
    cJSON_ArrayForEach(e, wm) {
        if (!safetensors_find(s, e->string)) {
            rc = folio_err(FOLIO_EINVAL, "%s: tensor \"%s\" is not in shard %s", index_path, e->string,
                           e->valuestring);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

int safetensors_open_dir(const char *dir, struct safetensors_set **out) {
    int rc;
    char path[4096];
    struct safetensors_set *s = calloc(1, sizeof *s);
    if (!s) return folio_err(FOLIO_ENOMEM, "out of memory");
    if ((rc = folio_path_join(path, sizeof path, dir, "model.safetensors.index.json"))) goto out;
    if (folio_file_exists(path)) {
        rc = open_index(s, dir, path);
    } else {
        if ((rc = folio_path_join(path, sizeof path, dir, "model.safetensors"))) goto out;
        if (!folio_file_exists(path)) {
            rc = folio_err(FOLIO_EIO, "%s has neither model.safetensors nor model.safetensors.index.json", dir);
            goto out;
        }
        rc = map_file(s, path);
    }
out:
    if (rc) {
        safetensors_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
