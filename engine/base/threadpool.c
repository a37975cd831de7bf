/* threadpool: see threadpool.h.
 *
 * Tasks are claimed with a CAS on one 64-bit word holding (generation << 32 | next task), so a
 * worker that wakes up late, for a job already finished, finds the generation changed and
 * claims nothing. The caller therefore waits only for tasks actually claimed, never for idle
 * or descheduled workers to check in: on a loaded machine a worker that misses a job costs
 * nothing. */
#include "base/threadpool.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/util.h"

/* How long an idle worker spins before sleeping: long enough to cover the gap between two
 * ops of one forward pass, short enough not to burn a core between requests. */
#define SPIN_SECONDS 0.002

struct threadpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t work;  /* (generation << 32) | next unclaimed task */
    _Atomic int done;       /* tasks finished in the current generation */
    _Atomic int stop;
    /* the current job; written before its generation is published, stable until it ends */
    threadpool_fn fn;
    void *ctx;
    /* Read before a claim's CAS, possibly while the next job is being set up: atomic, so that
     * the stale read (which the failing CAS then discards) is defined. */
    _Atomic int n_tasks;
};

struct worker_arg {
    struct threadpool *tp;
    int id;
};

/* Claims the next task of generation gen, or returns -1 when there is none. */
static int claim(struct threadpool *tp, uint32_t gen) {
    uint64_t w = atomic_load_explicit(&tp->work, memory_order_acquire);
    for (;;) {
        uint32_t n = (uint32_t)atomic_load_explicit(&tp->n_tasks, memory_order_relaxed);
        if ((uint32_t)(w >> 32) != gen || (uint32_t)w >= n) return -1;
        if (atomic_compare_exchange_weak_explicit(&tp->work, &w, w + 1, memory_order_acq_rel, memory_order_acquire))
            return (int)(uint32_t)w;
    }
}

static void run_tasks(struct threadpool *tp, uint32_t gen, int thread) {
    int t;
    while ((t = claim(tp, gen)) >= 0) {
        tp->fn(tp->ctx, t, thread);
        atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
    }
}

static uint32_t current_gen(struct threadpool *tp) {
    return (uint32_t)(atomic_load_explicit(&tp->work, memory_order_acquire) >> 32);
}

static void *worker_main(void *p) {
    struct worker_arg *arg = p;
    struct threadpool *tp = arg->tp;
    int id = arg->id;
    free(arg);
    uint32_t seen = 0; /* the generation at creation: a run may start before this thread does */
    for (;;) {
        double spin_until = folio_now() + SPIN_SECONDS;
        uint32_t g;
        int iter = 0;
        while ((g = current_gen(tp)) == seen && !atomic_load(&tp->stop)) {
            _mm_pause();
            if (++iter % 256 == 0 && folio_now() > spin_until) {
                pthread_mutex_lock(&tp->mu);
                while (current_gen(tp) == seen && !atomic_load(&tp->stop)) pthread_cond_wait(&tp->cv, &tp->mu);
                pthread_mutex_unlock(&tp->mu);
            }
        }
        if (atomic_load(&tp->stop)) break;
        seen = g;
        run_tasks(tp, g, id);
    }
    return NULL;
}

struct threadpool *threadpool_create(int n_threads) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    struct threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->threads = calloc((size_t)n_threads, sizeof *tp->threads);
    if (!tp->threads) goto fail;
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *arg = malloc(sizeof *arg);
        if (!arg) goto fail_started;
        arg->tp = tp;
        arg->id = i;
        if (pthread_create(&tp->threads[i], NULL, worker_main, arg) != 0) {
            free(arg);
            goto fail_started;
        }
        continue;
    fail_started:
        tp->n = i; /* join only the ones that started */
        goto fail;
    }
    return tp;
fail:
    threadpool_free(tp);
    return NULL;
}

void threadpool_free(struct threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    if (tp->threads)
        for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->threads);
    free(tp);
}

int threadpool_size(const struct threadpool *tp) { return tp->n; }

void threadpool_run(struct threadpool *tp, int n_tasks, threadpool_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (tp->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    /* Close the previous generation before touching the job: a worker that read the old
     * word could otherwise claim an index past its end against the new n_tasks. Workers that
     * see the closed word claim nothing and wait for the next change, the opening. */
    uint32_t closed = current_gen(tp) + 1, gen = closed + 1;
    atomic_store_explicit(&tp->work, ((uint64_t)closed << 32) | UINT32_MAX, memory_order_release);
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&tp->mu);
    atomic_store_explicit(&tp->work, (uint64_t)gen << 32, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    run_tasks(tp, gen, 0);
    /* Only tasks already claimed by a worker remain; they are short. */
    for (int iter = 0; atomic_load_explicit(&tp->done, memory_order_acquire) < n_tasks; iter++) {
        if (iter < 4096) _mm_pause();
        else sched_yield();
    }
}
