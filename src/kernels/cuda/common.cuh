/*
 * common.cuh — what every CUDA source of the backend shares: the checked-call
 * macros that feed the sticky error (cuda.h), the exec's stream, launch
 * helpers, stream-ordered scratch, and the shared cuBLAS handle.
 * Internal to src/kernels/cuda.
 */
#ifndef MOLT_KERNELS_CUDA_COMMON_CUH
#define MOLT_KERNELS_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"
}

// records the first failure (later ones are dropped); thread-safe
void cu_record(const char *what, const char *detail, const char *file, int line);
// true (and nothing recorded) on success
bool cu_check(cudaError_t e, const char *what, const char *file, int line);
bool cublas_check(cublasStatus_t s, const char *what, const char *file, int line);

#define CU(call) cu_check((call), #call, __FILE__, __LINE__)
#define CUBLAS(call) cublas_check((call), #call, __FILE__, __LINE__)
// after every kernel launch: launch-configuration errors are reported here,
// faults during the run by the next be_sync
#define CU_LAUNCHED(name)                                                                          \
    (cu_prof_mark("launch " name), cu_check(cudaGetLastError(), "launch " name, __FILE__, __LINE__))
#define CU_FAIL(msg) cu_record(msg, NULL, __FILE__, __LINE__)

// recorded work (graph.cu): while the calling thread records a graph, a checked call's failure
// is kept aside by cu_capture_swallow (true: kept, not sticky) and fails the recording;
// cu_capturing says whether this thread records (what may not be recorded checks it). The
// memory epoch moves on every free and every bf16 weight-cache invalidation: a graph
// recorded at another epoch is not replayed.
bool          cu_capturing(void);
bool          cu_capture_swallow(const char *what, const char *detail);
void          cu_mem_epoch_bump(void);
unsigned long cu_mem_epoch(void);

// the kernel-time profile (prof.cu; cuda.h: molt_cuda_profile_begin): while on,
// every launch, GEMM and async copy records an event on the stream cu_stream last returned
extern bool                      g_cu_prof;
extern thread_local cudaStream_t g_cu_prof_stream;
void                             cu_prof_mark(const char *name);

static inline cudaStream_t cu_stream(const molt_exec *ex) {
    if (g_cu_prof)
        g_cu_prof_stream = (cudaStream_t)ex->stream;
    return (cudaStream_t)ex->stream;
}

// blocks for n items at `threads` per block, capped (kernels use grid-stride loops)
static inline unsigned cu_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535u * 16u ? 65535u * 16u : b);
}

// Stream-ordered scratch (cudaMallocAsync / cudaFreeAsync on ex's stream):
// safe to free right after the kernels that use it are queued. NULL (and the
// error recorded) on failure.
void *cu_scratch(const molt_exec *ex, size_t bytes);
void  cu_scratch_free(const molt_exec *ex, void *p);

// A small host array (the contracts' ids, targets) in new stream-ordered
// scratch (free with cu_scratch_free), copied through a pinned staging ring
// (mem.cu) so that the host is not synchronised with the stream; the host
// array may be reused on return. NULL (recorded) on failure.
void *cu_host_to_device(const molt_exec *ex, const void *h, size_t bytes);

// The backend's one cuBLAS handle, bound to ex's stream; calls through it are
// serialised by cu_blas_lock / cu_blas_unlock (NULL: creation failed, recorded).
cublasHandle_t cu_blas_lock(const molt_exec *ex);
void           cu_blas_unlock(void);

// true when `bytes` of dynamic shared memory fit one block of kernel k on the
// current device; k's limit is raised to the device's opt-in maximum (past the
// default 48 KB) when needed
bool cu_smem_fits(const void *k, size_t bytes);

// GEMM operands as bf16 (bf16.cu): p the operand, owned the scratch to give
// back (NULL for a cached weight); p is NULL (error recorded) on failure.
typedef struct cu_bf16 {
    const __nv_bfloat16 *p;
    void                *owned;
} cu_bf16;
// an activation: converted into stream-ordered scratch (round to nearest even)
cu_bf16 cu_bf16_act(const molt_exec *ex, const float *src, size_t n);
// a weight: the cached copy, converted only when [src, src + n) was written
// since (same bits as cu_bf16_act)
cu_bf16 cu_bf16_weight(const molt_exec *ex, const float *src, size_t n);
void    cu_bf16_release(const molt_exec *ex, cu_bf16 *b);

// the cache's invalidation: a write of [p, p + bytes) (memory ops, adamw,
// scale), a free (every entry stale), out of memory (every buffer released)
void cu_wcache_written(const void *p, size_t bytes);
// AdamW over spans of p: bf[i] (n_spans, filled) = where span i's new weights go as bf16, for
// the cached weights that the spans rewrite completely (then valid again); NULL for the
// others. Cached weights the spans write in part are marked stale.
void cu_wcache_adamw(const float *p, const molt_span *span, int n_spans, __nv_bfloat16 **bf);
void cu_wcache_stale_all(void);
void cu_wcache_clear(void);

// Per-row host arrays of the batched-decode ops (positions, cache and state
// pointers) go to the kernels by value, CU_ROWS rows a launch: no upload, no
// stream-ordered scratch, no host synchronisation, and a launch that a CUDA
// graph can capture as it is.
#define CU_ROWS 128
typedef struct cu_rowtab {
    float  *a[CU_ROWS], *b[CU_ROWS];
    int32_t pos[CU_ROWS];
} cu_rowtab;

// rows [r0, r0 + n) of the host arrays a, b, pos (each may be NULL) into t
static inline void cu_rowtab_fill(cu_rowtab *t, float *const *a, float *const *b,
                                  const int32_t *pos, int r0, int n) {
    for (int r = 0; r < n; r++) {
        t->a[r] = a ? a[r0 + r] : NULL;
        t->b[r] = b ? b[r0 + r] : NULL;
        t->pos[r] = pos ? pos[r0 + r] : 0;
    }
}

#define SSM_FLUSH (-60.0f) // = SSM_EXP_FLUSH (ssm.h)

__device__ __forceinline__ float cu_decay(float x) { return x < SSM_FLUSH ? 0.0f : expf(x); }

// Σ a_i·b_i exactly as the CPU's k_dotf (kernels.h): 8 partial sums in a fixed
// order, products rounded before the add (no FMA), so the same bits as the CPU
// for the same inputs; the 8 independent chains also keep the pipeline full.
__device__ __forceinline__ float cu_dotf(const float *a, const float *b, int n) {
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int   i = 0;
    for (; i + 8 <= n; i += 8)
#pragma unroll
        for (int k = 0; k < 8; k++)
            acc[k] = __fadd_rn(acc[k], __fmul_rn(a[i + k], b[i + k]));
    float s = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[4]), __fadd_rn(acc[1], acc[5])),
                        __fadd_rn(__fadd_rn(acc[2], acc[6]), __fadd_rn(acc[3], acc[7])));
    for (; i < n; i++)
        s = __fadd_rn(s, __fmul_rn(a[i], b[i]));
    return s;
}

// e-th entry (row-major) of a lower triangle including the diagonal: i ≥ j
__device__ __forceinline__ void cu_tri(int e, int *i, int *j) {
    int r = (int)((sqrtf(8.0f * (float)e + 1.0f) - 1.0f) * 0.5f);
    while (r * (r + 1) / 2 > e)
        r--;
    while ((r + 1) * (r + 2) / 2 <= e)
        r++;
    *i = r;
    *j = e - r * (r + 1) / 2;
}

// block-wide sum of one double per thread (blockDim.x a multiple of 32, ≤ 1024);
// every thread gets the total. The tree is fixed, so the result is deterministic.
__device__ __forceinline__ double cu_block_sum(double v, double *sh /* [32] */) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < nw; i++)
        s += sh[i];
    return s;
}

#endif
