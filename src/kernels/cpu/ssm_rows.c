/*
 * ssm_rows.c — CPU forward of the SSM row ops (kernels/ssm_rows.h): the prep
 * and gate stages of the Mamba-2 / DiscreteMamba2 mixers, the column sum of
 * per-row gradient partials, and the batched-decode conv and scan steps over
 * slots. Backward passes: ssm_rows_backward.c.
 *
 * Threads: rows split in contiguous ranges over molt's pool (ex->nth; inline
 * below ROWS_MIN floats of work); k_colsum splits columns. Every output has one
 * writer and a fixed arithmetic order, so results do not depend on the thread
 * count.
 */
#include "kernels/ssm_rows.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ssm_rows_util.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// prep:  a = act(xc);  x|B|C = a;  Mamba-2: Δ, dA = Δ·A, X = x·Δ;  Discrete: dA = −softplus(dt)

typedef struct prep_task {
    float              *x, *X, *B, *C, *dA, *dlt;
    const float        *xc, *dt, *dt_bias, *A_log;
    int                 ldz, n;
    const ssm_rows_cfg *c;
} prep_task;

// the elementwise spans, compiled per ISA (K_SIMD: the same bits on every clone)
K_SIMD static void silu_span(float *dst, const float *src, int n) {
    for (int i = 0; i < n; i++)
        dst[i] = k_silu(src[i]);
}
K_SIMD static void silu_scaled_span(float *dst, const float *src, float d, int n) {
    for (int i = 0; i < n; i++)
        dst[i] = k_silu(src[i]) * d;
}
K_SIMD static void scale_span(float *dst, const float *src, float d, int n) {
    for (int i = 0; i < n; i++)
        dst[i] = src[i] * d;
}

// act(src) into dst (SiLU for Mamba-2, a copy for Discrete)
static void act_span(float *dst, const float *src, int n, int mamba) {
    if (mamba)
        silu_span(dst, src, n);
    else
        memcpy(dst, src, sizeof(float) * (size_t)n);
}

static void prep_run(void *arg, int ith, int nth) {
    const prep_task    *j = arg;
    const ssm_rows_cfg *c = j->c;
    int                 H = c->H, P = c->P, Di = H * P, GN = c->G * c->N, Cc = Di + 2 * GN, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *v = j->xc + (size_t)r * Cc, *dtr = j->dt + (size_t)r * j->ldz;
        float       *dA = j->dA + (size_t)r * H, *xr = j->x ? j->x + (size_t)r * Di : NULL;
        if (j->B)
            act_span(j->B + (size_t)r * GN, v + Di, GN, c->mamba);
        if (j->C)
            act_span(j->C + (size_t)r * GN, v + Di + GN, GN, c->mamba);
        if (xr)
            act_span(xr, v, Di, c->mamba);
        if (!c->mamba) {
            for (int h = 0; h < H; h++)
                dA[h] = -k_softplus(dtr[h]);
            continue;
        }
        float *dl = j->dlt + (size_t)r * H;
        for (int h = 0; h < H; h++) {
            float d = k_softplus(dtr[h] + (j->dt_bias ? j->dt_bias[h] : 0.0f));
            if (d < c->dt_lo) // no-op for the default (0, inf): softplus > 0
                d = c->dt_lo;
            if (d > c->dt_hi)
                d = c->dt_hi;
            dl[h] = d;
            dA[h] = d * -expf(j->A_log[h]);
            if (!j->X)
                continue;
            float *Xh = j->X + (size_t)r * Di + (size_t)h * P;
            if (xr) // X = silu(v)·Δ: x holds the same silu(v) bits
                scale_span(Xh, xr + (size_t)h * P, d, P);
            else
                silu_scaled_span(Xh, v + (size_t)h * P, d, P);
        }
    }
}

void cpu_ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA,
                  float *dlt, const float *xc, const float *dt, int ldz, const float *dt_bias,
                  const float *A_log, int n, const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    prep_task j = {x, c->mamba ? X : NULL, B, C, dA, dlt, xc, dt, dt_bias, A_log, ldz, n, c};
    size_t    cost = (size_t)n * (size_t)(c->H * c->P + 2 * c->G * c->N + 4 * c->H) * 4;
    molt_pool_run(rows_nth(ex, n, cost), prep_run, &j);
}

// ----------------------------------------------------------------------------
// gate:  ypre += D·x;  Mamba-2: g = rmsnorm_group(ypre·silu(z))·norm_w;
//        Discrete: g = ypre·silu(z + z_bias)

typedef struct gate_task {
    float              *g, *ypre, *rstd;
    const float        *x, *z, *D, *norm_w, *z_bias;
    int                 ldz, n;
    const ssm_rows_cfg *c;
} gate_task;

K_SIMD static void axpy_span(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}
K_SIMD static void gate_span(float *g, const float *yp, const float *z, const float *zb, int n) {
    if (zb)
        for (int i = 0; i < n; i++)
            g[i] = yp[i] * k_silu(z[i] + zb[i]);
    else
        for (int i = 0; i < n; i++)
            g[i] = yp[i] * k_silu(z[i]);
}
K_SIMD static void norm_span(float *g, float rs, const float *w, int n) {
    for (int i = 0; i < n; i++)
        g[i] = g[i] * rs * w[i];
}

static void gate_run(void *arg, int ith, int nth) {
    const gate_task    *j = arg;
    const ssm_rows_cfg *c = j->c;
    int                 P = c->P, Di = c->H * P, gs = Di / c->G, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        float       *yp = j->ypre + (size_t)r * Di, *g = j->g + (size_t)r * Di;
        const float *z = j->z + (size_t)r * j->ldz;
        if (j->x && j->D) {
            const float *x = j->x + (size_t)r * Di;
            for (int h = 0; h < c->H; h++)
                axpy_span(yp + (size_t)h * P, j->D[h], x + (size_t)h * P, P);
        }
        if (!c->mamba) {
            gate_span(g, yp, z, j->z_bias, Di);
            continue;
        }
        gate_span(g, yp, z, NULL, Di);
        for (int q = 0; q < c->G; q++) { // RMSNorm per group, as k_rmsnorm
            float       *gg = g + (size_t)q * gs;
            float        ss = (float)rows_sumsq(gg, gs); // Σ gz² (rounded once)
            float        rs = 1.0f / sqrtf(ss / (float)gs + c->eps);
            norm_span(gg, rs, j->norm_w + (size_t)q * gs, gs);
            if (j->rstd)
                j->rstd[(size_t)r * c->G + q] = rs;
        }
    }
}

void cpu_ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
                  const float *z, int ldz, const float *D, const float *norm_w,
                  const float *z_bias, int n, const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    gate_task j = {g, ypre, c->mamba ? rstd : NULL, x, z, D, norm_w, z_bias, ldz, n, c};
    molt_pool_run(rows_nth(ex, n, (size_t)n * (size_t)(c->H * c->P) * 8), gate_run, &j);
}

// ----------------------------------------------------------------------------
// column sums:  out[j] += Σ_r src[r·ld + j]   (double, rows in order)

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

void cpu_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld) {
    if (!out || rows <= 0 || cols <= 0)
        return;
    colsum_task t = {out, src, rows, cols, ld};
    size_t      cost = (size_t)rows * (size_t)cols;
    molt_pool_run(cost < 65536 || cols < 2 ? 1 : ex->nth, colsum_run, &t);
}

// ----------------------------------------------------------------------------
// batched decode: row r is one token of its own sequence, state[r] its state.
// Rows go one per pool task (each kernel inline, one thread) once the batch is
// worth it, else one at a time with the kernel's own threads; the kernels
// are bit-identical for any thread count, so the split changes no result.

typedef struct step_rows_task {
    float *const *state;
    float        *y;
    const float  *x, *w, *b, *dA, *B, *C;
    int           n, a, b2, c3, d4; // conv: Cc, K; scan: H, P, N, G
    int           conv;
    const molt_exec *ex;
} step_rows_task;

static void step_rows_one(const step_rows_task *j, const molt_exec *ex, int r) {
    if (j->conv) {
        int Cc = j->a, K = j->b2;
        cpu_conv1d_causal(ex, j->y + (size_t)r * Cc, j->x + (size_t)r * Cc, j->w, j->b,
                          j->state[r], 1, Cc, K);
    } else {
        int H = j->a, P = j->b2, N = j->c3, G = j->d4;
        cpu_ssd_step(ex, j->y + (size_t)r * H * P, j->state[r], j->x + (size_t)r * H * P,
                     j->dA + (size_t)r * H, j->B + (size_t)r * G * N, j->C + (size_t)r * G * N, H,
                     P, N, G);
    }
}

static void step_rows_run(void *arg, int ith, int nth) {
    const step_rows_task *j = arg;
    molt_exec             one = molt_exec_threads(j->ex, 1);
    int                   lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++)
        step_rows_one(j, &one, r);
}

static void step_rows(const molt_exec *ex, step_rows_task *j, size_t cost) {
    int use = cost >= (1u << 15) ? (ex->nth < j->n ? ex->nth : j->n) : 1;
    j->ex = ex;
    if (use > 1)
        molt_pool_run(use, step_rows_run, j);
    else
        for (int r = 0; r < j->n; r++)
            step_rows_one(j, ex, r);
}

void cpu_conv1d_causal_rows(const molt_exec *ex, float *y, const float *x, const float *w,
                            const float *b, float *const *state, int n, int Cc, int K) {
    if (n <= 0)
        return;
    step_rows_task j = {state, y, x, w, b, NULL, NULL, NULL, n, Cc, K, 0, 0, 1, NULL};
    step_rows(ex, &j, (size_t)n * (size_t)Cc * (size_t)K);
}

void cpu_ssd_step_rows(const molt_exec *ex, float *y, float *const *state, const float *X,
                       const float *dA, const float *B, const float *C, int n, int H, int P,
                       int N, int G) {
    if (n <= 0)
        return;
    step_rows_task j = {state, y, X, NULL, NULL, dA, B, C, n, H, P, N, G, 0, NULL};
    step_rows(ex, &j, (size_t)n * (size_t)H * (size_t)P * (size_t)N);
}

// ----------------------------------------------------------------------------
// the whole decode step (G == H): its stage ops one by one (kernels/ssm_decode.c), which on
// this backend's table are the cpu_* ops above

void cpu_ssm_decode_rows(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                         float *const *ssm, int n, const ssm_rows_cfg *c,
                         const ssm_decode_args *a, float *work) {
    MOLT_ASSERT(c->G == c->H);
    ssm_decode_rows_stages(ex, y, zx, conv, ssm, n, c, a, work);
}
