/*
 * cli_dist.c — `molt train` / `molt distill` as one rank of a data-parallel job
 * (issue 18; include/molt_dist.h). MPI is started only under mpirun
 * (OMPI_COMM_WORLD_SIZE set) or with --dist; a plain run never touches it.
 * A GPU rank runs on cuda:<local rank> and reduces over NCCL, a CPU rank over
 * MPI. A rank that fails prints its error and stops every rank (MPI_Abort):
 * the job exits non-zero, and the checkpoints are as rank 0 last completed them.
 */
#include "cli.h"
#include "molt_dist.h"

#include <stdlib.h>
#include <string.h>

bool cli_dist_begin(cli_dist *d, bool force, const char **device) {
    memset(d, 0, sizeof *d);
    if (!force && !molt_dist_launched())
        return true;
    char err[256];
    if (molt_dist_init(NULL, NULL, err, sizeof err) != MOLT_OK) {
        fprintf(stderr, "molt: error: data parallel: %s\n", err);
        return false;
    }
    d->on = true;
    const char *dev = *device && **device ? *device : getenv("MOLT_DEVICE");
    if (dev && !strcmp(dev, "cuda")) { // one GPU per rank: its local rank's
        snprintf(d->devbuf, sizeof d->devbuf, "cuda:%d", molt_dist_local_rank());
        *device = d->devbuf;
    }
    return true;
}

bool cli_dist_comm(cli_dist *d, molt_ctx *ctx, int64_t n_params, int32_t batch) {
    if (!d->on)
        return true;
    char        err[256];
    const char *dev = molt_ctx_device(ctx);
    molt_status st = !strncmp(dev, "cuda", 4)
                         ? molt_comm_nccl_new(atoi(dev + 5), &d->comm, err, sizeof err)
                         : molt_comm_mpi_new(&d->comm, err, sizeof err);
    if (st != MOLT_OK) {
        fprintf(stderr, "molt: error: data parallel on %s: %s\n", dev, err);
        return false;
    }
    molt_ctx_set_comm(ctx, d->comm);
    int    n = molt_comm_world(d->comm);
    double mb = (double)n_params * 4e-6;
    if (molt_comm_rank(d->comm) == 0)
        fprintf(stderr,
                "molt: data parallel: %d rank%s (rank 0 on %s), global batch %d = %d x %d "
                "rows; per rank: parameters %.1f MB, gradients %.1f MB, AdamW moments %.1f MB "
                "(ZeRO-1: 1/%d of %.1f MB)\n",
                n, n > 1 ? "s" : "", dev, batch, n, batch / n, mb, mb, 2 * mb / n, n, 2 * mb);
    return true;
}

int cli_dist_rank(const cli_dist *d) { return d->on ? molt_comm_rank(d->comm) : 0; }

int cli_dist_end(cli_dist *d, int rc) {
    if (!d->on)
        return rc;
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE"), *rs = getenv("OMPI_COMM_WORLD_RANK");
    int world = d->comm ? molt_comm_world(d->comm) : ws ? atoi(ws) : 1;
    int rank = d->comm ? molt_comm_rank(d->comm) : rs ? atoi(rs) : 0;
    if (rc != 0 && world > 1) { // the others may wait in a collective: stop them all
        fprintf(stderr, "molt: error: rank %d of %d failed (above): stopping every rank\n", rank,
                world);
        molt_comm_abort(d->comm, rc); // does not return
    }
    molt_comm_free(d->comm);
    molt_dist_finalize();
    return rc;
}
