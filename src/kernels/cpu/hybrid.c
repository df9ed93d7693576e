/*
 * hybrid.c — the CPU ops that move columns between fused projections
 * (copy_cols) and the hybrid combiner's statistics matching and its backward
 * (kernels.h: k_copy_cols, k_hybrid_stats, k_hybrid_stats_backward).
 *
 * Letters: T tokens, d d_model; per token: μa, μs means, σa, σs unbiased
 * stds, ε = 1e-5, κ = (σs + ε)/(σa + ε), z = a − μa, zs = s − μs.
 * Tokens are independent: one thread per block of tokens, the same bits at
 * any thread count.
 */
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define HYB_EPS 1e-5f

void cpu_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                   size_t rows, size_t n) {
    (void)ex;
    for (size_t t = 0; t < rows; t++)
        memcpy(dst + t * ldd, src + t * lds, sizeof(float) * n);
}

// ----------------------------------------------------------------------------
// forward:  ap = z·κ + μs

static void stats_token(float *pt, float *st, const float *at, const float *sr, int d) {
    double ma = 0, ms = 0;
    for (int i = 0; i < d; i++) {
        ma += (double)at[i];
        ms += (double)sr[i];
    }
    ma /= d;
    ms /= d;
    double va = 0, vs = 0;
    for (int i = 0; i < d; i++) {
        va += ((double)at[i] - ma) * ((double)at[i] - ma);
        vs += ((double)sr[i] - ms) * ((double)sr[i] - ms);
    }
    float sa = (float)sqrt(va / (d - 1)), ss = (float)sqrt(vs / (d - 1));
    float k = (ss + HYB_EPS) / (sa + HYB_EPS);
    for (int i = 0; i < d; i++)
        pt[i] = (at[i] - (float)ma) * k + (float)ms;
    if (st) {
        st[0] = (float)ma;
        st[1] = (float)ms;
        st[2] = sa;
        st[3] = ss;
    }
}

// ----------------------------------------------------------------------------
// backward, with g = dL/dap:
//   ∂/∂σa = −(Σ g·z)·κ/(σa + ε),   ∂/∂σs = (Σ g·z)/(σa + ε),   ∂/∂μs = Σ g
//   da_i  = κ·(g_i − mean g) + ∂/∂σa · z_i/((d−1)·σa)
//   ds_i += (Σ g)/d + ∂/∂σs · zs_i/((d−1)·σs)

static void stats_token_backward(float *g, float *dst, const float *st, const float *at,
                                 const float *sr, int d) {
    float  ma = st[0], ms = st[1], sa = st[2], ss = st[3];
    double sg = 0, gz = 0;
    for (int i = 0; i < d; i++) {
        sg += (double)g[i];
        gz += (double)g[i] * (double)(at[i] - ma);
    }
    double k = ((double)ss + (double)HYB_EPS) / ((double)sa + (double)HYB_EPS);
    double d_sa = -gz * k / ((double)sa + (double)HYB_EPS);
    double d_ss = gz / ((double)sa + (double)HYB_EPS);
    // zero std: the stats path through it is dropped (torch: 0·inf = NaN)
    float ca = sa > 0.0f ? (float)(d_sa / ((d - 1) * (double)sa)) : 0.0f;
    float cs = ss > 0.0f ? (float)(d_ss / ((d - 1) * (double)ss)) : 0.0f;
    float mg = (float)(sg / d), kf = (float)k;
    for (int i = 0; i < d; i++) {
        dst[i] += mg + cs * (sr[i] - ms);
        g[i] = kf * (g[i] - mg) + ca * (at[i] - ma);
    }
}

typedef struct stats_task {
    float       *out, *io; // forward: ap, st;  backward: g, ds
    const float *st, *a, *s;
    int          T, d, backward;
} stats_task;

static void stats_run(void *arg, int ith, int nth) {
    stats_task *k = arg;
    size_t      d = (size_t)k->d;
    for (int t = ith; t < k->T; t += nth) {
        if (k->backward)
            stats_token_backward(k->out + t * d, k->io + t * d, k->st + 4 * (size_t)t,
                                 k->a + t * d, k->s + t * d, k->d);
        else
            stats_token(k->out + t * d, k->io ? k->io + 4 * (size_t)t : NULL, k->a + t * d,
                        k->s + t * d, k->d);
    }
}

static void stats_launch(const molt_exec *ex, stats_task *k) {
    int nth = k_elementwise_threads(ex, (size_t)k->T * (size_t)k->d);
    nth = nth < k->T ? nth : k->T;
    if (nth <= 1)
        stats_run(k, 0, 1);
    else
        molt_pool_run(nth, stats_run, k);
}

void cpu_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a, const float *s,
                      int T, int d) {
    stats_task k = {ap, st, NULL, a, s, T, d, 0};
    stats_launch(ex, &k);
}

void cpu_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds, const float *st,
                               const float *a, const float *s, int T, int d) {
    stats_task k = {g, ds, st, a, s, T, d, 1};
    stats_launch(ex, &k);
}
