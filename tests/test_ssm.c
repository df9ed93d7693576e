/*
 * test_ssm.c — kernel-level checks of src/kernels/cpu/ssm.c against a
 * double-precision oracle written here (the plain recurrence / conv formula):
 *   scan:  ssd_scan_ref, ssd_step (token by token), ssd_scan_chunked
 *          (Q = 1, 7, 16, 64, > T) and ssd_materialize·X agree with the oracle
 *          to rel-L2 ≤ 1e-5 for T in 1…300, several (H,P,N,G) including
 *          G = 1 < H, G = H and H/G = 2, three decay regimes, from zero and
 *          from a random initial state (final state checked too);
 *          materialize with colscale (Mamba-2: acts on x, X = x·Δ) and D;
 *          chunked results are bit-identical for 1 and 3 OpenMP threads.
 *   conv:  conv1d_causal vs the formula, with and without state, and
 *          feeding T1 then T2 tokens through the state == feeding T1+T2.
 */
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static const int T_LIST[] = {1,  2,  3,   5,   7,   8,   15,  16,  17,  31, 63,
                             64, 65, 100, 127, 128, 129, 200, 255, 256, 300};
#define N_T (int)(sizeof(T_LIST) / sizeof(T_LIST[0]))

static double g_max_err[8]; // per method, for the summary
static const char *g_method[8] = {"scan_ref", "step", "chunked", "materialize", "mat+colscale+D",
                                  "final_state", "conv", "conv_split"};

static void track(int m, double e) {
    if (e > g_max_err[m] || e != e)
        g_max_err[m] = e;
}

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static double softplus_d(double x) { return x > 20 ? x : log1p(exp(x)); }

// ----------------------------------------------------------------------------
// double oracle: s_t = exp(dA_t) s_{t-1} + X_t ⊗ B_t ; y_t = s_t C_t

static void oracle_scan(float *y, float *s_final, const float *s0, const float *X,
                        const float *dA, const float *B, const float *C, int T, int H, int P,
                        int N, int G) {
    int     hpg = H / G;
    double *s = calloc((size_t)P * N, sizeof(double));
    for (int h = 0; h < H; h++) {
        int g = h / hpg;
        for (int e = 0; e < P * N; e++)
            s[e] = s0 ? (double)s0[(size_t)h * P * N + e] : 0.0;
        for (int t = 0; t < T; t++) {
            double a = exp((double)dA[(size_t)t * H + h]);
            for (int p = 0; p < P; p++) {
                double x = (double)X[((size_t)t * H + h) * P + p], acc = 0;
                for (int n = 0; n < N; n++) {
                    double *sp = &s[(size_t)p * N + n];
                    *sp = a * *sp + x * (double)B[((size_t)t * G + g) * N + n];
                    acc += *sp * (double)C[((size_t)t * G + g) * N + n];
                }
                y[((size_t)t * H + h) * P + p] = (float)acc;
            }
        }
        if (s_final)
            for (int e = 0; e < P * N; e++)
                s_final[(size_t)h * P * N + e] = (float)s[e];
    }
    free(s);
}

// y[t,h,p] = Σ_s M[h,t,s] x[s,h,p] in double
static void apply_M(float *y, const float *M, const float *x, int T, int H, int P) {
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int p = 0; p < P; p++) {
                double acc = 0;
                for (int s = 0; s < T; s++)
                    acc += (double)M[((size_t)h * T + t) * T + s] *
                           (double)x[((size_t)s * H + h) * P + p];
                y[((size_t)t * H + h) * P + p] = (float)acc;
            }
}

static bool close_track(int m, const char *what, const float *got, const float *want, size_t n) {
    double e = t_rel_l2(got, want, n);
    track(m, e);
    return t_close(what, got, want, n, -1, TOL);
}

// ----------------------------------------------------------------------------
// scan

typedef struct shape {
    int H, P, N, G;
} shape;

static void test_scan_case(shape sh, int regime, int T) {
    int    H = sh.H, P = sh.P, N = sh.N, G = sh.G;
    size_t nX = (size_t)T * H * P, nB = (size_t)T * G * N, nS = (size_t)H * P * N;
    float *X = fmalloc(nX), *x = fmalloc(nX), *dA = fmalloc((size_t)T * H),
          *dt = fmalloc((size_t)T * H), *B = fmalloc(nB), *C = fmalloc(nB), *s0 = fmalloc(nS),
          *D = fmalloc((size_t)H);
    t_fill_normal(B, nB, 1.0f);
    t_fill_normal(C, nB, 1.0f);
    t_fill_normal(s0, nS, 0.5f);
    t_fill_normal(D, (size_t)H, 1.0f);
    t_fill_normal(x, nX, 1.0f);
    for (size_t i = 0; i < (size_t)T * H; i++) {
        double r = (double)t_normal();
        // regimes: 0 slow decay (long memory), 1 -softplus(normal), 2 strong
        double sp = regime == 0 ? 0.02 * softplus_d(r) : regime == 1 ? softplus_d(r)
                                                                       : softplus_d(3 * r + 2);
        dA[i] = (float)-sp;
        dt[i] = (float)softplus_d((double)t_normal() - 1.0); // a Mamba-2 style Δ > 0
    }
    // X = x·Δ as the Mamba-2 mixer passes it (exercises the colscale path)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++)
                X[((size_t)t * H + h) * P + p] =
                    x[((size_t)t * H + h) * P + p] * dt[(size_t)t * H + h];

    float *y0 = fmalloc(nX), *y1 = fmalloc(nX), *sf1 = fmalloc(nS), *got = fmalloc(nX),
          *st = fmalloc(nS);
    oracle_scan(y0, NULL, NULL, X, dA, B, C, T, H, P, N, G);
    oracle_scan(y1, sf1, s0, X, dA, B, C, T, H, P, N, G);
    char what[160];
    snprintf(what, sizeof what, "H%d P%d N%d G%d regime %d T %d", H, P, N, G, regime, T);
    char buf[200];

    // sequential reference
    ssd_scan_ref(got, NULL, X, dA, B, C, T, H, P, N, G);
    snprintf(buf, sizeof buf, "scan_ref zero-state %s", what);
    close_track(0, buf, got, y0, nX);
    memcpy(st, s0, sizeof(float) * nS);
    ssd_scan_ref(got, st, X, dA, B, C, T, H, P, N, G);
    snprintf(buf, sizeof buf, "scan_ref init-state %s", what);
    close_track(0, buf, got, y1, nX);
    snprintf(buf, sizeof buf, "scan_ref final state %s", what);
    close_track(5, buf, st, sf1, nS);

    // token by token
    memcpy(st, s0, sizeof(float) * nS);
    for (int t = 0; t < T; t++)
        ssd_step(TEX, got + (size_t)t * H * P, st, X + (size_t)t * H * P, dA + (size_t)t * H,
                 B + (size_t)t * G * N, C + (size_t)t * G * N, H, P, N, G);
    snprintf(buf, sizeof buf, "step %s", what);
    close_track(1, buf, got, y1, nX);
    snprintf(buf, sizeof buf, "step final state %s", what);
    close_track(5, buf, st, sf1, nS);

    // chunked: work pre-filled with NaN (no read of unwritten scratch), exact
    // size (ASan catches overruns)
    const int Qs[] = {1, 7, 16, 64, T + 5};
    for (int qi = 0; qi < 5; qi++) {
        int    Q = Qs[qi];
        size_t nw = ssd_chunked_work(T, H, P, N, G, Q);
        float *work = fmalloc(nw);
        for (size_t i = 0; i < nw; i++)
            work[i] = NAN;
        ssd_scan_chunked(TEX, got, NULL, X, dA, B, C, T, H, P, N, G, Q, work);
        snprintf(buf, sizeof buf, "chunked Q%d zero-state %s", Q, what);
        close_track(2, buf, got, y0, nX);
        for (size_t i = 0; i < nw; i++)
            work[i] = NAN;
        memcpy(st, s0, sizeof(float) * nS);
        ssd_scan_chunked(TEX, got, st, X, dA, B, C, T, H, P, N, G, Q, work);
        snprintf(buf, sizeof buf, "chunked Q%d init-state %s", Q, what);
        close_track(2, buf, got, y1, nX);
        snprintf(buf, sizeof buf, "chunked Q%d final state %s", Q, what);
        close_track(5, buf, st, sf1, nS);
        free(work);
    }

    // materialize: M·X == scan from zero; with colscale = Δ and D: M·x == scan(x·Δ) + D·x
    float *M = fmalloc((size_t)H * T * T);
    ssd_materialize(TEX, M, dA, B, C, NULL, NULL, T, H, N, G);
    apply_M(got, M, X, T, H, P);
    snprintf(buf, sizeof buf, "materialize %s", what);
    close_track(3, buf, got, y0, nX);
    ssd_materialize(TEX, M, dA, B, C, dt, D, T, H, N, G);
    apply_M(got, M, x, T, H, P);
    float *yD = fmalloc(nX);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int p = 0; p < P; p++) {
                size_t i = ((size_t)t * H + h) * P + p;
                yD[i] = (float)((double)y0[i] + (double)D[h] * (double)x[i]);
            }
    snprintf(buf, sizeof buf, "materialize colscale+D %s", what);
    close_track(4, buf, got, yD, nX);

    free(M), free(yD), free(X), free(x), free(dA), free(dt), free(B), free(C), free(s0), free(D);
    free(y0), free(y1), free(sf1), free(got), free(st);
}

// Results must not depend on the number of OpenMP threads (no cross-thread sums).
static void test_thread_invariance(void) {
    int    T = 257, H = 6, P = 8, N = 16, G = 3, Q = 32;
    size_t nX = (size_t)T * H * P, nB = (size_t)T * G * N, nS = (size_t)H * P * N;
    float *X = fmalloc(nX), *dA = fmalloc((size_t)T * H), *B = fmalloc(nB), *C = fmalloc(nB);
    float *y1 = fmalloc(nX), *y3 = fmalloc(nX), *s1 = fmalloc(nS), *s3 = fmalloc(nS);
    float *work = fmalloc(ssd_chunked_work(T, H, P, N, G, Q));
    t_fill_normal(X, nX, 1.0f);
    t_fill_normal(B, nB, 1.0f);
    t_fill_normal(C, nB, 1.0f);
    for (size_t i = 0; i < (size_t)T * H; i++)
        dA[i] = (float)-softplus_d((double)t_normal());
    t_fill_normal(s1, nS, 0.5f);
    memcpy(s3, s1, sizeof(float) * nS);
    int saved = TEX->nth; // molt's pool (core/pool.h) decides the kernel's threads
    test_threads(1);
    ssd_scan_chunked(TEX, y1, s1, X, dA, B, C, T, H, P, N, G, Q, work);
    test_threads(3);
    ssd_scan_chunked(TEX, y3, s3, X, dA, B, C, T, H, P, N, G, Q, work);
    test_threads(saved);
    CHECK(memcmp(y1, y3, sizeof(float) * nX) == 0, "chunked y differs between 1 and 3 threads");
    CHECK(memcmp(s1, s3, sizeof(float) * nS) == 0, "chunked state differs between 1 and 3 threads");
    free(X), free(dA), free(B), free(C), free(y1), free(y3), free(s1), free(s3), free(work);
}

// ----------------------------------------------------------------------------
// conv1d

// y[t,c] = b[c] + Σ_k w[c,k] in[t-(K-1)+k, c] over the history h0[c,K-1] ++ x
static void oracle_conv(float *y, float *state_out, const float *x, const float *w,
                        const float *b, const float *h0, int T, int Cc, int K) {
    for (int c = 0; c < Cc; c++) {
        for (int t = 0; t < T; t++) {
            double s = b ? (double)b[c] : 0.0;
            for (int k = 0; k < K; k++) {
                int    tau = t - (K - 1) + k;
                double v = tau >= 0 ? (double)x[(size_t)tau * Cc + c]
                           : h0     ? (double)h0[(size_t)c * (K - 1) + tau + K - 1]
                                    : 0.0;
                s += (double)w[(size_t)c * K + k] * v;
            }
            y[(size_t)t * Cc + c] = (float)s;
        }
        if (state_out)
            for (int j = 0; j < K - 1; j++) {
                int tau = T - (K - 1) + j;
                state_out[(size_t)c * (K - 1) + j] =
                    tau >= 0 ? x[(size_t)tau * Cc + c]
                    : h0     ? h0[(size_t)c * (K - 1) + tau + K - 1]
                             : 0.0f;
            }
    }
}

static void test_conv(void) {
    const int Cc = 13;
    const int Ts[] = {0, 1, 2, 3, 4, 5, 9, 33};
    for (int K = 1; K <= 4; K++)
        for (int use_b = 0; use_b < 2; use_b++) {
            float *w = fmalloc((size_t)Cc * K), *b = fmalloc(Cc);
            t_fill_normal(w, (size_t)Cc * K, 0.5f);
            t_fill_normal(b, Cc, 0.5f);
            const float *bb = use_b ? b : NULL;
            size_t       ns = (size_t)Cc * (K - 1);
            // single call, no state and with a random state
            for (int ti = 0; ti < 8; ti++) {
                int    T = Ts[ti];
                float *x = fmalloc((size_t)T * Cc), *y = fmalloc((size_t)T * Cc),
                      *yo = fmalloc((size_t)T * Cc), *h0 = fmalloc(ns), *st = fmalloc(ns),
                      *so = fmalloc(ns);
                t_fill_normal(x, (size_t)T * Cc, 1.0f);
                t_fill_normal(h0, ns, 1.0f);
                char buf[128];
                conv1d_causal(TEX, y, x, w, bb, NULL, T, Cc, K);
                oracle_conv(yo, NULL, x, w, bb, NULL, T, Cc, K);
                snprintf(buf, sizeof buf, "conv no-state K%d T%d bias%d", K, T, use_b);
                close_track(6, buf, y, yo, (size_t)T * Cc);
                memcpy(st, h0, sizeof(float) * ns);
                conv1d_causal(TEX, y, x, w, bb, st, T, Cc, K);
                oracle_conv(yo, so, x, w, bb, h0, T, Cc, K);
                snprintf(buf, sizeof buf, "conv state K%d T%d bias%d", K, T, use_b);
                close_track(6, buf, y, yo, (size_t)T * Cc);
                snprintf(buf, sizeof buf, "conv state-out K%d T%d bias%d", K, T, use_b);
                close_track(6, buf, st, so, ns);
                free(x), free(y), free(yo), free(h0), free(st), free(so);
            }
            // split: T1 then T2 (then 1 token at a time for the rest) == T1+T2 at once
            const int T1s[] = {0, 1, 2, 3, 5, 17}, T2s[] = {0, 1, 2, 4, 9};
            for (int i1 = 0; i1 < 6; i1++)
                for (int i2 = 0; i2 < 5; i2++) {
                    int    T1 = T1s[i1], T2 = T2s[i2], T = T1 + T2 + 3;
                    float *x = fmalloc((size_t)T * Cc), *y = fmalloc((size_t)T * Cc),
                          *yo = fmalloc((size_t)T * Cc), *h0 = fmalloc(ns), *st = fmalloc(ns),
                          *so = fmalloc(ns);
                    t_fill_normal(x, (size_t)T * Cc, 1.0f);
                    t_fill_normal(h0, ns, 1.0f);
                    memcpy(st, h0, sizeof(float) * ns);
                    memcpy(so, h0, sizeof(float) * ns);
                    conv1d_causal(TEX, yo, x, w, bb, so, T, Cc, K);
                    conv1d_causal(TEX, y, x, w, bb, st, T1, Cc, K);
                    conv1d_causal(TEX, y + (size_t)T1 * Cc, x + (size_t)T1 * Cc, w, bb, st, T2, Cc,
                                  K);
                    for (int t = T1 + T2; t < T; t++)
                        conv1d_causal(TEX, y + (size_t)t * Cc, x + (size_t)t * Cc, w, bb, st, 1, Cc,
                                      K);
                    char buf[128];
                    snprintf(buf, sizeof buf, "conv split K%d T1 %d T2 %d", K, T1, T2);
                    double e = t_max_abs(y, yo, (size_t)T * Cc) + t_max_abs(st, so, ns);
                    track(7, e);
                    CHECK(e <= 1e-6, "%s: split differs from one pass (max abs %g)", buf, e);
                    free(x), free(y), free(yo), free(h0), free(st), free(so);
                }
            free(w), free(b);
        }
}

int main(void) {
    t_seed(1234);
    const shape shapes[] = {{4, 8, 16, 1}, {4, 8, 16, 4}, {4, 8, 16, 2}, {6, 5, 7, 3}, {2, 16, 32, 1}};
    for (int si = 0; si < 5; si++)
        for (int regime = 0; regime < 3; regime++)
            for (int ti = 0; ti < N_T; ti++)
                test_scan_case(shapes[si], regime, T_LIST[ti]);
    test_thread_invariance();
    test_conv();
    for (int m = 0; m < 8; m++)
        printf("max rel-L2 %-16s %.3g\n", g_method[m], g_max_err[m]);
    return t_done("test_ssm");
}
