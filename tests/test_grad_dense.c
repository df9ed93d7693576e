/*
 * test_grad_dense.c — gradient checks of the dense training kernels:
 * src/kernels/cpu/dense_backward.c (Linear, RMSNorm, SwiGLU, embedding),
 * src/mixers/attn_train.c (GQA attention with RoPE), src/train/loss.c (CE and
 * the three MOHAWK losses) and src/mixers/hybrid_train.c (hybrid combiner).
 *
 *   1. Finite differences. Each op has a double-precision twin written here
 *      with plain loops (its float forward is checked against the twin first).
 *      The scalar is L = Σ r·y for a random r (ops; the C backward gets dy = r)
 *      or the loss itself times `scale` (losses). Central differences of the
 *      twin, step h = 1e-5·max(1, |x|), at up to FD_CAP sampled elements per
 *      tensor, against the float analytic gradient: rel-L2 ≤ FD_TOL = 1e-4
 *      (double differencing error ~1e-9, so this measures the float backward).
 *      Accumulation contracts are checked by pre-filling: parameter grads +=,
 *      activation grads written (garbage beforehand), rmsnorm dx +=.
 *   2. Forward equality: attn_train_forward == attn_forward (inference, KV
 *      cache, per sequence) and attn_train_probs == attn_materialize to
 *      rel-L2 1e-6; k_rmsnorm_forward == k_rmsnorm and hybrid_combine_forward
 *      == forward.c's hybrid path (hybrid_match_stats, k_matmul) bit for bit.
 *   3. Threads: pool-parallel paths (big Linear, embedding, attention, losses)
 *      against one thread / the _ref oracle.
 *   4. PyTorch autograd parity with tests/ref/dense_grad_ref.py (float64):
 *      every output and gradient at rel-L2 ≤ 1e-4, each printed. Skipped with
 *      a notice when /usr/bin/python3 (or $MOLT_PYTHON) has no torch.
 */
#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "mixers/attention.h"
#include "mixers/attn_train.h"
#include "mixers/hybrid_train.h"
#include "models/forward.h"
#include "testutil.h"
#include "train/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FD_CAP 96
#define FD_TOL 1e-4
#define FD_H   1e-5
#define TORCH_TOL 1e-4
#define ROPE_T 256

static double g_fd_worst, g_torch_worst;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static float  *fmalloc(size_t n) { return xmalloc(sizeof(float) * n); }
static double *dmalloc(size_t n) { return xmalloc(sizeof(double) * n); }
static float  *frand(size_t n, float scale) {
    float *p = fmalloc(n);
    t_fill_normal(p, n, scale);
    return p;
}
static float *fcopy(const float *x, size_t n) {
    float *p = fmalloc(n);
    memcpy(p, x, sizeof(float) * n);
    return p;
}
static double *to_d(const float *x, size_t n) {
    if (!x)
        return NULL;
    double *p = dmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (double)x[i];
    return p;
}
static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}
static void sub(float *a, const float *b, size_t n) { // a -= b (grad increment after +=)
    for (size_t i = 0; i < n; i++)
        a[i] -= b[i];
}
// float view of a double array (for t_close)
static float *to_f(const double *x, size_t n) {
    float *p = fmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)x[i];
    return p;
}
static bool close_d(const char *what, const float *got, const double *want, size_t n, double tol) {
    float *w = to_f(want, n);
    bool   ok = t_close(what, got, w, n, -1, tol);
    free(w);
    return ok;
}

// t_close on rel-L2 that also prints the measured error
static bool close_p(const char *what, const float *got, const float *want, size_t n, double tol) {
    printf("  %-62s rel_l2 %.2e\n", what, t_rel_l2(got, want, n));
    return t_close(what, got, want, n, -1, tol);
}

// ----------------------------------------------------------------------------
// finite differences of a double twin

typedef double (*twin_fn)(void *ctx);

// Central differences of f at up to FD_CAP elements of p[n] vs ana[n].
static void fd_check(const char *what, twin_fn f, void *ctx, double *p, size_t n,
                     const float *ana) {
    size_t m = n < FD_CAP ? n : FD_CAP;
    double num2 = 0, err2 = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = n <= FD_CAP ? k : (size_t)t_uniform(0.0f, (float)n);
        if (i >= n)
            i = n - 1;
        double save = p[i], h = FD_H * fmax(1.0, fabs(save));
        p[i] = save + h;
        double lp = f(ctx);
        p[i] = save - h;
        double lm = f(ctx);
        p[i] = save;
        double num = (lp - lm) / (2 * h), e = (double)ana[i] - num;
        err2 += e * e;
        num2 += num * num;
    }
    double rel = num2 > 0 ? sqrt(err2 / num2) : sqrt(err2);
    if (rel > g_fd_worst || rel != rel)
        g_fd_worst = rel != rel ? (double)INFINITY : rel;
    printf("  fd %-48s n=%-4zu rel_l2 %.2e\n", what, m, rel);
    CHECK(rel <= FD_TOL, "%s: finite differences rel-L2 %.3g > %g", what, rel, FD_TOL);
}

// y[T,out] = x·Wᵀ + b in double
static void lin_d(double *y, const double *x, const double *W, const double *b, int T, int in,
                  int out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += x[(size_t)t * in + i] * W[(size_t)o * in + i];
            y[(size_t)t * out + o] = s;
        }
}

// ----------------------------------------------------------------------------
// Linear

typedef struct lin_twin {
    int           T, in, out;
    double       *x, *W, *b;
    double       *r;
} lin_twin;

static double lin_loss(void *p) {
    const lin_twin *c = p;
    double         *y = dmalloc((size_t)c->T * c->out);
    lin_d(y, c->x, c->W, c->b, c->T, c->in, c->out);
    double L = dot_d(c->r, y, (size_t)c->T * c->out);
    free(y);
    return L;
}

static void test_linear(int T, int in, int out, int with_b) {
    char   name[96];
    size_t nx = (size_t)T * in, nW = (size_t)out * in, ny = (size_t)T * out;
    float *x = frand(nx, 1.0f), *W = frand(nW, 0.5f), *b = with_b ? frand((size_t)out, 1.0f) : NULL;
    float *dy = frand(ny, 1.0f);
    float *dx = frand(nx, 3.0f); // garbage: must be overwritten
    float *dW = frand(nW, 1.0f), *dW0 = fcopy(dW, nW);
    float *db = frand((size_t)out, 1.0f), *db0 = fcopy(db, (size_t)out);
    k_matmul_backward(TEX, dx, dW, with_b ? db : NULL, dy, x, W, T, in, out, 0);
    sub(dW, dW0, nW);
    sub(db, db0, (size_t)out);
    lin_twin c = {T, in, out, to_d(x, nx), to_d(W, nW), to_d(b, (size_t)out), to_d(dy, ny)};
    snprintf(name, sizeof name, "linear T%d %dx%d%s dx", T, in, out, with_b ? " +b" : "");
    fd_check(name, lin_loss, &c, c.x, nx, dx);
    snprintf(name, sizeof name, "linear T%d %dx%d%s dW (+=)", T, in, out, with_b ? " +b" : "");
    fd_check(name, lin_loss, &c, c.W, nW, dW);
    if (with_b) {
        snprintf(name, sizeof name, "linear T%d %dx%d +b db (+=)", T, in, out);
        fd_check(name, lin_loss, &c, c.b, (size_t)out, db);
    } else {
        bool untouched = true; // db NULL: no bias gradient written
        for (int o = 0; o < out; o++)
            untouched = untouched && db[o] == 0.0f;
        CHECK(untouched, "linear: NULL db must be skipped");
    }
    // accumulate_dx: dx += dy·W on top of a pre-filled dx; NULL dW / db skipped
    float *acc = frand(nx, 1.0f), *acc0 = fcopy(acc, nx);
    k_matmul_backward(TEX, acc, NULL, NULL, dy, x, W, T, in, out, 1);
    sub(acc, acc0, nx);
    snprintf(name, sizeof name, "linear T%d accumulate_dx", T);
    t_close(name, acc, dx, nx, 1e-5, 1e-6);
    // fast == _ref oracle
    float *rdx = fmalloc(nx), *rdW = fcopy(dW0, nW), *rdb = fcopy(db0, (size_t)out);
    float *fdW = fcopy(dW0, nW), *fdb = fcopy(db0, (size_t)out);
    k_matmul_backward(TEX, NULL, fdW, fdb, dy, x, W, T, in, out, 0);
    k_matmul_backward_ref(rdx, rdW, rdb, dy, x, W, T, in, out, 0);
    t_close("linear dx vs ref", dx, rdx, nx, -1, 1e-6);
    t_close("linear dW vs ref", fdW, rdW, nW, -1, 1e-6);
    t_close("linear db vs ref", fdb, rdb, (size_t)out, -1, 1e-6);
    free(x), free(W), free(b), free(dy), free(dx), free(dW), free(dW0), free(db), free(db0);
    free(c.x), free(c.W), free(c.b), free(c.r), free(acc), free(acc0);
    free(rdx), free(rdW), free(rdb), free(fdW), free(fdb);
}

// the pool-parallel GEMM path against the _ref oracle
static void test_linear_threads(int T, int in, int out, int nth) {
    size_t nx = (size_t)T * in, nW = (size_t)out * in;
    float *x = frand(nx, 1.0f), *W = frand(nW, 0.1f), *dy = frand((size_t)T * out, 1.0f);
    float *dx = frand(nx, 1.0f), *rdx = fcopy(dx, nx), *dW = frand(nW, 1.0f), *rdW = fcopy(dW, nW);
    float *db = frand((size_t)out, 1.0f), *rdb = fcopy(db, (size_t)out);
    test_threads(nth);
    k_matmul_backward(TEX, dx, dW, db, dy, x, W, T, in, out, 1);
    test_threads(1);
    k_matmul_backward_ref(rdx, rdW, rdb, dy, x, W, T, in, out, 1);
    char name[96];
    snprintf(name, sizeof name, "linear %d threads T%d %dx%d: dx", nth, T, in, out);
    t_close(name, dx, rdx, nx, -1, 1e-6);
    snprintf(name, sizeof name, "linear %d threads T%d %dx%d: dW", nth, T, in, out);
    t_close(name, dW, rdW, nW, -1, 1e-6);
    snprintf(name, sizeof name, "linear %d threads T%d %dx%d: db", nth, T, in, out);
    t_close(name, db, rdb, (size_t)out, -1, 1e-6);
    free(x), free(W), free(dy), free(dx), free(rdx), free(dW), free(rdW), free(db), free(rdb);
}

// ----------------------------------------------------------------------------
// RMSNorm

typedef struct rms_twin {
    int           T, d;
    double        eps;
    double       *x, *w;
    double       *r;
} rms_twin;

static void rms_d(double *y, double *rstd, const rms_twin *c) {
    for (int t = 0; t < c->T; t++) {
        const double *x = c->x + (size_t)t * c->d;
        double        ss = 0;
        for (int i = 0; i < c->d; i++)
            ss += x[i] * x[i];
        double r = 1.0 / sqrt(ss / c->d + c->eps);
        if (rstd)
            rstd[t] = r;
        for (int i = 0; i < c->d; i++)
            y[(size_t)t * c->d + i] = x[i] * r * c->w[i];
    }
}

static double rms_loss(void *p) {
    const rms_twin *c = p;
    double         *y = dmalloc((size_t)c->T * c->d);
    rms_d(y, NULL, c);
    double L = dot_d(c->r, y, (size_t)c->T * c->d);
    free(y);
    return L;
}

static void test_rmsnorm(int T, int d) {
    size_t n = (size_t)T * d;
    float *x = frand(n, 1.0f), *w = frand((size_t)d, 0.5f), *dy = frand(n, 1.0f);
    for (int t = 0; t < T; t++) // rows of different magnitudes
        for (int i = 0; i < d; i++)
            x[(size_t)t * d + i] *= (float)(t + 1) * 0.4f;
    for (int i = 0; i < d; i++)
        w[i] += 1.0f;
    float eps = 1e-5f;
    float *y = fmalloc(n), *y0 = fmalloc(n), *rstd = fmalloc((size_t)T);
    k_rmsnorm_forward(TEX, y, rstd, x, w, T, d, eps);
    k_rmsnorm(TEX, y0, x, w, T, d, eps);
    CHECK(memcmp(y, y0, sizeof(float) * n) == 0, "k_rmsnorm_forward differs from k_rmsnorm");
    rms_twin c = {T, d, (double)eps, to_d(x, n), to_d(w, (size_t)d), to_d(dy, n)};
    double  *yd = dmalloc(n), *rd = dmalloc((size_t)T);
    rms_d(yd, rd, &c);
    close_d("rmsnorm y vs double", y, yd, n, 1e-6);
    close_d("rmsnorm rstd vs double", rstd, rd, (size_t)T, 1e-6);
    float *dx = frand(n, 1.0f), *dx0 = fcopy(dx, n); // += (residual stream)
    float *dw = frand((size_t)d, 1.0f), *dw0 = fcopy(dw, (size_t)d);
    k_rmsnorm_backward(TEX, dx, dw, dy, x, w, rstd, T, d);
    sub(dx, dx0, n);
    sub(dw, dw0, (size_t)d);
    fd_check("rmsnorm dx (+=)", rms_loss, &c, c.x, n, dx);
    fd_check("rmsnorm dw (+=)", rms_loss, &c, c.w, (size_t)d, dw);
    free(x), free(w), free(dy), free(y), free(y0), free(rstd), free(c.x), free(c.w);
    free(c.r), free(yd), free(rd), free(dx), free(dx0), free(dw), free(dw0);
}

// ----------------------------------------------------------------------------
// SwiGLU

typedef struct swi_twin {
    size_t        n;
    double       *g, *u;
    double       *r;
} swi_twin;

static double swi_loss(void *p) {
    const swi_twin *c = p;
    double          L = 0;
    for (size_t i = 0; i < c->n; i++)
        L += c->r[i] * c->g[i] / (1.0 + exp(-c->g[i])) * c->u[i];
    return L;
}

static void test_swiglu(size_t n) {
    float *g = frand(n, 3.0f), *u = frand(n, 1.0f), *dh = frand(n, 1.0f);
    g[0] = 30.0f, g[1] = -30.0f, g[2] = 0.0f; // saturated ends and the middle
    float *h = fcopy(g, n);
    k_swiglu(TEX, h, u, n);
    float *dg = frand(n, 1.0f), *du = frand(n, 1.0f); // written
    k_swiglu_backward(TEX, dg, du, dh, g, u, n);
    swi_twin c = {n, to_d(g, n), to_d(u, n), to_d(dh, n)};
    fd_check("swiglu dg", swi_loss, &c, c.g, n, dg);
    fd_check("swiglu du", swi_loss, &c, c.u, n, du);
    // in place: dg over dh
    float *ip = fcopy(dh, n), *du2 = fmalloc(n);
    k_swiglu_backward(TEX, ip, du2, ip, g, u, n);
    CHECK(memcmp(ip, dg, sizeof(float) * n) == 0 && memcmp(du2, du, sizeof(float) * n) == 0,
          "swiglu backward in place (dg = dh) differs");
    free(g), free(u), free(dh), free(h), free(dg), free(du), free(c.g), free(c.u);
    free(c.r), free(ip), free(du2);
}

// ----------------------------------------------------------------------------
// embedding

typedef struct emb_twin {
    int            T, d;
    double        *E;
    const int32_t *ids;
    double        *r;
} emb_twin;

static double emb_loss(void *p) {
    const emb_twin *c = p;
    double          L = 0;
    for (int t = 0; t < c->T; t++)
        L += dot_d(c->r + (size_t)t * c->d, c->E + (size_t)c->ids[t] * c->d, (size_t)c->d);
    return L;
}

static void test_embedding(int V, int T, int d) {
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        ids[t] = (t * 7 + 3) % V; // repeats when T > V
    float *E = frand((size_t)V * d, 1.0f), *dx = frand((size_t)T * d, 1.0f);
    float *dE = frand((size_t)V * d, 1.0f), *dE0 = fcopy(dE, (size_t)V * d);
    k_embedding_backward(TEX, dE, dx, ids, T, d);
    sub(dE, dE0, (size_t)V * d);
    emb_twin c = {T, d, to_d(E, (size_t)V * d), ids, to_d(dx, (size_t)T * d)};
    fd_check("embedding dE (+=, repeated ids)", emb_loss, &c, c.E, (size_t)V * d, dE);
    free(ids), free(E), free(dx), free(dE), free(dE0), free(c.E), free(c.r);
}

static void test_embedding_threads(void) {
    int      V = 50, T = 512, d = 512;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        ids[t] = (t * 13) % V;
    float *dx = frand((size_t)T * d, 1.0f), *a = frand((size_t)V * d, 1.0f);
    float *b = fcopy(a, (size_t)V * d);
    k_embedding_backward(TEX, a, dx, ids, T, d);
    test_threads(4);
    k_embedding_backward(TEX, b, dx, ids, T, d);
    test_threads(1);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)V * d) == 0, "embedding backward: 4 threads != 1");
    free(ids), free(dx), free(a), free(b);
}

// ----------------------------------------------------------------------------
// attention

static float g_cos[ROPE_T * 32], g_sin[ROPE_T * 32];

static void rope_tables(int hd) {
    int half = hd / 2;
    for (int t = 0; t < ROPE_T; t++)
        for (int i = 0; i < half; i++) {
            double a = t * pow(10000.0, -2.0 * i / hd);
            g_cos[t * half + i] = (float)cos(a);
            g_sin[t * half + i] = (float)sin(a);
        }
}

typedef struct att_twin {
    int           B, T, d, H, KV, hd;
    double       *u, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
    double       *cos, *sin, *r;
} att_twin;

static void rope_d(double *x, int T, int nh, int hd, const double *cos, const double *sin) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            double *v = x + ((size_t)t * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                double a = v[i], b = v[i + half], c = cos[t * half + i], s = sin[t * half + i];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
}

// out[B·T,d] (and probs[B,H,T,T] when non-NULL) in double
static void att_d(const att_twin *a, double *out, double *probs) {
    int    B = a->B, T = a->T, H = a->H, KV = a->KV, hd = a->hd, grp = H / KV;
    size_t BT = (size_t)B * T;
    double *q = dmalloc(BT * H * hd), *k = dmalloc(BT * KV * hd), *v = dmalloc(BT * KV * hd);
    double *heads = dmalloc(BT * H * hd), *p = dmalloc((size_t)T);
    lin_d(q, a->u, a->wq, a->bq, (int)BT, a->d, H * hd);
    lin_d(k, a->u, a->wk, a->bk, (int)BT, a->d, KV * hd);
    lin_d(v, a->u, a->wv, a->bv, (int)BT, a->d, KV * hd);
    for (int b = 0; b < B; b++) {
        rope_d(q + (size_t)b * T * H * hd, T, H, hd, a->cos, a->sin);
        rope_d(k + (size_t)b * T * KV * hd, T, KV, hd, a->cos, a->sin);
    }
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *qt = q + ((size_t)(b * T + t) * H + h) * hd;
                double        m = -INFINITY, z = 0;
                for (int s = 0; s <= t; s++) {
                    p[s] = dot_d(qt, k + ((size_t)(b * T + s) * KV + h / grp) * hd, (size_t)hd) *
                           scale;
                    m = p[s] > m ? p[s] : m;
                }
                for (int s = 0; s <= t; s++)
                    z += (p[s] = exp(p[s] - m));
                double *o = heads + ((size_t)(b * T + t) * H + h) * hd;
                memset(o, 0, sizeof(double) * (size_t)hd);
                for (int s = 0; s <= t; s++) {
                    const double *vs = v + ((size_t)(b * T + s) * KV + h / grp) * hd;
                    for (int i = 0; i < hd; i++)
                        o[i] += p[s] / z * vs[i];
                }
                if (probs)
                    for (int s = 0; s < T; s++)
                        probs[(((size_t)b * H + h) * T + t) * T + s] = s <= t ? p[s] / z : 0.0;
            }
    lin_d(out, heads, a->wo, a->bo, (int)BT, H * hd, a->d);
    free(q), free(k), free(v), free(heads), free(p);
}

static double att_loss(void *p) {
    const att_twin *a = p;
    size_t          n = (size_t)a->B * a->T * a->d;
    double         *out = dmalloc(n);
    att_d(a, out, NULL);
    double L = dot_d(a->r, out, n);
    free(out);
    return L;
}

typedef struct att_case {
    attn_cfg     c;
    attn_weights w;
    float       *buf[8];
    int          B, T;
    float       *u, *dout;
} att_case;

static void att_case_init(att_case *k, int B, int T, int d, int H, int KV, int hd, int bias) {
    memset(k, 0, sizeof *k);
    k->c = (attn_cfg){d, H, KV, hd, false, MOLT_F32};
    k->B = B, k->T = T;
    float s = 1.0f / sqrtf((float)d);
    k->w.wq = k->buf[0] = frand((size_t)H * hd * d, s);
    k->w.wk = k->buf[1] = frand((size_t)KV * hd * d, s);
    k->w.wv = k->buf[2] = frand((size_t)KV * hd * d, s);
    k->w.wo = k->buf[3] = frand((size_t)d * H * hd, 1.0f / sqrtf((float)(H * hd)));
    if (bias) {
        k->w.bq = k->buf[4] = frand((size_t)H * hd, 0.3f);
        k->w.bk = k->buf[5] = frand((size_t)KV * hd, 0.3f);
        k->w.bv = k->buf[6] = frand((size_t)KV * hd, 0.3f);
        k->w.bo = k->buf[7] = frand((size_t)d, 0.3f);
    }
    k->u = frand((size_t)B * T * d, 1.0f);
    k->dout = frand((size_t)B * T * d, 1.0f);
}

static void att_case_free(att_case *k) {
    for (int i = 0; i < 8; i++)
        free(k->buf[i]);
    free(k->u), free(k->dout);
}

// grads (written by attn_train_backward on top of pre-filled params): [0] du, then
// wq wk wv wo bq bk bv bo
typedef struct att_out {
    float *g[9];
    float *out, *act;
} att_out;

static size_t att_sizes(const att_case *k, size_t sz[9]) {
    const attn_cfg *c = &k->c;
    size_t          Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd, d = (size_t)c->d;
    size_t          t[9] = {(size_t)k->B * k->T * d, Hh * d, KVh * d, KVh * d, d * Hh,
                            Hh, KVh, KVh, d};
    memcpy(sz, t, sizeof t);
    return 9;
}

// deterministic pre-fill of parameter grads (to check +=), without touching the RNG
static void prefill(float *p, size_t n, int slot) {
    for (size_t i = 0; i < n; i++)
        p[i] = sinf(0.37f * (float)i + (float)slot);
}

static void att_run(const att_case *k, att_out *o, int nth) {
    const attn_cfg *c = &k->c;
    size_t          sz[9];
    att_sizes(k, sz);
    int bias = k->w.bq != NULL;
    o->out = fmalloc(sz[0]);
    o->act = fmalloc(attn_train_act_floats(c, k->B, k->T));
    float *work = fmalloc(attn_train_work_floats(c, k->B, k->T));
    test_threads(nth);
    attn_train_forward(TEX, o->out, o->act, k->u, k->B, k->T, c, &k->w, g_cos, g_sin, NULL);
    for (int i = 0; i < 9; i++) {
        o->g[i] = (i < 5 || bias) ? fmalloc(sz[i]) : NULL;
        if (o->g[i])
            prefill(o->g[i], sz[i], i); // du: garbage (written); params: += on top
    }
    attn_grads g = {o->g[1], o->g[2], o->g[3], o->g[4], o->g[5], o->g[6], o->g[7], o->g[8]};
    attn_train_backward(TEX, o->g[0], &g, k->dout, o->act, k->u, k->B, k->T, c, &k->w, g_cos, g_sin,
                        work);
    test_threads(1);
    // parameter grads +=: remove the pre-fill
    for (int i = 1; i < 9; i++)
        if (o->g[i]) {
            float *p = fmalloc(sz[i]);
            prefill(p, sz[i], i);
            sub(o->g[i], p, sz[i]);
            free(p);
        }
    free(work);
}

static void att_out_free(att_out *o) {
    for (int i = 0; i < 9; i++)
        free(o->g[i]);
    free(o->out), free(o->act);
}

// fd = 0: forward / thread checks only (shapes too big for finite differences)
static void test_attention(int B, int T, int d, int H, int KV, int hd, int bias, int fd) {
    static const char *gname[9] = {"du", "dwq", "dwk", "dwv", "dwo", "dbq", "dbk", "dbv", "dbo"};
    char               tag[96], name[160];
    snprintf(tag, sizeof tag, "attn B%d T%d d%d H%d KV%d hd%d%s", B, T, d, H, KV, hd,
             bias ? " +bias" : "");
    att_case k;
    att_case_init(&k, B, T, d, H, KV, hd, bias);
    rope_tables(hd);
    const attn_cfg *c = &k.c;
    size_t          sz[9], BT = (size_t)B * T;
    att_sizes(&k, sz);
    att_out o;
    att_run(&k, &o, 1);

    // forward vs the double twin
    size_t   nrope = (size_t)ROPE_T * hd / 2;
    double  *dcos = to_d(g_cos, nrope), *dsin = to_d(g_sin, nrope);
    att_twin a = {B, T, d, H, KV, hd, to_d(k.u, sz[0]), to_d(k.w.wq, sz[1]), to_d(k.w.wk, sz[2]),
                  to_d(k.w.wv, sz[3]), to_d(k.w.wo, sz[4]), to_d(k.w.bq, sz[5]),
                  to_d(k.w.bk, sz[6]), to_d(k.w.bv, sz[7]), to_d(k.w.bo, sz[8]), dcos, dsin,
                  to_d(k.dout, sz[0])};
    double *od = dmalloc(sz[0]), *pd = dmalloc((size_t)B * H * T * T);
    att_d(&a, od, pd);
    snprintf(name, sizeof name, "%s: out vs double", tag);
    float *odf = to_f(od, sz[0]);
    close_p(name, o.out, odf, sz[0], 1e-5);
    free(odf);
    const float *P = o.act + BT * (size_t)(H * hd + 2 * KV * hd); // after q, k, v
    snprintf(name, sizeof name, "%s: probs vs double", tag);
    close_d(name, P, pd, (size_t)B * H * T * T, 1e-5);

    // forward == inference attn_forward / attn_materialize, per sequence
    float *kc = fmalloc((size_t)KV * T * hd), *vc = fmalloc((size_t)KV * T * hd);
    float *work = fmalloc(attn_work(c, T, T, 1) + attn_materialize_work(c, T));
    float *y = fmalloc((size_t)T * d), *A = fmalloc((size_t)H * T * T);
    for (int b = 0; b < B; b++) {
        const float *ub = k.u + (size_t)b * T * d;
        attn_forward(TEX, y, NULL, ub, T, 0, c, &k.w, kc, vc, T, g_cos, g_sin, work, 1);
        snprintf(name, sizeof name, "%s: seq %d out == attn_forward", tag, b);
        close_p(name, o.out + (size_t)b * T * d, y, (size_t)T * d, 1e-6);
        attn_materialize(TEX, A, ub, T, c, &k.w, g_cos, g_sin, work);
        snprintf(name, sizeof name, "%s: seq %d probs == attn_materialize", tag, b);
        close_p(name, P + (size_t)b * H * T * T, A, (size_t)H * T * T, 1e-6);
    }
    float *At = fmalloc((size_t)B * H * T * T), *tw = fmalloc(attn_train_work_floats(c, B, T));
    attn_train_probs(TEX, At, k.u, B, T, c, &k.w, g_cos, g_sin, tw);
    snprintf(name, sizeof name, "%s: attn_train_probs == act probs", tag);
    t_close(name, At, P, (size_t)B * H * T * T, 0, 0);

    // gradients by finite differences of the twin
    double *tp[9] = {a.u, a.wq, a.wk, a.wv, a.wo, a.bq, a.bk, a.bv, a.bo};
    for (int i = 0; i < 9; i++)
        if (o.g[i] && fd) {
            snprintf(name, sizeof name, "%s %s", tag, gname[i]);
            fd_check(name, att_loss, &a, tp[i], sz[i], o.g[i]);
        }

    // threads: the pool paths give the same result
    att_out o4;
    att_run(&k, &o4, 4);
    snprintf(name, sizeof name, "%s: 4 threads out", tag);
    close_p(name, o4.out, o.out, sz[0], 1e-6);
    for (int i = 0; i < 9; i++)
        if (o.g[i]) {
            snprintf(name, sizeof name, "%s: 4 threads %s", tag, gname[i]);
            close_p(name, o4.g[i], o.g[i], sz[i], 1e-6);
        }
    att_out_free(&o4);

    for (int i = 0; i < 9; i++)
        free(tp[i]);
    free(dcos), free(dsin), free(a.r), free(od), free(pd), free(kc), free(vc);
    free(work), free(y), free(A), free(At), free(tw);
    att_out_free(&o);
    att_case_free(&k);
}

// decode-size forward equality (T = 1 takes attn_forward's loop path)
static void test_attention_fwd_only(int T, int H, int KV) {
    att_case k;
    att_case_init(&k, 1, T, 16, H, KV, 8, 1);
    rope_tables(8);
    float *out = fmalloc((size_t)T * 16), *act = fmalloc(attn_train_act_floats(&k.c, 1, T));
    float *y = fmalloc((size_t)T * 16), *kc = fmalloc((size_t)KV * T * 8),
          *vc = fmalloc((size_t)KV * T * 8), *work = fmalloc(attn_work(&k.c, T, T, 1));
    attn_train_forward(TEX, out, act, k.u, 1, T, &k.c, &k.w, g_cos, g_sin, NULL);
    attn_forward(TEX, y, NULL, k.u, T, 0, &k.c, &k.w, kc, vc, T, g_cos, g_sin, work, 1);
    char name[96];
    snprintf(name, sizeof name, "attn T%d H%d KV%d: out == attn_forward", T, H, KV);
    close_p(name, out, y, (size_t)T * 16, 1e-6);
    free(out), free(act), free(y), free(kc), free(vc), free(work);
    att_case_free(&k);
}

// ----------------------------------------------------------------------------
// losses

typedef struct ce_twin {
    int            n, V;
    double        *x, *t; // logits / student, teacher (soft CE)
    const int32_t *y;
    double         tau, scale;
} ce_twin;

static double lse_d(const double *x, int V, double div) {
    double m = -INFINITY, s = 0;
    for (int v = 0; v < V; v++)
        m = x[v] / div > m ? x[v] / div : m;
    for (int v = 0; v < V; v++)
        s += exp(x[v] / div - m);
    return m + log(s);
}

static double ce_loss(void *p) { // scale · Σ_counted (lse − x[y])
    const ce_twin *c = p;
    double         L = 0;
    for (int r = 0; r < c->n; r++)
        if (c->y[r] >= 0)
            L += lse_d(c->x + (size_t)r * c->V, c->V, 1.0) - c->x[(size_t)r * c->V + c->y[r]];
    return c->scale * L;
}

static double sce_loss(void *p) { // scale · Σ −Σ_v softmax(t)_v · log_softmax(x/τ)_v
    const ce_twin *c = p;
    double         L = 0;
    for (int r = 0; r < c->n; r++) {
        const double *x = c->x + (size_t)r * c->V, *t = c->t + (size_t)r * c->V;
        double        lx = lse_d(x, c->V, c->tau), lt = lse_d(t, c->V, 1.0);
        for (int v = 0; v < c->V; v++)
            L -= exp(t[v] - lt) * (x[v] / c->tau - lx);
    }
    return c->scale * L;
}

// per-row losses (loss.h: a backend buffer of n doubles; CPU memory here)
static double g_rows[1024];

static void test_ce(int n, int V, float logit_scale) {
    char     name[96];
    size_t   N = (size_t)n * V;
    float   *x = frand(N, logit_scale);
    int32_t *y = xmalloc(sizeof(int32_t) * (size_t)n);
    int      counted = 0;
    for (int r = 0; r < n; r++) {
        y[r] = (r % 4 == 1) ? -1 : (r % 7 == 3 ? -100 : (r * 5 + 2) % V);
        counted += y[r] >= 0;
    }
    float   scale = 1.0f / (float)counted;
    float  *g = frand(N, 1.0f); // written
    int64_t cnt = -1;
    double  L = loss_ce(TEX, g_rows, g, x, y, n, V, scale, &cnt);
    ce_twin c = {n, V, to_d(x, N), NULL, y, 1.0, (double)scale};
    double  Ld = ce_loss(&c) / (double)scale;
    printf("  ce n%d V%d ×%g: loss %.6f (double %.6f), counted %lld\n", n, V, (double)logit_scale,
           L, Ld, (long long)cnt);
    CHECK(cnt == counted, "ce count %lld, want %d", (long long)cnt, counted);
    CHECK(fabs(L - Ld) <= 1e-6 * fabs(Ld) + 1e-9, "ce loss %.9g, double %.9g", L, Ld);
    bool zero = true;
    for (int r = 0; r < n; r++)
        if (y[r] < 0)
            for (int v = 0; v < V; v++)
                zero = zero && g[(size_t)r * V + v] == 0.0f;
    CHECK(zero, "ce: ignored rows must have zero gradient");
    snprintf(name, sizeof name, "ce n%d V%d ×%g dlogits (ignore<0)", n, V, (double)logit_scale);
    fd_check(name, ce_loss, &c, c.x, N, g);
    float *ip = fcopy(x, N);
    double L2 = loss_ce(TEX, g_rows, ip, ip, y, n, V, scale, NULL), L3 = loss_ce(TEX, g_rows, NULL, x, y, n, V, scale, NULL);
    CHECK(L2 == L && L3 == L && memcmp(ip, g, sizeof(float) * N) == 0,
          "ce in place / NULL grad differ");
    free(x), free(y), free(g), free(c.x), free(ip);
}

static void test_soft_ce(int n, int V, float tau) {
    char   name[96];
    size_t N = (size_t)n * V;
    float *s = frand(N, 2.0f), *t = frand(N, 2.0f), *g = frand(N, 1.0f);
    float  scale = 1.0f / (float)n;
    double L = loss_soft_ce(TEX, g_rows, g, s, t, n, V, tau, scale);
    ce_twin c = {n, V, to_d(s, N), to_d(t, N), NULL, (double)tau, (double)scale};
    double  Ld = sce_loss(&c) / (double)scale;
    printf("  soft_ce n%d V%d τ%g: loss %.6f (double %.6f)\n", n, V, (double)tau, L, Ld);
    CHECK(fabs(L - Ld) <= 1e-6 * fabs(Ld), "soft_ce loss %.9g, double %.9g", L, Ld);
    snprintf(name, sizeof name, "soft_ce n%d V%d τ%g dstudent", n, V, (double)tau);
    fd_check(name, sce_loss, &c, c.x, N, g);
    float *ip = fcopy(s, N);
    double L2 = loss_soft_ce(TEX, g_rows, ip, ip, t, n, V, tau, scale);
    CHECK(L2 == L && memcmp(ip, g, sizeof(float) * N) == 0, "soft_ce in place differs");
    free(s), free(t), free(g), free(c.x), free(c.t), free(ip);
}

typedef struct nrm_twin {
    int           rows;
    size_t        len;
    double       *x;
    double       *y;
    double        scale;
} nrm_twin;

static double nrm_loss(void *p) {
    const nrm_twin *c = p;
    double          L = 0;
    for (int r = 0; r < c->rows; r++) {
        double ss = 0;
        for (size_t i = 0; i < c->len; i++) {
            double e = c->x[r * c->len + i] - c->y[r * c->len + i];
            ss += e * e;
        }
        L += sqrt(ss);
    }
    return c->scale * L;
}

// frob: m matrices of L×L (loss_frobenius), else n rows of d = L (loss_l2_rows);
// row / matrix 1 has a zero difference (gradient 0 there)
static void test_norm_loss(int frob, int rows, int L) {
    char   name[96];
    size_t len = frob ? (size_t)L * L : (size_t)L, N = rows * len;
    float *x = frand(N, 1.0f), *y = frand(N, 1.0f), *g = frand(N, 1.0f);
    memcpy(x + len, y + len, sizeof(float) * len);
    float  scale = 1.0f / (float)rows;
    double got = frob ? loss_frobenius(TEX, g_rows, g, x, y, rows, L, scale)
                      : loss_l2_rows(TEX, g_rows, g, x, y, rows, L, scale);
    nrm_twin c = {rows, len, to_d(x, N), to_d(y, N), (double)scale};
    double   want = nrm_loss(&c) / (double)scale;
    const char *nm = frob ? "frobenius" : "l2_rows";
    printf("  %s %dx%d: loss %.6f (double %.6f)\n", nm, rows, L, got, want);
    CHECK(fabs(got - want) <= 1e-6 * fabs(want), "%s loss %.9g, double %.9g", nm, got, want);
    bool zero = true;
    for (size_t i = len; i < 2 * len; i++)
        zero = zero && g[i] == 0.0f;
    CHECK(zero, "%s: zero-norm item must get a zero gradient", nm);
    snprintf(name, sizeof name, "%s %dx%d d%s", nm, rows, L, frob ? "S" : "x");
    fd_check(name, nrm_loss, &c, c.x, N, g);
    float *ip = fcopy(x, N);
    double g2 = frob ? loss_frobenius(TEX, g_rows, ip, ip, y, rows, L, scale)
                     : loss_l2_rows(TEX, g_rows, ip, ip, y, rows, L, scale);
    CHECK(g2 == got && memcmp(ip, g, sizeof(float) * N) == 0, "%s in place differs", nm);
    free(x), free(y), free(g), free(c.x), free(c.y), free(ip);
}

// pool-parallel row split == one thread
static void test_loss_threads(void) {
    int      n = 300, V = 1000;
    size_t   N = (size_t)n * V;
    float   *x = frand(N, 2.0f), *t = frand(N, 2.0f);
    int32_t *y = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int r = 0; r < n; r++)
        y[r] = r % 9 == 0 ? -1 : (r * 31) % V;
    float *g[2][3];
    double a1 = 0, a4 = 0, b1 = 0, b4 = 0, c1 = 0, c4 = 0;
    for (int pass = 0; pass < 2; pass++) {
        test_threads(pass ? 4 : 1);
        for (int i = 0; i < 3; i++)
            g[pass][i] = fmalloc(N);
        double a = loss_ce(TEX, g_rows, g[pass][0], x, y, n, V, 0.01f, NULL);
        double b = loss_soft_ce(TEX, g_rows, g[pass][1], x, t, n, V, 2.0f, 0.01f);
        double c = loss_frobenius(TEX, g_rows, g[pass][2], x, t, 30, 100, 0.1f);
        if (pass)
            a4 = a, b4 = b, c4 = c;
        else
            a1 = a, b1 = b, c1 = c;
    }
    static const char *nm[3] = {"ce", "soft_ce", "frobenius"};
    for (int i = 0; i < 3; i++) {
        CHECK(memcmp(g[0][i], g[1][i], sizeof(float) * N) == 0, "%s: 4 threads grad differs",
              nm[i]);
        free(g[0][i]), free(g[1][i]);
    }
    test_threads(1);
    CHECK(a1 == a4 && b1 == b4 && c1 == c4, // per-row losses added in row order
          "losses differ with 4 threads: %.17g %.17g / %.17g %.17g / %.17g %.17g", a1, a4, b1, b4,
          c1, c4);
    free(x), free(t), free(y);
}

// ----------------------------------------------------------------------------
// hybrid combiner

typedef struct hyb_twin {
    int           T, d;
    double       *s, *a, *W, *b;
    double       *r;
} hyb_twin;

static void hyb_d(const hyb_twin *c, double *out) {
    int     T = c->T, d = c->d;
    double *ap = dmalloc((size_t)T * d), *y = dmalloc((size_t)T * d);
    for (int t = 0; t < T; t++) {
        const double *a = c->a + (size_t)t * d, *s = c->s + (size_t)t * d;
        double        ma = 0, ms = 0, va = 0, vs = 0;
        for (int i = 0; i < d; i++)
            ma += a[i] / d, ms += s[i] / d;
        for (int i = 0; i < d; i++)
            va += (a[i] - ma) * (a[i] - ma), vs += (s[i] - ms) * (s[i] - ms);
        double sa = sqrt(va / (d - 1)), ss = sqrt(vs / (d - 1)); // torch.std: unbiased
        for (int i = 0; i < d; i++)
            ap[(size_t)t * d + i] = (a[i] - ma) / (sa + 1e-5) * (ss + 1e-5) + ms;
    }
    lin_d(y, ap, c->W, c->b, T, d, d);
    for (size_t i = 0; i < (size_t)T * d; i++)
        out[i] = 0.5 * (c->s[i] + y[i]);
    free(ap), free(y);
}

static double hyb_loss(void *p) {
    const hyb_twin *c = p;
    size_t          n = (size_t)c->T * c->d;
    double         *out = dmalloc(n);
    hyb_d(c, out);
    double L = dot_d(c->r, out, n);
    free(out);
    return L;
}

static void test_hybrid(int T, int d) {
    size_t n = (size_t)T * d, nW = (size_t)d * d;
    float *s = frand(n, 0.7f), *a = frand(n, 2.0f), *W = frand(nW, 1.0f / sqrtf((float)d));
    float *b = frand((size_t)d, 0.3f), *dout = frand(n, 1.0f);
    for (size_t i = 0; i < n; i++)
        s[i] -= 0.3f, a[i] += 0.5f;
    float *out = fmalloc(n), *act = fmalloc(hybrid_combine_act_floats(T, d));
    hybrid_combine_forward(TEX, out, act, s, a, W, b, T, d);
    // forward.c's hybrid path
    float *m = fcopy(a, n), *y = fmalloc(n);
    hybrid_match_stats(m, s, T, d);
    k_matmul(TEX, y, m, W, b, T, d, d, 0);
    for (size_t i = 0; i < n; i++)
        y[i] = 0.5f * (s[i] + y[i]);
    CHECK(memcmp(out, y, sizeof(float) * n) == 0, "hybrid_combine_forward != forward.c path");
    hyb_twin c = {T, d, to_d(s, n), to_d(a, n), to_d(W, nW), to_d(b, (size_t)d), to_d(dout, n)};
    double  *od = dmalloc(n);
    hyb_d(&c, od);
    close_d("hybrid out vs double (torch.std)", out, od, n, 1e-6);
    float *ds = frand(n, 1.0f), *da = frand(n, 1.0f); // written
    float *dW = frand(nW, 1.0f), *dW0 = fcopy(dW, nW), *db = frand((size_t)d, 1.0f);
    float *db0 = fcopy(db, (size_t)d);
    hybrid_combine_backward(TEX, ds, da, dW, db, dout, act, s, a, W, T, d);
    sub(dW, dW0, nW);
    sub(db, db0, (size_t)d);
    fd_check("hybrid ds", hyb_loss, &c, c.s, n, ds);
    fd_check("hybrid da", hyb_loss, &c, c.a, n, da);
    fd_check("hybrid d_adapter_w (+=)", hyb_loss, &c, c.W, nW, dW);
    fd_check("hybrid d_adapter_b (+=)", hyb_loss, &c, c.b, (size_t)d, db);
    // a constant row (std 0): finite gradients
    for (int i = 0; i < d; i++)
        a[i] = 1.5f;
    hybrid_combine_forward(TEX, out, act, s, a, W, b, T, d);
    hybrid_combine_backward(TEX, ds, da, NULL, NULL, dout, act, s, a, W, T, d);
    bool fin = true;
    for (size_t i = 0; i < n; i++)
        fin = fin && isfinite(ds[i]) && isfinite(da[i]) && isfinite(out[i]);
    CHECK(fin, "hybrid: non-finite values with a constant attention row");
    free(s), free(a), free(W), free(b), free(dout), free(out), free(act), free(m), free(y);
    free(c.s), free(c.a), free(c.W), free(c.b), free(c.r), free(od);
    free(ds), free(da), free(dW), free(dW0), free(db), free(db0);
}

// ----------------------------------------------------------------------------
// PyTorch parity (tests/ref/dense_grad_ref.py)

#define TC_MAX 16
typedef struct tcase {
    char        name[96];
    int         op, ni, ints[8], na, no;
    float      *in[TC_MAX], *out[TC_MAX];
    size_t      nin[TC_MAX], nout[TC_MAX];
    const char *oname[TC_MAX];
} tcase;

static float *tc_in(tcase *c, float *p, size_t n) { // takes ownership
    c->in[c->na] = p, c->nin[c->na++] = n;
    return p;
}
static void tc_out(tcase *c, const char *name, float *p, size_t n) { // takes ownership
    c->oname[c->no] = name, c->out[c->no] = p, c->nout[c->no++] = n;
}
static float *scalar(float v) {
    float *p = fmalloc(1);
    *p = v;
    return p;
}
static float *zeros(size_t n) {
    float *p = fmalloc(n);
    memset(p, 0, sizeof(float) * n);
    return p;
}

static void tc_linear(tcase *c, int T, int in, int out, int has_b) {
    snprintf(c->name, sizeof c->name, "linear T%d %dx%d%s", T, in, out, has_b ? " +b" : "");
    c->op = 0, c->ni = 4;
    memcpy(c->ints, (int[]){T, in, out, has_b}, 4 * sizeof(int));
    float *x = tc_in(c, frand((size_t)T * in, 1.0f), (size_t)T * in);
    float *W = tc_in(c, frand((size_t)out * in, 0.5f), (size_t)out * in);
    float *b = has_b ? tc_in(c, frand((size_t)out, 1.0f), (size_t)out) : NULL;
    float *dy = tc_in(c, frand((size_t)T * out, 1.0f), (size_t)T * out);
    float *y = fmalloc((size_t)T * out), *dx = fmalloc((size_t)T * in);
    float *dW = zeros((size_t)out * in), *db = zeros((size_t)out);
    k_matmul(TEX, y, x, W, b, T, in, out, 0);
    k_matmul_backward(TEX, dx, dW, b ? db : NULL, dy, x, W, T, in, out, 0);
    tc_out(c, "y", y, (size_t)T * out);
    tc_out(c, "dx", dx, (size_t)T * in);
    tc_out(c, "dW", dW, (size_t)out * in);
    if (has_b)
        tc_out(c, "db", db, (size_t)out);
    else
        free(db);
}

static void tc_rmsnorm(tcase *c, int T, int d) {
    snprintf(c->name, sizeof c->name, "rmsnorm T%d d%d", T, d);
    c->op = 1, c->ni = 2, c->ints[0] = T, c->ints[1] = d;
    size_t n = (size_t)T * d;
    float *x = tc_in(c, frand(n, 1.5f), n), *w = tc_in(c, frand((size_t)d, 1.0f), (size_t)d);
    float  eps = *tc_in(c, scalar(1e-5f), 1);
    float *dy = tc_in(c, frand(n, 1.0f), n);
    float *y = fmalloc(n), *rstd = fmalloc((size_t)T), *dx = zeros(n), *dw = zeros((size_t)d);
    k_rmsnorm_forward(TEX, y, rstd, x, w, T, d, eps);
    k_rmsnorm_backward(TEX, dx, dw, dy, x, w, rstd, T, d);
    free(rstd);
    tc_out(c, "y", y, n);
    tc_out(c, "dx", dx, n);
    tc_out(c, "dw", dw, (size_t)d);
}

static void tc_swiglu(tcase *c, int n) {
    snprintf(c->name, sizeof c->name, "swiglu n%d", n);
    c->op = 2, c->ni = 1, c->ints[0] = n;
    float *g = tc_in(c, frand((size_t)n, 3.0f), (size_t)n);
    float *u = tc_in(c, frand((size_t)n, 1.0f), (size_t)n);
    float *dh = tc_in(c, frand((size_t)n, 1.0f), (size_t)n);
    float *h = fcopy(g, (size_t)n), *dg = fmalloc((size_t)n), *du = fmalloc((size_t)n);
    k_swiglu(TEX, h, u, (size_t)n);
    k_swiglu_backward(TEX, dg, du, dh, g, u, (size_t)n);
    tc_out(c, "h", h, (size_t)n);
    tc_out(c, "dg", dg, (size_t)n);
    tc_out(c, "du", du, (size_t)n);
}

static void tc_attention(tcase *c, int B, int T, int d, int H, int KV, int hd, int bias) {
    static const char *gname[9] = {"du", "dwq", "dwk", "dwv", "dwo", "dbq", "dbk", "dbv", "dbo"};
    snprintf(c->name, sizeof c->name, "attention B%d T%d d%d H%d KV%d hd%d%s", B, T, d, H, KV, hd,
             bias ? " +bias" : "");
    c->op = 3, c->ni = 7;
    memcpy(c->ints, (int[]){B, T, d, H, KV, hd, bias}, 7 * sizeof(int));
    att_case k;
    att_case_init(&k, B, T, d, H, KV, hd, bias);
    rope_tables(hd);
    size_t sz[9];
    att_sizes(&k, sz);
    tc_in(c, fcopy(k.u, sz[0]), sz[0]);
    const float *wp[8] = {k.w.wq, k.w.wk, k.w.wv, k.w.wo, k.w.bq, k.w.bk, k.w.bv, k.w.bo};
    for (int i = 0; i < (bias ? 8 : 4); i++)
        tc_in(c, fcopy(wp[i], sz[i + 1]), sz[i + 1]);
    tc_in(c, fcopy(g_cos, (size_t)T * hd / 2), (size_t)T * hd / 2);
    tc_in(c, fcopy(g_sin, (size_t)T * hd / 2), (size_t)T * hd / 2);
    tc_in(c, fcopy(k.dout, sz[0]), sz[0]);
    att_out o;
    att_run(&k, &o, 1);
    size_t nP = (size_t)B * H * T * T;
    float *P = fcopy(o.act + (size_t)B * T * (H * hd + 2 * KV * hd), nP); // after q, k, v
    tc_out(c, "out", o.out, sz[0]);
    tc_out(c, "probs", P, nP);
    for (int i = 0; i < 9; i++)
        if (o.g[i])
            tc_out(c, gname[i], o.g[i], sz[i]);
    free(o.act);
    att_case_free(&k);
}

static void tc_loss(tcase *c, int op, int n, int V, float tau) {
    static const char *nm[4] = {"ce", "soft_ce", "frobenius", "l2_rows"};
    size_t N = op == 6 ? (size_t)n * V * V : (size_t)n * V;
    snprintf(c->name, sizeof c->name, "%s %dx%d%s", nm[op - 4], n, V,
             op == 5 ? (tau == 1.0f ? " tau 1" : " tau 2.5") : "");
    c->op = op, c->ni = 2, c->ints[0] = n, c->ints[1] = V;
    float *x = tc_in(c, frand(N, 2.0f), N), *g = fmalloc(N);
    double L;
    if (op == 4) {
        float *t = tc_in(c, fmalloc((size_t)n), (size_t)n);
        int32_t *y = xmalloc(sizeof(int32_t) * (size_t)n);
        for (int r = 0; r < n; r++)
            t[r] = (float)(y[r] = r % 3 == 1 ? -1 : (r * 7 + 1) % V);
        float scale = *tc_in(c, scalar(0.125f), 1);
        L = loss_ce(TEX, g_rows, g, x, y, n, V, scale, NULL);
        free(y);
    } else {
        float *t = tc_in(c, frand(N, 2.0f), N);
        if (op == 5) {
            tc_in(c, scalar(tau), 1);
            L = loss_soft_ce(TEX, g_rows, g, x, t, n, V, tau, *tc_in(c, scalar(0.25f), 1));
        } else {
            memcpy(t, x, sizeof(float) * (N / n)); // first item: zero difference
            float sc = *tc_in(c, scalar(0.5f), 1);
            L = op == 6 ? loss_frobenius(TEX, g_rows, g, x, t, n, V, sc) : loss_l2_rows(TEX, g_rows, g, x, t, n, V, sc);
        }
    }
    tc_out(c, "loss", scalar((float)L), 1);
    tc_out(c, "grad", g, N);
}

static void tc_hybrid(tcase *c, int T, int d) {
    snprintf(c->name, sizeof c->name, "hybrid T%d d%d", T, d);
    c->op = 8, c->ni = 2, c->ints[0] = T, c->ints[1] = d;
    size_t n = (size_t)T * d;
    float *s = tc_in(c, frand(n, 0.7f), n), *a = tc_in(c, frand(n, 2.0f), n);
    float *W = tc_in(c, frand((size_t)d * d, 1.0f / sqrtf((float)d)), (size_t)d * d);
    float *b = tc_in(c, frand((size_t)d, 0.3f), (size_t)d), *dout = tc_in(c, frand(n, 1.0f), n);
    float *out = fmalloc(n), *act = fmalloc(hybrid_combine_act_floats(T, d));
    float *ds = fmalloc(n), *da = fmalloc(n), *dW = zeros((size_t)d * d), *db = zeros((size_t)d);
    hybrid_combine_forward(TEX, out, act, s, a, W, b, T, d);
    hybrid_combine_backward(TEX, ds, da, dW, db, dout, act, s, a, W, T, d);
    free(act);
    tc_out(c, "out", out, n);
    tc_out(c, "ds", ds, n);
    tc_out(c, "da", da, n);
    tc_out(c, "dW", dW, (size_t)d * d);
    tc_out(c, "db", db, (size_t)d);
}

static void put(FILE *f, const void *p, size_t size, size_t n) {
    if (n && fwrite(p, size, n, f) != n)
        CHECK(0, "short write");
}

static const char *ref_script(const char *argv0) {
    static char path[4096];
    if (t_exists("tests/ref/dense_grad_ref.py"))
        return "tests/ref/dense_grad_ref.py";
    const char *slash = strrchr(argv0, '/');
    int         n = slash ? (int)(slash - argv0) : 1;
    snprintf(path, sizeof path, "%.*s/../../tests/ref/dense_grad_ref.py", n, slash ? argv0 : ".");
    return path;
}

static void test_torch(const char *argv0) {
    const char *py = getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
    char        cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("NOTICE: %s cannot import torch: PyTorch parity SKIPPED\n", py);
        return;
    }
    enum { NC = 18 };
    tcase *cs = calloc(NC, sizeof(tcase));
    int    nc = 0;
    tc_linear(&cs[nc++], 5, 7, 9, 1);
    tc_linear(&cs[nc++], 3, 16, 8, 0);
    tc_rmsnorm(&cs[nc++], 6, 24);
    tc_swiglu(&cs[nc++], 200);
    tc_attention(&cs[nc++], 2, 20, 24, 4, 2, 8, 1);
    tc_attention(&cs[nc++], 2, 20, 24, 4, 2, 8, 0);
    tc_attention(&cs[nc++], 2, 20, 32, 4, 4, 8, 1);
    tc_attention(&cs[nc++], 2, 17, 32, 4, 4, 8, 0);
    tc_attention(&cs[nc++], 1, 70, 16, 4, 1, 8, 1); // two row blocks (RB 64), MQA
    tc_attention(&cs[nc++], 2, 100, 32, 4, 2, 16, 1); // the pool paths
    tc_loss(&cs[nc++], 4, 9, 13, 1.0f);
    tc_loss(&cs[nc++], 5, 6, 11, 1.0f);
    tc_loss(&cs[nc++], 5, 6, 11, 2.5f);
    tc_loss(&cs[nc++], 6, 4, 7, 1.0f);
    tc_loss(&cs[nc++], 7, 5, 10, 1.0f);
    tc_hybrid(&cs[nc++], 7, 16);
    tc_hybrid(&cs[nc++], 3, 40);
    CHECK(nc <= NC, "case table");

    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char        fin[1024], fout[1024];
    snprintf(fin, sizeof fin, "%s/molt_grad_in_XXXXXX", tmp);
    snprintf(fout, sizeof fout, "%s/molt_grad_out_XXXXXX", tmp);
    int fdi = mkstemp(fin), fdo = mkstemp(fout);
    CHECK(fdi >= 0 && fdo >= 0, "mkstemp in %s", tmp);
    char *out = NULL;
    size_t len = 0;
    if (fdi >= 0 && fdo >= 0) {
        close(fdo);
        FILE *f = fdopen(fdi, "wb");
        put(f, "MOLTGRDI", 1, 8);
        put(f, (int32_t[]){1, nc}, 4, 2);
        for (int i = 0; i < nc; i++) {
            const tcase *c = &cs[i];
            put(f, (int32_t[]){c->op, c->ni}, 4, 2);
            for (int j = 0; j < c->ni; j++)
                put(f, (int32_t[]){c->ints[j]}, 4, 1);
            put(f, (int32_t[]){c->na}, 4, 1);
            for (int j = 0; j < c->na; j++) {
                put(f, (int32_t[]){(int32_t)c->nin[j]}, 4, 1);
                put(f, c->in[j], 4, c->nin[j]);
            }
        }
        fclose(f);
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, ref_script(argv0), fin, fout);
        int rc = system(cmd);
        CHECK(rc == 0, "%s failed (%d)", cmd, rc);
        out = rc == 0 ? t_read_file(fout, &len) : NULL;
    }
    remove(fin);
    remove(fout);
    if (out) {
        CHECK(len >= 16 && memcmp(out, "MOLTGRDO", 8) == 0, "bad dense_grad_ref.py output");
        size_t off = 16;
        for (int i = 0; i < nc && off <= len; i++) {
            const tcase *c = &cs[i];
            int32_t      no = -1;
            if (off + 4 <= len)
                memcpy(&no, out + off, 4);
            off += 4;
            CHECK(no == c->no, "%s: %d outputs from torch, want %d", c->name, no, c->no);
            if (no != c->no)
                break;
            for (int j = 0; j < c->no; j++) {
                int32_t n = -1;
                if (off + 4 <= len)
                    memcpy(&n, out + off, 4);
                off += 4;
                if (n != (int32_t)c->nout[j] || off + 4 * (size_t)n > len) {
                    CHECK(0, "%s %s: %d floats from torch, want %zu", c->name, c->oname[j], n,
                          c->nout[j]);
                    off = len + 1;
                    break;
                }
                float *ref = fmalloc((size_t)n);
                memcpy(ref, out + off, 4 * (size_t)n);
                off += 4 * (size_t)n;
                double e = t_rel_l2(c->out[j], ref, (size_t)n);
                if (e > g_torch_worst || e != e)
                    g_torch_worst = e != e ? (double)INFINITY : e;
                char what[160];
                snprintf(what, sizeof what, "torch %s: %s", c->name, c->oname[j]);
                printf("  %-58s rel_l2 %.2e\n", what, e);
                t_close(what, c->out[j], ref, (size_t)n, -1, TORCH_TOL);
                free(ref);
            }
        }
        CHECK(off == len, "dense_grad_ref.py output: %zu bytes, %zu read", len, off);
        free(out);
    }
    for (int i = 0; i < nc; i++) {
        for (int j = 0; j < cs[i].na; j++)
            free(cs[i].in[j]);
        for (int j = 0; j < cs[i].no; j++)
            free(cs[i].out[j]);
    }
    free(cs);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    (void)argc;
    t_seed(7);
    test_threads(1);
    printf("linear\n");
    test_linear(5, 7, 9, 1);
    test_linear(1, 16, 12, 0);
    test_linear(6, 33, 17, 1);
    test_linear_threads(64, 256, 192, 4);
    test_linear_threads(3, 512, 384, 3);
    printf("rmsnorm / swiglu / embedding\n");
    test_rmsnorm(6, 16);
    test_rmsnorm(3, 37);
    test_swiglu(300);
    test_embedding(10, 23, 8);
    test_embedding_threads();
    printf("attention\n");
    test_attention(2, 20, 24, 4, 2, 8, 1, 1); // GQA, H·hd != d
    test_attention(2, 20, 24, 4, 2, 8, 0, 1);
    test_attention(2, 20, 32, 4, 4, 8, 1, 1); // MHA
    test_attention(2, 13, 32, 4, 4, 8, 0, 1);
    test_attention(1, 70, 16, 2, 1, 8, 0, 1); // two backward row blocks
    test_attention(2, 160, 32, 8, 2, 16, 1, 0); // big enough for the pool paths
    test_attention_fwd_only(1, 4, 2);
    test_attention_fwd_only(2, 4, 4);
    test_attention_fwd_only(33, 4, 2);
    printf("losses\n");
    test_ce(9, 13, 2.0f);
    test_ce(5, 17, 100.0f); // large logits: stability
    test_soft_ce(6, 11, 1.0f);
    test_soft_ce(6, 11, 2.5f);
    test_soft_ce(4, 9, 0.5f);
    test_norm_loss(1, 4, 7);
    test_norm_loss(0, 6, 10);
    test_loss_threads();
    printf("hybrid combiner\n");
    test_hybrid(6, 16);
    test_hybrid(4, 33);
    printf("pytorch parity\n");
    test_torch(argv[0]);
    printf("worst finite-difference rel-L2 %.2e (tol %g), worst torch rel-L2 %.2e (tol %g)\n",
           g_fd_worst, FD_TOL, g_torch_worst, TORCH_TOL);
    return t_done("test_grad_dense");
}
