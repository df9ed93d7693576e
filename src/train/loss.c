/*
 * loss.c — training losses and their gradients (see loss.h for the contract:
 * SUM returned, gradient of scale·SUM written, may be computed in place).
 *
 * Letters: n rows, V vocabulary, d row width, m matrices of L×L.
 * Each loss is a per-row function run over row ranges by one driver that
 * splits rows over molt's pool when n·V is large and adds the per-thread
 * partial sums in thread order.
 */
#include "train/loss.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

#define MAX_TH 64

// ----------------------------------------------------------------------------
// row driver

// Loss of rows [lo, hi): returns their sum, adds the rows counted to *count.
typedef double (*rows_fn)(const void *ctx, int lo, int hi, int64_t *count);

typedef struct rows_job {
    rows_fn     fn;
    const void *ctx;
    int         n;
    double      sum[MAX_TH];
    int64_t     cnt[MAX_TH];
} rows_job;

static void rows_run(void *arg, int ith, int nth) {
    rows_job *j = arg;
    int       lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    j->cnt[ith] = 0;
    j->sum[ith] = j->fn(j->ctx, lo, hi, &j->cnt[ith]);
}

static double rows_drive(rows_fn fn, const void *ctx, int n, size_t row_len, int64_t *count) {
    rows_job j;
    j.fn = fn, j.ctx = ctx, j.n = n;
    int nth = k_threads();
    if ((double)n * (double)row_len < 65536.0)
        nth = 1;
    nth = nth < n ? nth : n;
    nth = nth < MAX_TH ? nth : MAX_TH;
    if (nth < 1)
        nth = 1;
    molt_pool_run(nth, rows_run, &j);
    double  s = 0;
    int64_t c = 0;
    for (int i = 0; i < nth; i++)
        s += j.sum[i], c += j.cnt[i];
    if (count)
        *count = c;
    return s;
}

static float row_max(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

// ----------------------------------------------------------------------------
// cross-entropy:  ℓ = −log softmax(x)[y] = logsumexp(x) − x[y]

typedef struct ce_ctx {
    float         *dl;
    const float   *x;
    const int32_t *y;
    int            V;
    float          scale;
} ce_ctx;

static double ce_rows(const void *arg, int lo, int hi, int64_t *count) {
    const ce_ctx *c = arg;
    int           V = c->V;
    double        total = 0;
    for (int r = lo; r < hi; r++) {
        const float *x = c->x + (size_t)r * V;
        float       *g = c->dl ? c->dl + (size_t)r * V : NULL;
        int          y = c->y[r];
        if (y < 0) { // ignored row
            if (g)
                for (int v = 0; v < V; v++)
                    g[v] = 0.0f;
            continue;
        }
        MOLT_ASSERT(y < V);
        float  m = row_max(x, V);
        double se = 0;
        for (int v = 0; v < V; v++)
            se += (double)expf(x[v] - m);
        double lse = (double)m + log(se);
        total += lse - (double)x[y];
        (*count)++;
        // backward of ℓ = logsumexp(x) − x[y]:  dx = scale·(softmax(x) − onehot(y))
        if (g) {
            float inv = (float)(1.0 / se);
            for (int v = 0; v < V; v++) // g may be x: x[v] is read before g[v] is written
                g[v] = c->scale * expf(x[v] - m) * inv;
            g[y] -= c->scale;
        }
    }
    return total;
}

double loss_ce(float *dlogits, const float *logits, const int32_t *targets, int n, int V,
               float scale, int64_t *count) {
    ce_ctx c = {dlogits, logits, targets, V, scale};
    return rows_drive(ce_rows, &c, n, (size_t)V, count);
}

// ----------------------------------------------------------------------------
// soft-label cross-entropy (MOHAWK stage 3):
//   ℓ = −Σ_v p_v·log q_v,  p = softmax(t),  q = softmax(z),  z = s/τ
//     = logsumexp(z) − Σ_v p_v·z_v          (Σ p = 1)

typedef struct sce_ctx {
    float       *ds;
    const float *s, *t;
    int          V;
    float        tau, scale;
} sce_ctx;

static double sce_rows(const void *arg, int lo, int hi, int64_t *count) {
    const sce_ctx *c = arg;
    int            V = c->V;
    float          tau = c->tau;
    double         total = 0;
    for (int r = lo; r < hi; r++) {
        const float *s = c->s + (size_t)r * V, *t = c->t + (size_t)r * V;
        float        ms = row_max(s, V) / tau, mt = row_max(t, V);
        double       ses = 0, set = 0, pz = 0; // Σ e^(z−ms), Σ e^(t−mt), Σ e^(t−mt)·z
        for (int v = 0; v < V; v++) {
            float  z = s[v] / tau;
            double et = (double)expf(t[v] - mt);
            ses += (double)expf(z - ms);
            set += et;
            pz += et * (double)z;
        }
        total += (double)ms + log(ses) - pz / set;
        (*count)++;
        // backward of ℓ = logsumexp(s/τ) − Σ p·s/τ:  ds = scale·(q − p)/τ
        if (c->ds) {
            float *g = c->ds + (size_t)r * V;
            float  iq = (float)(1.0 / ses), ip = (float)(1.0 / set), k = c->scale / tau;
            for (int v = 0; v < V; v++) { // g may be s: s[v] is read before g[v] is written
                float q = expf(s[v] / tau - ms) * iq, p = expf(t[v] - mt) * ip;
                g[v] = k * (q - p);
            }
        }
    }
    return total;
}

double loss_soft_ce(float *dstudent, const float *student, const float *teacher, int n, int V,
                    float tau, float scale) {
    sce_ctx c = {dstudent, student, teacher, V, tau, scale};
    return rows_drive(sce_rows, &c, n, (size_t)V, NULL);
}

// ----------------------------------------------------------------------------
// norms of differences: ℓ_i = ‖x_i − y_i‖_2 over a row of len floats
// (stage 1: a row is one L×L matrix, the Frobenius norm; stage 2: a hidden state)

typedef struct norm_ctx {
    float       *dx;
    const float *x, *y;
    size_t       len;
    float        scale;
} norm_ctx;

static double norm_rows(const void *arg, int lo, int hi, int64_t *count) {
    const norm_ctx *c = arg;
    double          total = 0;
    for (int r = lo; r < hi; r++) {
        const float *x = c->x + (size_t)r * c->len, *y = c->y + (size_t)r * c->len;
        double       ss = 0;
        for (size_t i = 0; i < c->len; i++) {
            double e = (double)x[i] - (double)y[i];
            ss += e * e;
        }
        double nrm = sqrt(ss);
        total += nrm;
        (*count)++;
        // backward of ℓ = ‖x − y‖:  dx = scale·(x − y)/‖x − y‖  (0 at the kink ‖·‖ = 0)
        if (c->dx) {
            float *g = c->dx + (size_t)r * c->len;
            float  k = nrm > 0 ? (float)((double)c->scale / nrm) : 0.0f;
            for (size_t i = 0; i < c->len; i++)
                g[i] = k * (x[i] - y[i]);
        }
    }
    return total;
}

double loss_frobenius(float *dS, const float *S, const float *A, int m, int L, float scale) {
    norm_ctx c = {dS, S, A, (size_t)L * (size_t)L, scale};
    return rows_drive(norm_rows, &c, m, c.len, NULL);
}

double loss_l2_rows(float *dx, const float *x, const float *y, int n, int d, float scale) {
    norm_ctx c = {dx, x, y, (size_t)d, scale};
    return rows_drive(norm_rows, &c, n, c.len, NULL);
}
