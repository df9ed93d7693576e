/*
 * ssm_train.c — training forward / backward of the Mamba-2 and DiscreteMamba2
 * (Llamba) mixers over B independent sequences, and of their materialized
 * mixing matrix (MOHAWK stage 1). Contracts in mixers/ssm_train.h; the forward
 * is the stage list of mixers/ssm_mixer.c (same numerics), equations in
 * shared/docs/ALGORITHMS.md §1.2, §1.4, §2.2.
 *
 * Accumulation contract: du is written (=); parameter grads are accumulated
 * (+=); a NULL grad pointer means "not wanted" and its work is skipped. Every
 * internal activation grad is written (=) into work before it is read.
 *
 * Letters: B sequences, T tokens, BT = B·T rows, d = d_model, Di = d_inner =
 * H·P, R = in_proj rows, Cc = Di + 2·G·N conv channels, GN = G·N, K conv
 * width, Q = cfg->chunk. Row r = b·T + t. Layouts row-major.
 *
 * Forward stages, and the backward as the same list in reverse:
 *   1 proj   zx[BT,R] = u·in_projᵀ (+b)            du = dzx·in_proj, d in_proj += dzxᵀ·u
 *   2 conv   xcp = conv1d(xr = zx[:, xBC]) per seq  conv1d_causal_backward per seq
 *   3 prep   x|B|C = act(xcp);  Δ, dA, X            row-wise chain rule
 *   4 scan   ys = SSD(X, dA, B, C) chunked per seq  ssd_scan_chunked_backward per seq
 *   5 gate   ypre = ys + D·x;  g = gate(ypre, z)    row-wise, then column sums
 *   6 out    y = g·out_projᵀ (+b)                   dg = dy·out_proj, d out_proj += dyᵀ·g
 * Materialized: 1, 2, 3, then M = ssd_materialize(ex, dA, B, C, Δ | 1, D) per seq.
 *
 * Threads (molt's pool, ex->nth): row stages split rows, column sums split
 * columns (double accumulation), weight grads split output rows of W (single-
 * threaded BLAS inside), per-sequence kernels run either one sequence per
 * thread (B large) or one sequence at a time with the kernel's own threads.
 * Every output has one writer and a fixed summation order, so the backward is
 * bit-identical for any thread count. (The forward projections use k_matmul,
 * whose BLAS blocks follow the thread count: the forward agrees across thread
 * counts to rounding, ~1e-7 relative, not bit for bit.)
 */
#include "mixers/ssm_train.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

// ----------------------------------------------------------------------------
// dimensions and buffers

typedef struct dims {
    int    B, T, BT, d, R, Cc, Di, H, P, N, G, GN, K, Q, mamba;
    int    oz, oxbc, odt; // column offsets inside a zx row
    size_t sw;            // ssd_chunked_work per sequence (saved by the forward)
    size_t sbw;           // ssd_chunked_backward_work per sequence
    size_t mbw;           // ssd_materialize_backward_work per sequence
} dims;

static void dims_of(dims *m, const ssm_cfg *c, int B, int T) {
    m->B = B, m->T = T, m->BT = B * T, m->d = c->d_model, m->R = ssm_in_proj_rows(c);
    m->Cc = ssm_conv_dim(c), m->Di = c->d_inner, m->H = c->H, m->P = c->P, m->N = c->N;
    m->G = c->G, m->GN = c->G * c->N, m->K = c->K, m->Q = c->chunk;
    m->mamba = c->kind == SSM_MAMBA2;
    ssm_in_proj_cols(c, &m->oz, &m->oxbc, &m->odt);
    m->sw = ssd_chunked_work(T, c->H, c->P, c->N, c->G, c->chunk);
    m->sbw = ssd_chunked_backward_work(T, c->H, c->P, c->N, c->G, c->chunk);
    m->mbw = ssd_materialize_backward_work(T, c->H, c->N, c->G);
}

// Everything a stage reads or writes. Views into act (saved) and work (scratch).
typedef struct job {
    const molt_exec   *ex;
    dims               m;
    const ssm_cfg     *c;
    const ssm_weights *w;
    const ssm_grads   *g;
    const float       *u, *dy, *dM;
    float             *y, *M;
    // act (train: all; materialized: zx, xcp, Bm, Cm, dA, dlt)
    float *zx;   // [BT,R]   in_proj output
    float *xcp;  // [BT,Cc]  Mamba-2: conv output before SiLU (NULL for Discrete)
    float *x;    // [BT,Di]  post-conv x
    float *Bm;   // [BT,G,N] post-conv B
    float *Cm;   // [BT,G,N] post-conv C
    float *X;    // [BT,H,P] scan input: x·Δ (Mamba-2); aliases x (Discrete)
    float *dA;   // [BT,H]   log decay
    float *dlt;  // [BT,H]   Δ (Mamba-2)
    float *ypre; // [BT,Di]  ys + D·x, the gate input
    float *rstd; // [BT,G]   Mamba-2 gated-RMSNorm 1/rms per group
    float *scan; // [B,sw]   states entering each chunk, chunk decays (ssd_scan_chunked)
    // work
    float *xr;   // [BT,Cc]  conv input zx[:, xBC], dense
    float *xct;  // [BT,Cc]  Discrete: conv output (forward only)
    float *gb;   // [BT,Di]  forward: gated output g
    float *dg;   // [BT,Di]  ∂g, then ∂ypre (= ∂ys) in place
    float *tmp;  // [BT,Di]  recomputed g, then ∂norm_w terms
    float *dX;   // [BT,H,P]
    float *ddA;  // [BT,H]
    float *dcs;  // [BT,H]   materialized Mamba-2: ∂colscale = ∂Δ (direct part)
    float *dBm;  // [BT,G,N]
    float *dCm;  // [BT,G,N]
    float *dxc;  // [BT,Cc]  ∂(conv output): post-activation, then pre-activation
    float *dxr;  // [BT,Cc]  ∂(conv input)
    float *dzx;  // [BT,R]
    float *hs1;  // [BT,H]   per-row Σ_p ∂ypre·x      (→ ∂D)
    float *hs2;  // [BT,H]   per-row ∂dA·Δ·A          (→ ∂A_log)
    float *dDp;  // [B,H]    materialized: per-sequence ∂D
    float *sbw;  // [B,sbw]  scan backward work (saved part copied in) / [B,mbw]
} job;

// consecutive views of one buffer; with base NULL only the size is counted
typedef struct carve {
    float *base;
    size_t off;
} carve;

static float *take(carve *cv, size_t n, int want) {
    if (!want)
        return NULL;
    float *p = cv->base ? cv->base + cv->off : NULL;
    cv->off += n;
    return p;
}

// act for the training forward; returns its size in floats
static size_t train_act_views(job *j, float *base) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->zx = take(&cv, BT * m->R, 1);
    j->xcp = take(&cv, BT * m->Cc, m->mamba);
    j->x = take(&cv, BT * m->Di, 1);
    j->Bm = take(&cv, BT * m->GN, 1);
    j->Cm = take(&cv, BT * m->GN, 1);
    j->X = m->mamba ? take(&cv, BT * m->Di, 1) : j->x;
    j->dA = take(&cv, BT * m->H, 1);
    j->dlt = take(&cv, BT * m->H, m->mamba);
    j->ypre = take(&cv, BT * m->Di, 1);
    j->rstd = take(&cv, BT * m->G, m->mamba);
    j->scan = take(&cv, (size_t)m->B * m->sw, 1);
    return cv.off;
}

// work for the training forward and backward (the two share the buffer)
static size_t train_work_views(job *j, float *base, int backward) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->xr = take(&cv, BT * m->Cc, 1);
    if (!backward) {
        j->xct = take(&cv, BT * m->Cc, !m->mamba);
        j->gb = take(&cv, BT * m->Di, 1);
        return cv.off;
    }
    j->dg = take(&cv, BT * m->Di, 1);
    j->tmp = take(&cv, BT * m->Di, 1);
    j->dX = take(&cv, BT * m->Di, 1);
    j->ddA = take(&cv, BT * m->H, 1);
    j->dcs = NULL;
    j->dBm = take(&cv, BT * m->GN, 1);
    j->dCm = take(&cv, BT * m->GN, 1);
    j->dxc = take(&cv, BT * m->Cc, 1);
    j->dxr = take(&cv, BT * m->Cc, 1);
    j->dzx = take(&cv, BT * m->R, 1);
    j->hs1 = take(&cv, BT * m->H, 1);
    j->hs2 = take(&cv, BT * m->H, 1);
    j->dDp = NULL;
    j->sbw = take(&cv, (size_t)m->B * m->sbw, 1);
    return cv.off;
}

static size_t mat_act_views(job *j, float *base) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->zx = take(&cv, BT * m->R, 1);
    j->xcp = take(&cv, BT * m->Cc, m->mamba);
    j->x = j->X = j->ypre = j->rstd = j->scan = NULL;
    j->Bm = take(&cv, BT * m->GN, 1);
    j->Cm = take(&cv, BT * m->GN, 1);
    j->dA = take(&cv, BT * m->H, 1);
    j->dlt = take(&cv, BT * m->H, m->mamba);
    return cv.off;
}

static size_t mat_work_views(job *j, float *base, int backward) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->xr = take(&cv, BT * m->Cc, 1);
    if (!backward) {
        j->xct = take(&cv, BT * m->Cc, !m->mamba);
        return cv.off;
    }
    j->dg = j->tmp = j->dX = j->hs1 = NULL;
    j->ddA = take(&cv, BT * m->H, 1);
    j->dcs = take(&cv, BT * m->H, m->mamba);
    j->dBm = take(&cv, BT * m->GN, 1);
    j->dCm = take(&cv, BT * m->GN, 1);
    j->dxc = take(&cv, BT * m->Cc, 1);
    j->dxr = take(&cv, BT * m->Cc, 1);
    j->dzx = take(&cv, BT * m->R, 1);
    j->hs2 = take(&cv, BT * m->H, 1);
    j->dDp = take(&cv, (size_t)m->B * m->H, 1);
    j->sbw = take(&cv, (size_t)m->B * m->mbw, 1);
    return cv.off;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t ssm_train_act_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return train_act_views(&j, NULL);
}

size_t ssm_train_work_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(train_work_views(&j, NULL, 0), train_work_views(&j, NULL, 1));
}

size_t ssm_mat_act_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return mat_act_views(&j, NULL);
}

size_t ssm_mat_work_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(mat_work_views(&j, NULL, 0), mat_work_views(&j, NULL, 1));
}

// The backward only reads act; the views are typed float * for brevity.
static float *unconst(const float *p) { return (float *)(uintptr_t)p; }

// ----------------------------------------------------------------------------
// parallel helpers (pool tasks)

typedef void (*row_fn)(const job *j, int r0, int r1);
typedef struct row_task {
    row_fn     fn;
    const job *j;
    int        n;
} row_task;

static void row_task_run(void *arg, int ith, int nth) {
    const row_task *t = arg;
    int             lo, hi;
    molt_pool_range(t->n, ith, nth, &lo, &hi);
    if (lo < hi)
        t->fn(t->j, lo, hi);
}

// Every multi-threaded pool job here uses exactly ex->nth threads (tasks
// past the work find empty ranges) so the split, and hence the rounding, does
// not depend on the shape; small ones run inline.
static int pool_nth(const molt_exec *ex, size_t cost, size_t threshold) {
    return cost < threshold ? 1 : ex->nth;
}

// fn over rows [0, n) split in contiguous ranges; inline when small
static void par_rows(row_fn fn, const job *j, int n, size_t cost_per_row) {
    row_task t = {fn, j, n};
    molt_pool_run(n < 2 ? 1 : pool_nth(j->ex, (size_t)n * cost_per_row, 32768), row_task_run, &t);
}

typedef void (*seq_fn)(const job *j, int b);
typedef struct seq_task {
    seq_fn     fn;
    const job *j;
} seq_task;

static void seq_task_run(void *arg, int ith, int nth) {
    const seq_task *t = arg;
    int             lo, hi;
    molt_pool_range(t->j->m.B, ith, nth, &lo, &hi);
    for (int b = lo; b < hi; b++)
        t->fn(t->j, b);
}

// fn for every sequence. One sequence per thread when the batch splits evenly
// enough over the threads, or when it offers more parallelism than the kernel
// (inner: how many independent items the kernel itself splits); else one
// sequence at a time, each kernel using the pool itself. (A kernel called from
// a pool task runs inline: the pool is not reentrant.) fn must only write
// per-sequence outputs.
static void par_seqs(seq_fn fn, const job *j, int inner) {
    int nth = j->ex->nth, B = j->m.B;
    if (nth > 1 && B > 1 && (B >= 2 * nth || (B >= nth && B % nth == 0) || B > inner)) {
        seq_task t = {fn, j};
        molt_pool_run(nth, seq_task_run, &t);
    } else {
        for (int b = 0; b < B; b++)
            fn(j, b);
    }
}

// out[c] += Σ_r src[r·ld + c], c < cols, rows in order with double partial sums
typedef struct colsum_task {
    float       *out;
    const float *src;
    int          rows, cols, ld;
} colsum_task;

static void colsum_run(void *arg, int ith, int nth) {
    const colsum_task *t = arg;
    int                lo, hi;
    molt_pool_range(t->cols, ith, nth, &lo, &hi);
    for (int c0 = lo; c0 < hi; c0 += 64) {
        int    nc = hi - c0 < 64 ? hi - c0 : 64;
        double acc[64];
        for (int k = 0; k < nc; k++)
            acc[k] = 0.0;
        for (int r = 0; r < t->rows; r++) {
            const float *s = t->src + (size_t)r * t->ld + c0;
            for (int k = 0; k < nc; k++)
                acc[k] += (double)s[k];
        }
        for (int k = 0; k < nc; k++)
            t->out[c0 + k] += (float)acc[k];
    }
}

static void colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld) {
    if (!out || rows <= 0)
        return;
    colsum_task t = {out, src, rows, cols, ld};
    molt_pool_run(pool_nth(ex, (size_t)rows * (size_t)cols, 65536), colsum_run, &t);
}

// Linear backward pieces, y[rows,out] = x[rows,in]·W[out,in]ᵀ:
//   dx[rows,in] = dy·W          in blocks of MM_ROWS rows
//   dW[out,in] += dyᵀ·x         in blocks of MM_WROWS rows of W
// The blocks are fixed (not derived from the thread count) and spread over the
// pool: OpenBLAS's result for an element depends on how the call is split, so
// fixed blocks are what keeps these bit-identical for any number of threads.
#define MM_ROWS  128
#define MM_WROWS 16

typedef struct mm_task {
    float       *out;
    const float *dy, *b; // b: W (dx) or x (dW)
    int          rows, n_out, n_in;
} mm_task;

static void mm_dx_run(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int            lo, hi;
    molt_pool_range((t->rows + MM_ROWS - 1) / MM_ROWS, ith, nth, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
        int r0 = blk * MM_ROWS, r1 = t->rows < r0 + MM_ROWS ? t->rows : r0 + MM_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, t->n_in, t->n_out, 1.0f,
                    t->dy + (size_t)r0 * t->n_out, t->n_out, t->b, t->n_in, 0.0f,
                    t->out + (size_t)r0 * t->n_in, t->n_in);
    }
}

static void mm_dw_run(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int            lo, hi;
    molt_pool_range((t->n_out + MM_WROWS - 1) / MM_WROWS, ith, nth, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
        int o0 = blk * MM_WROWS, o1 = t->n_out < o0 + MM_WROWS ? t->n_out : o0 + MM_WROWS;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, t->n_in, t->rows, 1.0f,
                    t->dy + o0, t->n_out, t->b, t->n_in, 1.0f, t->out + (size_t)o0 * t->n_in,
                    t->n_in);
    }
}

static int mm_threads(const molt_exec *ex, int blocks, int rows, int n_out, int n_in) {
    double flops = 2.0 * rows * (double)n_out * n_in;
    return flops < 1e6 || blocks < 2 ? 1 : ex->nth;
}

static void mm_dx(const molt_exec *ex, float *dx, const float *dy, const float *W, int rows, int n_out, int n_in) {
    mm_task t = {dx, dy, W, rows, n_out, n_in};
    molt_pool_run(mm_threads(ex, (rows + MM_ROWS - 1) / MM_ROWS, rows, n_out, n_in), mm_dx_run, &t);
}

static void mm_dw(const molt_exec *ex, float *dW, const float *dy, const float *x, int rows, int n_out, int n_in) {
    if (!dW || rows <= 0)
        return;
    mm_task t = {dW, dy, x, rows, n_out, n_in};
    molt_pool_run(mm_threads(ex, (n_out + MM_WROWS - 1) / MM_WROWS, rows, n_out, n_in), mm_dw_run,
                  &t);
}

static inline float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }
// d/dv silu(v) = σ(v)·(1 + v·(1 − σ(v)))
static inline float dsilu(float v) {
    float s = sigmoidf(v);
    return s * (1.0f + v * (1.0f - s));
}
// d/dv k_softplus(v) (threshold 20: identity above)
static inline float dsoftplus(float v) { return v > 20.0f ? 1.0f : sigmoidf(v); }

// ----------------------------------------------------------------------------
// 1 proj:  zx = u·in_projᵀ (+b);  xr = zx[:, xBC]

static void rows_extract_xr(const job *j, int r0, int r1) {
    for (int r = r0; r < r1; r++)
        memcpy(j->xr + (size_t)r * j->m.Cc, j->zx + (size_t)r * j->m.R + j->m.oxbc,
               sizeof(float) * (size_t)j->m.Cc);
}

// backward (after dzx is complete):
//   ∂u = ∂zx·in_proj   ∂in_proj += ∂zxᵀ·u   ∂in_proj_b += Σ_r ∂zx
static void proj_backward(float *du, const job *j) {
    const dims *m = &j->m;
    mm_dx(j->ex, du, j->dzx, j->w->in_proj, m->BT, m->R, m->d);
    mm_dw(j->ex, j->g->in_proj, j->dzx, j->u, m->BT, m->R, m->d);
    if (j->w->in_proj_b)
        colsum(j->ex, j->g->in_proj_b, j->dzx, m->BT, m->R, m->R);
}

// ----------------------------------------------------------------------------
// 2 conv:  xcp = conv1d_causal(ex, xr) per sequence, zero initial state

static void seq_conv(const job *j, int b) {
    const dims *m = &j->m;
    size_t      o = (size_t)b * m->T * m->Cc;
    float      *out = m->mamba ? j->xcp : j->xct;
    conv1d_causal(j->ex, out + o, j->xr + o, j->w->conv_w, j->w->conv_b, NULL, m->T, m->Cc, m->K);
}

// backward, ∂xc (pre-activation) → ∂xr, ∂conv_w, ∂conv_b. The weight grads
// accumulate over sequences, so sequences go one at a time (each kernel call
// splits rows / channels over the pool), in order.
//   ∂zx[:, xBC] = ∂xr;  the unused [z0, x0] columns (d_mlp) get 0
static void rows_put_dxr(const job *j, int r0, int r1) {
    const dims *m = &j->m;
    for (int r = r0; r < r1; r++) {
        float *dz = j->dzx + (size_t)r * m->R;
        memcpy(dz + m->oxbc, j->dxr + (size_t)r * m->Cc, sizeof(float) * (size_t)m->Cc);
        if (m->mamba && j->c->d_mlp > 0)
            memset(dz, 0, sizeof(float) * 2 * (size_t)j->c->d_mlp);
    }
}

static void conv_backward(const job *j) {
    const dims *m = &j->m;
    par_rows(rows_extract_xr, j, m->BT, (size_t)m->Cc);
    for (int b = 0; b < m->B; b++) {
        size_t o = (size_t)b * m->T * m->Cc;
        conv1d_causal_backward(j->ex, j->dxr + o, j->g->conv_w, j->w->conv_b ? j->g->conv_b : NULL,
                               j->dxc + o, j->xr + o, j->w->conv_w, m->T, m->Cc, m->K);
    }
    par_rows(rows_put_dxr, j, m->BT, (size_t)m->R);
}

// ----------------------------------------------------------------------------
// 3 prep:  x|B|C = act(xcp)  (SiLU for Mamba-2, identity for Discrete)
//   Mamba-2:  Δ = clamp(softplus(dt + dt_bias), lo, hi),  dA = Δ·A,  A = −exp(A_log),  X = x·Δ
//   Discrete: dA = −softplus(a_t)  (a_t = the A_log columns of zx),  X = x

static void rows_prep(const job *j, int r0, int r1) {
    const dims        *m = &j->m;
    const ssm_cfg     *c = j->c;
    const ssm_weights *w = j->w;
    int                Di = m->Di, GN = m->GN, H = m->H, P = m->P;
    for (int r = r0; r < r1; r++) {
        const float *v = (m->mamba ? j->xcp : j->xct) + (size_t)r * m->Cc;
        const float *dtr = j->zx + (size_t)r * m->R + m->odt;
        float       *Br = j->Bm + (size_t)r * GN, *Cr = j->Cm + (size_t)r * GN;
        float       *dA = j->dA + (size_t)r * H;
        for (int i = 0; i < GN; i++) {
            Br[i] = m->mamba ? k_silu(v[Di + i]) : v[Di + i];
            Cr[i] = m->mamba ? k_silu(v[Di + GN + i]) : v[Di + GN + i];
        }
        float *x = j->x ? j->x + (size_t)r * Di : NULL;
        if (x)
            for (int i = 0; i < Di; i++)
                x[i] = m->mamba ? k_silu(v[i]) : v[i];
        if (m->mamba) {
            float *dl = j->dlt + (size_t)r * H;
            for (int h = 0; h < H; h++) {
                float d = k_softplus(dtr[h] + (w->dt_bias ? w->dt_bias[h] : 0.0f));
                if (d < c->dt_limit_lo)
                    d = c->dt_limit_lo;
                if (d > c->dt_limit_hi)
                    d = c->dt_limit_hi;
                dl[h] = d;
                dA[h] = d * -expf(w->A_log[h]);
                if (x)
                    for (int p = 0; p < P; p++)
                        j->X[(size_t)r * Di + h * P + p] = x[h * P + p] * d;
            }
        } else {
            for (int h = 0; h < H; h++)
                dA[h] = -k_softplus(dtr[h]);
        }
    }
}

// backward, per row. Inputs: ∂X (train; NULL for M), ∂ypre for the D·x skip
// (train; NULL for M), ∂dA, ∂B, ∂C, ∂colscale = ∂Δ direct (M, Mamba-2).
//   X = x·Δ:        ∂x = ∂X·Δ + D·∂ypre        ∂Δ = Σ_p ∂X·x + ∂dA·A (+ ∂colscale)
//   dA = Δ·A:       ∂A_log += ∂dA·Δ·A           (A = −exp(A_log), ∂A/∂A_log = A)
//   Δ = clamp(sp):  ∂sp = ∂Δ where lo ≤ sp ≤ hi, else 0
//   sp = softplus(v), v = dt + dt_bias:  ∂dt = ∂sp·σ(v) = ∂dt_bias term
//   Discrete:       ∂x = ∂X + D·∂ypre           ∂a_t = −∂dA·σ(a_t)
//   x|B|C = silu(xcp) (Mamba-2):  ∂xcp = ∂(x|B|C)·silu'(xcp)
static void rows_prep_backward(const job *j, int r0, int r1) {
    const dims        *m = &j->m;
    const ssm_cfg     *c = j->c;
    const ssm_weights *w = j->w;
    int                Di = m->Di, GN = m->GN, H = m->H, P = m->P;
    for (int r = r0; r < r1; r++) {
        const float *zr = j->zx + (size_t)r * m->R;
        float       *dzr = j->dzx + (size_t)r * m->R, *dxc = j->dxc + (size_t)r * m->Cc;
        const float *dX = j->dX ? j->dX + (size_t)r * Di : NULL;
        const float *dyp = j->dg ? j->dg + (size_t)r * Di : NULL;
        const float *x = j->x ? j->x + (size_t)r * Di : NULL;
        const float *ddA = j->ddA + (size_t)r * H;
        for (int h = 0; h < H; h++) {
            float Dh = w->D ? w->D[h] : 0.0f;
            float dl = m->mamba ? j->dlt[(size_t)r * H + h] : 1.0f;
            float ddl = 0.0f; // ∂Δ
            for (int p = 0; p < P; p++) {
                int   i = h * P + p;
                float v = dyp ? Dh * dyp[i] : 0.0f;
                if (dX) {
                    v += dX[i] * dl;
                    ddl += dX[i] * x[i];
                }
                dxc[i] = v;
            }
            if (m->mamba) {
                float A = -expf(w->A_log[h]);
                ddl += ddA[h] * A;
                if (j->dcs)
                    ddl += j->dcs[(size_t)r * H + h];
                j->hs2[(size_t)r * H + h] = ddA[h] * dl * A;
                float v = zr[m->odt + h] + (w->dt_bias ? w->dt_bias[h] : 0.0f);
                float sp = k_softplus(v);
                int   clamped = sp < c->dt_limit_lo || sp > c->dt_limit_hi;
                dzr[m->odt + h] = clamped ? 0.0f : ddl * dsoftplus(v);
            } else {
                dzr[m->odt + h] = -ddA[h] * dsoftplus(zr[m->odt + h]);
            }
        }
        memcpy(dxc + Di, j->dBm + (size_t)r * GN, sizeof(float) * (size_t)GN);
        memcpy(dxc + Di + GN, j->dCm + (size_t)r * GN, sizeof(float) * (size_t)GN);
        if (m->mamba) {
            const float *xcp = j->xcp + (size_t)r * m->Cc;
            for (int i = 0; i < m->Cc; i++)
                dxc[i] *= dsilu(xcp[i]);
        }
    }
}

static void prep_param_grads(const job *j) {
    const dims *m = &j->m;
    if (!m->mamba)
        return; // Discrete: A_log is a per-token projection, no parameter
    if (j->w->dt_bias)
        colsum(j->ex, j->g->dt_bias, j->dzx + m->odt, m->BT, m->H, m->R);
    colsum(j->ex, j->g->A_log, j->hs2, m->BT, m->H, m->H);
}

// ----------------------------------------------------------------------------
// 4 scan:  ys = SSD(X, dA, B, C), chunked, per sequence from a zero state;
//          what the backward needs is left in act (scan[b])

static void seq_scan(const job *j, int b) {
    const dims *m = &j->m;
    size_t      r = (size_t)b * m->T;
    ssd_scan_chunked(j->ex, j->ypre + r * m->Di, NULL, j->X + r * m->Di, j->dA + r * m->H,
                     j->Bm + r * m->GN, j->Cm + r * m->GN, m->T, m->H, m->P, m->N, m->G, m->Q,
                     j->scan + (size_t)b * m->sw);
}

// backward: ∂ys = ∂ypre (dg after the gate backward) → ∂X, ∂dA, ∂B, ∂C.
// The saved part is copied in front of the kernel's own scratch (act stays read-only).
static void seq_scan_backward(const job *j, int b) {
    const dims *m = &j->m;
    size_t      r = (size_t)b * m->T;
    float      *work = j->sbw + (size_t)b * m->sbw;
    memcpy(work, j->scan + (size_t)b * m->sw, sizeof(float) * m->sw);
    ssd_scan_chunked_backward(j->ex, j->dX + r * m->Di, j->ddA + r * m->H, j->dBm + r * m->GN,
                              j->dCm + r * m->GN, j->dg + r * m->Di, j->X + r * m->Di,
                              j->dA + r * m->H, j->Bm + r * m->GN, j->Cm + r * m->GN, m->T, m->H,
                              m->P, m->N, m->G, m->Q, work);
}

// ----------------------------------------------------------------------------
// 5 gate:  ypre = ys + D·x
//   Mamba-2:  gz = ypre·silu(z);  g = gz·rstd·norm_w per group of gs = Di/G,
//             rstd = 1/sqrt(mean_group(gz²) + eps)
//   Discrete: g = ypre·silu(z + z_bias)

// g of one row from ypre (and rstd); save_rstd: compute rstd (forward) or read it
static void gate_row(const job *j, int r, float *g, int save_rstd) {
    const dims        *m = &j->m;
    const ssm_weights *w = j->w;
    int                Di = m->Di, gs = Di / m->G;
    const float       *yp = j->ypre + (size_t)r * Di, *z = j->zx + (size_t)r * m->R + m->oz;
    if (m->mamba) {
        for (int i = 0; i < Di; i++)
            g[i] = yp[i] * k_silu(z[i]);
        for (int gr = 0; gr < m->G; gr++) { // as k_rmsnorm, per group
            float *gg = g + (size_t)gr * gs, *rs = j->rstd + (size_t)r * m->G + gr;
            if (save_rstd) {
                float ss = 0.0f;
                for (int i = 0; i < gs; i++)
                    ss += gg[i] * gg[i];
                *rs = 1.0f / sqrtf(ss / (float)gs + j->c->norm_eps);
            }
            for (int i = 0; i < gs; i++)
                gg[i] = gg[i] * *rs * w->norm_w[gr * gs + i];
        }
    } else {
        for (int i = 0; i < Di; i++)
            g[i] = yp[i] * k_silu(z[i] + (w->z_bias ? w->z_bias[i] : 0.0f));
    }
}

static void rows_gate(const job *j, int r0, int r1) {
    const dims *m = &j->m;
    for (int r = r0; r < r1; r++) {
        float       *yp = j->ypre + (size_t)r * m->Di;
        const float *x = j->x + (size_t)r * m->Di;
        if (j->w->D)
            for (int i = 0; i < m->Di; i++)
                yp[i] += j->w->D[i / m->P] * x[i];
        gate_row(j, r, j->gb + (size_t)r * m->Di, 1);
    }
}

static void rows_gate_recompute(const job *j, int r0, int r1) {
    for (int r = r0; r < r1; r++)
        gate_row(j, r, j->tmp + (size_t)r * j->m.Di, 0);
}

// backward, per row, ∂g in dg → ∂ypre in dg (in place), ∂z into dzx:
//   Mamba-2, per group:  n = gz·rstd,  g = n·w
//     ∂norm_w += ∂g·n  (tmp holds ∂g·n, summed over rows later)
//     ∂n = ∂g·w;   ∂gz = rstd·(∂n − n·mean(∂n·n))
//     gz = ypre·silu(z):  ∂ypre = ∂gz·silu(z),  ∂z = ∂gz·ypre·silu'(z)
//   Discrete:  zz = z + z_bias:  ∂ypre = ∂g·silu(zz),  ∂zz = ∂g·ypre·silu'(zz) (= ∂z_bias term)
//   ypre = ys + D·x:  ∂D[h] += Σ_p ∂ypre·x  (hs1 per row);  ∂ys = ∂ypre;  ∂x += D·∂ypre (prep)
static void rows_gate_backward(const job *j, int r0, int r1) {
    const dims        *m = &j->m;
    const ssm_weights *w = j->w;
    int                Di = m->Di, gs = Di / m->G, P = m->P;
    for (int r = r0; r < r1; r++) {
        const float *yp = j->ypre + (size_t)r * Di, *z = j->zx + (size_t)r * m->R + m->oz;
        const float *x = j->x + (size_t)r * Di;
        float       *dg = j->dg + (size_t)r * Di, *dz = j->dzx + (size_t)r * m->R + m->oz;
        if (m->mamba) {
            float *tn = j->tmp + (size_t)r * Di;
            for (int gr = 0; gr < m->G; gr++) {
                float rs = j->rstd[(size_t)r * m->G + gr], dot = 0.0f;
                int   i0 = gr * gs;
                for (int i = i0; i < i0 + gs; i++) {
                    float n = yp[i] * k_silu(z[i]) * rs;
                    tn[i] = dg[i] * n;
                    dg[i] *= w->norm_w[i]; // ∂n
                    dot += dg[i] * n;
                }
                dot /= (float)gs;
                for (int i = i0; i < i0 + gs; i++) {
                    float sz = k_silu(z[i]), n = yp[i] * sz * rs;
                    float dgz = rs * (dg[i] - n * dot);
                    dz[i] = dgz * yp[i] * dsilu(z[i]);
                    dg[i] = dgz * sz;
                }
            }
        } else {
            for (int i = 0; i < Di; i++) {
                float zz = z[i] + (w->z_bias ? w->z_bias[i] : 0.0f);
                dz[i] = dg[i] * yp[i] * dsilu(zz);
                dg[i] *= k_silu(zz);
            }
        }
        for (int h = 0; h < m->H; h++) {
            float s = 0.0f;
            for (int p = 0; p < P; p++)
                s += dg[h * P + p] * x[h * P + p];
            j->hs1[(size_t)r * m->H + h] = s;
        }
    }
}

static void gate_param_grads(const job *j) {
    const dims *m = &j->m;
    if (m->mamba)
        colsum(j->ex, j->g->norm_w, j->tmp, m->BT, m->Di, m->Di);
    else if (j->w->z_bias)
        colsum(j->ex, j->g->z_bias, j->dzx + m->oz, m->BT, m->Di, m->R);
    if (j->w->D)
        colsum(j->ex, j->g->D, j->hs1, m->BT, m->H, m->H);
}

// ----------------------------------------------------------------------------
// training forward / backward

static void job_init(const molt_exec *ex, job *j, const ssm_cfg *c, const ssm_weights *w, const ssm_grads *g, int B,
                     int T) {
    memset(j, 0, sizeof *j);
    MOLT_ASSERT(ssm_cfg_check(c) == NULL);
    MOLT_ASSERT(B >= 0 && T >= 0);
    MOLT_ASSERT(w->in_proj && w->conv_w);
    MOLT_ASSERT(c->kind != SSM_MAMBA2 || (w->A_log && w->norm_w));
    dims_of(&j->m, c, B, T);
    j->c = c, j->w = w, j->g = g, j->ex = ex;
}

// the shared front of both forwards: 1 proj, 2 conv, 3 prep
static void forward_front(const job *j) {
    const dims *m = &j->m;
    k_matmul(j->ex, j->zx, j->u, j->w->in_proj, j->w->in_proj_b, m->BT, m->d, m->R, 0);
    par_rows(rows_extract_xr, j, m->BT, (size_t)m->Cc);
    par_seqs(seq_conv, j, m->T);
    par_rows(rows_prep, j, m->BT, (size_t)(m->Cc + 4 * m->H) * 4);
}

void ssm_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B, int T, const ssm_cfg *c,
                       const ssm_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    MOLT_ASSERT(w->out_proj);
    if (B * T == 0)
        return;
    train_act_views(&j, act);
    train_work_views(&j, work, 0);
    j.u = u, j.y = y;
    const dims *m = &j.m;
    forward_front(&j);
    par_seqs(seq_scan, &j, m->H * ((m->T + m->Q - 1) / m->Q));
    par_rows(rows_gate, &j, m->BT, (size_t)m->Di * 8);
    k_matmul(ex, y, j.gb, w->out_proj, w->out_proj_b, m->BT, m->Di, m->d, 0);
}

void ssm_train_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dy, const float *act,
                        const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                        float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    train_act_views(&j, unconst(act));
    train_work_views(&j, work, 1);
    j.u = u, j.dy = dy;
    const dims *m = &j.m;
    // 6  y = g·out_projᵀ (+b):  ∂g = ∂y·out_proj,  ∂out_proj += ∂yᵀ·g,  ∂out_proj_b += Σ ∂y
    mm_dx(ex, j.dg, dy, w->out_proj, m->BT, m->d, m->Di);
    if (g->out_proj) {
        par_rows(rows_gate_recompute, &j, m->BT, (size_t)m->Di * 8);
        mm_dw(ex, g->out_proj, dy, j.tmp, m->BT, m->d, m->Di);
    }
    if (w->out_proj_b)
        colsum(ex, g->out_proj_b, dy, m->BT, m->d, m->d);
    // 5  gate
    par_rows(rows_gate_backward, &j, m->BT, (size_t)m->Di * 16);
    gate_param_grads(&j);
    // 4  scan
    par_seqs(seq_scan_backward, &j, m->H * ((m->T + m->Q - 1) / m->Q));
    // 3  prep
    par_rows(rows_prep_backward, &j, m->BT, (size_t)(m->Cc + 8 * m->H) * 4);
    prep_param_grads(&j);
    // 2  conv, 1  proj
    conv_backward(&j);
    proj_backward(du, &j);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix (MOHAWK stage 1)
//
//   M[b,h,t,s] = (C_t·B_s)·exp(Σ_{k=s+1..t} dA_k)·cs_s  (+ D[h] on the diagonal),
//   cs = Δ (Mamba-2) or 1 (Discrete). Depends on u through B, C, dA (and Δ);
//   not on x, z, the gate or out_proj.

static void seq_materialize(const job *j, int b) {
    const dims *m = &j->m;
    size_t      r = (size_t)b * m->T;
    ssd_materialize(j->ex, j->M + (size_t)b * m->H * m->T * m->T, j->dA + r * m->H, j->Bm + r * m->GN,
                    j->Cm + r * m->GN, m->mamba ? j->dlt + r * m->H : NULL, j->w->D, m->T, m->H,
                    m->N, m->G);
}

// backward: ∂dA, ∂B, ∂C, ∂cs (= ∂Δ direct) written; ∂D per sequence (summed after)
static void seq_materialize_backward(const job *j, int b) {
    const dims *m = &j->m;
    size_t      r = (size_t)b * m->T;
    float      *dD = j->dDp + (size_t)b * m->H;
    memset(dD, 0, sizeof(float) * (size_t)m->H);
    ssd_materialize_backward(j->ex, j->ddA + r * m->H, j->dBm + r * m->GN, j->dCm + r * m->GN,
                             m->mamba ? j->dcs + r * m->H : NULL, j->w->D ? dD : NULL,
                             j->dM + (size_t)b * m->H * m->T * m->T, j->dA + r * m->H,
                             j->Bm + r * m->GN, j->Cm + r * m->GN,
                             m->mamba ? j->dlt + r * m->H : NULL, j->w->D, m->T, m->H, m->N, m->G,
                             j->sbw + (size_t)b * m->mbw);
}

// M does not depend on z: its columns of ∂zx are 0
static void rows_zero_dz(const job *j, int r0, int r1) {
    for (int r = r0; r < r1; r++)
        memset(j->dzx + (size_t)r * j->m.R + j->m.oz, 0, sizeof(float) * (size_t)j->m.Di);
}

void ssm_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T, const ssm_cfg *c,
                     const ssm_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    if (B * T == 0)
        return;
    mat_act_views(&j, act);
    mat_work_views(&j, work, 0);
    j.u = u, j.M = M;
    forward_front(&j);
    par_seqs(seq_materialize, &j, j.m.H * j.m.T);
}

void ssm_mat_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dM, const float *act,
                      const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                      float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    mat_act_views(&j, unconst(act));
    mat_work_views(&j, work, 1);
    j.u = u, j.dM = dM;
    const dims *m = &j.m;
    par_seqs(seq_materialize_backward, &j, m->H);
    if (w->D && g->D)
        for (int b = 0; b < m->B; b++) // in sequence order
            for (int h = 0; h < m->H; h++)
                g->D[h] += j.dDp[(size_t)b * m->H + h];
    // 3  prep (∂X = 0, no D·x path: M's D term does not involve x)
    par_rows(rows_prep_backward, &j, m->BT, (size_t)(m->Cc + 8 * m->H) * 4);
    prep_param_grads(&j);
    par_rows(rows_zero_dz, &j, m->BT, (size_t)m->Di);
    // 2  conv, 1  proj
    conv_backward(&j);
    proj_backward(du, &j);
}
