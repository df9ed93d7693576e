/*
 * dist.c — the library's side of data parallelism (comm.h): shard arithmetic,
 * bucketed collectives with rank-naming errors, the context's communicator.
 * Names no MPI and no NCCL: the communicators (comm_mpi.c, comm_nccl.c) are in
 * libmolt_dist.
 */
#include "dist/comm.h"

void dist_shard(size_t n, int world, int rank, size_t *lo, size_t *hi) {
    size_t w = (size_t)(world > 0 ? world : 1), r = (size_t)(rank > 0 ? rank : 0);
    size_t q = n / w, x = n % w;
    if (r > w)
        r = w;
    *lo = r * q + (r < x ? r : x);
    *hi = *lo + (r < w ? q + (r < x) : 0);
}

static molt_status fail(molt_ctx *ctx, molt_comm *c, const char *what) {
    return molt__err(ctx, MOLT_ERR_IO, "rank %d of %d: %s failed: %s", c->rank, c->world, what,
                     c->err[0] ? c->err : "(no detail)");
}

molt_status dist_allreduce(molt_ctx *ctx, molt_comm *c, const molt_exec *ex, float *buf,
                           size_t n, dist_op op) {
    for (size_t o = 0; o < n; o += DIST_BUCKET) {
        size_t k = n - o < DIST_BUCKET ? n - o : DIST_BUCKET;
        if (c->allreduce(c, ex, buf + o, k, op))
            return fail(ctx, c, "gradient all-reduce");
    }
    return MOLT_OK;
}

molt_status dist_allgather(molt_ctx *ctx, molt_comm *c, const molt_exec *ex, float *buf,
                           size_t n) {
    return c->allgather(c, ex, buf, n) ? fail(ctx, c, "parameter all-gather") : MOLT_OK;
}

molt_status dist_mean_host(molt_ctx *ctx, molt_comm *c, double *x, int n) {
    if (c->sum_host(c, x, n))
        return fail(ctx, c, "loss reduction");
    for (int i = 0; i < n; i++)
        x[i] /= (double)c->world;
    return MOLT_OK;
}

molt_comm *dist_comm(const molt_ctx *ctx) { return ctx ? ctx->comm : NULL; }

void molt_ctx_set_comm(molt_ctx *ctx, molt_comm *comm) {
    if (ctx)
        ctx->comm = comm;
}
int molt_comm_rank(const molt_comm *comm) { return comm ? comm->rank : 0; }
int molt_comm_world(const molt_comm *comm) { return comm ? comm->world : 1; }
