/*
 * comm_nccl.c — the NCCL communicator (comm.h) for buffers on a CUDA device:
 * one GPU per rank (the caller's context already on cuda:<local rank>), the
 * collectives queued on the exec's stream. Bootstrap: rank 0's ncclUniqueId
 * broadcast over MPI; NCCL_NVLS_ENABLE=0 is set before the communicator is
 * made (NVLink multicast can put a shared host's GPUs out of service). Host
 * scalars (losses) and the barrier go over MPI. Built only by `make cuda`
 * (with MOLT_MPI), into libmolt_dist.a.
 *
 * No hang: after queueing a collective the rank waits for its stream while
 * polling ncclCommGetAsyncError, and gives up after MOLT_DIST_TIMEOUT seconds
 * (default 900): the communicator is aborted (ncclCommAbort) and the call
 * fails with a message; the CLI then stops the job (MPI_Abort). A rank that
 * dies outright is mpirun's to notice: it kills the others.
 */
#include "dist/comm.h"
#include "molt_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef MOLT_MPI
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

typedef struct nccl_impl {
    ncclComm_t   comm;
    cudaStream_t side; // allreduce_start's reductions, behind an event of the exec's stream
    cudaEvent_t  ev;
    int        device;
    double     timeout_s;
    int        aborted;
} nccl_impl;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail_nccl(molt_comm *c, ncclResult_t r, const char *what) {
    snprintf(c->err, sizeof c->err, "%.40s: %.200s", what, ncclGetErrorString(r));
    return 1;
}

// waits for stream s's work, polling NCCL's asynchronous errors, with a timeout
static int wait_on(molt_comm *c, cudaStream_t s, const char *what) {
    nccl_impl *p = c->impl;
    double     t0 = now_s();
    for (long spin = 0;; spin++) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaSuccess)
            return 0;
        if (e != cudaErrorNotReady) {
            snprintf(c->err, sizeof c->err, "%.40s: CUDA: %.200s", what, cudaGetErrorString(e));
            return 1;
        }
        ncclResult_t ae = ncclSuccess;
        ncclCommGetAsyncError(p->comm, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress) {
            ncclCommAbort(p->comm);
            p->aborted = 1;
            return fail_nccl(c, ae, what);
        }
        if (now_s() - t0 > p->timeout_s) {
            ncclCommAbort(p->comm);
            p->aborted = 1;
            snprintf(c->err, sizeof c->err,
                     "%.40s: no progress in %.0f s (a rank stopped?); NCCL aborted "
                     "(MOLT_DIST_TIMEOUT sets the limit)",
                     what, p->timeout_s);
            return 1;
        }
        if (spin > 1000) {
            struct timespec ns = {0, 100000}; // 0.1 ms
            nanosleep(&ns, NULL);
        }
    }
}

static int wait_stream(molt_comm *c, const molt_exec *ex, const char *what) {
    return wait_on(c, (cudaStream_t)ex->stream, what);
}

static int cuda_fail(molt_comm *c, cudaError_t e, const char *what) {
    snprintf(c->err, sizeof c->err, "%.40s: CUDA: %.200s", what, cudaGetErrorString(e));
    return 1;
}

// on the side stream, once the exec's stream has reached this point
static int n_allreduce_start(molt_comm *c, const molt_exec *ex, float *buf, size_t n,
                             dist_op op) {
    nccl_impl  *p = c->impl;
    cudaError_t e = cudaSuccess;
    if (!p->side && ((e = cudaStreamCreateWithFlags(&p->side, cudaStreamNonBlocking)) !=
                         cudaSuccess ||
                     (e = cudaEventCreateWithFlags(&p->ev, cudaEventDisableTiming)) !=
                         cudaSuccess))
        return cuda_fail(c, e, "side stream");
    if ((e = cudaEventRecord(p->ev, (cudaStream_t)ex->stream)) != cudaSuccess ||
        (e = cudaStreamWaitEvent(p->side, p->ev, 0)) != cudaSuccess)
        return cuda_fail(c, e, "cudaStreamWaitEvent");
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, op == DIST_MEAN ? ncclAvg : ncclSum,
                                   p->comm, p->side);
    return r != ncclSuccess ? fail_nccl(c, r, "ncclAllReduce (overlapped)") : 0;
}

// the exec's stream continues after the side stream's reductions; the host waits for them
// (polling errors, with the timeout)
static int n_allreduce_wait(molt_comm *c, const molt_exec *ex) {
    nccl_impl  *p = c->impl;
    cudaError_t e;
    if (!p->side)
        return 0;
    if ((e = cudaEventRecord(p->ev, p->side)) != cudaSuccess ||
        (e = cudaStreamWaitEvent((cudaStream_t)ex->stream, p->ev, 0)) != cudaSuccess)
        return cuda_fail(c, e, "cudaStreamWaitEvent");
    return wait_on(c, p->side, "ncclAllReduce (overlapped)");
}

static int n_allreduce(molt_comm *c, const molt_exec *ex, float *buf, size_t n, dist_op op) {
    nccl_impl   *p = c->impl;
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, op == DIST_MEAN ? ncclAvg : ncclSum,
                                   p->comm, (cudaStream_t)ex->stream);
    return r != ncclSuccess ? fail_nccl(c, r, "ncclAllReduce")
                            : wait_stream(c, ex, "ncclAllReduce");
}

static int n_bcast(molt_comm *c, const molt_exec *ex, float *buf, size_t n, int root) {
    nccl_impl   *p = c->impl;
    ncclResult_t r = ncclBroadcast(buf, buf, n, ncclFloat, root, p->comm,
                                   (cudaStream_t)ex->stream);
    return r != ncclSuccess ? fail_nccl(c, r, "ncclBroadcast")
                            : wait_stream(c, ex, "ncclBroadcast");
}

// uneven shards: one broadcast per owner, fused into one group
static int n_allgather(molt_comm *c, const molt_exec *ex, float *buf, size_t n) {
    nccl_impl   *p = c->impl;
    ncclResult_t r = ncclGroupStart();
    for (int k = 0; k < c->world && r == ncclSuccess; k++) {
        size_t lo, hi;
        dist_shard(n, c->world, k, &lo, &hi);
        if (hi > lo)
            r = ncclBroadcast(buf + lo, buf + lo, hi - lo, ncclFloat, k, p->comm,
                              (cudaStream_t)ex->stream);
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r == ncclSuccess)
        r = r2;
    return r != ncclSuccess ? fail_nccl(c, r, "parameter all-gather (ncclBroadcast group)")
                            : wait_stream(c, ex, "parameter all-gather");
}

static int n_sum_host(molt_comm *c, double *x, int n) {
    if (MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS)
        return 0;
    snprintf(c->err, sizeof c->err, "MPI_Allreduce of %d doubles failed", n);
    return 1;
}

static int n_barrier(molt_comm *c) {
    if (MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS)
        return 0;
    snprintf(c->err, sizeof c->err, "MPI_Barrier failed");
    return 1;
}

static void n_abort(molt_comm *c, int code) {
    nccl_impl *p = c->impl;
    if (p && !p->aborted) {
        ncclCommAbort(p->comm);
        p->aborted = 1;
    }
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void n_free(molt_comm *c) {
    nccl_impl *p = c->impl;
    if (p && !p->aborted)
        ncclCommDestroy(p->comm);
    if (p && p->side) {
        cudaEventDestroy(p->ev);
        cudaStreamDestroy(p->side);
    }
    free(p);
    free(c);
}

molt_status molt_comm_nccl_new(int device, molt_comm **out, char *err, size_t n) {
    *out = NULL;
    int up = 0;
    MPI_Initialized(&up);
    if (!up) {
        snprintf(err, n, "MPI is not initialised (molt_dist_init)");
        return MOLT_ERR_ARG;
    }
    molt_comm *c = calloc(1, sizeof *c);
    nccl_impl *p = calloc(1, sizeof *p);
    if (!c || !p) {
        free(c);
        free(p);
        snprintf(err, n, "out of memory");
        return MOLT_ERR_OOM;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    c->local_rank = molt_dist_local_rank();
    setenv("NCCL_NVLS_ENABLE", "0", 1); // before the communicator exists: multicast stays off
    const char *to = getenv("MOLT_DIST_TIMEOUT");
    p->timeout_s = to && atof(to) > 0 ? atof(to) : 900;
    p->device = device;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r = ncclSuccess;
    cudaError_t  ce = cudaSetDevice(device);
    if (ce != cudaSuccess) {
        snprintf(err, n, "rank %d: cudaSetDevice(%d): %s", c->rank, device,
                 cudaGetErrorString(ce));
        goto fail;
    }
    if (c->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
        snprintf(err, n, "ncclGetUniqueId: %s", ncclGetErrorString(r));
        goto fail; // (the others wait in MPI_Bcast until the CLI's MPI_Abort)
    }
    if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        snprintf(err, n, "rank %d: MPI_Bcast of the NCCL id failed", c->rank);
        goto fail;
    }
    if ((r = ncclCommInitRank(&p->comm, c->world, id, c->rank)) != ncclSuccess) {
        snprintf(err, n, "rank %d on cuda:%d: ncclCommInitRank: %s", c->rank, device,
                 ncclGetErrorString(r));
        goto fail;
    }
    c->kind = "nccl";
    c->impl = p;
    c->allreduce = n_allreduce;
    c->allreduce_start = n_allreduce_start;
    c->allreduce_wait = n_allreduce_wait;
    c->allgather = n_allgather;
    c->bcast = n_bcast;
    c->sum_host = n_sum_host;
    c->barrier = n_barrier;
    c->abort = n_abort;
    c->free = n_free;
    *out = c;
    return MOLT_OK;
fail:
    free(p);
    free(c);
    return MOLT_ERR_IO;
}

#else
molt_status molt_comm_nccl_new(int device, molt_comm **out, char *err, size_t n) {
    (void)device;
    *out = NULL;
    snprintf(err, n, "NCCL is bootstrapped over MPI: this molt was built without MPI");
    return MOLT_ERR_UNSUPPORTED;
}
#endif
