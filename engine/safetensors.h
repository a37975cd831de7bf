/* safetensors: read-only access to .safetensors checkpoints by mmap, single-file or sharded
 * through model.safetensors.index.json. Every header is validated before any tensor is
 * handed out (offsets inside the file, sizes matching shape x dtype, no overlaps), so a
 * truncated or lying file is an error here and never a wild read later. */
#ifndef FOLIO_SAFETENSORS_H
#define FOLIO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define ST_MAX_DIMS 8

struct st_tensor {
    const char *name;         /* owned by the st_set */
    enum folio_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;         /* points into the mapping; valid until st_free */
    size_t nbytes;
};

struct st_set;

/* Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json.
 * Free with st_free. */
int st_open_dir(const char *dir, struct st_set **out);

/* Parses one in-memory safetensors image (not copied: `data` must outlive the set). For tests
 * and the fuzzer. */
int st_open_buffer(const void *data, size_t len, struct st_set **out);

void st_free(struct st_set *s);

const struct st_tensor *st_find(const struct st_set *s, const char *name); /* NULL if absent */
int st_num_tensors(const struct st_set *s);
const struct st_tensor *st_tensor_at(const struct st_set *s, int i);

#endif
