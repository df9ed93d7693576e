/*
 * mamba3.c — CPU forward of the Mamba-3 ops (kernels/mamba3.h; equations
 * there and in shared/docs/ALGORITHMS.md §8): cumulative angles, the row-wise
 * prep (Δ, A, λ, B/C norms + biases + rotation), the scan's inputs and the
 * within-token correction, the gate, the fold of the previous token into a
 * continued state, the decode step over state slots and the materialized
 * mixing matrix. Backward passes: mamba3_backward.c.
 *
 * Numerics: fp32 like the reference module; B/C norms as k_rmsnorm (Σ b² in
 * double, rounded once). Decays exp(dA) as the SSD kernels (SSM_EXP_FLUSH).
 *
 * Threads: molt's pool; rows (or sequence × head chains, or heads) split in
 * contiguous ranges, every output with one writer and a fixed arithmetic
 * order, so results do not depend on the thread count.
 */
#include "kernels/mamba3.h"

#include "core/core.h"
#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/mamba3_util.h"
#include "kernels/cpu/ssm_rows_util.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// angles:  φ_t = wrap(φ_{t−1} + tanh(a)·π·Δ), one chain per (sequence, head)

typedef struct ang_task {
    float *phi;
    float *const *state;
    const float *zx, *dt_bias;
    int ldz, n, T;
    const m3_rows_cfg *c;
} ang_task;

static void ang_run(void *arg, int ith, int nth) {
    const ang_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, S = c->S, nseq = j->n / j->T, lo, hi;
    molt_pool_range(nseq * H, ith, nth, &lo, &hi);
    for (int sh = lo; sh < hi; sh++) {
        int i = sh / H, h = sh % H;
        float *st = j->state ? j->state[i] + m3_off_angle(c) + (size_t)h * S : NULL;
        for (int s = 0; s < S; s++) {
            float a = st ? st[s] : 0.0f;
            for (int t = 0; t < j->T; t++) {
                size_t row = (size_t)i * j->T + t;
                const float *z = j->zx + row * j->ldz;
                float d = m3_delta(z, j->dt_bias, h, c);
                a = m3_wrap(a + m3_theta(z[m3_col_ang(c) + s]) * d);
                j->phi[(row * H + h) * S + s] = a;
            }
            if (st)
                st[s] = a;
        }
    }
}

void cpu_m3_angles(const molt_exec *ex, float *phi, float *const *state, const float *zx, int ldz,
                   const float *dt_bias, int n, int T, const m3_rows_cfg *c) {
    if (n <= 0 || c->S <= 0)
        return;
    MOLT_ASSERT(T >= 1 && n % T == 0);
    ang_task j = {phi, state, zx, dt_bias, ldz, n, T, c};
    size_t cost = (size_t)n * (size_t)c->H * (size_t)(c->S + 4) * 8;
    molt_pool_run(rows_nth(ex, (n / T) * c->H, cost), ang_run, &j);
}

// ----------------------------------------------------------------------------
// prep:  Δ, dA, λ;  q, k = Rot(φ)(norm(C|B)·w + bias)

typedef struct prep_task {
    float *q, *k, *dA, *dlt, *lam, *rstd;
    const float *zx, *phi;
    const m3_rows_w *w;
    int ldz, n;
    const m3_rows_cfg *c;
} prep_task;

static void prep_run(void *arg, int ith, int nth) {
    const prep_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, N = c->N, G = c->G, R = c->R, S = c->S, hpg = H / G, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *z = j->zx + (size_t)row * j->ldz;
        for (int h = 0; h < H; h++) {
            float d = m3_delta(z, j->w->dt_bias, h, c);
            j->dlt[(size_t)row * H + h] = d;
            j->dA[(size_t)row * H + h] = d * m3_A(z[m3_col_A(c) + h], c->A_floor);
            j->lam[(size_t)row * H + h] = rows_sigmoid(z[m3_col_trap(c) + h]);
        }
        for (int bc = 0; bc < 2; bc++) { // 0: B → k, 1: C → q
            const float *raw = z + (bc ? m3_col_C(c) : m3_col_B(c));
            const float *nw = bc ? j->w->C_norm : j->w->B_norm;
            const float *bias = bc ? j->w->C_bias : j->w->B_bias;
            float *out = bc ? j->q : j->k;
            for (int r = 0; r < R; r++)
                for (int g = 0; g < G; g++) {
                    const float *b = raw + ((size_t)r * G + g) * N;
                    float rs = 1.0f / sqrtf((float)rows_sumsq(b, N) / (float)N + c->eps);
                    if (j->rstd)
                        j->rstd[(((size_t)row * 2 + bc) * R + r) * G + g] = rs;
                    for (int h = g * hpg; h < (g + 1) * hpg; h++) {
                        float *o = out + (((size_t)row * R + r) * H + h) * N;
                        const float *bh = bias ? bias + ((size_t)h * R + r) * N : NULL;
                        for (int i = 0; i < N; i++)
                            o[i] = b[i] * rs * (nw ? nw[i] : 1.0f) + (bh ? bh[i] : 0.0f);
                        m3_rotate(o, j->phi + ((size_t)row * H + h) * S, c, 1);
                    }
                }
        }
    }
}

void cpu_m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
                 float *rstd, const float *zx, int ldz, const float *phi, const m3_rows_w *w,
                 int n, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    MOLT_ASSERT(c->N <= M3_NMAX && c->R <= M3_RMAX);
    prep_task j = {q, k, dA, dlt, lam, rstd, zx, phi, w, ldz, n, c};
    size_t cost = (size_t)n * (size_t)(4 * c->R * c->H * c->N + 8 * c->H);
    molt_pool_run(rows_nth(ex, n, cost), prep_run, &j);
}

// ----------------------------------------------------------------------------
// the scan's inputs: X[t,r] = v_{t,r}·S_t, dAx[t,r] = r == 0 ? dA_t : 0

typedef struct mix_task {
    float *X, *dAx, *ypre;
    const float *ys, *q, *k, *zx, *dA, *dlt, *lam;
    const m3_rows_w *w;
    int ldz, n, T;
    const m3_rows_cfg *c;
} mix_task;

static void mix_run(void *arg, int ith, int nth) {
    const mix_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, R = c->R, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *x = j->zx + (size_t)row * j->ldz + m3_col_x(c);
        int last = row % j->T == j->T - 1;
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++) {
                size_t o = ((size_t)row * R + r) * H + h;
                float sc = m3_gamma(j->lam, j->dlt, row, h, H) +
                           (last ? 0.0f : m3_b(j->lam, j->dlt, row + 1, h, H));
                const float *mx = j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r) * P : NULL;
                j->dAx[o] = r == 0 ? j->dA[(size_t)row * H + h] : 0.0f;
                for (int p = 0; p < P; p++)
                    j->X[o * P + p] = m3_v(x, mx, h, p, P) * sc;
            }
    }
}

void cpu_m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz,
                const float *dA, const float *dlt, const float *lam, const m3_rows_w *w, int n,
                int T, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    MOLT_ASSERT(T >= 1 && n % T == 0);
    mix_task j = {X, dAx, NULL, NULL, NULL, NULL, zx, dA, dlt, lam, w, ldz, n, T, c};
    molt_pool_run(rows_nth(ex, n, (size_t)n * c->R * c->H * c->P * 2), mix_run, &j);
}

// ----------------------------------------------------------------------------
// correction:  ypre[t,r] = ys[t,r] + Σ_r' (q_r·k_r') v_r' (r' > r ? γ : −b_{t+1}) + D v_r

static void corr_run(void *arg, int ith, int nth) {
    const mix_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, N = c->N, R = c->R, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *x = j->zx + (size_t)row * j->ldz + m3_col_x(c);
        int last = row % j->T == j->T - 1;
        for (int h = 0; h < H; h++) {
            float gam = m3_gamma(j->lam, j->dlt, row, h, H);
            float bn = last ? 0.0f : m3_b(j->lam, j->dlt, row + 1, h, H);
            float D = j->w->D ? j->w->D[h] : 0.0f, cw[M3_RMAX * M3_RMAX];
            for (int r = 0; r < R; r++)
                for (int r2 = 0; r2 < R; r2++)
                    cw[r * R + r2] = k_dotf(j->q + (((size_t)row * R + r) * H + h) * N,
                                            j->k + (((size_t)row * R + r2) * H + h) * N, N) *
                                     (r2 > r ? gam : -bn);
            for (int r = 0; r < R; r++) {
                size_t o = (((size_t)row * R + r) * H + h) * P;
                const float *mxr = j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r) * P : NULL;
                for (int p = 0; p < P; p++) {
                    float acc = j->ys[o + p];
                    for (int r2 = 0; r2 < R; r2++) {
                        const float *mx2 =
                            j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r2) * P : NULL;
                        acc += cw[r * R + r2] * m3_v(x, mx2, h, p, P);
                    }
                    j->ypre[o + p] = acc + D * m3_v(x, mxr, h, p, P);
                }
            }
        }
    }
}

void cpu_m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q,
                 const float *k, const float *zx, int ldz, const float *dlt, const float *lam,
                 const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    MOLT_ASSERT(T >= 1 && n % T == 0 && c->R <= M3_RMAX);
    mix_task j = {NULL, NULL, ypre, ys, q, k, zx, NULL, dlt, lam, w, ldz, n, T, c};
    size_t cost = (size_t)n * c->R * c->H * ((size_t)c->R * (c->N + c->P) + c->P);
    molt_pool_run(rows_nth(ex, n, cost), corr_run, &j);
}

// ----------------------------------------------------------------------------
// gate:  g = Σ_r mimo_o_r ⊙ gate(ypre_r, z ⊙ mimo_z_r)

typedef struct gate_task {
    float *g, *rstd;
    const float *ypre, *zx;
    const m3_rows_w *w;
    int ldz, n;
    const m3_rows_cfg *c;
} gate_task;

static void gate_run(void *arg, int ith, int nth) {
    const gate_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, R = c->R, Di = H * P, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *z = j->zx + (size_t)row * j->ldz;
        float *g = j->g + (size_t)row * Di;
        for (int h = 0; h < H; h++)
            for (int r = 0; r < R; r++) {
                size_t o = ((size_t)row * R + r) * H + h;
                const float *y = j->ypre + o * P;
                float rs = 1.0f;
                if (c->norm) {
                    rs = 1.0f / sqrtf((float)rows_sumsq(y, P) / (float)P + c->eps);
                    if (j->rstd)
                        j->rstd[o] = rs;
                }
                size_t wo = ((size_t)h * R + r) * P;
                for (int p = 0; p < P; p++) {
                    float zz = z[h * P + p] * (j->w->mimo_z ? j->w->mimo_z[wo + p] : 1.0f);
                    float yn = c->norm ? y[p] * rs * j->w->norm[h * P + p] : y[p];
                    float yg = yn * k_silu(zz);
                    if (j->w->mimo_o)
                        yg *= j->w->mimo_o[wo + p];
                    g[h * P + p] = r == 0 ? yg : g[h * P + p] + yg;
                }
            }
    }
}

void cpu_m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre, const float *zx,
                 int ldz, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    gate_task j = {g, rstd, ypre, zx, w, ldz, n, c};
    molt_pool_run(rows_nth(ex, n, (size_t)n * c->R * c->H * c->P * 6), gate_run, &j);
}

// ----------------------------------------------------------------------------
// fold:  ssm += b_1·Σ_r v_prev,r ⊗ k_prev,r   (one state block)

typedef struct fold_task {
    float *st;
    const float *dlt, *lam;
    const m3_rows_w *w;
    const m3_rows_cfg *c;
} fold_task;

static void fold_run(void *arg, int ith, int nth) {
    const fold_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, N = c->N, R = c->R, lo, hi;
    const float *kp = j->st + m3_off_kprev(c), *vp = j->st + m3_off_vprev(c);
    molt_pool_range(H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        float b = m3_b(j->lam, j->dlt, 0, h, H);
        for (int p = 0; p < P; p++) {
            float *s = j->st + ((size_t)h * P + p) * N;
            for (int r = 0; r < R; r++) {
                const float *mx = j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r) * P : NULL;
                float v = b * m3_v(vp, mx, h, p, P);
                const float *kr = kp + ((size_t)r * H + h) * N;
                for (int i = 0; i < N; i++)
                    s[i] += v * kr[i];
            }
        }
    }
}

void cpu_m3_fold(const molt_exec *ex, float *state, const float *dlt, const float *lam,
                 const m3_rows_w *w, const m3_rows_cfg *c) {
    fold_task j = {state, dlt, lam, w, c};
    size_t cost = (size_t)c->R * c->H * c->P * c->N * 2;
    molt_pool_run(rows_nth(ex, c->H, cost), fold_run, &j);
}

// ----------------------------------------------------------------------------
// decode step over state slots: one item per (row, head), each owning its
// slices of the row's state (ssm[h], k_prev[:, h], v_prev[h])

typedef struct step_task {
    float *ypre;
    float *const *state;
    const float *q, *k, *zx, *dA, *dlt, *lam;
    const m3_rows_w *w;
    int ldz, n;
    const m3_rows_cfg *c;
} step_task;

static void step_run(void *arg, int ith, int nth) {
    const step_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, N = c->N, R = c->R, lo, hi;
    molt_pool_range(j->n * H, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        int row = it / H, h = it % H;
        float *st = j->state[row], *kp = st + m3_off_kprev(c), *vp = st + m3_off_vprev(c);
        const float *x = j->zx + (size_t)row * j->ldz + m3_col_x(c);
        float dA = j->dA[(size_t)row * H + h], a = m3_decay(dA);
        float gam = m3_gamma(j->lam, j->dlt, row, h, H);
        float bet = m3_b(j->lam, j->dlt, row, h, H) * a;
        float D = j->w->D ? j->w->D[h] : 0.0f;
        for (int p = 0; p < P; p++) {
            float *s = st + ((size_t)h * P + p) * N;
            for (int i = 0; i < N; i++)
                s[i] *= a;
            for (int r = 0; r < R; r++) {
                const float *mx = j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r) * P : NULL;
                float vpr = bet * m3_v(vp, mx, h, p, P), vr = gam * m3_v(x, mx, h, p, P);
                const float *kpr = kp + ((size_t)r * H + h) * N;
                const float *kr = j->k + (((size_t)row * R + r) * H + h) * N;
                for (int i = 0; i < N; i++)
                    s[i] += vpr * kpr[i] + vr * kr[i];
            }
            for (int r = 0; r < R; r++) {
                const float *mx = j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + r) * P : NULL;
                size_t o = ((size_t)row * R + r) * H + h;
                j->ypre[o * P + p] = k_dotf(s, j->q + o * N, N) + D * m3_v(x, mx, h, p, P);
            }
        }
        for (int r = 0; r < R; r++)
            memcpy(kp + ((size_t)r * H + h) * N, j->k + (((size_t)row * R + r) * H + h) * N,
                   sizeof(float) * (size_t)N);
        memcpy(vp + (size_t)h * P, x + (size_t)h * P, sizeof(float) * (size_t)P);
    }
}

void cpu_m3_step_rows(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                      const float *k, const float *zx, int ldz, const float *dA,
                      const float *dlt, const float *lam, const m3_rows_w *w, int n,
                      const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    step_task j = {ypre, state, q, k, zx, dA, dlt, lam, w, ldz, n, c};
    size_t cost = (size_t)n * c->H * c->P * c->N * (size_t)(2 * c->R + 2);
    molt_pool_run(rows_nth(ex, n * c->H, cost), step_run, &j);
}

// ----------------------------------------------------------------------------
// materialized matrix, ranks averaged (q̄, k̄ into work [2][T,H,N] first)

size_t m3_materialize_work(int T, const m3_rows_cfg *c) {
    return T > 0 ? 2 * (size_t)T * (size_t)c->H * (size_t)c->N : 0;
}

typedef struct mat_task {
    float *M, *qb, *kb;
    const float *q, *k, *dA, *dlt, *lam, *D;
    int T, nonpos;
    const m3_rows_cfg *c;
} mat_task;

static void mat_means(void *arg, int ith, int nth) {
    const mat_task *j = arg;
    int lo, hi;
    molt_pool_range(j->T, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++)
        m3_rank_mean(j->qb, j->kb, j->q, j->k, t, j->c);
}

static void mat_rows(void *arg, int ith, int nth) {
    const mat_task *j = arg;
    int T = j->T, H = j->c->H, N = j->c->N, lo, hi;
    molt_pool_range(H * T, ith, nth, &lo, &hi);
    for (int ht = lo; ht < hi; ht++) {
        int h = ht / T, t = ht % T;
        float *Mt = j->M + (size_t)ht * T, seg = 0.0f;
        const float *qt = j->qb + ((size_t)t * H + h) * N;
        for (int s = t; s >= 0; s--) {
            if (seg < SSM_EXP_FLUSH) {
                if (j->nonpos) {
                    memset(Mt, 0, sizeof(float) * (size_t)(s + 1));
                    break;
                }
                Mt[s] = 0.0f;
            } else {
                float wgt = s == t ? m3_gamma(j->lam, j->dlt, t, h, H)
                                   : m3_gamma(j->lam, j->dlt, s, h, H) +
                                         m3_b(j->lam, j->dlt, s + 1, h, H);
                Mt[s] = k_dotf(qt, j->kb + ((size_t)s * H + h) * N, N) * expf(seg) * wgt;
            }
            seg += j->dA[(size_t)s * H + h];
        }
        for (int s = t + 1; s < T; s++)
            Mt[s] = 0.0f;
        if (j->D)
            Mt[t] += j->D[h] / (float)j->c->R;
    }
}

void cpu_m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                        const float *dA, const float *dlt, const float *lam, const float *D, int T,
                        const m3_rows_cfg *c, float *work) {
    if (T <= 0)
        return;
    size_t THN = (size_t)T * c->H * c->N;
    mat_task j = {M,   work, work + THN, q, k, dA, dlt, lam, D, T,
                  m3_all_nonpos(dA, (size_t)T * c->H), c};
    molt_pool_run(rows_nth(ex, T, THN * (size_t)c->R * 2), mat_means, &j);
    size_t rows = (size_t)c->H * (size_t)T;
    molt_pool_run(rows_nth(ex, (int)MOLT_MIN(rows, (size_t)1 << 30),
                           rows * (size_t)T * (size_t)(c->N + 4) / 2),
                  mat_rows, &j);
}
