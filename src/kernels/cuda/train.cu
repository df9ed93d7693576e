/*
 * train.cu — CUDA training ops (train_ops.h): the losses with their gradients
 * (xent, soft_xent, l2_rows, rev_kl), and the optimizer's sumsq, scale and AdamW.
 *
 * One block per row for the losses; sumsq, scale and AdamW are multi-span
 * launches (the span table passed by value: see "sumsq, scale and AdamW
 * over spans" below; nothing is read back). AdamW also rewrites the bf16
 * weight cache's copies of the weights it updates (bf16.cu). Targets go to the device
 * through stream-ordered scratch, as the embedding's ids. Reductions: max in
 * float (exact in any order), sums in double over a fixed tree
 * (cu_block_sum), so results are deterministic; they agree with the CPU's
 * (8 partial sums, k_expf) to rounding, not bit for bit. scale and AdamW do
 * the CPU's float operations in its order without FMA (__fmul_rn,
 * __fadd_rn); expf / sqrtf may differ from the CPU in the last bit.
 */
#include "kernels/cuda/common.cuh"

#include <stdlib.h>

extern "C" {
#include "kernels/train_ops.h"
}

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

// Online softmax sums (the row losses below): a thread keeps a running max m and
// double sums of e^(x − m). When x raises m, max_grows sets k, the factor that
// rescales the sums taken against the old max (0 while m was −∞), and returns 1.
__device__ __forceinline__ int max_grows(float &m, float x, double &k) {
    if (!(x > m))
        return 0;
    k = m == -INFINITY ? 0.0 : exp((double)m - (double)x);
    m = x;
    return 1;
}

// the factor that brings a thread's sums against its max m to the block's max mb
__device__ __forceinline__ double to_block_max(float m, float mb) {
    return m == -INFINITY ? 0.0 : exp((double)m - (double)mb);
}

// ----------------------------------------------------------------------------
// cross-entropy: loss = logsumexp(x) − x[y];  g = scale·(softmax(x) − onehot(y))

// Two passes over the row, as the soft CE below: the max and Σ e^(x − m) online
// (each thread's running max, its double sum rescaled when the max grows, the
// threads' pairs combined once), then the gradient written.
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
    float  xy = x[y]; // read before g (maybe x) is written: block_max syncs
    float  mt = -INFINITY;
    double st = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float  xv = x[v];
        double k;
        if (max_grows(mt, xv, k))
            st *= k;
        if (xv != -INFINITY)
            st += (double)expf(xv - mt);
    }
    float  m = block_max(mt, shm);
    double se = cu_block_sum(st * to_block_max(mt, m), shs);
    if (threadIdx.x == 0)
        loss[r] = ((double)m + log(se)) - (double)xy;
    if (g) {
        __syncthreads(); // g may be x: every read of x above is done
        float k = (float)((double)scale / se);
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float t = __fmul_rn(expf(x[v] - m), k);
            g[v] = v == y ? __fsub_rn(t, scale) : t;
        }
    }
}

static int32_t *host_ids(const molt_exec *ex, const int32_t *ids, int n) {
    return (int32_t *)cu_host_to_device(ex, ids, sizeof(int32_t) * (size_t)n);
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
//
// Two passes over the row (the logits of a 128k vocabulary are far larger than
// the L2 share of a block): the first takes the maxima and the sums online —
// each thread keeps its running maxima and rescales its double sums when one
// grows; the block combines the threads' (max, sum) pairs exactly once — the
// second writes ds. float4 loads where V % 4 == 0 and the rows are aligned.

// The two passes of a loss over a row pair (s, t) of V floats, float4 where V % 4 == 0 and
// both rows are aligned (v4): the first feeds every pair to the accumulator q (q.add), the
// second writes ds[v] = f(s[v], t[v]) (ds may be s: the caller syncs between the passes).
__device__ __forceinline__ int pair_v4(const float *s, const float *t, int V) {
    return V % 4 == 0 && (uintptr_t)s % 16 == 0 && (uintptr_t)t % 16 == 0;
}

template <class Acc>
__device__ __forceinline__ void pair_pass(Acc &q, const float *s, const float *t, int V,
                                          float tau, int v4) {
    if (v4) {
        for (int v = threadIdx.x; v < V / 4; v += blockDim.x) {
            float4 a = ((const float4 *)s)[v], b = ((const float4 *)t)[v];
            q.add(a.x, b.x, tau), q.add(a.y, b.y, tau), q.add(a.z, b.z, tau), q.add(a.w, b.w, tau);
        }
    } else
        for (int v = threadIdx.x; v < V; v += blockDim.x)
            q.add(s[v], t[v], tau);
}

template <class Fn>
__device__ __forceinline__ void pair_write(float *ds, const float *s, const float *t, int V,
                                           int v4, const Fn &f) {
    if (v4) {
        for (int v = threadIdx.x; v < V / 4; v += blockDim.x) {
            float4 a = ((const float4 *)s)[v], b = ((const float4 *)t)[v], d;
            d.x = f(a.x, b.x), d.y = f(a.y, b.y), d.z = f(a.z, b.z), d.w = f(a.w, b.w);
            ((float4 *)ds)[v] = d;
        }
    } else
        for (int v = threadIdx.x; v < V; v += blockDim.x)
            ds[v] = f(s[v], t[v]);
}

struct sx_acc {
    float  ms, mt; // running max of z and of t
    double a, b, c; // Σ e^(z − ms), Σ e^(t − mt), Σ e^(t − mt)·z

    __device__ __forceinline__ void add(float sv, float tv, float tau) {
        float  z = sv / tau;
        double k;
        if (max_grows(ms, z, k))
            a *= k;
        if (max_grows(mt, tv, k))
            b *= k, c *= k;
        if (z != -INFINITY)
            a += (double)expf(z - ms);
        if (tv != -INFINITY) {
            double et = (double)expf(tv - mt);
            b += et;
            c += et * (double)z;
        }
    }
};

// ds = (scale/τ)·(softmax(z) − p) of one pair, given the row's maxima and 1/sums
struct sx_grad {
    float ms, mt, iq, ip, k, tau;
    __device__ __forceinline__ float operator()(float sv, float tv) const {
        return __fmul_rn(k, __fsub_rn(__fmul_rn(expf(sv / tau - ms), iq),
                                      __fmul_rn(expf(tv - mt), ip)));
    }
};

__global__ void k_soft_xent_rows(double *loss, float *ds, const float *S, const float *Tt, int V,
                                 float tau, float scale) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    int               r = blockIdx.x;
    const float      *s = S + (size_t)r * V, *t = Tt + (size_t)r * V;
    sx_acc            q = {-INFINITY, -INFINITY, 0.0, 0.0, 0.0};
    int               v4 = pair_v4(s, t, V);
    pair_pass(q, s, t, V, tau, v4);
    float  ms = block_max(q.ms, shm), mt = block_max(q.mt, shm);
    double ka = to_block_max(q.ms, ms), kb = to_block_max(q.mt, mt);
    double ses = cu_block_sum(q.a * ka, shs), set = cu_block_sum(q.b * kb, shs),
           pz = cu_block_sum(q.c * kb, shs);
    if (threadIdx.x == 0)
        loss[r] = (double)ms + log(ses) - pz / set;
    if (!ds)
        return;
    __syncthreads(); // ds may be s: every read of s above is done
    sx_grad f = {ms, mt, (float)(1.0 / ses), (float)(1.0 / set), scale / tau, tau};
    pair_write(ds + (size_t)r * V, s, t, V, v4, f);
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

// Two passes as the soft CE: the maxima and sums online (c rescaled with a: both
// are sums against z's max), then ds.
struct rk_acc {
    float  mz, mt; // running max of z and of t
    double a, b, c; // Σ e^(z − mz), Σ e^(t − mt), Σ e^(z − mz)·(z − t)

    __device__ __forceinline__ void add(float sv, float tv, float tau) {
        float  z = sv / tau;
        double k;
        if (max_grows(mz, z, k))
            a *= k, c *= k;
        if (max_grows(mt, tv, k))
            b *= k;
        if (z != -INFINITY) {
            double e = (double)expf(z - mz);
            a += e;
            c += e * ((double)z - (double)tv);
        }
        if (tv != -INFINITY)
            b += (double)expf(tv - mt);
    }
};

// ds = (scale/τ)·q·((z − t) − mean) of one pair; z − t − mean in double (they cancel)
struct rk_grad {
    float  mz, iq, k, tau;
    double mean;
    __device__ __forceinline__ float operator()(float sv, float tv) const {
        float z = sv / tau;
        return __fmul_rn(k, __fmul_rn(__fmul_rn(expf(z - mz), iq),
                                      (float)(((double)z - (double)tv) - mean)));
    }
};

__global__ void k_rev_kl_rows(double *loss, float *ds, const float *S, const float *Tt, int V,
                              float tau, float scale) {
    __shared__ float  shm[32];
    __shared__ double shs[32];
    int               r = blockIdx.x;
    const float      *s = S + (size_t)r * V, *t = Tt + (size_t)r * V;
    rk_acc            q = {-INFINITY, -INFINITY, 0.0, 0.0, 0.0};
    int               v4 = pair_v4(s, t, V);
    pair_pass(q, s, t, V, tau, v4);
    float  mz = block_max(q.mz, shm), mt = block_max(q.mt, shm);
    double ka = to_block_max(q.mz, mz), kb = to_block_max(q.mt, mt);
    double sez = cu_block_sum(q.a * ka, shs), set = cu_block_sum(q.b * kb, shs),
           dd = cu_block_sum(q.c * ka, shs);
    double mean = dd / sez;
    if (threadIdx.x == 0)
        loss[r] = mean + ((double)mt + log(set)) - ((double)mz + log(sez));
    if (!ds)
        return;
    __syncthreads(); // ds may be s: every read of s above is done
    rk_grad f = {mz, (float)(1.0 / sez), scale / tau, tau, mean};
    pair_write(ds + (size_t)r * V, s, t, V, v4, f);
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
// sumsq, scale and AdamW over spans: multi-span launches. The spans go to the
// kernel by value (mt_spans, ≤ MT_SPANS a launch: no upload, no host sync),
// each cut into chunks (sumsq: its K_SUMSQ_BLOCK blocks; scale / AdamW: MT_CHUNK
// elements) numbered span after span; a block walks chunks in a grid-stride
// loop and finds a chunk's span by binary search over the chunk prefix (the
// same for the whole block). Inside a chunk: float4 loads / stores on the
// 16-byte aligned body when every base pointer is 16-byte aligned, scalar
// head and tail (≤ 3 elements each). Every element gets the float
// operations of the per-span kernels it replaces, in the same order.

#define MT_SPANS   96
#define MT_CHUNK   16384
#define MT_THREADS 256

typedef struct mt_spans {
    size_t         off[MT_SPANS], len[MT_SPANS];
    __nv_bfloat16 *bf[MT_SPANS]; // AdamW: where span i's new weights go as bf16 (or NULL)
    size_t first[MT_SPANS + 1]; // chunk prefix: span i owns chunks [first[i], first[i+1])
    int    n;
} mt_spans;

// the span owning chunk c: the last i with first[i] ≤ c (empty spans own none)
__device__ __forceinline__ int mt_span_of(const mt_spans &t, size_t c) {
    int lo = 0, hi = t.n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t.first[mid] <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// the spans [s0, s0 + n) of span[] (and of bf, when not NULL) into t, chunks of `chunk`
// elements; returns the chunk count
static size_t mt_fill(mt_spans *t, const molt_span *span, __nv_bfloat16 *const *bf, int s0, int n,
                      size_t chunk) {
    size_t c = 0;
    t->n = n;
    for (int i = 0; i < n; i++) {
        t->off[i] = span[s0 + i].off;
        t->len[i] = span[s0 + i].len;
        t->bf[i] = bf ? bf[s0 + i] : NULL;
        t->first[i] = c;
        c += (t->len[i] + chunk - 1) / chunk;
    }
    t->first[n] = c;
    return c;
}

static unsigned mt_grid(size_t chunks) {
    return (unsigned)(chunks < 1 ? 1 : chunks > 65535u * 8u ? 65535u * 8u : chunks);
}

// the elements [lo, hi) (absolute indices): head, float4 body, tail; f(i) / f.v4(i)
template <int VEC, class Op> __device__ __forceinline__ void mt_range(size_t lo, size_t hi, Op &f) {
    size_t a = VEC ? (lo + 3) / 4 * 4 : hi, b = VEC ? hi / 4 * 4 : hi;
    a = a < hi ? a : hi;
    b = b > a ? b : a;
    for (size_t i = lo + threadIdx.x; i < a; i += blockDim.x)
        f(i);
    if (VEC)
        for (size_t q = a / 4 + threadIdx.x; q < b / 4; q += blockDim.x)
            f.v4(q * 4);
    for (size_t i = b + threadIdx.x; i < hi; i += blockDim.x)
        f(i);
}

// Op over every chunk of the spans in t
template <int VEC, class Op> __global__ void k_mt_elementwise(mt_spans t, size_t chunks, Op f) {
    for (size_t c = blockIdx.x; c < chunks; c += gridDim.x) {
        int    i = mt_span_of(t, c);
        size_t lo = t.off[i] + (c - t.first[i]) * MT_CHUNK;
        size_t hi = t.off[i] + t.len[i];
        hi = hi - lo < MT_CHUNK ? hi : lo + MT_CHUNK;
        f.at_span(t.bf[i], t.off[i]);
        mt_range<VEC>(lo, hi, f);
    }
}

static bool al16(const void *p) { return (uintptr_t)p % 16 == 0; }

// launches k_mt_elementwise over every span, MT_SPANS at a time
template <class Op>
static void mt_launch(const molt_exec *ex, const molt_span *span, __nv_bfloat16 *const *bf,
                      int n_spans, Op f, bool vec, const char *what) {
    for (int s0 = 0; s0 < n_spans; s0 += MT_SPANS) {
        int      n = n_spans - s0 < MT_SPANS ? n_spans - s0 : MT_SPANS;
        mt_spans t;
        size_t   chunks = mt_fill(&t, span, bf, s0, n, MT_CHUNK);
        if (!chunks)
            continue;
        unsigned g = mt_grid(chunks);
        if (vec)
            k_mt_elementwise<1, Op><<<g, MT_THREADS, 0, cu_stream(ex)>>>(t, chunks, f);
        else
            k_mt_elementwise<0, Op><<<g, MT_THREADS, 0, cu_stream(ex)>>>(t, chunks, f);
        cu_check(cudaGetLastError(), what, __FILE__, __LINE__);
    }
}

// the bf16 weight cache (bf16.cu) learns that the hull of the spans of x changed
static void mt_written(const float *x, const molt_span *span, int n_spans) {
    size_t lo = (size_t)-1, hi = 0;
    for (int i = 0; i < n_spans; i++)
        if (span[i].len) {
            lo = span[i].off < lo ? span[i].off : lo;
            hi = span[i].off + span[i].len > hi ? span[i].off + span[i].len : hi;
        }
    if (hi > lo)
        cu_wcache_written(x + lo, sizeof(float) * (hi - lo));
}

// ----------------------------------------------------------------------------
// sumsq: partial[b] = Σ x² over K_SUMSQ_BLOCK block b (double), blocks numbered
// span after span: the chunks of k_mt are the blocks, one CUDA block each.
// Each thread sums its elements (a fixed set) in double, then the block's
// fixed tree (cu_block_sum): deterministic.

struct sumsq_op {
    const float *x;
    double       s0, s1;
    __device__ void operator()(size_t i) { s0 += (double)x[i] * (double)x[i]; }
    __device__ void v4(size_t i) {
        float4 a = *(const float4 *)(x + i);
        s0 += (double)a.x * (double)a.x + (double)a.y * (double)a.y;
        s1 += (double)a.z * (double)a.z + (double)a.w * (double)a.w;
    }
};

template <int VEC> __global__ void k_sumsq_mt(double *partial, const float *x, mt_spans t,
                                             size_t chunks) {
    __shared__ double sh[32];
    for (size_t c = blockIdx.x; c < chunks; c += gridDim.x) {
        int      i = mt_span_of(t, c);
        size_t   lo = t.off[i] + (c - t.first[i]) * K_SUMSQ_BLOCK, hi = t.off[i] + t.len[i];
        sumsq_op f = {x, 0.0, 0.0};
        hi = hi - lo < K_SUMSQ_BLOCK ? hi : lo + K_SUMSQ_BLOCK;
        mt_range<VEC>(lo, hi, f);
        double s = cu_block_sum(f.s0 + f.s1, sh);
        if (threadIdx.x == 0)
            partial[c] = s;
    }
}

extern "C" void cuda_sumsq(const molt_exec *ex, double *partial, const float *x,
                           const molt_span *span, int n_spans) {
    size_t b = 0;
    for (int s0 = 0; s0 < n_spans; s0 += MT_SPANS) {
        int      n = n_spans - s0 < MT_SPANS ? n_spans - s0 : MT_SPANS;
        mt_spans t;
        size_t   nb = mt_fill(&t, span, NULL, s0, n, K_SUMSQ_BLOCK);
        if (!nb)
            continue;
        if (al16(x))
            k_sumsq_mt<1><<<mt_grid(nb), MT_THREADS, 0, cu_stream(ex)>>>(partial + b, x, t, nb);
        else
            k_sumsq_mt<0><<<mt_grid(nb), MT_THREADS, 0, cu_stream(ex)>>>(partial + b, x, t, nb);
        CU_LAUNCHED("k_sumsq_mt");
        b += nb;
    }
}

// ----------------------------------------------------------------------------
// scale and AdamW

struct scale_op {
    float *x;
    float  k;
    __device__ void at_span(__nv_bfloat16 *, size_t) {}
    __device__ void operator()(size_t i) { x[i] = __fmul_rn(x[i], k); }
    __device__ void v4(size_t i) {
        float4 a = *(float4 *)(x + i);
        a.x = __fmul_rn(a.x, k), a.y = __fmul_rn(a.y, k);
        a.z = __fmul_rn(a.z, k), a.w = __fmul_rn(a.w, k);
        *(float4 *)(x + i) = a;
    }
};

extern "C" void cuda_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans,
                           float k) {
    mt_written(x, span, n_spans);
    mt_launch(ex, span, NULL, n_spans, scale_op{x, k}, al16(x), "launch k_mt_elementwise (scale)");
}

// torch's single-tensor AdamW in fp32, the CPU's operations in its order
__device__ __forceinline__ void adamw_one(float &p, float &m, float &v, float g,
                                          const adamw_hyper &h) {
    float pk = __fmul_rn(p, h.decay);
    float mk = __fadd_rn(__fmul_rn(m, h.b1), __fmul_rn(1.0f - h.b1, g));
    float vk = __fadd_rn(__fmul_rn(v, h.b2), __fmul_rn(__fmul_rn(1.0f - h.b2, g), g));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vk), h.bc2_sqrt), h.eps);
    m = mk;
    v = vk;
    p = __fsub_rn(pk, __fmul_rn(h.step_size, __fdiv_rn(mk, denom)));
}

// bf (per span, NULL: none): the bf16 weight cache's copy of the span (bf16.cu:
// cu_wcache_adamw), rewritten from the new weights (round to nearest even, as a conversion)
struct adamw_op {
    float         *p, *m, *v;
    const float   *g;
    adamw_hyper    h;
    __nv_bfloat16 *bf;
    size_t         bo;
    __device__ void at_span(__nv_bfloat16 *b, size_t off) { bf = b, bo = off; }
    __device__ void operator()(size_t i) {
        adamw_one(p[i], m[i], v[i], g[i], h);
        if (bf)
            bf[i - bo] = __float2bfloat16_rn(p[i]);
    }
    __device__ void v4(size_t i) {
        float4 P = *(float4 *)(p + i), M = *(float4 *)(m + i), V = *(float4 *)(v + i);
        float4 G = *(const float4 *)(g + i);
        adamw_one(P.x, M.x, V.x, G.x, h);
        adamw_one(P.y, M.y, V.y, G.y, h);
        adamw_one(P.z, M.z, V.z, G.z, h);
        adamw_one(P.w, M.w, V.w, G.w, h);
        *(float4 *)(p + i) = P, *(float4 *)(m + i) = M, *(float4 *)(v + i) = V;
        if (bf) {
            __nv_bfloat16 *d = bf + (i - bo);
            d[0] = __float2bfloat16_rn(P.x), d[1] = __float2bfloat16_rn(P.y);
            d[2] = __float2bfloat16_rn(P.z), d[3] = __float2bfloat16_rn(P.w);
        }
    }
};

extern "C" void cuda_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
                           const molt_span *span, int n_spans, adamw_hyper h) {
    size_t          nb = (size_t)(n_spans > 0 ? n_spans : 1);
    __nv_bfloat16 **bf = (__nv_bfloat16 **)malloc(sizeof(*bf) * nb);
    if (!bf) {
        CU_FAIL("adamw: out of host memory");
        return;
    }
    cu_wcache_adamw(p, span, n_spans, bf); // cached weights: fresh bf16 from this kernel
    bool vec = al16(p) && al16(m) && al16(v) && al16(g);
    mt_launch(ex, span, bf, n_spans, adamw_op{p, m, v, g, h, NULL, 0}, vec,
              "launch k_mt_elementwise (adamw)");
    free(bf);
}
