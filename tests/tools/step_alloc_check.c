/* step_alloc_check: proves that the engine's step loop does not allocate. It interposes
 * malloc, calloc, realloc, posix_memalign and aligned_alloc (forwarding to glibc's
 * __libc_* entry points), runs a mixed workload (chunked prefills, decodes, n > 1 with
 * copy-on-write, stop strings, logprobs, penalties, prefix-cache hits, preemption and aborts,
 * and structured output: grammar masks and matchers, a JSON Schema and a regex) through
 * engine_step, and counts the allocations made inside engine_step. Request buffers
 * are allocated in engine_submit, on the caller's side, which is allowed.
 *
 * Under AddressSanitizer the allocator belongs to ASan: the workload still runs (for ASan's
 * sake) but allocations are not counted.
 * Usage: step_alloc_check MODEL_DIR [KV_CACHE_DTYPE]. Prints `N passed, N failed`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/structured.h"
#include "base/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static __thread int counting;
static long long allocations;

#ifndef UNDER_ASAN
#include <errno.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t n) {
    if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) {
    if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_memalign(align, n);
}
#endif

int main(int argc, char **argv) {
#ifdef UNDER_ASAN
    const int counted = 0;
#else
    const int counted = 1;
#endif
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: step_alloc_check MODEL_DIR [KV_CACHE_DTYPE]\n");
        return 2;
    }
    struct engine_params p = engine_default_params();
    p.model = argv[1];
    if (argc == 3) p.kv_cache_dtype = argv[2];
    p.threads = 2;
    p.block_size = 4;
    p.num_blocks = 70; /* small enough to preempt */
    p.max_model_len = 256; /* stories260K's and the generated presets' */
    p.max_num_seqs = 16;
    p.max_num_batched_tokens = 48;
    struct engine *e = NULL;
    if (engine_create(&p, &e) != 0) {
        fprintf(stderr, "step_alloc_check: %s\n", folio_last_error());
        return 1;
    }
    enum { NREQ = 24 };
    struct engine_req *h[NREQ] = {0};
    int32_t prompt[120];
    const int vocab = engine_model_config(e)->vocab_size; /* stories260K's 512, or a generated model's */
    for (int i = 0; i < 120; i++) prompt[i] = 3 + (i * 37) % (vocab - 12);
    const char *stops[] = {"Lily", " the"};
    struct sampler_logit_bias bias[] = {{300, 2.0f}};
    int32_t stop_ids[] = {vocab > 426 ? 426 : 26};
    int failed = 0, submitted = 0;
    long long in_steps = 0, steps = 0;
    /* Grammars compile on the caller's side (an HTTP thread), like a submit. */
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,"
                                 "\"maximum\":999},\"s\":{\"type\":\"string\",\"maxLength\":12}},\"required\":[\"n\",\"s\"]}";
    static const char regex[] = "[a-z]+( [a-z]+){2,12}\\.";
    struct structured *gram[2] = {0};
    const struct structured_spec specs[2] = {{.kind = STRUCTURED_JSON, .text = schema, .len = sizeof schema - 1},
                                             {.kind = STRUCTURED_REGEX, .text = regex, .len = sizeof regex - 1}};
    for (int k = 0; k < 2; k++)
        if (engine_structured(e, &specs[k], &gram[k]) != 0) {
            fprintf(stderr, "step_alloc_check: %s\n", folio_last_error());
            failed++;
        }
    for (int i = 0; i < NREQ; i++) {
        struct engine_request rq = {.prompt = prompt, .num_prompt = 10 + (i * 13) % 100,
                                    .params = sampler_default_params()};
        struct sampling_params *sp = &rq.params;
        sp->max_tokens = 20 + i % 40;
        sp->n = i % 5 == 0 ? 3 : 1;
        sp->temperature = i % 3 == 0 ? 0 : 0.8f;
        sp->top_p = 0.9f;
        sp->top_k = i % 2 ? 20 : 0;
        sp->min_p = 0.01f;
        sp->repetition_penalty = 1.1f;
        sp->frequency_penalty = 0.2f;
        sp->logprobs = i % 4 == 0 ? 5 : -1;
        sp->stop = stops;
        sp->num_stop = i % 2 ? 2 : 0;
        sp->stop_token_ids = stop_ids;
        sp->num_stop_token_ids = i % 7 == 0;
        sp->logit_bias = bias;
        sp->num_logit_bias = 1;
        sp->has_seed = 1;
        sp->seed = (uint64_t)i;
        rq.structured = i % 3 == 1 ? gram[(i / 3) % 2] : NULL;
        /* The interposition itself is checked: a submit does allocate. */
        counting = i == 0;
        int rc = engine_submit(e, &rq, &h[i]);
        counting = 0;
        if (i == 0 && __atomic_exchange_n(&allocations, 0, __ATOMIC_RELAXED) == 0 && counted) {
            printf("FAIL the malloc interposition saw nothing during engine_submit\n");
            failed++;
        }
        if (rc != 0) {
            fprintf(stderr, "submit %d: %s\n", i, folio_last_error());
            failed++;
        } else {
            submitted++;
        }
    }
    struct engine_output o;
    for (int left = submitted; left > 0 && steps < 100000; steps++) {
        if (steps == 5 && h[3]) engine_abort(h[3]);
        counting = 1;
        int n = engine_step(e);
        counting = 0;
        if (n < 0) {
            fprintf(stderr, "step: %s\n", folio_last_error());
            failed++;
            break;
        }
        in_steps = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
        left = 0;
        for (int i = 0; i < NREQ; i++) {
            if (!h[i]) continue;
            int rc;
            while ((rc = engine_read(h[i], &o, 0)) == ENGINE_READ_OUTPUT) {
            }
            if (rc == ENGINE_READ_DONE) {
                engine_release(h[i]);
                h[i] = NULL;
            } else {
                left++;
            }
        }
    }
    struct engine_stats st;
    engine_get_stats(e, &st);
    int pass = 0;
    if (!counted) {
        pass++;
        printf("ok %lld engine steps under AddressSanitizer (allocations not counted: ASan owns malloc)\n", steps);
    } else if (in_steps == 0) {
        pass++;
        printf("ok no allocation in %lld engine steps (%lld tokens generated, %lld preemptions, %lld block copies)\n",
               steps, st.generation_tokens, st.num_preemptions, st.cow_copies);
    } else {
        failed++;
        printf("FAIL %lld allocations inside %lld engine steps\n", in_steps, steps);
    }
    if (st.num_preemptions > 0 && st.cow_copies > 0) {
        pass++;
        printf("ok the workload exercised preemption and copy-on-write\n");
    } else {
        failed++;
        printf("FAIL the workload did not preempt (%lld) or copy (%lld)\n", st.num_preemptions, st.cow_copies);
    }
    for (int i = 0; i < NREQ; i++) engine_release(h[i]);
    structured_release(gram[0]);
    structured_release(gram[1]);
    engine_free(e);
    printf("%d passed, %d failed\n", pass, failed);
    return failed ? 1 : 0;
}
