/* safetensors: read-only access to .safetensors checkpoints by mmap, single-file or sharded
 * through model.safetensors.index.json. Every header is validated before any tensor is
 * handed out (offsets inside the file, sizes matching shape x dtype, no overlaps), so a
 * truncated or lying file is an error here and never a wild read later. */
#ifndef FOLIO_SAFETENSORS_H
#define FOLIO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define SAFETENSORS_MAX_DIMS 8

struct safetensors_tensor {
    const char *name;         /* owned by the safetensors_set */
    enum folio_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;         /* points into the mapping; valid until safetensors_free */
    size_t nbytes;
};

struct safetensors_set;

/* Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json.
 * Free with safetensors_free. */
int safetensors_open_dir(const char *dir, struct safetensors_set **out);

/* Parses one in-memory safetensors image (not copied: `data` must outlive the set). For tests
 * and the fuzzer. */
int safetensors_open_buffer(const void *data, size_t len, struct safetensors_set **out);

void safetensors_free(struct safetensors_set *s);

const struct safetensors_tensor *safetensors_find(const struct safetensors_set *s, const char *name); /* NULL if absent */
int safetensors_num_tensors(const struct safetensors_set *s);
const struct safetensors_tensor *safetensors_tensor_at(const struct safetensors_set *s, int i);

#endif
