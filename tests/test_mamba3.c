/*
 * test_mamba3.c — the Mamba-3 mixer (src/mixers/mamba3*.c, mx_mamba3.c; the
 * ops of kernels/mamba3.h) with random weights, SISO and MIMO, with and
 * without the out norm, rope_fraction 0.5 and 1.0, G = 1 and G = H:
 *   1. modes: recurrent == chunked (chunk 1, 7, 16, 64: dividing T or not,
 *      chunk 1 puts every trapezoid term across a chunk boundary) for T in
 *      1…300, rel-L2 ≤ 1e-5; the materialized matrix: out_proj(gate(M·x))
 *      == the chunked output (SISO; MIMO at the mimo_x, mimo_o = 1/R,
 *      mimo_z = 1 init, where the rank-averaged matrix is the mixer's);
 *   2. state: a random state block carried through pieces (chunked, then
 *      tokens one by one, then chunked with another chunk size) == one
 *      chunked pass, outputs and final state (the previous token's trapezoid
 *      term across calls: k_prev, v_prev, the fold);
 *   3. λ = 1 is Mamba-2's exponential-Euler update: the chunked ops and the
 *      step op with λ = 1 against molt's SSD oracle ssd_scan_ref on
 *      X = x·Δ (plus D·x);
 *   4. gradients: train_backward w.r.t. u and every parameter, and
 *      mat_backward w.r.t. u and its parameters, against central differences
 *      of a float64 twin written here (the step recurrence), as
 *      test_ssm_grad.c; train_forward == the chunked forward, mat_forward ==
 *      materialize; backward bit-identical for 1 and 3 threads;
 *   5. parity with tests/ref/mamba3_ref.py (float64 PyTorch, written from
 *      ALGORITHMS.md §8): y and the final state from a random state, M, and
 *      autograd gradients. Skipped with a notice without torch;
 *   6. models: molt_hybrid models with Mamba-3 layers (mixed with attention;
 *      SISO and MIMO): prefill == token by token, slots (prefill then
 *      step_rows) == single decode, save / load round trip bit-exact, info's
 *      state bytes, config.json refuses differing Mamba-3 configs.
 */
#include "kernels/kernels.h"
#include "kernels/mamba3.h"
#include "kernels/ssm.h"
#include "mixers/mamba3.h"
#include "mixers/mixer.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL       1e-5
#define FD_MAX    16
#define FD_TOL    1e-4
#define FD_FLOOR  1e-3
#define TORCH_TOL 1e-4

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static double *dmalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static double *to_d(const float *x, size_t n) {
    double *d = dmalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}
static float *nanbuf(size_t n) {
    float *p = fmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

enum { E_MODES, E_MAT, E_STATE, E_LAMBDA, E_FD, E_TORCH, E_COUNT };
static double      g_err[E_COUNT];
static const char *g_err_name[E_COUNT] = {"recurrent vs chunked", "materialized",
                                          "state pieces",         "lambda=1 vs SSD",
                                          "FD (rel RMS)",         "torch"};
static void track(int k, double e) {
    if (!(e <= g_err[k]))
        g_err[k] = e == e ? e : (double)INFINITY;
}
static bool close_track(int k, const char *what, const float *got, const float *want, size_t n,
                        double tol) {
    track(k, t_rel_l2(got, want, n));
    return t_close(what, got, want, n, -1, tol);
}

// ----------------------------------------------------------------------------
// a mixer under test: config + owned weights, in mamba3_grads order

#define NSLOT 12
static const char *g_slot[NSLOT] = {"in_proj", "dt_bias", "B_bias", "C_bias", "B_norm", "C_norm",
                                    "mimo_x",  "mimo_z",  "mimo_o", "D",      "norm",   "out_proj"};
static const bool g_mat_slot[NSLOT] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0};

typedef struct mx {
    char           name[64];
    mamba3_cfg     c;
    mamba3_weights w;
    float         *wt[NSLOT];
    size_t         len[NSLOT];
} mx;

static void slot_lens(const mamba3_cfg *c, size_t *len) {
    size_t d = (size_t)c->d_model, Di = (size_t)c->d_inner, H = (size_t)c->H;
    size_t HRN = H * c->R * c->N, HRP = c->mimo ? H * c->R * c->P : 0;
    size_t l[NSLOT] = {(size_t)mamba3_in_rows(c) * d, H, HRN, HRN, (size_t)c->N, (size_t)c->N,
                       HRP, HRP, HRP, H, c->outproj_norm ? Di : 0, d * Di};
    memcpy(len, l, sizeof l);
}

static void bind_w(mx *m) {
    float **p = m->wt;
    m->w = (mamba3_weights){p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                            p[7], p[8], p[9], p[10], p[11], {0}, {0}};
}

static void mx_init(mx *m, int d, int H, int P, int N, int G, int R, int mimo, int norm,
                    float rope, uint64_t seed) {
    memset(m, 0, sizeof *m);
    mamba3_cfg *c = &m->c;
    *c = (mamba3_cfg){d, H * P, H, P, N, G, R, mimo, norm, 16, rope, 1e-4f, 1e-5f};
    snprintf(m->name, sizeof m->name, "%s R%d H%d P%d N%d G%d rope%.1f%s",
             c->mimo ? "MIMO" : "SISO", R, H, P, N, G, (double)rope, norm ? " norm" : "");
    MOLT_ASSERT(mamba3_cfg_check(c) == NULL);
    slot_lens(c, m->len);
    t_seed(seed);
    m3_rows_cfg rc = mamba3_rows_of(c);
    for (int s = 0; s < NSLOT; s++) {
        if (!m->len[s])
            continue;
        float *p = m->wt[s] = fmalloc(m->len[s]);
        size_t n = m->len[s];
        switch (s) {
        case 0: // in_proj: rows scaled per block so every quantity is O(1)
            t_fill_normal(p, n, 1.0f / sqrtf((float)d));
            for (int r = m3_col_dt(&rc); r < m3_col_A(&rc); r++) // dd_dt small
                for (int i = 0; i < d; i++)
                    p[(size_t)r * d + i] *= 0.5f;
            break;
        case 1:
            for (size_t i = 0; i < n; i++) // Δ around 0.05 .. 0.5
                p[i] = t_uniform(-3.0f, -0.5f);
            break;
        case 6:
        case 8:
            for (size_t i = 0; i < n; i++)
                p[i] = 1.0f / (float)R + 0.3f * t_normal();
            break;
        case 11:
            t_fill_normal(p, n, 1.0f / sqrtf((float)(H * P)));
            break;
        default: // biases, norms, mimo_z, D: 1 + noise
            for (size_t i = 0; i < n; i++)
                p[i] = 1.0f + 0.3f * t_normal();
        }
    }
    bind_w(m);
}

static void mx_free(mx *m) {
    for (int s = 0; s < NSLOT; s++)
        free(m->wt[s]);
}

static float *rand_u(int n, int d, uint64_t seed) {
    float *u = fmalloc((size_t)n * d);
    t_seed(seed);
    t_fill_normal(u, (size_t)n * d, 1.0f);
    return u;
}

static float *run_forward(const mx *m, const float *u, int T, float *st, mamba3_mode mode) {
    float *y = nanbuf((size_t)T * m->c.d_model);
    float *work = nanbuf(mamba3_work(&m->c, T));
    mamba3_forward(TEX, y, u, T, &m->c, &m->w, st, mode, work);
    free(work);
    return y;
}

// ----------------------------------------------------------------------------
// 1. modes

// y = out_proj(gate(ypre)) with ypre[t,r] = M·x for every rank r (the ops)
static float *y_from_matrix(const mx *m, const float *u, int T, const float *M) {
    const mamba3_cfg *c = &m->c;
    m3_rows_cfg rc = mamba3_rows_of(c);
    m3_rows_w   rw = mamba3_rows_w(&m->w);
    int Rin = m3_in_rows(&rc), H = c->H, P = c->P, R = c->R, Di = c->d_inner;
    float *zx = fmalloc((size_t)T * Rin), *yp = fmalloc((size_t)T * R * Di);
    float *g = fmalloc((size_t)T * Di), *y = fmalloc((size_t)T * c->d_model);
    k_matmul(TEX, zx, u, m->w.in_proj, NULL, T, c->d_model, Rin, 0);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++) {
                double acc = 0;
                for (int s = 0; s <= t; s++)
                    acc += (double)M[((size_t)h * T + t) * T + s] *
                           (double)zx[(size_t)s * Rin + m3_col_x(&rc) + h * P + p];
                for (int r = 0; r < R; r++)
                    yp[(((size_t)t * R + r) * H + h) * P + p] = (float)acc;
            }
    m3_gate(TEX, g, NULL, yp, zx, Rin, &rw, T, &rc);
    k_matmul(TEX, y, g, m->w.out_proj, NULL, T, Di, c->d_model, 0);
    free(zx), free(yp), free(g);
    return y;
}

static const int T_LIST[] = {1, 2, 5, 17, 64, 130, 300};
static const int Q_LIST[] = {1, 7, 16, 64};
#define N_T (int)(sizeof T_LIST / sizeof T_LIST[0])
#define N_Q (int)(sizeof Q_LIST / sizeof Q_LIST[0])

static void test_modes(mx *m) {
    char what[160];
    // the matrix check runs on a copy at the MIMO init (mimo_x, mimo_o = 1/R,
    // mimo_z = 1) and without the out norm for MIMO: there the rank-averaged
    // matrix is the mixer's
    mx mm = *m;
    float *mxo = NULL, *mz = NULL;
    if (m->c.mimo) {
        size_t n = m->len[6];
        mxo = fmalloc(n), mz = fmalloc(n);
        for (size_t i = 0; i < n; i++)
            mxo[i] = 1.0f / (float)m->c.R, mz[i] = 1.0f;
        mm.wt[6] = mm.wt[8] = mxo, mm.wt[7] = mz;
        bind_w(&mm);
    }
    bool mat_ok = !(m->c.mimo && m->c.outproj_norm);
    for (int i = 0; i < N_T; i++) {
        int T = T_LIST[i];
        float *u = rand_u(T, m->c.d_model, 100 + T);
        float *yr = run_forward(m, u, T, NULL, M3_RECURRENT);
        for (int q = 0; q < N_Q; q++) {
            m->c.chunk = Q_LIST[q];
            float *yc = run_forward(m, u, T, NULL, M3_CHUNKED);
            snprintf(what, sizeof what, "%s T%d chunk %d: chunked vs recurrent", m->name, T,
                     Q_LIST[q]);
            close_track(E_MODES, what, yc, yr, (size_t)T * m->c.d_model, TOL);
            free(yc);
        }
        if (mat_ok) {
            mm.c = m->c;
            float *M = nanbuf((size_t)m->c.H * T * T), *work = nanbuf(mamba3_work(&mm.c, T));
            mamba3_materialize(TEX, M, u, T, &mm.c, &mm.w, work);
            float *ym = y_from_matrix(&mm, u, T, M), *yc = run_forward(&mm, u, T, NULL, M3_CHUNKED);
            snprintf(what, sizeof what, "%s T%d: out_proj(gate(M·x)) vs chunked", m->name, T);
            close_track(E_MAT, what, ym, yc, (size_t)T * m->c.d_model, TOL);
            free(M), free(work), free(ym), free(yc);
        }
        free(u), free(yr);
    }
    m->c.chunk = 16;
    free(mxo), free(mz);
}

// ----------------------------------------------------------------------------
// 2. a state carried through pieces

static float *rand_state(const mx *m, uint64_t seed) {
    size_t n = mamba3_state_floats(&m->c);
    float *st = fmalloc(n);
    t_seed(seed);
    t_fill_normal(st, n, 0.5f);
    return st;
}

static void test_pieces(mx *m) {
    const int T1 = 23, T2 = 5, T3 = 41, T = T1 + T2 + T3;
    int d = m->c.d_model;
    size_t ns = mamba3_state_floats(&m->c);
    float *u = rand_u(T, d, 77), *st0 = rand_state(m, 78);
    float *s_all = fmalloc(ns), *s_pc = fmalloc(ns), *y_pc = fmalloc((size_t)T * d);
    memcpy(s_all, st0, sizeof(float) * ns);
    memcpy(s_pc, st0, sizeof(float) * ns);
    m->c.chunk = 16;
    float *y_all = run_forward(m, u, T, s_all, M3_CHUNKED);
    m->c.chunk = 7;
    float *y1 = run_forward(m, u, T1, s_pc, M3_CHUNKED);
    float *y2 = run_forward(m, u + (size_t)T1 * d, T2, s_pc, M3_RECURRENT);
    m->c.chunk = 64;
    float *y3 = run_forward(m, u + (size_t)(T1 + T2) * d, T3, s_pc, M3_CHUNKED);
    m->c.chunk = 16;
    memcpy(y_pc, y1, sizeof(float) * (size_t)T1 * d);
    memcpy(y_pc + (size_t)T1 * d, y2, sizeof(float) * (size_t)T2 * d);
    memcpy(y_pc + (size_t)(T1 + T2) * d, y3, sizeof(float) * (size_t)T3 * d);
    char what[160];
    snprintf(what, sizeof what, "%s pieces %d|%d|%d vs one pass: y", m->name, T1, T2, T3);
    close_track(E_STATE, what, y_pc, y_all, (size_t)T * d, TOL);
    snprintf(what, sizeof what, "%s pieces vs one pass: final state", m->name);
    close_track(E_STATE, what, s_pc, s_all, ns, TOL);
    // and all tokens one at a time from the same state
    float *s_rec = fmalloc(ns);
    memcpy(s_rec, st0, sizeof(float) * ns);
    float *y_rec = run_forward(m, u, T, s_rec, M3_RECURRENT);
    snprintf(what, sizeof what, "%s recurrent from a state vs chunked: y", m->name);
    close_track(E_STATE, what, y_rec, y_all, (size_t)T * d, TOL);
    snprintf(what, sizeof what, "%s recurrent from a state vs chunked: state", m->name);
    close_track(E_STATE, what, s_rec, s_all, ns, TOL);
    free(u), free(st0), free(s_all), free(s_pc), free(y_pc), free(y_all), free(y1), free(y2);
    free(y3), free(s_rec), free(y_rec);
}

// ----------------------------------------------------------------------------
// 3. λ = 1: h_t = exp(ΔA) h_{t−1} + Δ x ⊗ k, Mamba-2's update (ssd_scan_ref on X = x·Δ)

static void test_lambda_one(int T, int H, int P, int N, int Q) {
    m3_rows_cfg rc = {H, P, N, H, 1, 1, 0, 0, 1e-4f, 1e-5f};
    int Rin = m3_in_rows(&rc), Di = H * P;
    size_t nq = (size_t)T * H * N, nh = (size_t)T * H, ny = (size_t)T * Di;
    float *zx = fmalloc((size_t)T * Rin), *q = fmalloc(nq), *k = fmalloc(nq);
    float *dA = fmalloc(nh), *dlt = fmalloc(nh), *lam = fmalloc(nh), *D = fmalloc((size_t)H);
    t_seed(5 + T);
    t_fill_normal(zx, (size_t)T * Rin, 1.0f);
    t_fill_normal(q, nq, 0.5f);
    t_fill_normal(k, nq, 0.5f);
    t_fill_normal(D, (size_t)H, 1.0f);
    for (size_t i = 0; i < nh; i++) {
        dlt[i] = t_uniform(0.01f, 0.5f);
        dA[i] = -dlt[i] * t_uniform(0.1f, 3.0f);
        lam[i] = 1.0f;
    }
    m3_rows_w rw = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, D, NULL};
    // the oracle: X = x·Δ through molt's Mamba-2 scan, then + D·x
    float *X = fmalloc(ny), *want = fmalloc(ny);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < Di; i++)
            X[(size_t)t * Di + i] = zx[(size_t)t * Rin + Di + i] * dlt[(size_t)t * H + i / P];
    ssd_scan_ref(want, NULL, X, dA, k, q, T, H, P, N, H);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < Di; i++)
            want[(size_t)t * Di + i] += D[i / P] * zx[(size_t)t * Rin + Di + i];
    // chunked: m3_mix, ssd_scan_chunked, m3_corr
    float *Xm = nanbuf(ny), *dAx = nanbuf(nh), *y = nanbuf(ny);
    float *work = nanbuf(ssd_chunked_work(T, H, P, N, H, Q));
    m3_mix(TEX, Xm, dAx, zx, Rin, dA, dlt, lam, &rw, T, T, &rc);
    ssd_scan_chunked(TEX, y, NULL, Xm, dAx, k, q, T, H, P, N, H, Q, work);
    m3_corr(TEX, y, y, q, k, zx, Rin, dlt, lam, &rw, T, T, &rc);
    char what[96];
    snprintf(what, sizeof what, "lambda=1 chunked (T %d chunk %d) vs ssd_scan_ref", T, Q);
    close_track(E_LAMBDA, what, y, want, ny, TOL);
    // the step op from a zero state
    float *st = fmalloc(m3_state_floats(&rc)), *sp[1] = {st};
    memset(st, 0, sizeof(float) * m3_state_floats(&rc));
    for (int t = 0; t < T; t++)
        m3_step_rows(TEX, y + (size_t)t * Di, sp, q + (size_t)t * H * N, k + (size_t)t * H * N,
                     zx + (size_t)t * Rin, Rin, dA + (size_t)t * H, dlt + (size_t)t * H,
                     lam + (size_t)t * H, &rw, 1, &rc);
    snprintf(what, sizeof what, "lambda=1 step (T %d) vs ssd_scan_ref", T);
    close_track(E_LAMBDA, what, y, want, ny, TOL);
    free(zx), free(q), free(k), free(dA), free(dlt), free(lam), free(D), free(X), free(want);
    free(Xm), free(dAx), free(y), free(work), free(st);
}

// ----------------------------------------------------------------------------
// 4. gradients against a float64 twin (the step recurrence, written here)

static double softplus_d(double x) { return x > 20 ? x : log1p(exp(x)); }
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu_d(double x) { return x * sigmoid_d(x); }

// q, k [T,R,H,N], dA, dl, la [T,H] of one sequence's zx rows
static void twin_prep(double *q, double *k, double *dA, double *dl, double *la, const double *zx,
                      const mx *m, double *const wd[NSLOT], int T) {
    const mamba3_cfg *c = &m->c;
    m3_rows_cfg rc = mamba3_rows_of(c);
    int H = c->H, N = c->N, G = c->G, R = c->R, S = rc.S, Rin = m3_in_rows(&rc);
    double *phi = dmalloc((size_t)H * S);
    for (int t = 0; t < T; t++) {
        const double *z = zx + (size_t)t * Rin;
        for (int h = 0; h < H; h++) {
            double D = softplus_d(z[m3_col_dt(&rc) + h] + wd[1][h]), a = z[m3_col_A(&rc) + h];
            double ht = a >= 0 ? 1 + a : 1 / (1 - a);
            if (ht < (double)c->A_floor)
                ht = (double)c->A_floor;
            dl[t * H + h] = D, dA[t * H + h] = -ht * D;
            la[t * H + h] = sigmoid_d(z[m3_col_trap(&rc) + h]);
            for (int s = 0; s < S; s++)
                phi[h * S + s] += tanh(z[m3_col_ang(&rc) + s]) * M_PI * D;
        }
        for (int bc = 0; bc < 2; bc++)
            for (int r = 0; r < R; r++)
                for (int g = 0; g < G; g++) {
                    const double *b = z + (bc ? m3_col_C(&rc) : m3_col_B(&rc)) + (r * G + g) * N;
                    double ss = 0;
                    for (int i = 0; i < N; i++)
                        ss += b[i] * b[i];
                    double rs = 1 / sqrt(ss / N + (double)c->eps);
                    for (int h = g * (H / G); h < (g + 1) * (H / G); h++) {
                        double *o = (bc ? q : k) + (((size_t)t * R + r) * H + h) * N;
                        const double *bias = wd[bc ? 3 : 2] + ((size_t)h * R + r) * N;
                        for (int i = 0; i < N; i++)
                            o[i] = b[i] * rs * wd[bc ? 5 : 4][i] + bias[i];
                        for (int s = 0; s < S; s++) {
                            int ia = c->mimo ? s : 2 * s, ib = c->mimo ? N / 2 + s : 2 * s + 1;
                            double cs = cos(phi[h * S + s]), sn = sin(phi[h * S + s]);
                            double x0 = o[ia], x1 = o[ib];
                            o[ia] = x0 * cs - x1 * sn, o[ib] = x0 * sn + x1 * cs;
                        }
                    }
                }
    }
    free(phi);
}

// y [B·T,d] and M [B,H,T,T] (either may be NULL) from zero states
static void twin(double *y, double *M, const mx *m, double *const wd[NSLOT], const double *u,
                 int B, int T) {
    const mamba3_cfg *c = &m->c;
    m3_rows_cfg rc = mamba3_rows_of(c);
    int d = c->d_model, H = c->H, P = c->P, N = c->N, R = c->R, Di = c->d_inner;
    int Rin = m3_in_rows(&rc);
    size_t RHN = (size_t)R * H * N;
    double *zx = dmalloc((size_t)T * Rin), *q = dmalloc(T * RHN), *k = dmalloc(T * RHN);
    double *dA = dmalloc((size_t)T * H), *dl = dmalloc((size_t)T * H), *la = dmalloc((size_t)T * H);
    double *hs = dmalloc((size_t)H * P * N), *kp = dmalloc(RHN), *vp = dmalloc((size_t)R * Di);
    double *v = dmalloc((size_t)R * Di), *yr = dmalloc((size_t)R * P), *g = dmalloc((size_t)Di);
    for (int b = 0; b < B; b++) {
        const double *ub = u + (size_t)b * T * d;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < Rin; r++) {
                double s = 0;
                for (int i = 0; i < d; i++)
                    s += wd[0][(size_t)r * d + i] * ub[(size_t)t * d + i];
                zx[(size_t)t * Rin + r] = s;
            }
        twin_prep(q, k, dA, dl, la, zx, m, wd, T);
        if (M) {
            double *Mb = M + (size_t)b * H * T * T;
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                    for (int s = 0; s < T; s++) {
                        double val = 0;
                        if (s <= t) {
                            double qk = 0, seg = 0;
                            for (int i = 0; i < N; i++) {
                                double qb = 0, kb = 0;
                                for (int r = 0; r < R; r++) {
                                    qb += q[(((size_t)t * R + r) * H + h) * N + i] / R;
                                    kb += k[(((size_t)s * R + r) * H + h) * N + i] / R;
                                }
                                qk += qb * kb;
                            }
                            for (int j = s + 1; j <= t; j++)
                                seg += dA[j * H + h];
                            double w = s == t ? la[t * H + h] * dl[t * H + h]
                                              : la[s * H + h] * dl[s * H + h] +
                                                    (1 - la[(s + 1) * H + h]) * dl[(s + 1) * H + h];
                            val = qk * exp(seg) * w + (s == t ? wd[9][h] / R : 0.0);
                        }
                        Mb[((size_t)h * T + t) * T + s] = val;
                    }
        }
        if (!y)
            continue;
        memset(hs, 0, sizeof(double) * (size_t)H * P * N);
        memset(kp, 0, sizeof(double) * RHN);
        memset(vp, 0, sizeof(double) * (size_t)R * Di);
        for (int t = 0; t < T; t++) {
            const double *z = zx + (size_t)t * Rin, *x = z + Di;
            for (int r = 0; r < R; r++)
                for (int i = 0; i < Di; i++)
                    v[r * Di + i] =
                        x[i] * (c->mimo ? wd[6][((size_t)(i / P) * R + r) * P + i % P] : 1);
            for (int h = 0; h < H; h++) {
                double al = exp(dA[t * H + h]), gam = la[t * H + h] * dl[t * H + h];
                double bet = (1 - la[t * H + h]) * dl[t * H + h] * al;
                for (int p = 0; p < P; p++)
                    for (int i = 0; i < N; i++) {
                        double acc = al * hs[((size_t)h * P + p) * N + i];
                        for (int r = 0; r < R; r++)
                            acc += bet * vp[r * Di + h * P + p] * kp[((size_t)r * H + h) * N + i] +
                                   gam * v[r * Di + h * P + p] *
                                       k[(((size_t)t * R + r) * H + h) * N + i];
                        hs[((size_t)h * P + p) * N + i] = acc;
                    }
                for (int p = 0; p < P; p++)
                    g[h * P + p] = 0;
                for (int r = 0; r < R; r++) {
                    for (int p = 0; p < P; p++) {
                        double s = 0;
                        for (int i = 0; i < N; i++)
                            s += hs[((size_t)h * P + p) * N + i] *
                                 q[(((size_t)t * R + r) * H + h) * N + i];
                        yr[p] = s + wd[9][h] * v[r * Di + h * P + p];
                    }
                    double rs = 1;
                    if (c->outproj_norm) {
                        double ss = 0;
                        for (int p = 0; p < P; p++)
                            ss += yr[p] * yr[p];
                        rs = 1 / sqrt(ss / P + (double)c->eps);
                    }
                    for (int p = 0; p < P; p++) {
                        size_t wo = ((size_t)h * R + r) * P + p;
                        double yn = c->outproj_norm ? yr[p] * rs * wd[10][h * P + p] : yr[p];
                        double zz = z[h * P + p] * (c->mimo ? wd[7][wo] : 1);
                        g[h * P + p] += (c->mimo ? wd[8][wo] : 1) * yn * silu_d(zz);
                    }
                }
            }
            for (int i = 0; i < d; i++) {
                double s = 0;
                for (int j = 0; j < Di; j++)
                    s += wd[11][(size_t)i * Di + j] * g[j];
                y[((size_t)b * T + t) * d + i] = s;
            }
            memcpy(kp, k + (size_t)t * RHN, sizeof(double) * RHN);
            memcpy(vp, v, sizeof(double) * (size_t)R * Di);
        }
    }
    free(zx), free(q), free(k), free(dA), free(dl), free(la), free(hs), free(kp), free(vp);
    free(v), free(yr), free(g);
}

typedef struct fdctx {
    const mx *m;
    double   *wd[NSLOT], *u;
    const float *w; // upstream (dy or dM)
    int B, T, mat;
} fdctx;

static double fd_loss(fdctx *x) {
    const mamba3_cfg *c = &x->m->c;
    size_t n = x->mat ? (size_t)x->B * c->H * x->T * x->T : (size_t)x->B * x->T * c->d_model;
    double *o = dmalloc(n), L = 0;
    twin(x->mat ? NULL : o, x->mat ? o : NULL, x->m, x->wd, x->u, x->B, x->T);
    for (size_t i = 0; i < n; i++)
        L += (double)x->w[i] * o[i];
    free(o);
    return L;
}

// central differences of up to FD_MAX elements of param against analytic
static void fd_check(const char *what, fdctx *x, double *param, size_t n, const float *analytic) {
    int idx[FD_MAX], ni = 0;
    idx[ni++] = 0;
    if (n > 1)
        idx[ni++] = (int)n - 1;
    while (ni < FD_MAX && (size_t)ni < n)
        idx[ni++] = (int)(t_uniform(0.0f, 1.0f) * (float)(n - 1));
    double fd[FD_MAX], sum2 = 0, err2 = 0, worst = 0, eps = 1e-5;
    for (int k2 = 0; k2 < ni; k2++) {
        double v = param[idx[k2]];
        param[idx[k2]] = v + eps;
        double lp = fd_loss(x);
        param[idx[k2]] = v - eps;
        double lm = fd_loss(x);
        param[idx[k2]] = v;
        fd[k2] = (lp - lm) / (2 * eps);
        sum2 += fd[k2] * fd[k2];
    }
    double scale = fmax(sqrt(sum2 / ni), FD_FLOOR);
    for (int k2 = 0; k2 < ni; k2++) {
        double e = fabs((double)analytic[idx[k2]] - fd[k2]);
        err2 += e * e;
        worst = fmax(worst, e);
    }
    double rms = sqrt(err2 / ni) / scale;
    track(E_FD, rms);
    CHECK(rms <= FD_TOL && worst <= 10 * FD_TOL * scale,
          "%s: analytic vs central differences: rel RMS %.3g, worst %.3g (scale %.3g)", what, rms,
          worst / scale, scale);
}

// train (mat 0) or matrix (mat 1) backward: du and the parameter grads
static void run_backward(const mx *m, int mat, int B, int T, const float *u, const float *up,
                         float *du, float *gr[NSLOT], int nth) {
    const mamba3_cfg *c = &m->c;
    size_t na = mat ? mamba3_mat_act_floats(c, B, T) : mamba3_train_act_floats(c, B, T);
    size_t nw = mat ? mamba3_mat_work_floats(c, B, T) : mamba3_train_work_floats(c, B, T);
    size_t no = mat ? (size_t)B * c->H * T * T : (size_t)B * T * c->d_model;
    float *act = nanbuf(na), *work = nanbuf(nw), *o = nanbuf(no);
    for (int s = 0; s < NSLOT; s++) {
        gr[s] = NULL;
        if (m->wt[s] && (!mat || g_mat_slot[s])) {
            gr[s] = fmalloc(m->len[s]);
            for (size_t i = 0; i < m->len[s]; i++)
                gr[s][i] = 0.5f; // the grads accumulate (+=)
        }
    }
    mamba3_grads g = {gr[0], gr[1], gr[2], gr[3], gr[4],  gr[5],
                      gr[6], gr[7], gr[8], gr[9], gr[10], gr[11]};
    test_threads(nth);
    if (mat) {
        mamba3_mat_forward(TEX, o, act, u, B, T, c, &m->w, work);
        mamba3_mat_backward(TEX, du, &g, up, act, u, B, T, c, &m->w, work);
    } else {
        mamba3_train_forward(TEX, o, act, u, B, T, c, &m->w, work);
        mamba3_train_backward(TEX, du, &g, up, act, u, B, T, c, &m->w, work);
    }
    test_threads(1);
    for (int s = 0; s < NSLOT; s++)
        for (size_t i = 0; gr[s] && i < m->len[s]; i++)
            gr[s][i] -= 0.5f;
    free(act), free(work), free(o);
}

static void test_grads(mx *m, int B, int T, int chunk) {
    const mamba3_cfg *c = &m->c;
    m->c.chunk = chunk;
    int d = c->d_model;
    size_t nu = (size_t)B * T * d, nM = (size_t)B * c->H * T * T;
    float *u = rand_u(B * T, d, 900 + T), *dy = fmalloc(nu), *dM = fmalloc(nM);
    t_fill_normal(dy, nu, 1.0f);
    t_fill_normal(dM, nM, 1.0f);
    char what[200];
    // train_forward == the chunked forward (per sequence), mat_forward == materialize
    {
        float *act = nanbuf(mamba3_train_act_floats(c, B, T));
        float *work = nanbuf(mamba3_train_work_floats(c, B, T)), *y = nanbuf(nu);
        mamba3_train_forward(TEX, y, act, u, B, T, c, &m->w, work);
        for (int b = 0; b < B; b++) {
            float *yf = run_forward(m, u + (size_t)b * T * d, T, NULL, M3_CHUNKED);
            snprintf(what, sizeof what, "%s train_forward seq %d vs forward", m->name, b);
            t_close(what, y + (size_t)b * T * d, yf, (size_t)T * d, -1, 1e-6);
            free(yf);
        }
        free(act), free(work), free(y);
        float *M = nanbuf(nM), *Mf = nanbuf((size_t)c->H * T * T);
        act = nanbuf(mamba3_mat_act_floats(c, B, T));
        work = nanbuf(mamba3_mat_work_floats(c, B, T));
        float *mw = nanbuf(mamba3_work(c, T));
        mamba3_mat_forward(TEX, M, act, u, B, T, c, &m->w, work);
        for (int b = 0; b < B; b++) {
            mamba3_materialize(TEX, Mf, u + (size_t)b * T * d, T, c, &m->w, mw);
            snprintf(what, sizeof what, "%s mat_forward seq %d vs materialize", m->name, b);
            t_close(what, M + (size_t)b * c->H * T * T, Mf, (size_t)c->H * T * T, -1, 1e-6);
        }
        free(M), free(Mf), free(act), free(work), free(mw);
    }
    fdctx x = {m, {0}, to_d(u, nu), NULL, B, T, 0};
    for (int s = 0; s < NSLOT; s++)
        x.wd[s] = m->wt[s] ? to_d(m->wt[s], m->len[s]) : NULL;
    for (int mat = 0; mat < 2; mat++) {
        float *du = nanbuf(nu), *gr[NSLOT], *du3 = nanbuf(nu), *gr3[NSLOT];
        run_backward(m, mat, B, T, u, mat ? dM : dy, du, gr, 1);
        run_backward(m, mat, B, T, u, mat ? dM : dy, du3, gr3, 3);
        const char *pass = mat ? "mat_backward" : "train_backward";
        snprintf(what, sizeof what, "%s %s: 1 vs 3 threads", m->name, pass);
        bool same = memcmp(du, du3, sizeof(float) * nu) == 0;
        for (int s = 0; s < NSLOT; s++)
            same &= !gr[s] || memcmp(gr[s], gr3[s], sizeof(float) * m->len[s]) == 0;
        CHECK(same, "%s: results differ", what);
        x.w = mat ? dM : dy;
        x.mat = mat;
        snprintf(what, sizeof what, "%s B%d T%d chunk %d %s du", m->name, B, T, chunk, pass);
        fd_check(what, &x, x.u, nu, du);
        for (int s = 0; s < NSLOT; s++) {
            if (!gr[s])
                continue;
            snprintf(what, sizeof what, "%s B%d T%d chunk %d %s %s", m->name, B, T, chunk, pass,
                     g_slot[s]);
            fd_check(what, &x, x.wd[s], m->len[s], gr[s]);
        }
        free(du), free(du3);
        for (int s = 0; s < NSLOT; s++)
            free(gr[s]), free(gr3[s]);
    }
    for (int s = 0; s < NSLOT; s++)
        free(x.wd[s]);
    free(x.u), free(u), free(dy), free(dM);
    m->c.chunk = 16;
}

// ----------------------------------------------------------------------------
// 5. parity with tests/ref/mamba3_ref.py (float64 PyTorch)

typedef struct tcase {
    mx    *m;
    int    B, T;
    float *u, *st0, *dy, *dM;
} tcase;

static void put(FILE *f, const void *p, size_t size, size_t n) {
    if (n && fwrite(p, size, n, f) != n) {
        fprintf(stderr, "write failed\n");
        exit(2);
    }
}

static const char *ref_script(const char *argv0) {
    static char path[4096];
    if (t_exists("tests/ref/mamba3_ref.py"))
        return "tests/ref/mamba3_ref.py";
    const char *slash = strrchr(argv0, '/');
    int         n = slash ? (int)(slash - argv0) : 1;
    snprintf(path, sizeof path, "%.*s/../../tests/ref/mamba3_ref.py", n, slash ? argv0 : ".");
    return path;
}

static void torch_cmp(const char *what, const float *got, const char *out, size_t *off,
                      size_t len, size_t n) {
    if (*off + 4 * n > len) {
        CHECK(0, "mamba3_ref.py output too short at %s", what);
        *off = len + 1;
        return;
    }
    float *ref = fmalloc(n);
    memcpy(ref, out + *off, 4 * n);
    *off += 4 * n;
    double e = t_rel_l2(got, ref, n);
    track(E_TORCH, e);
    printf("  torch %-58s rel-L2 %.3g\n", what, e);
    t_close(what, got, ref, n, -1, TORCH_TOL);
    free(ref);
}

static void test_torch(const char *argv0, tcase *cs, int n_cases) {
    const char *py = getenv("MOLT_PYTHON") ? getenv("MOLT_PYTHON") : "/usr/bin/python3";
    char        cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("NOTICE: %s cannot import torch: PyTorch parity SKIPPED\n", py);
        return;
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char        fin[1024], fout[1024];
    snprintf(fin, sizeof fin, "%s/molt_m3_in_XXXXXX", tmp);
    snprintf(fout, sizeof fout, "%s/molt_m3_out_XXXXXX", tmp);
    int fdi = mkstemp(fin), fdo = mkstemp(fout);
    CHECK(fdi >= 0 && fdo >= 0, "mkstemp in %s", tmp);
    if (fdi < 0 || fdo < 0)
        return;
    close(fdo);
    FILE *f = fdopen(fdi, "wb");
    put(f, "MOLTM3IN", 1, 8);
    int32_t vn[2] = {1, n_cases};
    put(f, vn, 4, 2);
    for (int i = 0; i < n_cases; i++) {
        const tcase      *k = &cs[i];
        const mamba3_cfg *c = &k->m->c;
        int32_t hdr[12] = {c->d_model, c->H, c->P, c->N, c->G, c->R, c->mimo, c->outproj_norm,
                           k->B, k->T, 0, 0};
        float   hf[4] = {c->rope_fraction, c->A_floor, c->eps, 0.0f};
        put(f, hdr, 4, 12);
        put(f, hf, 4, 4);
        put(f, k->u, 4, (size_t)k->B * k->T * c->d_model);
        for (int s = 0; s < NSLOT; s++)
            if (k->m->wt[s])
                put(f, k->m->wt[s], 4, k->m->len[s]);
        put(f, k->st0, 4, mamba3_state_floats(c));
        put(f, k->dy, 4, (size_t)k->B * k->T * c->d_model);
        put(f, k->dM, 4, (size_t)k->B * c->H * k->T * k->T);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, ref_script(argv0), fin, fout);
    int rc = system(cmd);
    CHECK(rc == 0, "%s failed (%d)", cmd, rc);
    size_t len = 0;
    char  *out = rc == 0 ? t_read_file(fout, &len) : NULL;
    remove(fin);
    remove(fout);
    if (!out)
        return;
    CHECK(len >= 16 && memcmp(out, "MOLTM3OU", 8) == 0, "bad mamba3_ref.py output");
    size_t off = 16;
    for (int i = 0; i < n_cases && off <= len; i++) {
        tcase            *k = &cs[i];
        mx               *m = k->m;
        const mamba3_cfg *c = &m->c;
        int               d = c->d_model, B = k->B, T = k->T;
        size_t            ns = mamba3_state_floats(c), nu = (size_t)B * T * d;
        size_t            nM = (size_t)B * c->H * T * T;
        char              what[200];
        // y and the final state of sequence 0 from st0 (chunked, chunk 4)
        m->c.chunk = 4;
        float *st = fmalloc(ns);
        memcpy(st, k->st0, sizeof(float) * ns);
        float *y = run_forward(m, k->u, T, st, M3_CHUNKED);
        snprintf(what, sizeof what, "%s T%d y from a state", m->name, T);
        torch_cmp(what, y, out, &off, len, (size_t)T * d);
        snprintf(what, sizeof what, "%s T%d final state", m->name, T);
        torch_cmp(what, st, out, &off, len, ns);
        // M from zero states
        float *M = nanbuf(nM), *mw = nanbuf(mamba3_work(c, T));
        for (int b = 0; b < B; b++)
            mamba3_materialize(TEX, M + (size_t)b * c->H * T * T, k->u + (size_t)b * T * d, T, c,
                               &m->w, mw);
        snprintf(what, sizeof what, "%s B%d T%d M", m->name, B, T);
        torch_cmp(what, M, out, &off, len, nM);
        for (int mat = 0; mat < 2; mat++) {
            float *du = nanbuf(nu), *gr[NSLOT];
            run_backward(m, mat, B, T, k->u, mat ? k->dM : k->dy, du, gr, 2);
            const char *pass = mat ? "mat" : "train";
            snprintf(what, sizeof what, "%s B%d T%d %s du", m->name, B, T, pass);
            torch_cmp(what, du, out, &off, len, nu);
            for (int s = 0; s < NSLOT; s++) {
                if (!gr[s])
                    continue;
                snprintf(what, sizeof what, "%s B%d T%d %s %s", m->name, B, T, pass, g_slot[s]);
                torch_cmp(what, gr[s], out, &off, len, m->len[s]);
                free(gr[s]);
            }
            free(du);
        }
        m->c.chunk = 16;
        free(st), free(y), free(M), free(mw);
    }
    CHECK(off == len, "mamba3_ref.py output: %zu bytes, %zu read", len, off);
    free(out);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    (void)argc;
    // d, H, P, N, G, R, mimo, norm, rope
    static const int CFG[][8] = {
        {16, 4, 8, 16, 1, 1, 0, 0}, {16, 4, 8, 8, 4, 1, 0, 1},  {16, 4, 8, 7, 2, 1, 0, 0},
        {16, 4, 8, 16, 1, 2, 1, 0}, {16, 4, 8, 8, 2, 4, 1, 1}, {16, 2, 8, 12, 1, 1, 1, 0},
    };
    static const float ROPE[] = {0.5f, 1.0f, 1.0f, 0.5f, 1.0f, 0.5f};
    for (int i = 0; i < (int)(sizeof CFG / sizeof CFG[0]); i++) {
        const int *k = CFG[i];
        mx m;
        mx_init(&m, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], ROPE[i], 10 + (uint64_t)i);
        test_modes(&m);
        test_pieces(&m);
        mx_free(&m);
    }
    test_lambda_one(1, 2, 3, 4, 4);
    test_lambda_one(37, 3, 5, 8, 16);
    test_lambda_one(130, 2, 4, 16, 64);
    static const int GCFG[][8] = {
        {8, 2, 4, 8, 1, 1, 0, 0}, {8, 2, 4, 6, 2, 1, 0, 1}, {8, 2, 4, 8, 1, 2, 1, 1},
        {8, 2, 3, 8, 2, 3, 1, 0},
    };
    static const float GROPE[] = {0.5f, 1.0f, 0.5f, 1.0f};
    for (int i = 0; i < (int)(sizeof GCFG / sizeof GCFG[0]); i++) {
        const int *k = GCFG[i];
        mx m;
        mx_init(&m, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], GROPE[i], 40 + (uint64_t)i);
        test_grads(&m, 2, 9, 4);
        test_grads(&m, 1, 5, 1);
        mx_free(&m);
    }
    { // torch parity: every variant, pieces of the recurrence crossing chunks of 4
        static const int TC[][8] = {
            {8, 2, 4, 8, 1, 1, 0, 0}, {8, 2, 4, 6, 2, 1, 0, 1}, {8, 2, 4, 8, 1, 2, 1, 0},
            {8, 2, 3, 8, 2, 3, 1, 1}, {8, 2, 4, 12, 1, 1, 1, 0},
        };
        static const float TROPE[] = {0.5f, 1.0f, 0.5f, 1.0f, 0.5f};
        enum { NTC = (int)(sizeof TC / sizeof TC[0]) };
        mx m[NTC];
        tcase cs[NTC];
        for (int i = 0; i < NTC; i++) {
            const int *k = TC[i];
            mx_init(&m[i], k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], TROPE[i],
                    70 + (uint64_t)i);
            int B = 2, T = 11, d = k[0];
            size_t nu = (size_t)B * T * d, nM = (size_t)B * k[1] * T * T;
            cs[i] = (tcase){&m[i], B, T, rand_u(B * T, d, 300 + (uint64_t)i),
                            rand_state(&m[i], 400 + (uint64_t)i), fmalloc(nu), fmalloc(nM)};
            t_fill_normal(cs[i].dy, nu, 1.0f);
            t_fill_normal(cs[i].dM, nM, 1.0f);
        }
        test_torch(argv[0], cs, NTC);
        for (int i = 0; i < NTC; i++) {
            free(cs[i].u), free(cs[i].st0), free(cs[i].dy), free(cs[i].dM);
            mx_free(&m[i]);
        }
    }
    for (int k = 0; k < E_COUNT; k++)
        printf("worst %-22s %.3g\n", g_err_name[k], g_err[k]);
    return t_done("test_mamba3");
}
