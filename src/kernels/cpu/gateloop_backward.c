/*
 * gateloop_backward.c — CPU GateLoop kernels, backward: gl_prep_backward,
 * the chunked scan's backward and the materialized matrix's backward.
 * Contracts in kernels/gateloop.h; the forwards in gateloop.c.
 *
 * Complex gradients: for a complex z = zr + i·zi inside a real loss L, G_z
 * denotes ∂L/∂zr + i·∂L/∂zi. Then for z = a·w: G_w = conj(a)·G_z and
 * G_a = G_z·conj(w); for y = Re(q·S): G_S = y'·conj(q), G_q = y'·conj(S);
 * and for a real x with a(x): ∂L/∂x = Re(conj(∂a/∂x)·G_a).
 *
 * Scan backward (per head, parallel over heads; chunks in reverse): the
 * states of a chunk are recomputed from the state entering it (saved by the
 * forward), then the adjoint G_t = ∂L/∂S_t runs backwards:
 *   G_t  = dy_t ⊗ conj(q̃_t) + conj(a_{t+1})·G_{t+1}
 *   ∂q̃_t = Σ_p dy_t[p]·conj(S_t[:,p]);  ∂k̃_t = Σ_p G_t[:,p]·v_t[p];
 *   ∂v_t[p] = Σ_j Re(G_t[j,p]·conj(k̃_t[j]))
 *   with U = a_t·S_{t−1} = S_t − k̃_t ⊗ v_t:  ∂la_t = Σ_p Re(G_t·conj(U)),
 *   ∂th_t = Σ_p Im(G_t·conj(U))      (a = e^{la + i·th}: ∂a/∂la = a, ∂a/∂th = i·a)
 * Cost O(T·N·P) per head; no prefix products, no division by a.
 *
 * Materialized backward (per head): with E = exp(segment sum of la) and
 * R = Re(q̂_t·k̂_s), W[t,s] = dM[t,s]·E·R:
 *   G_q̂_t = Σ_s dM·E·conj(k̂_s),  G_k̂_s = Σ_t dM·E·conj(q̂_t)
 *   ∂la_r = Σ_{t≥r} Σ_{s<r} W[t,s]           (row prefix sums)
 *   ∂Φ_t = Im(conj(q̂_t)·G_q̂_t) − Im(conj(k̂_t)·G_k̂_t),  ∂th_r = Σ_{t≥r} ∂Φ_t
 *   ∂q̃ = e^{−iΦ}·G_q̂,  ∂k̃ = e^{iΦ}·G_k̂
 *
 * Every output has one writer and a fixed summation order: bit-identical for
 * any thread count.
 */
#include "kernels/gateloop.h"

#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gateloop_util.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// prep backward:  ∂a_mag = ∂la·sigmoid(−(a + b)),  ∂a_phase = ∂th

typedef struct prep_bwd {
    float       *da;
    const float *dla, *dth, *a, *b;
    int          lda, n, HJ;
} prep_bwd;

static void prep_bwd_run(void *arg, int ith, int nth) {
    const prep_bwd *j = arg;
    int             lo, hi, HJ = j->HJ;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *a = j->a + (size_t)r * j->lda;
        float       *da = j->da + (size_t)r * j->lda;
        for (int i = 0; i < HJ; i++) {
            float x = a[i] + (j->b ? j->b[i] : 0.0f);
            da[i] = j->dla ? j->dla[(size_t)r * HJ + i] / (1.0f + expf(x)) : 0.0f;
            da[HJ + i] = j->dth ? j->dth[(size_t)r * HJ + i] : 0.0f;
        }
    }
}

void cpu_gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla,
                          const float *dth, const float *a, const float *bias, int n, int HJ) {
    if (n <= 0 || HJ <= 0)
        return;
    prep_bwd j = {da, dla, dth, a, bias, lda, n, HJ};
    molt_pool_run(gl_nth(ex, (size_t)n, (size_t)n * (size_t)HJ * 30), prep_bwd_run, &j);
}

// ----------------------------------------------------------------------------
// chunked scan backward
//
// Work layout (floats): [gl_chunked_work: the forward's, read only]
//   sb [H, Qc, N, P]   the states S_t of the current chunk, recomputed
//   g  [H, N, P]       the adjoint G

size_t gl_chunked_backward_work(int T, int H, int N, int P, int Q) {
    if (T <= 0)
        return 0;
    size_t Qc = (size_t)(Q < T ? Q : T), NP = (size_t)N * (size_t)P;
    return gl_chunked_work(T, H, N, P, Q) + (size_t)H * (Qc + 1) * NP;
}

typedef struct scan_bwd {
    float       *dq, *dk, *dv, *dla, *dth, *sb, *g;
    const float *st, *dy, *q, *k, *v, *la, *th;
    int          ld, ldd, T, H, N, P, Q, nc;
} scan_bwd;

// the transition of (t, h, pair jj): a = e^{la}·(cos th + i sin th)
static inline void gl_a(const scan_bwd *j, int t, int h, int jj, float *ar, float *ai) {
    size_t i = (size_t)t * (size_t)(j->H * (j->N / 2)) + (size_t)h * (j->N / 2) + (size_t)jj;
    float  m = gl_decay(j->la[i]);
    *ar = m * cosf(j->th[i]);
    *ai = m * sinf(j->th[i]);
}

static void scan_bwd_head(const scan_bwd *j, int h) {
    int    N = j->N, P = j->P, J = N / 2, HJ = j->H * J, Qc = j->Q;
    size_t NP = (size_t)N * P;
    float *sb = j->sb + (size_t)h * Qc * NP, *G = j->g + (size_t)h * NP;
    memset(G, 0, sizeof(float) * NP);
    for (int c = j->nc - 1; c >= 0; c--) {
        int t0 = c * Qc, Lc = j->T - t0 < Qc ? j->T - t0 : Qc;
        // S_t for the chunk, from the state entering it
        for (int i = 0; i < Lc; i++) {
            int          t = t0 + i;
            const float *prev = i ? sb + (size_t)(i - 1) * NP : j->st + ((size_t)c * j->H + h) * NP;
            float       *cur = sb + (size_t)i * NP;
            const float *k = j->k + (size_t)t * j->ld + (size_t)h * N;
            const float *v = j->v + (size_t)t * j->ld + (size_t)h * P;
            for (int jj = 0; jj < J; jj++) {
                float ar, ai, kr = k[2 * jj], ki = k[2 * jj + 1];
                gl_a(j, t, h, jj, &ar, &ai);
                const float *pr = prev + (size_t)(2 * jj) * P, *pi = pr + P;
                float       *cr = cur + (size_t)(2 * jj) * P, *ci = cr + P;
                for (int p = 0; p < P; p++) {
                    cr[p] = ar * pr[p] - ai * pi[p] + kr * v[p];
                    ci[p] = ar * pi[p] + ai * pr[p] + ki * v[p];
                }
            }
        }
        for (int i = Lc - 1; i >= 0; i--) {
            int          t = t0 + i;
            const float *S = sb + (size_t)i * NP;
            const float *q = j->q + (size_t)t * j->ld + (size_t)h * N;
            const float *k = j->k + (size_t)t * j->ld + (size_t)h * N;
            const float *v = j->v + (size_t)t * j->ld + (size_t)h * P;
            const float *dy = j->dy + ((size_t)t * j->H + h) * P;
            float       *dq = j->dq + (size_t)t * j->ldd + (size_t)h * N;
            float       *dk = j->dk + (size_t)t * j->ldd + (size_t)h * N;
            float       *dv = j->dv + (size_t)t * j->ldd + (size_t)h * P;
            float       *dla = j->dla + (size_t)t * HJ + (size_t)h * J;
            float       *dth = j->dth + (size_t)t * HJ + (size_t)h * J;
            for (int p = 0; p < P; p++)
                dv[p] = 0.0f;
            for (int jj = 0; jj < J; jj++) {
                float        qr = q[2 * jj], qi = q[2 * jj + 1], kr = k[2 * jj], ki = k[2 * jj + 1];
                const float *Sr = S + (size_t)(2 * jj) * P, *Si = Sr + P;
                float       *Gr = G + (size_t)(2 * jj) * P, *Gi = Gr + P;
                float        sqr = 0, sqi = 0, skr = 0, ski = 0, sla = 0, sth = 0, ar, ai;
                for (int p = 0; p < P; p++) {
                    Gr[p] += dy[p] * qr; // G += dy ⊗ conj(q̃)
                    Gi[p] -= dy[p] * qi;
                    sqr += dy[p] * Sr[p];
                    sqi -= dy[p] * Si[p];
                    skr += Gr[p] * v[p];
                    ski += Gi[p] * v[p];
                    dv[p] += Gr[p] * kr + Gi[p] * ki;
                    float ur = Sr[p] - kr * v[p], ui = Si[p] - ki * v[p];
                    sla += Gr[p] * ur + Gi[p] * ui;
                    sth += Gi[p] * ur - Gr[p] * ui;
                }
                dq[2 * jj] = sqr, dq[2 * jj + 1] = sqi;
                dk[2 * jj] = skr, dk[2 * jj + 1] = ski;
                dla[jj] = sla, dth[jj] = sth;
                gl_a(j, t, h, jj, &ar, &ai); // G ← conj(a_t)·G: the adjoint of S_{t−1}
                for (int p = 0; p < P; p++) {
                    float r = ar * Gr[p] + ai * Gi[p], im = ar * Gi[p] - ai * Gr[p];
                    Gr[p] = r;
                    Gi[p] = im;
                }
            }
        }
    }
}

static void scan_bwd_run(void *arg, int ith, int nth) {
    const scan_bwd *j = arg;
    int             lo, hi;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++)
        scan_bwd_head(j, h);
}

void cpu_gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                                  float *dla, float *dth, const float *dy, const float *q,
                                  const float *k, const float *v, int ld, const float *la,
                                  const float *th, int T, int H, int N, int P, int Q,
                                  float *work) {
    if (T <= 0)
        return;
    if (Q > T)
        Q = T;
    size_t   NP = (size_t)N * P;
    float   *sb = work + gl_chunked_work(T, H, N, P, Q), *g = sb + (size_t)H * Q * NP;
    scan_bwd j = {dq, dk, dv, dla, dth, sb, g, work, dy, q, k, v, la, th,
                  ld, ldd, T, H, N, P, Q, (T + Q - 1) / Q};
    size_t cost = (size_t)T * (size_t)H * NP * 24;
    molt_pool_run(gl_nth(ex, (size_t)H, cost), scan_bwd_run, &j);
}

// ----------------------------------------------------------------------------
// materialized matrix backward
//
// Work layout (floats), per head h (slices [h]):
//   qh, kh, gq, gk [H, T, N]   q̂, k̂ and their gradients
//   cs, sn, w      [H, T, J]   cos / sin of Φ, one row of W
//   seg            [H, J]

size_t gl_materialize_backward_work(int T, int H, int N) {
    if (T <= 0)
        return 0;
    size_t HT = (size_t)H * (size_t)T, J = (size_t)N / 2;
    return HT * (4 * (size_t)N + 3 * J) + (size_t)H * J;
}

typedef struct mat_bwd {
    float       *dq, *dk, *dla, *dth, *work;
    const float *dM, *q, *k, *la, *th;
    int          ld, ldd, T, H, N;
} mat_bwd;

static void mat_bwd_head(const mat_bwd *j, int h) {
    int    T = j->T, N = j->N, J = N / 2, HJ = j->H * J;
    size_t HT = (size_t)j->H * T, oT = (size_t)h * T;
    float *qh = j->work + oT * N, *kh = qh + HT * N, *gq = kh + HT * N, *gk = gq + HT * N;
    float *cs = j->work + 4 * HT * N + oT * J, *sn = cs + HT * J, *w = sn + HT * J;
    float *seg = j->work + 4 * HT * N + 3 * HT * J + (size_t)h * J;
    // prefix phases, rotated q̂ and k̂ (as gl_materialize)
    for (int jj = 0; jj < J; jj++) {
        double f = 0.0;
        for (int t = 0; t < T; t++) {
            f = gl_wrap(f + (double)j->th[(size_t)t * HJ + (size_t)h * J + (size_t)jj]);
            float c = (float)cos(f), s = (float)sin(f);
            cs[(size_t)t * J + jj] = c, sn[(size_t)t * J + jj] = s;
            const float *q = j->q + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
            const float *k = j->k + (size_t)t * j->ld + (size_t)h * N + 2 * jj;
            gl_rot(qh + (size_t)t * N + 2 * jj, q[0], q[1], c, s);
            gl_rot(kh + (size_t)t * N + 2 * jj, k[0], k[1], c, -s);
        }
    }
    memset(gq, 0, sizeof(float) * (size_t)T * N);
    memset(gk, 0, sizeof(float) * (size_t)T * N);
    for (int t = 0; t < T; t++)
        for (int jj = 0; jj < J; jj++)
            j->dla[(size_t)t * HJ + (size_t)h * J + (size_t)jj] = 0.0f;
    for (int t = 0; t < T; t++) {
        const float *dMt = j->dM + (oT + (size_t)t) * T, *qt = qh + (size_t)t * N;
        float       *gqt = gq + (size_t)t * N;
        for (int jj = 0; jj < J; jj++)
            seg[jj] = 0.0f;
        for (int s = t; s >= 0; s--) { // W[t,s], G_q̂_t, G_k̂_s
            const float *ks = kh + (size_t)s * N, *la = j->la + (size_t)s * HJ + (size_t)h * J;
            float       *gks = gk + (size_t)s * N, *ws = w + (size_t)s * J;
            float        d = dMt[s];
            for (int jj = 0; jj < J; jj++) {
                float e = d * gl_decay(seg[jj]);
                float kr = ks[2 * jj], ki = ks[2 * jj + 1], qr = qt[2 * jj], qi = qt[2 * jj + 1];
                ws[jj] = e * (qr * kr - qi * ki);
                gqt[2 * jj] += e * kr;
                gqt[2 * jj + 1] -= e * ki;
                gks[2 * jj] += e * qr;
                gks[2 * jj + 1] -= e * qi;
                seg[jj] += la[jj];
            }
        }
        // ∂la_r += Σ_{s<r} W[t,s] for 1 ≤ r ≤ t
        for (int jj = 0; jj < J; jj++) {
            float pre = 0.0f;
            for (int r = 1; r <= t; r++) {
                pre += w[(size_t)(r - 1) * J + jj];
                j->dla[(size_t)r * HJ + (size_t)h * J + (size_t)jj] += pre;
            }
        }
    }
    // ∂Φ, ∂th (suffix sums), ∂q̃ = e^{−iΦ}·G_q̂, ∂k̃ = e^{iΦ}·G_k̂
    for (int jj = 0; jj < J; jj++) {
        double acc = 0.0;
        for (int t = T - 1; t >= 0; t--) {
            size_t o = (size_t)t * N + 2 * jj;
            float  c = cs[(size_t)t * J + jj], s = sn[(size_t)t * J + jj];
            float  dphi = (qh[o] * gq[o + 1] - qh[o + 1] * gq[o]) -
                         (kh[o] * gk[o + 1] - kh[o + 1] * gk[o]);
            acc += (double)dphi;
            j->dth[(size_t)t * HJ + (size_t)h * J + (size_t)jj] = (float)acc;
            gl_rot(j->dq + (size_t)t * j->ldd + (size_t)h * N + 2 * jj, gq[o], gq[o + 1], c, -s);
            gl_rot(j->dk + (size_t)t * j->ldd + (size_t)h * N + 2 * jj, gk[o], gk[o + 1], c, s);
        }
    }
}

static void mat_bwd_run(void *arg, int ith, int nth) {
    const mat_bwd *j = arg;
    int            lo, hi;
    molt_pool_range(j->H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++)
        mat_bwd_head(j, h);
}

void cpu_gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                                 float *dth, const float *dM, const float *q, const float *k,
                                 int ld, const float *la, const float *th, int T, int H, int N,
                                 float *work) {
    if (T <= 0)
        return;
    mat_bwd j = {dq, dk, dla, dth, work, dM, q, k, la, th, ld, ldd, T, H, N};
    size_t  cost = (size_t)H * (size_t)T * (size_t)T * (size_t)N * 6;
    molt_pool_run(gl_nth(ex, (size_t)H, cost), mat_bwd_run, &j);
}
