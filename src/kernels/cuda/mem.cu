/*
 * mem.cu — the CUDA backend's memory (mem.h) and its shared state: the
 * sticky error (cuda.h), stream-ordered scratch and the cuBLAS handle.
 *
 *   alloc     cudaMalloc (plain device memory, 256-byte aligned ≥ the 64 the
 *             contract asks; bytes 0 → 1); NULL when out of memory (not
 *             recorded as an error: NULL is the contract's report)
 *   free      cudaFree (waits for the device)
 *   upload    cudaMemcpyAsync on ex's stream, then a sync: src is reusable on return
 *   download  the same: dst holds the data on return
 *   copy      cudaMemcpyAsync device → device, queued (no sync)
 *   zero      cudaMemsetAsync, queued
 *   sync      cudaStreamSynchronize(ex's stream) + any launch / run error
 *
 * Also the pinned staging ring of the ops' small host arrays (cu_host_to_device).
 *
 * upload / copy / zero tell the bf16 weight cache (bf16.cu) the range they
 * write, free marks every cached weight stale, and an alloc that finds no
 * memory first takes the cache's memory back.
 */
#include "kernels/cuda/common.cuh"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

// ----------------------------------------------------------------------------
// sticky error

static pthread_mutex_t g_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char            g_err[512];
static int             g_has_err;

void cu_record(const char *what, const char *detail, const char *file, int line) {
    if (cu_capture_swallow(what, detail)) // a failed recording (graph.cu), not an error
        return;
    pthread_mutex_lock(&g_err_lock);
    if (!g_has_err) {
        const char *base = strrchr(file, '/');
        snprintf(g_err, sizeof g_err, "%s: %s (%s:%d)", what, detail ? detail : "failed",
                 base ? base + 1 : file, line);
        g_has_err = 1;
    }
    pthread_mutex_unlock(&g_err_lock);
}

bool cu_check(cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) {
        if (g_cu_prof && strncmp(what, "launch ", 7)) // launches mark in CU_LAUNCHED
            cu_prof_mark(what);
        return true;
    }
    cu_record(what, cudaGetErrorString(e), file, line);
    return false;
}

bool cublas_check(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) {
        if (g_cu_prof)
            cu_prof_mark(what);
        return true;
    }
    cu_record(what, cublasGetStatusString(s), file, line);
    return false;
}

extern "C" const char *molt_cuda_last_error(void) {
    pthread_mutex_lock(&g_err_lock);
    const char *r = g_has_err ? g_err : NULL;
    pthread_mutex_unlock(&g_err_lock);
    return r;
}

extern "C" void molt_cuda_clear_error(void) {
    pthread_mutex_lock(&g_err_lock);
    g_has_err = 0;
    g_err[0] = '\0';
    pthread_mutex_unlock(&g_err_lock);
}

extern "C" int molt_cuda_device_count(const char **why) {
    int         n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(e);
        cudaGetLastError(); // not sticky: no device is a normal answer here
        return 0;
    }
    if (why)
        *why = n > 0 ? "ok" : "no CUDA device";
    return n;
}

extern "C" bool molt_cuda_use_device(int i, const char **why) {
    cudaError_t e = cudaSetDevice(i);
    if (e != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(e);
        cudaGetLastError();
        return false;
    }
    return true;
}

extern "C" void molt_cuda_mem_info(size_t *used, size_t *total) {
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        cudaGetLastError();
        f = t = 0;
    }
    *used = t - f;
    *total = t;
}

// ----------------------------------------------------------------------------
// memory ops

extern "C" void *cuda_mem_alloc(size_t bytes) {
    void       *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) { // the bf16 weight cache (bf16.cu) gives its memory back, once
        cudaGetLastError();
        cu_wcache_clear();
        e = cudaMalloc(&p, bytes ? bytes : 1);
    }
    if (e != cudaSuccess) {
        cudaGetLastError(); // out of memory is reported by NULL, not the sticky error
        return NULL;
    }
    return p;
}

// every write of device memory outside the ops tells the bf16 weight cache
// (bf16.cu) which range changed; a free makes every cached weight stale
extern "C" void cuda_mem_free(void *p) {
    if (p) {
        CU(cudaFree(p));
        cu_wcache_stale_all(); // (and the memory epoch moves: graph.cu)
    }
}

// a host array inside a recorded step would be replayed with its contents of the recording
static bool not_recording(const char *what) {
    if (!cu_capturing())
        return true;
    CU_FAIL(what);
    return false;
}

extern "C" void cuda_mem_upload(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    if (!bytes || !not_recording("upload in a recorded graph"))
        return;
    cu_wcache_written(dst, bytes);
    if (CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu_stream(ex))))
        CU(cudaStreamSynchronize(cu_stream(ex)));
}

extern "C" void cuda_mem_download(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    if (!bytes || !not_recording("download in a recorded graph"))
        return;
    if (CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu_stream(ex))))
        CU(cudaStreamSynchronize(cu_stream(ex)));
}

extern "C" void cuda_mem_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    cu_wcache_written(dst, bytes);
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu_stream(ex)));
}

extern "C" void cuda_mem_zero(const molt_exec *ex, void *p, size_t bytes) {
    if (!bytes)
        return;
    cu_wcache_written(p, bytes);
    CU(cudaMemsetAsync(p, 0, bytes, cu_stream(ex)));
}

extern "C" void cuda_mem_sync(const molt_exec *ex) {
    CU(cudaStreamSynchronize(cu_stream(ex)));
    CU(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// scratch

void *cu_scratch(const molt_exec *ex, size_t bytes) {
    void *p = NULL;
    if (!CU(cudaMallocAsync(&p, bytes ? bytes : 1, cu_stream(ex))))
        return NULL;
    return p;
}

void cu_scratch_free(const molt_exec *ex, void *p) {
    if (p)
        CU(cudaFreeAsync(p, cu_stream(ex)));
}

// Small host arrays of the contracts (ids, targets) through a pinned staging
// ring: STAGE_SLOTS slots of STAGE_BYTES, each with an event recorded after its
// copy; a slot is reused once its previous copy has run (cudaEventSynchronize,
// which in practice never waits: STAGE_SLOTS requests ago). A copy from
// pinned memory is queued without synchronising the host with the stream,
// which a pageable source may do. Larger arrays, or no pinned memory: the
// plain pageable copy.
#define STAGE_SLOTS 16
#define STAGE_BYTES ((size_t)256 << 10)

static pthread_mutex_t g_stage_lock = PTHREAD_MUTEX_INITIALIZER;
static char           *g_stage;                  // STAGE_SLOTS · STAGE_BYTES pinned
static cudaEvent_t     g_stage_ev[STAGE_SLOTS];
static int             g_stage_state, g_stage_next; // state 0 not yet, 1 ok, -1 unavailable

static bool stage_init(void) {
    if (g_stage_state == 0) {
        g_stage_state = -1;
        if (cudaMallocHost((void **)&g_stage, STAGE_SLOTS * STAGE_BYTES) != cudaSuccess) {
            cudaGetLastError();
            g_stage = NULL;
            return false;
        }
        for (int i = 0; i < STAGE_SLOTS; i++)
            if (cudaEventCreateWithFlags(&g_stage_ev[i], cudaEventDisableTiming) != cudaSuccess) {
                cudaGetLastError();
                return false; // the created events stay (a few, once)
            }
        g_stage_state = 1;
    }
    return g_stage_state == 1;
}

void *cu_host_to_device(const molt_exec *ex, const void *h, size_t bytes) {
    if (!not_recording("a host array in a recorded graph"))
        return NULL;
    void *d = cu_scratch(ex, bytes);
    if (!d || !bytes)
        return d;
    bool ok = false, staged = false;
    if (bytes <= STAGE_BYTES) {
        pthread_mutex_lock(&g_stage_lock);
        if (stage_init()) {
            int   k = g_stage_next;
            char *slot = g_stage + (size_t)k * STAGE_BYTES;
            g_stage_next = (k + 1) % STAGE_SLOTS;
            if (CU(cudaEventSynchronize(g_stage_ev[k]))) {
                memcpy(slot, h, bytes);
                staged = true;
                ok = CU(cudaMemcpyAsync(d, slot, bytes, cudaMemcpyHostToDevice, cu_stream(ex))) &&
                     CU(cudaEventRecord(g_stage_ev[k], cu_stream(ex)));
            }
        }
        pthread_mutex_unlock(&g_stage_lock);
    }
    if (!staged)
        ok = CU(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, cu_stream(ex)));
    if (!ok) {
        cu_scratch_free(ex, d);
        return NULL;
    }
    return d;
}

bool cu_smem_fits(const void *k, size_t bytes) {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (bytes > (size_t)v)
        return false;
    return bytes <= 48 * 1024 ||
           CU(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, v));
}

// ----------------------------------------------------------------------------
// cuBLAS: one handle, created on first use. cuBLAS's default math mode keeps
// fp32 GEMMs in full fp32 (no TF32 tensor cores), so they match the CPU
// (OpenBLAS) oracle to fp32 rounding; an exec with MOLT_EXEC_TF32 gets the
// TF32 tensor-core mode for its calls. Set on every call, since the handle's
// mode is what decides.

static pthread_mutex_t g_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static cublasHandle_t  g_blas;
static int             g_blas_state; // 0 not yet, 1 ok, -1 failed

cublasHandle_t cu_blas_lock(const molt_exec *ex) {
    pthread_mutex_lock(&g_blas_lock);
    if (g_blas_state == 0) {
        g_blas_state = CUBLAS(cublasCreate(&g_blas)) ? 1 : -1;
        if (g_blas_state == 1 && !CUBLAS(cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH)))
            g_blas_state = -1;
    }
    cublasMath_t math = ex->flags & MOLT_EXEC_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (g_blas_state != 1 || !CUBLAS(cublasSetStream(g_blas, cu_stream(ex))) ||
        !CUBLAS(cublasSetMathMode(g_blas, math))) {
        pthread_mutex_unlock(&g_blas_lock);
        return NULL;
    }
    return g_blas;
}

void cu_blas_unlock(void) { pthread_mutex_unlock(&g_blas_lock); }
