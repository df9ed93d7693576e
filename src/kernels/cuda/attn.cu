/*
 * attn.cu — CUDA attention ops (attn.h): RoPE, the KV-cache append, and
 * causal attention over a cache (prefill, decode rows), the probabilities and
 * the training forward and backward.
 *
 * Per-row positions and per-row cache pointers are host arrays (attn.h):
 * they go to the kernels by value (cu_rowtab, CU_ROWS rows a launch: no
 * upload and no host synchronisation per op, common.cuh).
 * RoPE does the CPU's float operations in its order without FMA
 * (__fmul_rn / __fadd_rn), so it gives the CPU's bits; the append copies.
 *
 * Attention, kept simple (correct first): one block per (query row, head)
 * (attend_row below): the scores of its S visible keys in dynamic shared
 * memory (S ≤ about 56k on sm_90; longer contexts record an error), each
 * score a dot product in a fixed order (cu_dotf), then ·hd^-½ (HF order:
 * matmul, then scale), softmax (max in float, Σ in double over a fixed tree),
 * and heads[i] = Σ_s p_s·v_s[i] with s in order, one thread per column.
 * Deterministic; agrees with the CPU (sgemm) to rounding. The `work`
 * arguments of the contracts are not needed here and not touched.
 *
 * Training backward, two launches, no atomics: one block per query row
 * (b, t, h) forms dS_t = P_t·(dP_t − Σ P_t·dP_t) with dP_ts = dO_t·v_s (into a
 * [B, H, T, T] scratch, the size of P) and dq_t = scale·Σ_s dS_ts·k_s; then
 * one block per key row (b, s, kv head) sums over its group's query heads
 * (in order) and over t ≥ s (in order): dk_s = scale·Σ dS_ts·q_t,
 * dv_s = Σ P_ts·dO_t.
 */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/attn.h"
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// ----------------------------------------------------------------------------
// RoPE: one thread per (row, head, pair)

// per_row: positions pt.pos[r] (rows ≤ CU_ROWS); else pos0 + r % period
__global__ void k_rope(float *x, int ld, int rows, int nh, int hd, int pos0, int period,
                       int per_row, cu_rowtab pt, const float *cs, const float *sn, float sgn) {
    int    half = hd / 2;
    size_t n = (size_t)rows * nh * half;
    GRID_STRIDE(e, n) {
        int    i = (int)(e % half), h = (int)(e / half % nh), r = (int)(e / half / nh);
        size_t p = (size_t)(per_row ? pt.pos[r] : pos0 + r % period);
        float *v = x + (size_t)r * ld + (size_t)h * hd;
        float  c = cs[p * half + i], s = __fmul_rn(sn[p * half + i], sgn);
        float  a = v[i], b = v[i + half];
        v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

extern "C" void cuda_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd,
                          int pos0, int period, const int32_t *pos, const float *cos,
                          const float *sin, int inverse) {
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(nh > 0 ? nh : 0) * (size_t)(hd / 2);
    if (!n)
        return;
    float sgn = inverse ? -1.0f : 1.0f;
    if (!pos) {
        static const cu_rowtab none = {}; // not read (per_row 0)
        k_rope<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(
            x, ld, rows, nh, hd, pos0, period > 0 ? period : 1, 0, none, cos, sin, sgn);
        CU_LAUNCHED("k_rope");
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += CU_ROWS) { // per-row positions by value
        int       nr = rows - r0 < CU_ROWS ? rows - r0 : CU_ROWS;
        cu_rowtab t;
        cu_rowtab_fill(&t, NULL, NULL, pos, r0, nr);
        size_t m = (size_t)nr * (size_t)nh * (size_t)(hd / 2);
        k_rope<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(x + (size_t)r0 * ld, ld, nr, nh, hd,
                                                             0, 1, 1, t, cos, sin, sgn);
        CU_LAUNCHED("k_rope");
    }
}

// ----------------------------------------------------------------------------
// KV-cache append: one thread per (row, kv head, column)

// rows: per-row caches t.a[r] / t.b[r] and positions t.pos[r] (rows ≤ CU_ROWS),
// or one cache kc / vc at pos0 + r
__global__ void k_kv_append(float *kc, float *vc, const float *k, const float *v, int ld,
                            int rows, int KV, int hd, int cap, int pos0, int per_row,
                            cu_rowtab t) {
    size_t n = (size_t)rows * KV * hd;
    GRID_STRIDE(e, n) {
        int    i = (int)(e % hd), j = (int)(e / hd % KV), r = (int)(e / hd / KV);
        size_t p = (size_t)(per_row ? t.pos[r] : pos0 + r);
        size_t dst = ((size_t)j * cap + p) * hd + i, src = (size_t)r * ld + (size_t)j * hd + i;
        float *K = per_row ? t.a[r] : kc, *V = per_row ? t.b[r] : vc;
        K[dst] = k[src];
        if (V && v)
            V[dst] = v[src];
    }
}

extern "C" void cuda_kv_append(const molt_exec *ex, float *const *kc, float *const *vc,
                               const float *k, const float *v, int ld, int rows, int KV, int hd,
                               int cap, int pos0, const int32_t *pos) {
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(KV > 0 ? KV : 0) *
               (size_t)(hd > 0 ? hd : 0);
    if (!n)
        return;
    int wantv = vc && v;
    if (!pos) {
        static const cu_rowtab none = {}; // not read (per_row 0)
        k_kv_append<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(
            kc[0], wantv ? vc[0] : NULL, k, wantv ? v : NULL, ld, rows, KV, hd, cap, pos0, 0,
            none);
        CU_LAUNCHED("k_kv_append");
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += CU_ROWS) { // per-row caches and positions by value
        int       nr = rows - r0 < CU_ROWS ? rows - r0 : CU_ROWS;
        cu_rowtab t;
        cu_rowtab_fill(&t, kc, wantv ? vc : NULL, pos, r0, nr);
        size_t m = (size_t)nr * (size_t)KV * (size_t)hd;
        k_kv_append<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(
            NULL, NULL, k + (size_t)r0 * ld, wantv ? v + (size_t)r0 * ld : NULL, ld, nr, KV, hd,
            cap, 0, 1, t);
        CU_LAUNCHED("k_kv_append");
    }
}

// ----------------------------------------------------------------------------
// attention: one block per (query row, head)

#define ATT_THREADS 128

// one query row over keys 0..S-1 (key s at K + s·ldk, value at V + s·ldv):
// p = softmax((q·k_s)·scale); out[i] = Σ_s p_s·v_s[i] when out is set; prow
// (when set) gets p_s for s < S and zeros for S ≤ s < width. sc: S floats of
// dynamic shared memory.
__device__ void attend_row(float *out, float *prow, int width, const float *q, const float *K,
                           size_t ldk, const float *V, size_t ldv, int S, int hd, float scale,
                           float *sc) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    for (int s = threadIdx.x; s < S; s += blockDim.x)
        sc[s] = __fmul_rn(cu_dotf(q, K + (size_t)s * ldk, hd), scale);
    float m = -INFINITY;
    for (int s = threadIdx.x; s < S; s += blockDim.x)
        m = fmaxf(m, sc[s]);
    for (int o = 16; o > 0; o >>= 1)
        m = fmaxf(m, __shfl_down_sync(0xffffffffu, m, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
        shm[threadIdx.x >> 5] = m;
    __syncthreads();
    m = shm[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        m = fmaxf(m, shm[w]);
    double sum = 0.0;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        float e = expf(sc[s] - m);
        sc[s] = e;
        sum += (double)e;
    }
    float inv = 1.0f / (float)cu_block_sum(sum, shs);
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        float pv = __fmul_rn(sc[s], inv);
        sc[s] = pv;
        if (prow)
            prow[s] = pv;
    }
    if (prow)
        for (int s = S + threadIdx.x; s < width; s += blockDim.x)
            prow[s] = 0.0f;
    if (!out)
        return;
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < S; s++)
            acc = __fadd_rn(acc, __fmul_rn(sc[s], V[(size_t)s * ldv + i]));
        out[i] = acc;
    }
}

// prefill / probabilities over one cache: block (t, h), query t at position pos + t.
// heads NULL: probabilities A[H, T, T] (pos = 0)
__global__ void k_attn_cache(float *heads, float *A, const float *q, int T, int pos, int H,
                             int KV, int hd, const float *kc, const float *vc, int cap) {
    extern __shared__ float sc[];
    int                     t = blockIdx.x, h = blockIdx.y, kv = h / (H / KV);
    const float            *K = kc + (size_t)kv * cap * hd;
    const float            *V = vc ? vc + (size_t)kv * cap * hd : NULL;
    float                  *out = heads ? heads + (size_t)t * H * hd + (size_t)h * hd : NULL;
    float                  *prow = A ? A + ((size_t)h * T + t) * T : NULL;
    attend_row(out, prow, T, q + (size_t)t * H * hd + (size_t)h * hd, K, (size_t)hd, V,
               (size_t)hd, pos + t + 1, hd, 1.0f / sqrtf((float)hd), sc);
}

// batched decode: block (r, h), row r at position t.pos[r] over caches t.a[r], t.b[r]
__global__ void k_attn_rows(float *heads, const float *q, int H, int KV, int hd, int cap,
                            cu_rowtab t) {
    extern __shared__ float sc[];
    int                     r = blockIdx.x, h = blockIdx.y, kv = h / (H / KV);
    size_t                  o = (size_t)r * H * hd + (size_t)h * hd;
    attend_row(heads + o, NULL, 0, q + o, t.a[r] + (size_t)kv * cap * hd, (size_t)hd,
               t.b[r] + (size_t)kv * cap * hd, (size_t)hd, t.pos[r] + 1, hd,
               1.0f / sqrtf((float)hd), sc);
}

// training forward: block (b·T + t, h) over keys 0..t of sequence b
__global__ void k_attn_train_fwd(float *P, float *heads, const float *qkv, int ld, int T, int H,
                                 int KV, int hd) {
    extern __shared__ float sc[];
    int                     bt = blockIdx.x, h = blockIdx.y, b = bt / T, t = bt % T;
    int                     kv = h / (H / KV);
    const float            *row0 = qkv + (size_t)b * T * ld;
    const float            *K = row0 + (size_t)H * hd + (size_t)kv * hd;
    const float            *V = heads ? row0 + (size_t)(H + KV) * hd + (size_t)kv * hd : NULL;
    float *out = heads ? heads + (size_t)bt * H * hd + (size_t)h * hd : NULL;
    attend_row(out, P + (((size_t)b * H + h) * T + t) * T, T,
               qkv + (size_t)bt * ld + (size_t)h * hd, K, (size_t)ld, V, (size_t)ld, t + 1, hd,
               1.0f / sqrtf((float)hd), sc);
}

// dynamic shared memory for S scores, or false (recorded) when it does not fit
static bool att_smem(const void *k, int S, size_t *bytes) {
    *bytes = sizeof(float) * (size_t)(S > 0 ? S : 1);
    if (cu_smem_fits(k, *bytes))
        return true;
    CU_FAIL("attention: context too long for the scores in shared memory");
    return false;
}

extern "C" void cuda_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T,
                                  int pos, int H, int KV, int hd, const float *kc,
                                  const float *vc, int cap, float *work) {
    size_t sm;
    if (T <= 0 || H <= 0 || !att_smem((const void *)k_attn_cache, pos + T, &sm))
        return;
    k_attn_cache<<<dim3((unsigned)T, (unsigned)H), ATT_THREADS, sm, cu_stream(ex)>>>(
        heads, NULL, q, T, pos, H, KV, hd, kc, vc, cap);
    CU_LAUNCHED("k_attn_cache");
}

extern "C" void cuda_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H,
                                int KV, int hd, const float *kc, int cap) {
    size_t sm;
    if (T <= 0 || H <= 0 || !att_smem((const void *)k_attn_cache, T, &sm))
        return;
    k_attn_cache<<<dim3((unsigned)T, (unsigned)H), ATT_THREADS, sm, cu_stream(ex)>>>(
        NULL, A, q, T, 0, H, KV, hd, kc, NULL, cap);
    CU_LAUNCHED("k_attn_cache");
}

extern "C" void cuda_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                                      const int32_t *pos, int H, int KV, int hd,
                                      float *const *kc, float *const *vc, int cap, float *work) {
    size_t sm;
    if (n <= 0 || H <= 0)
        return;
    int maxS = 1;
    for (int r = 0; r < n; r++) // host array: the longest context sizes the scores
        maxS = pos[r] + 1 > maxS ? pos[r] + 1 : maxS;
    if (!att_smem((const void *)k_attn_rows, maxS, &sm))
        return;
    for (int r0 = 0; r0 < n; r0 += CU_ROWS) { // caches and positions by value
        int       nr = n - r0 < CU_ROWS ? n - r0 : CU_ROWS;
        size_t    o = (size_t)r0 * H * hd;
        cu_rowtab t;
        cu_rowtab_fill(&t, kc, vc, pos, r0, nr);
        k_attn_rows<<<dim3((unsigned)nr, (unsigned)H), ATT_THREADS, sm, cu_stream(ex)>>>(
            heads + o, q + o, H, KV, hd, cap, t);
        CU_LAUNCHED("k_attn_rows");
    }
}

extern "C" void cuda_attn_train_forward(const molt_exec *ex, float *P, float *heads,
                                        const float *qkv, int ld, int B, int T, int H, int KV,
                                        int hd) {
    size_t sm;
    if (B <= 0 || T <= 0 || H <= 0 || !att_smem((const void *)k_attn_train_fwd, T, &sm))
        return;
    k_attn_train_fwd<<<dim3((unsigned)(B * T), (unsigned)H), ATT_THREADS, sm, cu_stream(ex)>>>(
        P, heads, qkv, ld, T, H, KV, hd);
    CU_LAUNCHED("k_attn_train_fwd");
}

// ----------------------------------------------------------------------------
// training backward

// block (b·T + t, h): dS row t of (b, h) into dS, and dq
__global__ void k_attn_bwd_rows(float *dqkv, float *dS, const float *dheads, const float *qkv,
                                const float *P, int T, int H, int KV, int hd) {
    extern __shared__ float ds[];
    __shared__ double       shs[32];
    int                     bt = blockIdx.x, h = blockIdx.y, b = bt / T, t = bt % T;
    int                     kv = h / (H / KV), W = (H + 2 * KV) * hd, S = t + 1;
    float                   scale = 1.0f / sqrtf((float)hd);
    const float            *row0 = qkv + (size_t)b * T * W;
    const float            *K = row0 + (size_t)H * hd + (size_t)kv * hd;
    const float            *V = row0 + (size_t)(H + KV) * hd + (size_t)kv * hd;
    const float            *dO = dheads + (size_t)bt * H * hd + (size_t)h * hd;
    const float            *Pr = P + (((size_t)b * H + h) * T + t) * T;
    float                  *dSr = dS + (((size_t)b * H + h) * T + t) * T;
    double                  acc = 0.0;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        float dp = cu_dotf(dO, V + (size_t)s * W, hd);
        ds[s] = dp;
        acc += (double)Pr[s] * (double)dp;
    }
    float fd = (float)cu_block_sum(acc, shs);
    for (int s = threadIdx.x; s < T; s += blockDim.x) {
        float v = s < S ? __fmul_rn(Pr[s], __fsub_rn(ds[s], fd)) : 0.0f;
        if (s < S)
            ds[s] = v;
        dSr[s] = v;
    }
    __syncthreads();
    float *dq = dqkv + (size_t)bt * W + (size_t)h * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < S; s++)
            a = __fadd_rn(a, __fmul_rn(ds[s], K[(size_t)s * W + i]));
        dq[i] = __fmul_rn(scale, a);
    }
}

// block (b·T + s, kv): dk and dv of key row s, summed over the group's heads and t ≥ s
__global__ void k_attn_bwd_keys(float *dqkv, const float *dS, const float *dheads,
                                const float *qkv, const float *P, int T, int H, int KV, int hd) {
    int   bs = blockIdx.x, kv = blockIdx.y, b = bs / T, s = bs % T, grp = H / KV;
    int   W = (H + 2 * KV) * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *dk = dqkv + (size_t)bs * W + (size_t)H * hd + (size_t)kv * hd;
    float *dv = dqkv + (size_t)bs * W + (size_t)(H + KV) * hd + (size_t)kv * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float gk = 0.0f, gv = 0.0f;
        for (int g = 0; g < grp; g++) {
            int          h = kv * grp + g;
            size_t       ph = ((size_t)b * H + h) * T;
            float        ak = 0.0f, av = 0.0f;
            for (int t = s; t < T; t++) {
                size_t       e = (ph + t) * T + s;
                const float *q = qkv + ((size_t)b * T + t) * W + (size_t)h * hd;
                const float *dO = dheads + ((size_t)b * T + t) * H * hd + (size_t)h * hd;
                ak = __fadd_rn(ak, __fmul_rn(dS[e], q[i]));
                av = __fadd_rn(av, __fmul_rn(P[e], dO[i]));
            }
            gk = __fadd_rn(gk, __fmul_rn(scale, ak));
            gv = __fadd_rn(gv, av);
        }
        dk[i] = gk;
        dv[i] = gv;
    }
}

extern "C" void cuda_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                                         const float *qkv, const float *P, int B, int T, int H,
                                         int KV, int hd, float *work) {
    size_t sm;
    if (B <= 0 || T <= 0 || H <= 0 || !att_smem((const void *)k_attn_bwd_rows, T, &sm))
        return;
    float *dS = (float *)cu_scratch(ex, sizeof(float) * (size_t)B * H * T * T);
    if (!dS)
        return;
    k_attn_bwd_rows<<<dim3((unsigned)(B * T), (unsigned)H), ATT_THREADS, sm, cu_stream(ex)>>>(
        dqkv, dS, dheads, qkv, P, T, H, KV, hd);
    CU_LAUNCHED("k_attn_bwd_rows");
    k_attn_bwd_keys<<<dim3((unsigned)(B * T), (unsigned)KV), 64, 0, cu_stream(ex)>>>(
        dqkv, dS, dheads, qkv, P, T, H, KV, hd);
    CU_LAUNCHED("k_attn_bwd_keys");
    cu_scratch_free(ex, dS);
}
