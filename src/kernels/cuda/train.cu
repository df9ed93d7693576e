/*
 * train.cu — CUDA training ops (train_ops.h): the losses with their gradients
 * (xent, soft_xent, l2_rows, rev_kl), and the optimizer's sumsq, scale and AdamW.
 *
 * Kept simple (correct first): one block per row for the losses, one block
 * per K_SUMSQ_BLOCK block for sumsq, grid-stride loops per span for scale and
 * AdamW. Spans are host arrays: the host walks them and launches per span
 * (offsets are host data; nothing is read back). Targets go to the device
 * through stream-ordered scratch, as the embedding's ids. Reductions: max in
 * float (exact in any order), sums in double over a fixed tree
 * (cu_block_sum), so results are deterministic; they agree with the CPU's
 * (8 partial sums, k_expf) to rounding, not bit for bit. scale and AdamW do
 * the CPU's float operations in its order without FMA (__fmul_rn,
 * __fadd_rn); expf / sqrtf may differ from the CPU in the last bit.
 */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/train_ops.h"
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

#define ROW_THREADS 256

// block-wide max (blockDim.x a multiple of 32); every thread gets the result
__device__ __forceinline__ float block_max(float v, float *sh /* [32] */) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    float m = sh[0];
    for (int i = 1; i < nw; i++)
        m = fmaxf(m, sh[i]);
    return m;
}

// ----------------------------------------------------------------------------
// cross-entropy: loss = logsumexp(x) − x[y];  g = scale·(softmax(x) − onehot(y))

__global__ void k_xent_rows(double *loss, float *dl, const float *logits, const int32_t *tg,
                            int V, float scale) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    int               r = blockIdx.x, y = tg[r];
    const float      *x = logits + (size_t)r * V;
    float            *g = dl ? dl + (size_t)r * V : NULL;
    if (y < 0) { // ignored row
        if (threadIdx.x == 0)
            loss[r] = 0.0;
        if (g)
            for (int v = threadIdx.x; v < V; v += blockDim.x)
                g[v] = 0.0f;
        return;
    }
    float xy = x[y]; // read before g (maybe x) is written: block_max syncs
    float m = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        m = fmaxf(m, x[v]);
    m = block_max(m, shm);
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float e = expf(x[v] - m);
        if (g)
            g[v] = e;
        s += (double)e;
    }
    double se = cu_block_sum(s, shs);
    if (threadIdx.x == 0)
        loss[r] = ((double)m + log(se)) - (double)xy;
    if (g) {
        float k = (float)((double)scale / se);
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float t = __fmul_rn(g[v], k); // each thread rescales its own terms
            g[v] = v == y ? __fsub_rn(t, scale) : t;
        }
    }
}

static int32_t *host_ids(const molt_exec *ex, const int32_t *ids, int n) {
    int32_t *d = (int32_t *)cu_scratch(ex, sizeof(int32_t) * (size_t)n);
    if (d && !CU(cudaMemcpyAsync(d, ids, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice,
                                 cu_stream(ex)))) {
        cu_scratch_free(ex, d);
        return NULL;
    }
    return d;
}

extern "C" void cuda_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
                          const int32_t *targets, int n, int V, float scale) {
    if (n <= 0)
        return;
    int32_t *d_tg = host_ids(ex, targets, n);
    if (!d_tg)
        return;
    k_xent_rows<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(loss, dlogits, logits, d_tg, V, scale);
    CU_LAUNCHED("k_xent_rows");
    cu_scratch_free(ex, d_tg);
}

// ----------------------------------------------------------------------------
// soft-label cross-entropy: loss = logsumexp(z) − Σ p·z,  z = s/τ,  p = softmax(t);
// ds = (scale/τ)·(softmax(z) − p)

__global__ void k_soft_xent_rows(double *loss, float *ds, const float *S, const float *Tt, int V,
                                 float tau, float scale) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    int               r = blockIdx.x;
    const float      *s = S + (size_t)r * V, *t = Tt + (size_t)r * V;
    float             ms = -INFINITY, mt = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        ms = fmaxf(ms, s[v]);
        mt = fmaxf(mt, t[v]);
    }
    ms = block_max(ms, shm) / tau;
    mt = block_max(mt, shm);
    double a = 0.0, b = 0.0, c = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float  z = s[v] / tau;
        double et = (double)expf(t[v] - mt);
        a += (double)expf(z - ms);
        b += et;
        c += et * (double)z;
    }
    double ses = cu_block_sum(a, shs), set = cu_block_sum(b, shs), pz = cu_block_sum(c, shs);
    if (threadIdx.x == 0)
        loss[r] = (double)ms + log(ses) - pz / set;
    if (!ds)
        return;
    __syncthreads(); // ds may be s: every read of s above is done
    float iq = (float)(1.0 / ses), ip = (float)(1.0 / set), k = scale / tau;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float q = __fmul_rn(expf(s[v] / tau - ms), iq), p = __fmul_rn(expf(t[v] - mt), ip);
        ds[(size_t)r * V + v] = __fmul_rn(k, __fsub_rn(q, p));
    }
}

extern "C" void cuda_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s,
                               const float *t, int n, int V, float tau, float scale) {
    if (n <= 0)
        return;
    k_soft_xent_rows<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(loss, ds, s, t, V, tau, scale);
    CU_LAUNCHED("k_soft_xent_rows");
}

// ----------------------------------------------------------------------------
// reverse KL (issue 17): loss = Σ q·(z − t) + (mt + log Σe^(t−mt)) − (mz + log Σe^(z−mz)),
// z = s/τ, q = softmax(z); ds = (scale/τ)·q·((z − t) − Σ q·(z − t))  (train_ops.h: k_rev_kl)

__global__ void k_rev_kl_rows(double *loss, float *ds, const float *S, const float *Tt, int V,
                              float tau, float scale) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    int               r = blockIdx.x;
    const float      *s = S + (size_t)r * V, *t = Tt + (size_t)r * V;
    float             mz = -INFINITY, mt = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        mz = fmaxf(mz, s[v]);
        mt = fmaxf(mt, t[v]);
    }
    mz = block_max(mz, shm) / tau;
    mt = block_max(mt, shm);
    double a = 0.0, b = 0.0, c = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float  z = s[v] / tau;
        double e = (double)expf(z - mz);
        a += e;
        b += (double)expf(t[v] - mt);
        c += e * ((double)z - (double)t[v]);
    }
    double sez = cu_block_sum(a, shs), set = cu_block_sum(b, shs), dd = cu_block_sum(c, shs);
    double mean = dd / sez;
    if (threadIdx.x == 0)
        loss[r] = mean + ((double)mt + log(set)) - ((double)mz + log(sez));
    if (!ds)
        return;
    __syncthreads(); // ds may be s: every read of s above is done
    float iq = (float)(1.0 / sez), k = scale / tau;
    for (int v = threadIdx.x; v < V; v += blockDim.x) { // z − t − mean in double (they cancel)
        float z = s[v] / tau, q = __fmul_rn(expf(z - mz), iq);
        float d = (float)(((double)z - (double)t[v]) - mean);
        ds[(size_t)r * V + v] = __fmul_rn(k, __fmul_rn(q, d));
    }
}

extern "C" void cuda_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s,
                            const float *t, int n, int V, float tau, float scale) {
    if (n <= 0)
        return;
    k_rev_kl_rows<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(loss, ds, s, t, V, tau, scale);
    CU_LAUNCHED("k_rev_kl_rows");
}

// ----------------------------------------------------------------------------
// l2 rows: loss = ‖x − y‖ (double);  dx = scale·(x − y)/‖x − y‖ (0 at 0)

__global__ void k_l2_rows(double *loss, float *dx, const float *X, const float *Y, size_t len,
                          float scale) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * len;
    double            ss = 0.0;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) {
        double e = (double)X[o + i] - (double)Y[o + i];
        ss += e * e;
    }
    double nrm = sqrt(cu_block_sum(ss, sh));
    if (threadIdx.x == 0)
        loss[blockIdx.x] = nrm;
    if (!dx)
        return;
    __syncthreads(); // dx may alias x
    float k = nrm > 0 ? (float)((double)scale / nrm) : 0.0f;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x)
        dx[o + i] = __fmul_rn(k, __fsub_rn(X[o + i], Y[o + i]));
}

extern "C" void cuda_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x,
                             const float *y, int n, size_t len, float scale) {
    if (n <= 0)
        return;
    k_l2_rows<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(loss, dx, x, y, len, scale);
    CU_LAUNCHED("k_l2_rows");
}

// ----------------------------------------------------------------------------
// sumsq: partial[b0 + k] = Σ x² over block k of one span (double)

__global__ void k_sumsq_span(double *partial, const float *x, size_t len) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * K_SUMSQ_BLOCK;
    size_t            n = len - o < K_SUMSQ_BLOCK ? len - o : K_SUMSQ_BLOCK;
    double            s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x)
        s += (double)x[o + i] * (double)x[o + i];
    s = cu_block_sum(s, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

extern "C" void cuda_sumsq(const molt_exec *ex, double *partial, const float *x,
                           const molt_span *span, int n_spans) {
    size_t b = 0;
    for (int i = 0; i < n_spans; i++) {
        size_t nb = (span[i].len + K_SUMSQ_BLOCK - 1) / K_SUMSQ_BLOCK;
        if (!nb)
            continue;
        k_sumsq_span<<<(unsigned)nb, ROW_THREADS, 0, cu_stream(ex)>>>(partial + b,
                                                                      x + span[i].off, span[i].len);
        CU_LAUNCHED("k_sumsq_span");
        b += nb;
    }
}

// ----------------------------------------------------------------------------
// scale and AdamW, per span

__global__ void k_scale_span(float *x, size_t n, float k) {
    GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], k);
}

extern "C" void cuda_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans,
                           float k) {
    for (int i = 0; i < n_spans; i++) {
        if (!span[i].len)
            continue;
        k_scale_span<<<cu_blocks(span[i].len, 256), 256, 0, cu_stream(ex)>>>(x + span[i].off,
                                                                            span[i].len, k);
        CU_LAUNCHED("k_scale_span");
    }
}

// torch's single-tensor AdamW in fp32, the CPU's operations in its order
__global__ void k_adamw_span(float *p, float *m, float *v, const float *g, size_t n,
                             adamw_hyper h) {
    GRID_STRIDE(k, n) {
        float gk = g[k];
        float pk = __fmul_rn(p[k], h.decay);
        float mk = __fadd_rn(__fmul_rn(m[k], h.b1), __fmul_rn(1.0f - h.b1, gk));
        float vk = __fadd_rn(__fmul_rn(v[k], h.b2), __fmul_rn(__fmul_rn(1.0f - h.b2, gk), gk));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vk), h.bc2_sqrt), h.eps);
        m[k] = mk;
        v[k] = vk;
        p[k] = __fsub_rn(pk, __fmul_rn(h.step_size, __fdiv_rn(mk, denom)));
    }
}

extern "C" void cuda_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
                           const molt_span *span, int n_spans, adamw_hyper h) {
    for (int i = 0; i < n_spans; i++) {
        size_t o = span[i].off, n = span[i].len;
        if (!n)
            continue;
        k_adamw_span<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(p + o, m + o, v + o, g + o, n,
                                                                  h);
        CU_LAUNCHED("k_adamw_span");
    }
}
