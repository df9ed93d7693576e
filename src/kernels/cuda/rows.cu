/*
 * rows.cu — CUDA row-wise and elementwise ops: RMSNorm (+ training forward,
 * backward), SwiGLU (+ backward, fused gate|up pair), softmax, add,
 * embedding (+ backward). Contracts in kernels.h / backward.h.
 *
 * Kept simple (correct first): one block per row for the row reductions,
 * grid-stride loops for the elementwise ops; RMSNorm dw is a two-stage
 * column sum over row chunks (colsum.cuh: double, fixed order), embedding dE
 * one thread per (distinct id, column), rows in order like the CPU; all
 * deterministic, no float atomics.
 * Numerics: row sums (Σx², Σdy·w·x) in double like the CPU; exp is expf
 * (the CPU's k_expf is within 1e-7 of it); the compiler may fuse a·b+c
 * into an FMA, so results agree with the CPU to rounding, not bit for bit,
 * except add, embedding and embedding_backward, which do the same float
 * operations in the same order and so give the CPU's bits.
 */
#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"

#include <stdlib.h>

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// ----------------------------------------------------------------------------
// RMSNorm:  y[t,i] = x[t,i]·r_t·w[i],  r_t = 1/sqrt(Σ_i x[t,i]²/d + eps)

__global__ void k_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int d,
                              float eps) {
    __shared__ double sh[32];
    const float      *xt = x + (size_t)blockIdx.x * d;
    float            *yt = y + (size_t)blockIdx.x * d;
    double            ss = 0.0;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        ss += (double)xt[i] * (double)xt[i];
    ss = cu_block_sum(ss, sh);
    float r = 1.0f / sqrtf((float)ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        yt[i] = xt[i] * r * w[i];
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = r;
}

extern "C" void cuda_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x,
                                     const float *w, int T, int d, float eps) {
    if (T <= 0)
        return;
    k_rmsnorm_fwd<<<T, 256, 0, cu_stream(ex)>>>(y, rstd, x, w, d, eps);
    CU_LAUNCHED("k_rmsnorm_fwd");
}

// s = a + b, then k_rmsnorm_fwd's row on s (k_add and k_rmsnorm_fwd's expressions, the same
// threads over the same columns: the same bits as the two launches)
__global__ void k_add_rmsnorm(float *s, float *y, float *rstd, const float *a, const float *b,
                              const float *w, int d, float eps) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * d;
    double            ss = 0.0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = a[o + i] + b[o + i];
        s[o + i] = v;
        ss += (double)v * (double)v;
    }
    ss = cu_block_sum(ss, sh);
    float r = 1.0f / sqrtf((float)ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        y[o + i] = s[o + i] * r * w[i];
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = r;
}

extern "C" void cuda_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd,
                                 const float *a, const float *b, const float *w, int T, int d,
                                 float eps) {
    if (T <= 0)
        return;
    k_add_rmsnorm<<<T, 256, 0, cu_stream(ex)>>>(s, y, rstd, a, b, w, d, eps);
    CU_LAUNCHED("k_add_rmsnorm");
}

extern "C" void cuda_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T,
                             int d, float eps) {
    cuda_rmsnorm_forward(ex, y, NULL, x, w, T, d, eps);
}

// dx_i += r·dy_i·w_i − x_i·r³/d·Σ_j dy_j·w_j·x_j     (one block per row)
__global__ void k_rmsnorm_bwd_dx(float *dx, const float *dy, const float *x, const float *w,
                                 const float *rstd, int d) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * d;
    float             r = rstd[blockIdx.x];
    double            dot = 0.0;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        dot += (double)dy[o + i] * (double)w[i] * (double)x[o + i];
    dot = cu_block_sum(dot, sh);
    float c = (float)(dot * (double)r * (double)r * (double)r / d);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        dx[o + i] += r * dy[o + i] * w[i] - x[o + i] * c;
}

// dw_i += Σ_t dy[t,i]·x[t,i]·r_t: the products in float, the sum in double
// over row chunks (colsum.cuh)
struct rms_dw_term {
    const float *dy, *x, *rstd;
    int          d;
    __device__ double operator()(int t, int i) const {
        size_t o = (size_t)t * d + i;
        return (double)__fmul_rn(__fmul_rn(dy[o], x[o]), rstd[t]);
    }
};

extern "C" void cuda_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy,
                                      const float *x, const float *w, const float *rstd, int T,
                                      int d) {
    if (T <= 0 || d <= 0)
        return;
    if (dx) {
        k_rmsnorm_bwd_dx<<<T, 256, 0, cu_stream(ex)>>>(dx, dy, x, w, rstd, d);
        CU_LAUNCHED("k_rmsnorm_bwd_dx");
    }
    if (dw) {
        cu_colsum2(ex, dw, T, d, rms_dw_term{dy, x, rstd, d});
    }
}

// ----------------------------------------------------------------------------
// SwiGLU:  h = silu(g)·u;  du = dh·g·σ(g),  dg = dh·u·σ(g)·(1 + g·(1 − σ(g)))

__device__ __forceinline__ float sigm(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void k_swiglu(float *gate, const float *up, size_t n) {
    GRID_STRIDE(i, n) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" void cuda_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n) {
    if (!n)
        return;
    k_swiglu<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(gate, up, n);
    CU_LAUNCHED("k_swiglu");
}

// every element is read before it is written, so dg / du may alias dh, g, u
__global__ void k_swiglu_bwd(float *dg, float *du, const float *dh, const float *g,
                             const float *u, size_t n) {
    GRID_STRIDE(i, n) {
        float gi = g[i], hi = dh[i], ui = u ? u[i] : 0.0f, sg = sigm(gi);
        if (du)
            du[i] = hi * gi * sg;
        if (dg)
            dg[i] = hi * ui * sg * (1.0f + gi * (1.0f - sg));
    }
}

extern "C" void cuda_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh,
                                     const float *g, const float *u, size_t n) {
    if (!n || (!dg && !du))
        return;
    k_swiglu_bwd<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dg, du, dh, g, u, n);
    CU_LAUNCHED("k_swiglu_bwd");
}

// gu[T,2F] = [g | u] per row;  h[T,F]. V = 4 (F % 4 == 0, pointers 16-byte
// aligned): float4 loads, four elements a thread with the same float
// operations each (the same bits as V = 1); T·F/4 < 2³² there, so the row and
// column come from a 32-bit division. O, the output's type: float, or
// __nv_bfloat16 (the *_b16 ops: each value rounded to nearest even, as the
// GEMM operand conversion of bf16.cu would round it — the same bits).
__device__ __forceinline__ float swiglu1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__device__ __forceinline__ void put1(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void put1(__nv_bfloat16 *p, size_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}
// four values at p + 4·i4 (16 bytes of float, 8 of bf16: aligned by pair_v4)
__device__ __forceinline__ void put4(float *p, size_t i4, float4 v) { ((float4 *)p)[i4] = v; }
__device__ __forceinline__ void put4(__nv_bfloat16 *p, size_t i4, float4 v) {
    __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
    uint2          o;
    o.x = *(const uint32_t *)&a, o.y = *(const uint32_t *)&b;
    ((uint2 *)p)[i4] = o;
}

template <int V, typename O> __global__ void k_swiglu_pair(O *h, const float *gu, size_t T, size_t F) {
    if constexpr (V == 4) {
        unsigned F4 = (unsigned)(F / 4), n = (unsigned)(T * F4);
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
             i += gridDim.x * blockDim.x) {
            unsigned t = i / F4, f = i - t * F4;
            float4   g = ((const float4 *)gu)[(size_t)t * 2 * F4 + f];
            float4   u = ((const float4 *)gu)[(size_t)t * 2 * F4 + F4 + f];
            put4(h, i, make_float4(swiglu1(g.x, u.x), swiglu1(g.y, u.y), swiglu1(g.z, u.z),
                                   swiglu1(g.w, u.w)));
        }
    } else {
        GRID_STRIDE(i, T * F) {
            size_t t = i / F, f = i % F;
            put1(h, i, swiglu1(gu[t * 2 * F + f], gu[t * 2 * F + F + f]));
        }
    }
}

// (dg, du) of one element: du = dh·g·σ, dg = dh·u·σ·(1 + g·(1 − σ))
__device__ __forceinline__ void swiglu1_bwd(float &dg, float &du, float hi, float gi, float ui) {
    float sg = sigm(gi);
    du = hi * gi * sg;
    dg = hi * ui * sg * (1.0f + gi * (1.0f - sg));
}

template <int V, typename O>
__global__ void k_swiglu_pair_bwd(O *dgu, const float *dh, const float *gu, size_t T, size_t F) {
    if constexpr (V == 4) {
        unsigned F4 = (unsigned)(F / 4), n = (unsigned)(T * F4);
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
             i += gridDim.x * blockDim.x) {
            unsigned t = i / F4, f = i - t * F4;
            size_t   o = (size_t)t * 2 * F4 + f;
            float4   g = ((const float4 *)gu)[o], u = ((const float4 *)gu)[o + F4];
            float4   hh = ((const float4 *)dh)[i], dg, du;
            swiglu1_bwd(dg.x, du.x, hh.x, g.x, u.x);
            swiglu1_bwd(dg.y, du.y, hh.y, g.y, u.y);
            swiglu1_bwd(dg.z, du.z, hh.z, g.z, u.z);
            swiglu1_bwd(dg.w, du.w, hh.w, g.w, u.w);
            put4(dgu, o + F4, du);
            put4(dgu, o, dg);
        }
    } else {
        GRID_STRIDE(i, T * F) {
            size_t t = i / F, f = i % F, o = t * 2 * F + f;
            float  dg, du;
            swiglu1_bwd(dg, du, dh[i], gu[o], gu[o + F]);
            put1(dgu, o + F, du);
            put1(dgu, o, dg);
        }
    }
}

static bool pair_v4(const void *a, const void *b, const void *c, size_t T, size_t F) {
    return F % 4 == 0 && T * (F / 4) < ((size_t)1 << 32) && (uintptr_t)a % 16 == 0 &&
           (uintptr_t)b % 16 == 0 && (uintptr_t)c % 16 == 0;
}

template <typename O> static void swiglu_pair_any(const molt_exec *ex, O *h, const float *gu, int T,
                                                  int F) {
    size_t n = (size_t)(T > 0 ? T : 0) * (size_t)(F > 0 ? F : 0);
    if (!n)
        return;
    if (pair_v4(h, gu, gu, (size_t)T, (size_t)F))
        k_swiglu_pair<4, O><<<cu_blocks(n / 4, 256), 256, 0, cu_stream(ex)>>>(h, gu, (size_t)T,
                                                                               (size_t)F);
    else
        k_swiglu_pair<1, O><<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(h, gu, (size_t)T,
                                                                           (size_t)F);
    CU_LAUNCHED("k_swiglu_pair");
}

template <typename O>
static void swiglu_pair_backward_any(const molt_exec *ex, O *dgu, const float *dh,
                                     const float *gu, int T, int F) {
    size_t n = (size_t)(T > 0 ? T : 0) * (size_t)(F > 0 ? F : 0);
    if (!n)
        return;
    if (pair_v4(dgu, dh, gu, (size_t)T, (size_t)F))
        k_swiglu_pair_bwd<4, O><<<cu_blocks(n / 4, 256), 256, 0, cu_stream(ex)>>>(
            dgu, dh, gu, (size_t)T, (size_t)F);
    else
        k_swiglu_pair_bwd<1, O><<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(
            dgu, dh, gu, (size_t)T, (size_t)F);
    CU_LAUNCHED("k_swiglu_pair_bwd");
}

extern "C" void cuda_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F) {
    swiglu_pair_any(ex, h, gu, T, F);
}
extern "C" void cuda_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh,
                                          const float *gu, int T, int F) {
    swiglu_pair_backward_any(ex, dgu, dh, gu, T, F);
}
extern "C" void cuda_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T,
                                     int F) {
    swiglu_pair_any(ex, (__nv_bfloat16 *)h, gu, T, F);
}
extern "C" void cuda_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu,
                                              const float *dh, const float *gu, int T, int F) {
    swiglu_pair_backward_any(ex, (__nv_bfloat16 *)dgu, dh, gu, T, F);
}

// ----------------------------------------------------------------------------
// softmax of one vector, in place (one block)

__global__ void k_softmax(float *x, int n) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    float             m = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        m = fmaxf(m, x[i]);
    for (int o = 16; o > 0; o >>= 1)
        m = fmaxf(m, __shfl_down_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0)
        shm[threadIdx.x >> 5] = m;
    __syncthreads();
    m = shm[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); i++)
        m = fmaxf(m, shm[i]);
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float e = expf(x[i] - m);
        x[i] = e;
        s += e;
    }
    float inv = 1.0f / (float)cu_block_sum(s, shs);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        x[i] *= inv;
}

extern "C" void cuda_softmax(const molt_exec *ex, float *x, int n) {
    if (n <= 0)
        return;
    k_softmax<<<1, 1024, 0, cu_stream(ex)>>>(x, n);
    CU_LAUNCHED("k_softmax");
}

// ----------------------------------------------------------------------------
// add, embedding

__global__ void k_add(float *y, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

extern "C" void cuda_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n) {
    if (!n)
        return;
    k_add<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(y, a, b, n);
    CU_LAUNCHED("k_add");
}

__global__ void k_embedding(float *x, const float *E, const int32_t *ids, size_t T, size_t d) {
    GRID_STRIDE(i, T * d) x[i] = E[(size_t)ids[i / d] * d + i % d];
}

// ids is a host array (kernels.h); it goes to the device through
// stream-ordered scratch, so the caller may reuse it on return
static int32_t *ids_to_device(const molt_exec *ex, const int32_t *ids, int T) {
    return (int32_t *)cu_host_to_device(ex, ids, sizeof(int32_t) * (size_t)T);
}

extern "C" void cuda_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids,
                               int T, int d) {
    if (T <= 0 || d <= 0)
        return;
    int32_t *d_ids = ids_to_device(ex, ids, T);
    if (!d_ids)
        return;
    size_t n = (size_t)T * d;
    k_embedding<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(x, E, d_ids, (size_t)T, (size_t)d);
    CU_LAUNCHED("k_embedding");
    cu_scratch_free(ex, d_ids);
}

// dE[ids[t], i] += dx[t, i], repeated ids adding up in row order, as on the CPU
// (the same float adds in the same order: the same bits). The host (ids are a
// host array) groups the rows by id: tab = [U distinct ids | U + 1 starts |
// T rows, grouped by id, each group in row order]; one thread per (distinct
// id, column) then walks its group. U·d threads instead of d.
__global__ void k_embedding_bwd(float *dE, const float *dx, const int32_t *tab, int U, int T,
                                int d) {
    const int32_t *uid = tab, *start = tab + U, *rows = tab + 2 * U + 1;
    GRID_STRIDE(e, (size_t)U * d) {
        int    u = (int)(e / d), i = (int)(e % d);
        float *dst = dE + (size_t)uid[u] * d + i;
        float  acc = *dst;
        for (int k = start[u]; k < start[u + 1]; k++)
            acc = __fadd_rn(acc, dx[(size_t)rows[k] * d + i]);
        *dst = acc;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

extern "C" void cuda_embedding_backward(const molt_exec *ex, float *dE, const float *dx,
                                        const int32_t *ids, int T, int d) {
    if (T <= 0 || d <= 0)
        return;
    uint64_t *key = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)T);
    int32_t  *tab = (int32_t *)malloc(sizeof(int32_t) * (3 * (size_t)T + 1));
    if (!key || !tab) {
        free(key), free(tab);
        CU_FAIL("embedding_backward: out of host memory");
        return;
    }
    for (int t = 0; t < T; t++) // (id, row): sorted, the rows of an id stay in order
        key[t] = (uint64_t)(uint32_t)ids[t] << 32 | (uint32_t)t;
    qsort(key, (size_t)T, sizeof *key, cmp_u64);
    int U = 0;
    for (int t = 0; t < T; t++)
        if (t == 0 || key[t] >> 32 != key[t - 1] >> 32)
            U++;
    int32_t *uid = tab, *start = tab + U, *rows = tab + 2 * U + 1;
    for (int t = 0, u = -1; t < T; t++) {
        if (t == 0 || key[t] >> 32 != key[t - 1] >> 32)
            u++, uid[u] = (int32_t)(key[t] >> 32), start[u] = t;
        rows[t] = (int32_t)(key[t] & 0xffffffffu);
    }
    start[U] = T;
    size_t   n = 2 * (size_t)U + 1 + (size_t)T;
    int32_t *d_tab = ids_to_device(ex, tab, (int)n);
    free(key), free(tab);
    if (!d_tab)
        return;
    size_t m = (size_t)U * d;
    k_embedding_bwd<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(dE, dx, d_tab, U, T, d);
    CU_LAUNCHED("k_embedding_bwd");
    cu_scratch_free(ex, d_tab);
}
