/*
 * comm.h — the communicator a data-parallel run reduces over (issue 18): one
 * process per rank, every rank holding the whole model, each reading its own
 * slice of every global batch.
 *
 * `molt_comm` is a table of collectives, like the backend's op table: the
 * training code (train/step.c, train/trainer.c, distill/mohawk.c) calls only
 * these entries, never MPI or NCCL, so libmolt links neither. The
 * implementations live in src/dist/comm_mpi.c (CPU buffers: MPI_Allreduce, ...)
 * and src/dist/comm_nccl.c (`make cuda`: GPU buffers through NCCL on the exec's
 * stream, bootstrapped and host scalars over MPI); both are built into
 * libmolt_dist.a, which only the molt binary and the dist tests link
 * (include/molt_dist.h creates them). A context without a communicator
 * (molt_ctx_set_comm never called: every plain run) takes none of these paths.
 *
 * Buffers of the float entries are backend buffers of the model's backend
 * (host memory for the MPI communicator, device memory for NCCL's); every
 * entry is a collective: every rank calls it, in the same order, with the same
 * n. A failed collective returns non-zero with a message in err (the caller
 * stops the job: `abort`). Shape legend: n floats, world ranks, rank r.
 */
#ifndef MOLT_DIST_COMM_H
#define MOLT_DIST_COMM_H

#include "core/core.h"
#include "core/exec.h"

typedef enum dist_op { DIST_SUM = 0, DIST_MEAN } dist_op;

struct molt_comm {
    int         rank, world, local_rank; // local_rank: the rank's index on its host (its GPU)
    const char *kind;                    // "mpi" or "nccl"
    void       *impl;
    char        err[256];                // the last failure's message
    // buf[n] ← Σ_ranks buf (DIST_MEAN: then ÷ world), in place
    int (*allreduce)(struct molt_comm *c, const molt_exec *ex, float *buf, size_t n, dist_op op);
    // allreduce started and returned at once (queued behind the work already on ex: on a GPU
    // a side stream waits for it, so the reduction overlaps what ex does next); every started
    // one is finished by allreduce_wait, which also orders ex's later work after them. Buffers
    // must not be touched in between. At most DIST_MAX_PENDING started before a wait.
    int (*allreduce_start)(struct molt_comm *c, const molt_exec *ex, float *buf, size_t n,
                           dist_op op);
    int (*allreduce_wait)(struct molt_comm *c, const molt_exec *ex);
    // buf[n]: rank r's shard [lo_r, hi_r) (dist_shard) copied to every rank, in place
    int (*allgather)(struct molt_comm *c, const molt_exec *ex, float *buf, size_t n);
    // buf[n] ← root's buf
    int (*bcast)(struct molt_comm *c, const molt_exec *ex, float *buf, size_t n, int root);
    // host doubles x[n] ← Σ_ranks x (losses, token counts)
    int (*sum_host)(struct molt_comm *c, double *x, int n);
    int (*barrier)(struct molt_comm *c);
    // stops every rank of the job (MPI_Abort / ncclCommAbort first); does not return
    void (*abort)(struct molt_comm *c, int code);
    void (*free)(struct molt_comm *c);
};
typedef struct molt_comm molt_comm;

// Rank r's contiguous shard [*lo, *hi) of n elements over world ranks: the first
// n % world ranks hold ⌈n/world⌉, the rest ⌊n/world⌋ (empty when n < world and
// r ≥ n). The shards tile [0, n) in rank order.
void dist_shard(size_t n, int world, int rank, size_t *lo, size_t *hi);

// Collectives over a large buffer, cut into buckets of DIST_BUCKET floats (so a
// transport's message stays bounded and the reduction of one bucket can overlap
// the next on a device stream). MOLT_ERR_IO naming the rank and the comm's
// message on failure.
#define DIST_BUCKET ((size_t)1 << 24)
#define DIST_MAX_PENDING 1024
molt_status dist_allreduce(molt_ctx *ctx, molt_comm *c, const molt_exec *ex, float *buf,
                           size_t n, dist_op op);
molt_status dist_allgather(molt_ctx *ctx, molt_comm *c, const molt_exec *ex, float *buf,
                           size_t n);
// x[n] ← mean over ranks of x (host doubles)
molt_status dist_mean_host(molt_ctx *ctx, molt_comm *c, double *x, int n);

// ctx's communicator (molt_ctx_set_comm; world 1 included: a run under
// `mpirun -np 1` takes the same code as N ranks), NULL for a plain run.
molt_comm *dist_comm(const molt_ctx *ctx);
static inline int dist_rank(const molt_comm *c) { return c ? c->rank : 0; }
static inline int dist_world(const molt_comm *c) { return c ? c->world : 1; }

#endif
