/*
 * bf16.cu — GEMM operands as bf16 for an exec with MOLT_EXEC_BF16 (dense.cu):
 * a vectorized fp32 → bf16 conversion, and the weight cache.
 *
 * Conversion: every element is rounded to nearest even (__float2bfloat16_rn,
 * or its two-lane form __floats2bfloat162_rn: the same cvt.rn), so an operand
 * converted here has the same bits whichever path (scalar, float4, cached)
 * made it. Two float4 loads / one 16-byte store a thread when src and dst are
 * 16-byte aligned; the last n % 8 elements (and misaligned pointers) take the
 * scalar path.
 *
 * Weight cache: the W operand of matmul / matmul_backward (a model weight,
 * contiguous in.out floats) is converted once into a cached bf16 copy keyed by
 * (pointer, element count) and reused by every later GEMM until its range is
 * written. What writes weights, and so invalidates the overlapping entries:
 * the memory ops upload / copy / zero (cu_wcache_written with their range),
 * scale (the hull of its spans), adamw, and free (every entry is marked
 * stale: a freed address may come back holding other data). AdamW does not
 * just invalidate: a cached weight that its spans rewrite completely (the
 * engine's case: one span per parameter) gets its new bf16 from the AdamW
 * kernel itself (cu_wcache_adamw: the same rounding of the same new fp32
 * values) and stays valid; one written in part is marked stale. So a weight
 * is converted once, then kept current by AdamW (2 bytes more written per
 * parameter) instead of being converted at every GEMM. The assumption the
 * cache rests on: no other op writes memory that a GEMM reads as W (true of
 * the engine: weights change only through AdamW and the memory ops; the
 * matmul test in tests/test_backend_cuda.c checks each invalidation path).
 * Entries are marked stale, not freed, and reconverted in place on their
 * next use (same key); the cache holds at most a quarter of the device's
 * memory: past it, stale entries are released, and if that is not enough a
 * weight is converted into scratch as an activation is. An alloc that runs
 * out of memory releases the whole cache and tries again (mem.cu).
 * Conversions are queued on the calling exec's stream: one stream at a time
 * per weight (the engine's use). Host side under one mutex.
 */
#include "kernels/cuda/common.cuh"

#include <pthread.h>
#include <stdlib.h>

// dst[0:n) = bf16_rn(src[0:n)); v4: src 16-byte aligned and dst 16-byte aligned
// (scratch or a cache buffer: 256-byte aligned); 8 elements a thread (two
// float4 loads in flight, one 16-byte store), the last n % 8 by block 0
__device__ __forceinline__ uint32_t bf16x2(float a, float b) {
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *(const uint32_t *)&v;
}

__global__ void k_to_bf16_v4(__nv_bfloat16 *dst, const float *src, size_t n) {
    size_t n8 = n / 8;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        float4 a = ((const float4 *)src)[2 * i], b = ((const float4 *)src)[2 * i + 1];
        uint4  o;
        o.x = bf16x2(a.x, a.y), o.y = bf16x2(a.z, a.w), o.z = bf16x2(b.x, b.y),
        o.w = bf16x2(b.z, b.w);
        ((uint4 *)dst)[i] = o;
    }
    if (blockIdx.x == 0 && threadIdx.x < n - n8 * 8)
        dst[n8 * 8 + threadIdx.x] = __float2bfloat16_rn(src[n8 * 8 + threadIdx.x]);
}

__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static void convert(const molt_exec *ex, __nv_bfloat16 *dst, const float *src, size_t n) {
    if (!n)
        return;
    if ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 16 == 0) {
        k_to_bf16_v4<<<cu_blocks(n / 8 ? n / 8 : 1, 256), 256, 0, cu_stream(ex)>>>(dst, src, n);
        CU_LAUNCHED("k_to_bf16_v4");
    } else {
        k_to_bf16<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dst, src, n);
        CU_LAUNCHED("k_to_bf16");
    }
}

// bf16_narrow (ssm_rows.h): the same rounding (finite values: molt_f32_to_bf16's bits)
extern "C" void cuda_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n) {
    convert(ex, (__nv_bfloat16 *)dst, src, n);
}

cu_bf16 cu_bf16_act(const molt_exec *ex, const float *src, size_t n) {
    cu_bf16        r = {NULL, NULL};
    __nv_bfloat16 *d = (__nv_bfloat16 *)cu_scratch(ex, sizeof(__nv_bfloat16) * (n ? n : 1));
    if (!d)
        return r;
    convert(ex, d, src, n);
    r.p = d;
    r.owned = d;
    return r;
}

void cu_bf16_release(const molt_exec *ex, cu_bf16 *b) {
    if (b->owned)
        cu_scratch_free(ex, b->owned);
    b->p = NULL;
    b->owned = NULL;
}

// ----------------------------------------------------------------------------
// the weight cache

typedef struct wc_entry {
    const float   *src;
    size_t         n;
    __nv_bfloat16 *bf;
    int            valid;
} wc_entry;

static pthread_mutex_t g_wc_lock = PTHREAD_MUTEX_INITIALIZER;
static wc_entry       *g_wc;
static int             g_wc_n, g_wc_cap;
static size_t          g_wc_bytes, g_wc_budget;
static unsigned long   g_wc_conversions; // weights converted into the cache (tests)

static size_t wc_budget(void) {
    if (!g_wc_budget) {
        size_t f = 0, t = 0;
        if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
            cudaGetLastError();
            t = (size_t)4 << 30;
        }
        g_wc_budget = t / 4;
    }
    return g_wc_budget;
}

static wc_entry *wc_find(const float *src, size_t n) {
    for (int i = 0; i < g_wc_n; i++)
        if (g_wc[i].src == src && g_wc[i].n == n)
            return &g_wc[i];
    return NULL;
}

// releases the stale entries' buffers (waits for the GEMMs that read them)
static void wc_release_stale(void) {
    int k = 0;
    for (int i = 0; i < g_wc_n; i++)
        if (g_wc[i].valid)
            g_wc[k++] = g_wc[i];
        else {
            CU(cudaFree(g_wc[i].bf));
            g_wc_bytes -= sizeof(__nv_bfloat16) * g_wc[i].n;
        }
    if (k < g_wc_n)
        cu_mem_epoch_bump();
    g_wc_n = k;
}

static wc_entry *wc_add(const float *src, size_t n) {
    size_t bytes = sizeof(__nv_bfloat16) * n;
    if (g_wc_bytes + bytes > wc_budget())
        wc_release_stale();
    if (g_wc_bytes + bytes > wc_budget())
        return NULL;
    if (g_wc_n == g_wc_cap) {
        int       cap = g_wc_cap ? 2 * g_wc_cap : 64;
        wc_entry *e = (wc_entry *)realloc(g_wc, sizeof(wc_entry) * (size_t)cap);
        if (!e)
            return NULL;
        g_wc = e, g_wc_cap = cap;
    }
    void *bf = NULL;
    if (cudaMalloc(&bf, bytes) != cudaSuccess) {
        cudaGetLastError(); // out of memory: the weight goes through scratch instead
        return NULL;
    }
    g_wc_bytes += bytes;
    g_wc[g_wc_n] = (wc_entry){src, n, (__nv_bfloat16 *)bf, 0};
    return &g_wc[g_wc_n++];
}

cu_bf16 cu_bf16_weight(const molt_exec *ex, const float *src, size_t n) {
    cu_bf16 r = {NULL, NULL};
    if (!n)
        return cu_bf16_act(ex, src, n);
    pthread_mutex_lock(&g_wc_lock);
    wc_entry *e = wc_find(src, n);
    if (!e)
        e = wc_add(src, n);
    if (e) {
        if (!e->valid) {
            convert(ex, e->bf, src, n);
            e->valid = 1;
            g_wc_conversions++;
        }
        r.p = e->bf;
    }
    pthread_mutex_unlock(&g_wc_lock);
    return e ? r : cu_bf16_act(ex, src, n);
}

void cu_wcache_written(const void *p, size_t bytes) {
    if (!bytes)
        return;
    const char *a = (const char *)p, *b = a + bytes;
    pthread_mutex_lock(&g_wc_lock);
    for (int i = 0; i < g_wc_n; i++) {
        const char *s = (const char *)g_wc[i].src, *t = s + sizeof(float) * g_wc[i].n;
        if (s < b && a < t && g_wc[i].valid) {
            g_wc[i].valid = 0;
            cu_mem_epoch_bump();
        }
    }
    pthread_mutex_unlock(&g_wc_lock);
}

void cu_wcache_adamw(const float *p, const molt_span *span, int n_spans, __nv_bfloat16 **bf) {
    for (int i = 0; i < n_spans; i++)
        bf[i] = NULL;
    pthread_mutex_lock(&g_wc_lock);
    for (int e = 0; e < g_wc_n; e++) {
        wc_entry *w = &g_wc[e];
        const float *s = w->src, *t = s + w->n;
        size_t       covered = 0;
        int          any = 0, whole = 1;
        for (int i = 0; i < n_spans; i++) { // the spans are disjoint (one per parameter)
            const float *a = p + span[i].off, *b = a + span[i].len;
            if (!span[i].len || !(a < t && s < b))
                continue;
            any = 1;
            if (a < s || b > t || bf[i]) // in part, or already another entry's
                whole = 0;
            else
                covered += span[i].len;
        }
        if (!any)
            continue;
        if (!whole || covered != w->n) {
            w->valid = 0;
            cu_mem_epoch_bump();
            continue;
        }
        for (int i = 0; i < n_spans; i++) {
            const float *a = p + span[i].off, *b = a + span[i].len;
            if (span[i].len && a < t && s < b)
                bf[i] = w->bf + (a - s);
        }
        w->valid = 1; // the AdamW kernel, queued next, writes every element
    }
    pthread_mutex_unlock(&g_wc_lock);
}

void cu_wcache_stale_all(void) {
    pthread_mutex_lock(&g_wc_lock);
    for (int i = 0; i < g_wc_n; i++)
        g_wc[i].valid = 0;
    cu_mem_epoch_bump();
    pthread_mutex_unlock(&g_wc_lock);
}

void cu_wcache_clear(void) {
    pthread_mutex_lock(&g_wc_lock);
    for (int i = 0; i < g_wc_n; i++)
        CU(cudaFree(g_wc[i].bf)); // waits for the GEMMs that read it
    g_wc_n = 0;
    g_wc_bytes = 0;
    cu_mem_epoch_bump();
    pthread_mutex_unlock(&g_wc_lock);
}

extern "C" unsigned long molt_cuda_wcache_conversions(void) {
    pthread_mutex_lock(&g_wc_lock);
    unsigned long n = g_wc_conversions;
    pthread_mutex_unlock(&g_wc_lock);
    return n;
}
