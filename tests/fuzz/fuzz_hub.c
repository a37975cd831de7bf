/* libFuzzer target for foliod's parser of the Hub's revision API answer (daemon/hub.c):
 * arbitrary bytes; a parse that succeeds must give a 40-hex commit, at least one file, only
 * files hub_wanted takes, non-negative sizes that add up to the total, and well-formed hashes. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct hub_repo r; /* 40 KB: off the stack */
    if (hub_parse_repo((const char *)data, size, &r) != 0) return 0;
    assert(strlen(r.sha) == 40 && strspn(r.sha, "0123456789abcdef") == 40);
    assert(r.num_files > 0 && r.num_files <= HUB_MAX_FILES);
    int64_t total = 0;
    for (int i = 0; i < r.num_files; i++) {
        const struct hub_file *f = &r.files[i];
        assert(hub_wanted(f->name) && f->size >= 0);
        assert(!f->sha256[0] || strlen(f->sha256) == 64);
        assert(!f->blob_id[0] || strlen(f->blob_id) == 40);
        total += f->size;
    }
    assert(total == r.total);
    return 0;
}
