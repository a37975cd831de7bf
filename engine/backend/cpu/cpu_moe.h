/* cpu_moe: the CPU backend's sparse mixture-of-experts block (backend_moe's contract in
 * backend.h). Tokens are taken a chunk at a time; within a chunk they are grouped by expert
 * (a counting sort of the (token, expert) pairs), so that each active expert's matrices are
 * streamed once for all its tokens and an idle expert's are never touched: decode reads
 * top_k experts per token, not num_experts. */
#ifndef FOLIO_CPU_MOE_H
#define FOLIO_CPU_MOE_H

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "base/threadpool.h"

struct cpu_moe;

/* Buffers for batches of up to max_pairs (token, expert) pairs of this shape (allocated
 * here, once, at reserve time). Returns NULL when out of memory. */
struct cpu_moe *cpu_moe_create(int max_pairs, int hidden, int inter, int num_experts);
void cpu_moe_free(struct cpu_moe *m);
/* Whether m was made for at least this shape. */
int cpu_moe_fits(const struct cpu_moe *m, int top_k, int hidden, int inter, int num_experts);
void cpu_moe_run(struct cpu_moe *m, struct threadpool *tp, const struct cpu_kernels *k,
                 const struct backend_moe_args *a);

#endif
