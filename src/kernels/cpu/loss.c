/*
 * loss.c — the CPU loss ops (train_ops.h: k_xent, k_soft_xent, k_l2_rows, k_rev_kl):
 * one loss (double) and one gradient row per input row. Rows are independent,
 * so they are split over the pool when n·len is large and the results are the
 * same bits at any thread count.
 *
 * Letters: n rows, V vocabulary, len row length, τ temperature.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include "core/core.h"
#include "core/pool.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

// rows go on the pool from this many floats up
#define ROWS_MIN 65536.0

// ----------------------------------------------------------------------------
// row driver: fn(ctx, lo, hi) handles rows [lo, hi)

typedef void (*rows_fn)(const void *ctx, int lo, int hi);

typedef struct rows_job {
    rows_fn     fn;
    const void *ctx;
    int         n;
} rows_job;

static void rows_run(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    int             lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    j->fn(j->ctx, lo, hi);
}

static void rows_drive(const molt_exec *ex, rows_fn fn, const void *ctx, int n, size_t row_len) {
    if (n <= 0)
        return;
    int nth = (double)n * (double)row_len < ROWS_MIN ? 1 : ex->nth;
    nth = nth < n ? nth : n;
    if (nth <= 1) {
        fn(ctx, 0, n);
        return;
    }
    rows_job j = {fn, ctx, n};
    molt_pool_run(nth, rows_run, &j);
}

K_SIMD static float row_max(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

// Σ_v e^(x_v/τ − m) in double, 8 partial sums (the order is fixed, so the
// result does not depend on the ISA clone); writes the terms to e when e is
// not NULL (e may be x: each x_v is read before e_v is written)
K_SIMD static double sum_exp(float *e, const float *x, int n, float tau, float m) {
    double acc[8] = {0};
    int    v = 0;
    for (; v + 8 <= n; v += 8)
        for (int k = 0; k < 8; k++) {
            float t = k_expf(x[v + k] / tau - m);
            if (e)
                e[v + k] = t;
            acc[k] += (double)t;
        }
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; v < n; v++) {
        float t = k_expf(x[v] / tau - m);
        if (e)
            e[v] = t;
        s += (double)t;
    }
    return s;
}

K_SIMD static void scale_row(float *g, int n, float k) {
    for (int v = 0; v < n; v++)
        g[v] *= k;
}

// ----------------------------------------------------------------------------
// cross-entropy:  ℓ = −log softmax(x)[y] = logsumexp(x) − x[y]

typedef struct ce_ctx {
    double        *loss;
    float         *dl;
    const float   *x;
    const int32_t *y;
    int            V;
    float          scale;
} ce_ctx;

static void ce_rows(const void *arg, int lo, int hi) {
    const ce_ctx *c = arg;
    int           V = c->V;
    for (int r = lo; r < hi; r++) {
        const float *x = c->x + (size_t)r * V;
        float       *g = c->dl ? c->dl + (size_t)r * V : NULL;
        int          y = c->y[r];
        if (y < 0) { // ignored row
            c->loss[r] = 0.0;
            if (g)
                memset(g, 0, sizeof(float) * (size_t)V);
            continue;
        }
        MOLT_ASSERT(y < V);
        float  m = row_max(x, V), xy = x[y];   // x[y] before g (maybe x) is written
        double se = sum_exp(g, x, V, 1.0f, m); // g = e^(x − m) when g is set
        c->loss[r] = ((double)m + log(se)) - (double)xy;
        // backward of ℓ = logsumexp(x) − x[y]:  dx = scale·(softmax(x) − onehot(y))
        if (g) {
            scale_row(g, V, (float)((double)c->scale / se));
            g[y] -= c->scale;
        }
    }
}

void cpu_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
              const int32_t *targets, int n, int V, float scale) {
    ce_ctx c = {loss, dlogits, logits, targets, V, scale};
    rows_drive(ex, ce_rows, &c, n, (size_t)V);
}

// ----------------------------------------------------------------------------
// soft-label cross-entropy (MOHAWK stage 3):
//   ℓ = −Σ_v p_v·log q_v,  p = softmax(t),  q = softmax(z),  z = s/τ
//     = logsumexp(z) − Σ_v p_v·z_v          (Σ p = 1)

typedef struct sce_ctx {
    double      *loss;
    float       *ds;
    const float *s, *t;
    int          V;
    float        tau, scale;
} sce_ctx;

// Σ_v e^(t_v − mt) and Σ_v e^(t_v − mt)·z_v with z = s/τ (8 partial sums each)
K_SIMD static void sum_exp_dot(const float *t, const float *s, int n, float tau, float mt,
                               double *set, double *pz) {
    double a[8] = {0}, b[8] = {0};
    int    v = 0;
    for (; v + 8 <= n; v += 8)
        for (int k = 0; k < 8; k++) {
            double et = (double)k_expf(t[v + k] - mt);
            a[k] += et;
            b[k] += et * (double)(s[v + k] / tau);
        }
    double sa = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    double sb = ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
    for (; v < n; v++) {
        double et = (double)k_expf(t[v] - mt);
        sa += et;
        sb += et * (double)(s[v] / tau);
    }
    *set = sa, *pz = sb;
}

// g = k·(q − p),  q = e^(s/τ − ms)·iq,  p = e^(t − mt)·ip  (g may be s)
K_SIMD static void soft_ce_grad(float *g, const float *s, const float *t, int n, float tau,
                                float ms, float mt, float iq, float ip, float k) {
    for (int v = 0; v < n; v++) {
        float q = k_expf(s[v] / tau - ms) * iq, p = k_expf(t[v] - mt) * ip;
        g[v] = k * (q - p);
    }
}

static void sce_rows(const void *arg, int lo, int hi) {
    const sce_ctx *c = arg;
    int            V = c->V;
    float          tau = c->tau;
    for (int r = lo; r < hi; r++) {
        const float *s = c->s + (size_t)r * V, *t = c->t + (size_t)r * V;
        float        ms = row_max(s, V) / tau, mt = row_max(t, V);
        double       ses = sum_exp(NULL, s, V, tau, ms), set, pz; // Σ e^(z−ms), z = s/τ
        sum_exp_dot(t, s, V, tau, mt, &set, &pz);                  // Σ e^(t−mt), Σ e^(t−mt)·z
        c->loss[r] = (double)ms + log(ses) - pz / set;
        // backward of ℓ = logsumexp(s/τ) − Σ p·s/τ:  ds = scale·(q − p)/τ
        if (c->ds)
            soft_ce_grad(c->ds + (size_t)r * V, s, t, V, tau, ms, mt, (float)(1.0 / ses),
                         (float)(1.0 / set), c->scale / tau);
    }
}

void cpu_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                   int n, int V, float tau, float scale) {
    sce_ctx c = {loss, ds, s, t, V, tau, scale};
    rows_drive(ex, sce_rows, &c, n, (size_t)V);
}

// ----------------------------------------------------------------------------
// distances: ℓ_r = ‖x_r − y_r‖₂ over a row of len floats

typedef struct norm_ctx {
    double      *loss;
    float       *dx;
    const float *x, *y;
    size_t       len;
    float        scale;
} norm_ctx;

static void norm_rows(const void *arg, int lo, int hi) {
    const norm_ctx *c = arg;
    for (int r = lo; r < hi; r++) {
        const float *x = c->x + (size_t)r * c->len, *y = c->y + (size_t)r * c->len;
        double       ss = 0;
        for (size_t i = 0; i < c->len; i++) {
            double e = (double)x[i] - (double)y[i];
            ss += e * e;
        }
        double nrm = sqrt(ss);
        c->loss[r] = nrm;
        // backward of ℓ = ‖x − y‖:  dx = scale·(x − y)/‖x − y‖  (0 at the kink ‖·‖ = 0)
        if (c->dx) {
            float *g = c->dx + (size_t)r * c->len;
            float  k = nrm > 0 ? (float)((double)c->scale / nrm) : 0.0f;
            for (size_t i = 0; i < c->len; i++)
                g[i] = k * (x[i] - y[i]);
        }
    }
}

void cpu_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
                 int n, size_t len, float scale) {
    norm_ctx c = {loss, dx, x, y, len, scale};
    rows_drive(ex, norm_rows, &c, n, len);
}

// ----------------------------------------------------------------------------
// reverse KL (issue 17):  ℓ = KL(q ‖ p) = Σ_v q_v·(log q_v − log p_v),
//   q = softmax(z), z = s/τ,  p = softmax(t)
//     = Σ_v q_v·(z_v − t_v) + (mt + log Σe^(t−mt)) − (mz + log Σe^(z−mz))   (Σ q = 1)

typedef struct rkl_ctx {
    double      *loss;
    float       *ds;
    const float *s, *t;
    int          V;
    float        tau, scale;
} rkl_ctx;

// Σ_v e^(z_v − mz) and Σ_v e^(z_v − mz)·(z_v − t_v), z = s/τ (8 partial sums each)
K_SIMD static void sum_exp_diff(const float *s, const float *t, int n, float tau, float mz,
                                double *sez, double *dd) {
    double a[8] = {0}, b[8] = {0};
    int    v = 0;
    for (; v + 8 <= n; v += 8)
        for (int k = 0; k < 8; k++) {
            float  z = s[v + k] / tau;
            double e = (double)k_expf(z - mz);
            a[k] += e;
            b[k] += e * ((double)z - (double)t[v + k]);
        }
    double sa = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    double sb = ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
    for (; v < n; v++) {
        float  z = s[v] / tau;
        double e = (double)k_expf(z - mz);
        sa += e;
        sb += e * ((double)z - (double)t[v]);
    }
    *sez = sa, *dd = sb;
}

// g = k·q·((z − t) − mean),  q = e^(z − mz)·iq  (g may be s); z − t − mean in double: the
// two cancel where q is largest (|z − t| up to hundreds, the difference small)
K_SIMD static void rkl_grad(float *g, const float *s, const float *t, int n, float tau, float mz,
                            float iq, double mean, float k) {
    for (int v = 0; v < n; v++) {
        float z = s[v] / tau, q = k_expf(z - mz) * iq;
        g[v] = k * (q * (float)(((double)z - (double)t[v]) - mean));
    }
}

static void rkl_rows(const void *arg, int lo, int hi) {
    const rkl_ctx *c = arg;
    int            V = c->V;
    float          tau = c->tau;
    for (int r = lo; r < hi; r++) {
        const float *s = c->s + (size_t)r * V, *t = c->t + (size_t)r * V;
        float        mz = row_max(s, V) / tau, mt = row_max(t, V);
        double       set = sum_exp(NULL, t, V, 1.0f, mt), sez, dd;
        sum_exp_diff(s, t, V, tau, mz, &sez, &dd);
        double mean = dd / sez; // Σ q·(z − t)
        c->loss[r] = mean + ((double)mt + log(set)) - ((double)mz + log(sez));
        // backward: dℓ/dz_j = q_j·(a_j − ℓ) = q_j·((z_j − t_j) − Σ q·(z − t));  ds = scale/τ·that
        if (c->ds)
            rkl_grad(c->ds + (size_t)r * V, s, t, V, tau, mz, (float)(1.0 / sez), mean,
                     c->scale / tau);
    }
}

void cpu_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                int n, int V, float tau, float scale) {
    rkl_ctx c = {loss, ds, s, t, V, tau, scale};
    rows_drive(ex, rkl_rows, &c, n, (size_t)V);
}
