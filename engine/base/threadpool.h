/* threadpool: a fixed set of worker threads for data-parallel kernels.
 *
 * A decode step issues a few hundred small parallel ops, so waking workers through a
 * condition variable for each one would cost more than the ops on small models. Workers
 * instead spin on a generation counter while work keeps arriving, and only fall back to
 * sleeping on a futex-like condvar after a short idle period. The calling thread takes part
 * as worker 0, so a pool of n threads starts n-1 of its own. */
#ifndef FOLIO_THREADPOOL_H
#define FOLIO_THREADPOOL_H

struct threadpool;

/* fn(ctx, task, thread) is called once for each task in [0, n_tasks); `thread` is in
 * [0, threadpool_size) and lets a task use per-thread scratch. */
typedef void (*threadpool_fn)(void *ctx, int task, int thread);

/* n_threads <= 0 picks the number of online CPUs. Free with threadpool_free. */
struct threadpool *threadpool_create(int n_threads);
void threadpool_free(struct threadpool *tp);
int threadpool_size(const struct threadpool *tp);

/* Runs all tasks and returns when every one has finished. Tasks are handed out dynamically
 * (an atomic counter), so uneven tasks balance. Not reentrant: one caller at a time. */
void threadpool_run(struct threadpool *tp, int n_tasks, threadpool_fn fn, void *ctx);

#endif
