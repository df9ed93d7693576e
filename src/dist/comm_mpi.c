/*
 * comm_mpi.c — the MPI communicator (comm.h) for host buffers, and MPI's
 * lifetime (molt_dist.h). In libmolt_dist.a only. Built with MOLT_MPI (the
 * Makefile sets it when `pkg-config ompi-c` finds Open MPI); without it every
 * constructor says MOLT_ERR_UNSUPPORTED.
 *
 * Errors return (MPI_ERRORS_RETURN on the communicator), so a failed
 * collective becomes a message naming the rank; a rank that dies outright is
 * mpirun's to notice: it stops every other rank (no hang).
 */
#include "dist/comm.h"
#include "molt_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int molt_dist_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }

int molt_dist_local_rank(void) {
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    return s ? atoi(s) : 0;
}

static void mpi_abort(int code);

void molt_comm_abort(molt_comm *c, int code) {
    if (c && c->abort)
        c->abort(c, code);
    mpi_abort(code); // no communicator yet: MPI's world, when MPI is up
    exit(code);
}

void molt_comm_free(molt_comm *c) {
    if (c && c->free)
        c->free(c);
}

#ifdef MOLT_MPI
#include <mpi.h>

static int mpi_up;

// the started non-blocking reductions (allreduce_start) until allreduce_wait
typedef struct mpi_pending {
    MPI_Request req[DIST_MAX_PENDING];
    float      *buf[DIST_MAX_PENDING];
    size_t      n[DIST_MAX_PENDING];
    int         mean[DIST_MAX_PENDING];
    int         k;
} mpi_pending;

static void mpi_abort(int code) {
    if (mpi_up) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
}

molt_status molt_dist_init(int *argc, char ***argv, char *err, size_t n) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init && MPI_Init(argc, argv) != MPI_SUCCESS) {
        snprintf(err, n, "MPI_Init failed");
        return MOLT_ERR_IO;
    }
    mpi_up = 1;
    return MOLT_OK;
}

void molt_dist_finalize(void) {
    int fin = 0;
    if (mpi_up && (MPI_Finalized(&fin), !fin))
        MPI_Finalize();
    mpi_up = 0;
}

static int check(molt_comm *c, int rc, const char *what) {
    if (rc == MPI_SUCCESS)
        return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int  len = 0;
    MPI_Error_string(rc, msg, &len);
    snprintf(c->err, sizeof c->err, "%.40s: %.200s", what, msg);
    return 1;
}

// MPI counts are int: messages of at most 2^30 floats
#define MPI_CHUNK ((size_t)1 << 30)

static int m_allreduce(molt_comm *c, const molt_exec *ex, float *buf, size_t n, dist_op op) {
    (void)ex;
    for (size_t o = 0; o < n; o += MPI_CHUNK) {
        int k = (int)(n - o < MPI_CHUNK ? n - o : MPI_CHUNK);
        if (check(c, MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce"))
            return 1;
    }
    if (op == DIST_MEAN && c->world > 1)
        for (size_t i = 0; i < n; i++)
            buf[i] /= (float)c->world;
    return 0;
}

static int m_allreduce_start(molt_comm *c, const molt_exec *ex, float *buf, size_t n,
                             dist_op op) {
    (void)ex;
    mpi_pending *p = c->impl;
    for (size_t o = 0; o < n; o += MPI_CHUNK) {
        int k = (int)(n - o < MPI_CHUNK ? n - o : MPI_CHUNK);
        if (p->k == DIST_MAX_PENDING) {
            snprintf(c->err, sizeof c->err, "more than %d reductions started", DIST_MAX_PENDING);
            return 1;
        }
        if (check(c, MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                    &p->req[p->k]),
                  "MPI_Iallreduce"))
            return 1;
        p->buf[p->k] = buf + o;
        p->n[p->k] = (size_t)k;
        p->mean[p->k++] = op == DIST_MEAN;
    }
    return 0;
}

static int m_allreduce_wait(molt_comm *c, const molt_exec *ex) {
    (void)ex;
    mpi_pending *p = c->impl;
    int          k = p->k;
    p->k = 0;
    if (k && check(c, MPI_Waitall(k, p->req, MPI_STATUSES_IGNORE), "MPI_Waitall"))
        return 1;
    for (int j = 0; j < k; j++)
        if (p->mean[j] && c->world > 1)
            for (size_t i = 0; i < p->n[j]; i++)
                p->buf[j][i] /= (float)c->world;
    return 0;
}

static int m_bcast(molt_comm *c, const molt_exec *ex, float *buf, size_t n, int root) {
    (void)ex;
    for (size_t o = 0; o < n; o += MPI_CHUNK) {
        int k = (int)(n - o < MPI_CHUNK ? n - o : MPI_CHUNK);
        if (check(c, MPI_Bcast(buf + o, k, MPI_FLOAT, root, MPI_COMM_WORLD), "MPI_Bcast"))
            return 1;
    }
    return 0;
}

// every rank's shard broadcast from its owner (an all-gather of uneven shards)
static int m_allgather(molt_comm *c, const molt_exec *ex, float *buf, size_t n) {
    for (int r = 0; r < c->world; r++) {
        size_t lo, hi;
        dist_shard(n, c->world, r, &lo, &hi);
        if (hi > lo && m_bcast(c, ex, buf + lo, hi - lo, r))
            return 1;
    }
    return 0;
}

static int m_sum_host(molt_comm *c, double *x, int n) {
    return check(c, MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                 "MPI_Allreduce");
}

static int m_barrier(molt_comm *c) { return check(c, MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

static void m_abort(molt_comm *c, int code) {
    (void)c;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void m_free(molt_comm *c) {
    free(c->impl);
    free(c);
}

molt_status molt_comm_mpi_new(molt_comm **out, char *err, size_t n) {
    *out = NULL;
    if (!mpi_up) {
        snprintf(err, n, "MPI is not initialised (molt_dist_init)");
        return MOLT_ERR_ARG;
    }
    molt_comm *c = calloc(1, sizeof *c);
    if (c && !(c->impl = calloc(1, sizeof(mpi_pending))))
        c = (free(c), NULL);
    if (!c) {
        snprintf(err, n, "out of memory");
        return MOLT_ERR_OOM;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    c->local_rank = molt_dist_local_rank();
    c->kind = "mpi";
    c->allreduce = m_allreduce;
    c->allreduce_start = m_allreduce_start;
    c->allreduce_wait = m_allreduce_wait;
    c->allgather = m_allgather;
    c->bcast = m_bcast;
    c->sum_host = m_sum_host;
    c->barrier = m_barrier;
    c->abort = m_abort;
    c->free = m_free;
    *out = c;
    return MOLT_OK;
}

#else // built without MPI

static void mpi_abort(int code) { (void)code; }

molt_status molt_dist_init(int *argc, char ***argv, char *err, size_t n) {
    (void)argc, (void)argv;
    snprintf(err, n, "this molt was built without MPI (install libopenmpi-dev, rebuild)");
    return MOLT_ERR_UNSUPPORTED;
}
void        molt_dist_finalize(void) {}
molt_status molt_comm_mpi_new(molt_comm **out, char *err, size_t n) {
    *out = NULL;
    snprintf(err, n, "this molt was built without MPI (install libopenmpi-dev, rebuild)");
    return MOLT_ERR_UNSUPPORTED;
}
#endif

#ifndef MOLT_CUDA
molt_status molt_comm_nccl_new(int device, molt_comm **out, char *err, size_t n) {
    (void)device;
    *out = NULL;
    snprintf(err, n, "NCCL needs a molt built with `make cuda`");
    return MOLT_ERR_UNSUPPORTED;
}
#endif
