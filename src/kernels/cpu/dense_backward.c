/*
 * dense_backward.c — CPU backward of the dense kernels (backward.h): Linear
 * through OpenBLAS sgemm in fixed blocks on molt's pool (bit-identical for any
 * thread count), RMSNorm / SwiGLU / embedding as plain
 * loops. Each backward sits under the forward it differentiates; the forward
 * expression is quoted above every backward block.
 *
 * Letters: T rows (tokens), in / out Linear features, d model width.
 *
 * Accumulation contract: parameter grads (dW, db, dw, dE) +=; activation
 * grads written (=), except k_matmul_backward's dx with accumulate_dx and
 * k_rmsnorm_backward's dx (residual stream), which +=. NULL grads are skipped.
 */
#include "kernels/backward.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

// ----------------------------------------------------------------------------
// Linear:  y[T,out] = x[T,in] · W[out,in]ᵀ + b[out]   (forward: k_matmul)

// The blocks are fixed, not derived from the thread count, and spread over the
// pool: OpenBLAS's result for an element depends on how a product is split,
// so fixed blocks are what makes dx and dW bit-identical for any number of
// threads. db is a column sum in double, rows in order (cpu_colsum).
//   dx[rows,in] = dy·W          (+= when accumulate_dx) in blocks of MM_ROWS rows
//   dW[out,in] += dyᵀ·x         in blocks of MM_WROWS rows of W
#define MM_ROWS  128
#define MM_WROWS 16

typedef struct mm_task {
    float       *out;
    const float *dy, *b; // b: W (dx) or x (dW)
    int          rows, n_out, n_in;
    float        beta;
} mm_task;

static void mm_dx_run(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int            lo, hi;
    molt_pool_range((t->rows + MM_ROWS - 1) / MM_ROWS, ith, nth, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
        int r0 = blk * MM_ROWS, r1 = MIN_INT(t->rows, r0 + MM_ROWS);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, t->n_in, t->n_out, 1.0f,
                    t->dy + (size_t)r0 * t->n_out, t->n_out, t->b, t->n_in, t->beta,
                    t->out + (size_t)r0 * t->n_in, t->n_in);
    }
}

static void mm_dw_run(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int            lo, hi;
    molt_pool_range((t->n_out + MM_WROWS - 1) / MM_WROWS, ith, nth, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
        int o0 = blk * MM_WROWS, o1 = MIN_INT(t->n_out, o0 + MM_WROWS);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, t->n_in, t->rows, 1.0f,
                    t->dy + o0, t->n_out, t->b, t->n_in, 1.0f, t->out + (size_t)o0 * t->n_in,
                    t->n_in);
    }
}

static int mm_threads(const molt_exec *ex, int blocks, int rows, int n_out, int n_in) {
    double flops = 2.0 * rows * (double)n_out * n_in;
    return flops < 1e6 || blocks < 2 ? 1 : ex->nth;
}

void cpu_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy,
                         const float *x, const float *W, int T, int in, int out,
                         int accumulate_dx) {
    if (T <= 0 || in <= 0 || out <= 0)
        return;
    if (dx) {
        mm_task t = {dx, dy, W, T, out, in, accumulate_dx ? 1.0f : 0.0f};
        molt_pool_run(mm_threads(ex, (T + MM_ROWS - 1) / MM_ROWS, T, out, in), mm_dx_run, &t);
    }
    if (dW) {
        mm_task t = {dW, dy, x, T, out, in, 1.0f};
        molt_pool_run(mm_threads(ex, (out + MM_WROWS - 1) / MM_WROWS, T, out, in), mm_dw_run, &t);
    }
    cpu_colsum(ex, db, dy, T, out, out);
}

void k_matmul_backward_ref(float *dx, float *dW, float *db, const float *dy, const float *x,
                           const float *W, int T, int in, int out, int accumulate_dx) {
    if (dx)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < in; i++) {
                double s = 0;
                for (int o = 0; o < out; o++)
                    s += (double)dy[(size_t)t * out + o] * (double)W[(size_t)o * in + i];
                float *dst = &dx[(size_t)t * in + i];
                *dst = accumulate_dx ? *dst + (float)s : (float)s;
            }
    for (int o = 0; o < out; o++) {
        if (dW)
            for (int i = 0; i < in; i++) {
                double s = 0;
                for (int t = 0; t < T; t++)
                    s += (double)dy[(size_t)t * out + o] * (double)x[(size_t)t * in + i];
                dW[(size_t)o * in + i] += (float)s;
            }
        if (db) {
            double s = 0;
            for (int t = 0; t < T; t++)
                s += (double)dy[(size_t)t * out + o];
            db[o] += (float)s;
        }
    }
}

// ----------------------------------------------------------------------------
// RMSNorm:  y[t,i] = x[t,i] · r_t · w[i],   r_t = 1/sqrt(mean_i x[t,i]² + eps)

// Σ_i a_i·b_i·c_i in double (c may be NULL: Σ a_i·b_i), 8 partial sums in a
// fixed order: products of floats are exact in double, so the sum is close
// to exact and identical on every ISA clone.
K_SIMD static double dot3(const float *a, const float *b, const float *c, int n) {
    double acc[8] = {0};
    int    i = 0;
    if (c)
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += (double)a[i + k] * (double)b[i + k] * (double)c[i + k];
    else
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += (double)a[i + k] * (double)b[i + k];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += (double)a[i] * (double)b[i] * (c ? (double)c[i] : 1.0);
    return s;
}

K_SIMD static void rmsnorm_rows(float *y, float *rstd, const float *x, const float *w, int t0,
                                int t1, int d, float eps) {
    for (int t = t0; t < t1; t++) {
        const float *xt = x + (size_t)t * d;
        float       *yt = y + (size_t)t * d;
        float        ss = (float)dot3(xt, xt, NULL, d); // Σ x² (rounded once)
        float        r = 1.0f / sqrtf(ss / (float)d + eps);
        for (int i = 0; i < d; i++)
            yt[i] = xt[i] * r * w[i];
        if (rstd)
            rstd[t] = r;
    }
}

typedef struct rms_task {
    float       *y, *rstd_out, *dx, *dw; // forward: y, rstd_out; backward: dx, dw
    const float *x, *w, *dy, *rstd;
    int          T, d;
    float        eps;
} rms_task;

static void rms_fwd_run(void *arg, int ith, int nth) {
    const rms_task *j = arg;
    int             t0, t1;
    molt_pool_range(j->T, ith, nth, &t0, &t1);
    rmsnorm_rows(j->y, j->rstd_out, j->x, j->w, t0, t1, j->d, j->eps);
}

void cpu_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x,
                         const float *w, int T, int d, float eps) {
    // also the CPU backend's k_rmsnorm (rstd NULL); rows on the pool
    rms_task job = {y, rstd, NULL, NULL, x, w, NULL, NULL, T, d, eps};
    molt_pool_run(k_elementwise_threads(ex, (size_t)T * (size_t)d), rms_fwd_run, &job);
}

// backward of  y_i = x_i · r · w_i,  r = (Σ_j x_j²/d + eps)^-½,  ∂r/∂x_j = −r³·x_j/d:
//   dw_i += Σ_t dy_i · x_i · r
//   dx_i += r · dy_i·w_i  −  x_i · r³/d · Σ_j dy_j·w_j·x_j
K_SIMD static void rmsnorm_bwd_dx(float *dx, const float *dy, const float *x, const float *w,
                                  const float *rstd, int t0, int t1, int d) {
    for (int t = t0; t < t1; t++) {
        const float *xt = x + (size_t)t * d, *gt = dy + (size_t)t * d;
        float        r = rstd[t];
        double       dot = dot3(gt, w, xt, d); // Σ_j dy_j·w_j·x_j
        float        c = (float)(dot * (double)r * (double)r * (double)r / d);
        float       *dxt = dx + (size_t)t * d;
        for (int i = 0; i < d; i++)
            dxt[i] += r * gt[i] * w[i] - xt[i] * c;
    }
}

// dw[i0:i1] += Σ_t dy[t,i]·x[t,i]·r_t  (rows in order: the same sums for any thread count)
K_SIMD static void rmsnorm_bwd_dw(float *dw, const float *dy, const float *x, const float *rstd,
                                  int T, int d, int i0, int i1) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d, *gt = dy + (size_t)t * d;
        float        r = rstd[t];
        for (int i = i0; i < i1; i++)
            dw[i] += gt[i] * xt[i] * r;
    }
}

// thread ith: dx rows [t0, t1) and dw columns [i0, i1)
static void rms_bwd_run(void *arg, int ith, int nth) {
    const rms_task *j = arg;
    if (j->dx) {
        int t0, t1;
        molt_pool_range(j->T, ith, nth, &t0, &t1);
        rmsnorm_bwd_dx(j->dx, j->dy, j->x, j->w, j->rstd, t0, t1, j->d);
    }
    if (j->dw) {
        size_t i0, i1;
        k_split((size_t)j->d, ith, nth, &i0, &i1);
        rmsnorm_bwd_dw(j->dw, j->dy, j->x, j->rstd, j->T, j->d, (int)i0, (int)i1);
    }
}

void cpu_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy,
                          const float *x, const float *w, const float *rstd, int T, int d) {
    rms_task job = {NULL, NULL, dx, dw, x, w, dy, rstd, T, d, 0.0f};
    molt_pool_run(k_elementwise_threads(ex, (size_t)T * (size_t)d), rms_bwd_run, &job);
}

// ----------------------------------------------------------------------------
// SwiGLU:  h = silu(g) · u,  silu(g) = g·σ(g)   (forward: k_swiglu)

// backward:  du = dh · silu(g);   dg = dh · u · σ(g)·(1 + g·(1 − σ(g)))
K_SIMD static void swiglu_bwd_span(float *dg, float *du, const float *dh, const float *g,
                                   const float *u, size_t n) {
    // h = silu(g)·u = g·σ(g)·u:  ∂h/∂u = g·σ(g),  ∂h/∂g = u·σ(g)·(1 + g·(1 − σ(g)))
    // (branches hoisted out of the loops so each loop vectorizes; outputs may
    // alias inputs: every element is read before it is written)
    if (dg && du) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i], ui = u[i], hi = dh[i];
            float sg = 1.0f / (1.0f + k_expf(-gi));
            du[i] = hi * gi * sg;
            dg[i] = hi * ui * sg * (1.0f + gi * (1.0f - sg));
        }
    } else if (du) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i], sg = 1.0f / (1.0f + k_expf(-gi));
            du[i] = dh[i] * gi * sg;
        }
    } else if (dg) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i], sg = 1.0f / (1.0f + k_expf(-gi));
            dg[i] = dh[i] * u[i] * sg * (1.0f + gi * (1.0f - sg));
        }
    }
}

typedef struct swiglu_bwd_task {
    float       *dg, *du;
    const float *dh, *g, *u;
    size_t       n;
} swiglu_bwd_task;

static void swiglu_bwd_run(void *arg, int ith, int nth) {
    const swiglu_bwd_task *j = arg;
    size_t                 lo, hi;
    k_split(j->n, ith, nth, &lo, &hi);
    swiglu_bwd_span(j->dg ? j->dg + lo : NULL, j->du ? j->du + lo : NULL, j->dh + lo, j->g + lo,
                    j->u ? j->u + lo : NULL, hi - lo);
}

void cpu_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh,
                         const float *g, const float *u, size_t n) {
    swiglu_bwd_task job = {dg, du, dh, g, u, n};
    molt_pool_run(k_elementwise_threads(ex, n), swiglu_bwd_run, &job);
}

K_SIMD static void swiglu_fwd_span(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++)
        h[i] = k_silu(g[i]) * u[i];
}

typedef struct swiglu_pair_task {
    float       *h, *dgu;
    const float *gu, *dh;
    int          T, F;
} swiglu_pair_task;

static void swiglu_pair_run(void *arg, int ith, int nth) {
    const swiglu_pair_task *j = arg;
    int                     t0, t1;
    size_t                  F = (size_t)j->F;
    molt_pool_range(j->T, ith, nth, &t0, &t1);
    for (int t = t0; t < t1; t++) {
        const float *g = j->gu + (size_t)t * 2 * F, *u = g + F;
        if (j->h)
            swiglu_fwd_span(j->h + (size_t)t * F, g, u, j->F);
        else
            swiglu_bwd_span(j->dgu + (size_t)t * 2 * F, j->dgu + (size_t)t * 2 * F + F,
                            j->dh + (size_t)t * F, g, u, F);
    }
}

void cpu_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F) {
    swiglu_pair_task job = {h, NULL, gu, NULL, T, F};
    molt_pool_run(k_elementwise_threads(ex, (size_t)T * (size_t)F), swiglu_pair_run, &job);
}

void cpu_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                              int T, int F) {
    swiglu_pair_task job = {NULL, dgu, gu, dh, T, F};
    molt_pool_run(k_elementwise_threads(ex, (size_t)T * (size_t)F), swiglu_pair_run, &job);
}

// ----------------------------------------------------------------------------
// the MLP's GEMM-only activations in bf16 (backward.h): the fp32 ops above on
// fp32 buffers, rounded (molt_f32_to_bf16) or widened around them — the
// reference twins of the CUDA ops, which write and read bf16 directly

static float *f32_tmp(size_t n) {
    float *p = molt__malloc(sizeof(float) * (n ? n : 1));
    MOLT_ASSERT(p);
    return p;
}

static void narrow_b16(uint16_t *d, const float *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        d[i] = molt_f32_to_bf16(s[i]);
}

static float *widen_b16(const uint16_t *s, size_t n) {
    float *d = f32_tmp(n);
    for (size_t i = 0; i < n; i++)
        d[i] = molt_bf16_to_f32(s[i]);
    return d;
}

void cpu_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F) {
    size_t n = (size_t)(T > 0 ? T : 0) * (size_t)(F > 0 ? F : 0);
    float *t = f32_tmp(n);
    cpu_swiglu_pair(ex, t, gu, T, F);
    narrow_b16(h, t, n);
    molt__free(t);
}

void cpu_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                  const float *gu, int T, int F) {
    size_t n = 2 * (size_t)(T > 0 ? T : 0) * (size_t)(F > 0 ? F : 0);
    float *t = f32_tmp(n);
    cpu_swiglu_pair_backward(ex, t, dh, gu, T, F);
    narrow_b16(dgu, t, n);
    molt__free(t);
}

void cpu_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T,
                    int in, int out, int accumulate) {
    float *xf = widen_b16(x, (size_t)(T > 0 ? T : 0) * (size_t)(in > 0 ? in : 0));
    cpu_matmul(ex, y, xf, W, NULL, T, in, out, accumulate);
    molt__free(xf);
}

void cpu_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW, const float *dy,
                             const uint16_t *dyb, const float *x, const uint16_t *xb,
                             const float *W, int T, int in, int out, int accumulate_dx) {
    size_t Tn = (size_t)(T > 0 ? T : 0);
    float *dyf = dyb ? widen_b16(dyb, Tn * (size_t)(out > 0 ? out : 0)) : NULL;
    float *xf = xb ? widen_b16(xb, Tn * (size_t)(in > 0 ? in : 0)) : NULL;
    cpu_matmul_backward(ex, dx, dW, NULL, dyb ? dyf : dy, xb ? xf : x, W, T, in, out,
                        accumulate_dx);
    molt__free(dyf);
    molt__free(xf);
}

// ----------------------------------------------------------------------------
// Embedding:  x[t] = E[ids[t]]

typedef struct emb_task {
    float         *dE;
    const float   *dx;
    const int32_t *ids;
    int            T, d;
} emb_task;

// thread ith: feature columns [c0, c1) of every row (no two threads touch one float)
static void emb_run(void *arg, int ith, int nth) {
    const emb_task *j = arg;
    int             c0, c1;
    molt_pool_range(j->d, ith, nth, &c0, &c1);
    for (int t = 0; t < j->T; t++) {
        float       *e = j->dE + (size_t)j->ids[t] * j->d;
        const float *g = j->dx + (size_t)t * j->d;
        for (int i = c0; i < c1; i++)
            e[i] += g[i];
    }
}

// backward:  dE[ids[t]] += dx[t]
void cpu_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                            int T, int d) {
    emb_task job = {dE, dx, ids, T, d};
    int      nth = MIN_INT(ex->nth, d / 64);
    if (nth <= 1 || (size_t)T * (size_t)d < (1u << 18))
        emb_run(&job, 0, 1);
    else
        molt_pool_run(nth, emb_run, &job);
}
