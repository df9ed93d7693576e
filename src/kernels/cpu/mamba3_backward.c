/*
 * mamba3_backward.c — CPU backward passes of the Mamba-3 ops
 * (kernels/mamba3.h; forwards in mamba3.c, shared pieces in mamba3_util.h).
 *
 * Chain rule, per row t and head h (γ = λΔ, b = (1 − λ)Δ, S_t = γ_t + b_{t+1}):
 *   angles   φ_t = φ_{t−1} + θΔ:  ψ_t = Σ_{t'≥t} ∂φ_t';  ∂θ = Σ_h ψ·Δ,  ∂Δ += Σ_s ψ·θ
 *   prep     ∂Δ = ∂dA·A + ∂γ·λ + ∂b·(1 − λ);  ∂λ = (∂γ − ∂b)·Δ;  ∂dd_A = ∂dA·Δ·A'
 *            rotation (a, b) → (a c − b s, a s + b c):  ∂φ = −∂ã·b̃ + ∂b̃·ã,
 *            unrotated ∂ = Rot(−φ)∂;  bias ∂ = that;  norm: the RMSNorm backward
 *            of the group's summed head gradients
 *   mix/corr ∂v_r' = ∂X_r'·S + D·∂y_r' + Σ_r ∂y_r·(q_r·k_r')·w_rr';  ∂S = Σ ∂X·v
 *            w_rr' = γ (r' > r), −b_{t+1} (r' ≤ r):  ∂(q_r·k_r') = w_rr'·∂y_r·v_r'
 *   gate     the (normed) product with silu(z ⊙ mimo_z), summed with mimo_o
 * Cross-row terms (b_{t+1} in row t's S and correction) are written as ∂b of
 * row t+1 by row t: every output still has exactly one writer.
 *
 * Threads: as mamba3.c — rows, chains or heads in contiguous ranges, one
 * writer per output, fixed order: bit-identical for any thread count.
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
// angles

typedef struct angb_task {
    float *dzx, *dphi;
    const float *zx, *dt_bias;
    int ldz, n, T;
    const m3_rows_cfg *c;
} angb_task;

// ψ in place, one chain per (sequence, head, angle)
static void angb_chains(void *arg, int ith, int nth) {
    const angb_task *j = arg;
    int H = j->c->H, S = j->c->S, nseq = j->n / j->T, lo, hi;
    molt_pool_range(nseq * H * S, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        int i = it / (H * S), hs = it % (H * S);
        float psi = 0.0f;
        for (int t = j->T - 1; t >= 0; t--) {
            float *d = j->dphi + ((size_t)i * j->T + t) * H * S + hs;
            psi += *d;
            *d = psi;
        }
    }
}

static void angb_rows(void *arg, int ith, int nth) {
    const angb_task *j = arg;
    const m3_rows_cfg *c = j->c;
    int H = c->H, S = c->S, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *z = j->zx + (size_t)row * j->ldz, *psi = j->dphi + (size_t)row * H * S;
        float *dz = j->dzx + (size_t)row * j->ldz;
        for (int s = 0; s < S; s++) {
            float th = tanhf(z[m3_col_ang(c) + s]), acc = 0.0f;
            for (int h = 0; h < H; h++)
                acc += psi[h * S + s] * m3_delta(z, j->dt_bias, h, c);
            dz[m3_col_ang(c) + s] = acc * M3_PI * (1.0f - th * th);
        }
        for (int h = 0; h < H; h++) {
            float acc = 0.0f;
            for (int s = 0; s < S; s++)
                acc += psi[h * S + s] * m3_theta(z[m3_col_ang(c) + s]);
            float v = z[m3_col_dt(c) + h] + (j->dt_bias ? j->dt_bias[h] : 0.0f);
            dz[m3_col_dt(c) + h] += acc * rows_dsoftplus(v);
        }
    }
}

void cpu_m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi, const float *zx,
                            int ldz, const float *dt_bias, int n, int T, const m3_rows_cfg *c) {
    if (n <= 0 || c->S <= 0)
        return;
    MOLT_ASSERT(T >= 1 && n % T == 0);
    angb_task j = {dzx, dphi, zx, dt_bias, ldz, n, T, c};
    size_t cost = (size_t)n * c->H * (size_t)c->S * 8;
    molt_pool_run(rows_nth(ex, (n / T) * c->H * c->S, cost), angb_chains, &j);
    molt_pool_run(rows_nth(ex, n, cost), angb_rows, &j);
}

// ----------------------------------------------------------------------------
// prep

typedef struct prepb_task {
    float *dzx, *dphi, *dBn, *dCn, *dBb, *dCb;
    const float *dq, *dk, *ddA, *dgam, *dbet, *q, *k, *rstd, *zx, *phi;
    const m3_rows_w *w;
    int ldz, n;
    const m3_rows_cfg *c;
} prepb_task;

static void prepb_row(const prepb_task *j, int row) {
    const m3_rows_cfg *c = j->c;
    int H = c->H, N = c->N, G = c->G, R = c->R, S = c->S, hpg = H / G;
    const float *z = j->zx + (size_t)row * j->ldz;
    float *dz = j->dzx + (size_t)row * j->ldz, *dphi = j->dphi + (size_t)row * H * S;
    for (int i = 0; i < H * S; i++)
        dphi[i] = 0.0f;
    for (int h = 0; h < H; h++) {
        size_t o = (size_t)row * H + h;
        float d = m3_delta(z, j->w->dt_bias, h, c), a = z[m3_col_A(c) + h];
        float lam = rows_sigmoid(z[m3_col_trap(c) + h]);
        float dd = j->ddA[o] * m3_A(a, c->A_floor) + j->dgam[o] * lam + j->dbet[o] * (1.0f - lam);
        float v = z[m3_col_dt(c) + h] + (j->w->dt_bias ? j->w->dt_bias[h] : 0.0f);
        dz[m3_col_dt(c) + h] = dd * rows_dsoftplus(v);
        dz[m3_col_A(c) + h] = j->ddA[o] * d * m3_dA_da(a, c->A_floor);
        dz[m3_col_trap(c) + h] = (j->dgam[o] - j->dbet[o]) * d * lam * (1.0f - lam);
    }
    float du[M3_NMAX], acc[M3_NMAX];
    for (int bc = 0; bc < 2; bc++) { // 0: B (k), 1: C (q)
        const float *raw = z + (bc ? m3_col_C(c) : m3_col_B(c));
        const float *nw = bc ? j->w->C_norm : j->w->B_norm;
        const float *gv = bc ? j->dq : j->dk, *val = bc ? j->q : j->k;
        float *dbias = bc ? j->dCb : j->dBb, *dnw = bc ? j->dCn : j->dBn;
        float *draw = dz + (bc ? m3_col_C(c) : m3_col_B(c));
        for (int r = 0; r < R; r++)
            for (int g = 0; g < G; g++) {
                const float *b = raw + ((size_t)r * G + g) * N;
                for (int i = 0; i < N; i++)
                    acc[i] = 0.0f;
                for (int h = g * hpg; h < (g + 1) * hpg; h++) {
                    size_t o = (((size_t)row * R + r) * H + h) * N;
                    const float *vr = val + o;
                    memcpy(du, gv + o, sizeof(float) * (size_t)N);
                    for (int s = 0; s < S; s++) {
                        int ia, ib;
                        m3_pair(c, s, &ia, &ib);
                        dphi[h * S + s] += du[ib] * vr[ia] - du[ia] * vr[ib];
                    }
                    m3_rotate(du, j->phi + ((size_t)row * H + h) * S, c, -1);
                    if (dbias)
                        memcpy(dbias + (((size_t)row * H + h) * R + r) * N, du,
                               sizeof(float) * (size_t)N);
                    for (int i = 0; i < N; i++)
                        acc[i] += du[i];
                }
                float rs = j->rstd[(((size_t)row * 2 + bc) * R + r) * G + g];
                double dot = 0.0;
                for (int i = 0; i < N; i++) {
                    float wi = nw ? nw[i] : 1.0f;
                    dot += (double)acc[i] * (double)wi * (double)b[i];
                    if (dnw) {
                        float t = acc[i] * b[i] * rs, *dn = dnw + (size_t)row * N + i;
                        *dn = r == 0 && g == 0 ? t : *dn + t;
                    }
                }
                float f = (float)dot * rs * rs * rs / (float)N;
                for (int i = 0; i < N; i++)
                    draw[((size_t)r * G + g) * N + i] =
                        rs * acc[i] * (nw ? nw[i] : 1.0f) - b[i] * f;
            }
    }
}

static void prepb_run(void *arg, int ith, int nth) {
    const prepb_task *j = arg;
    int lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++)
        prepb_row(j, row);
}

void cpu_m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                          float *dBb, float *dCb, const float *dq, const float *dk,
                          const float *ddA, const float *dgam, const float *dbet, const float *q,
                          const float *k, const float *rstd, const float *zx, int ldz,
                          const float *phi, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    MOLT_ASSERT(c->N <= M3_NMAX && c->R <= M3_RMAX);
    prepb_task j = {dzx, dphi, dBn, dCn, dBb, dCb, dq,  dk,  ddA, dgam, dbet,
                    q,   k,    rstd, zx, phi, w,   ldz, n,   c};
    size_t cost = (size_t)n * (size_t)(8 * c->R * c->H * c->N + 8 * c->H);
    molt_pool_run(rows_nth(ex, n, cost), prepb_run, &j);
}

// ----------------------------------------------------------------------------
// mix + corr

typedef struct mixb_task {
    float *dzx, *dq, *dk, *ddA, *dgam, *dbet, *dmx, *hsD;
    const float *dX, *ddAx, *dyp, *q, *k, *zx, *dlt, *lam;
    const m3_rows_w *w;
    int ldz, n, T;
    const m3_rows_cfg *c;
} mixb_task;

static void mixb_head(const mixb_task *j, int row, int h) {
    const m3_rows_cfg *c = j->c;
    int H = c->H, P = c->P, N = c->N, R = c->R;
    const float *x = j->zx + (size_t)row * j->ldz + m3_col_x(c);
    float *dx = j->dzx + (size_t)row * j->ldz + m3_col_x(c) + (size_t)h * P;
    int last = row % j->T == j->T - 1;
    float gam = m3_gamma(j->lam, j->dlt, row, h, H);
    float bn = last ? 0.0f : m3_b(j->lam, j->dlt, row + 1, h, H), sc = gam + bn;
    float D = j->w->D ? j->w->D[h] : 0.0f;
    float cqk[M3_RMAX * M3_RMAX], e[M3_RMAX * M3_RMAX];
#define MX(r)   (j->w->mimo_x ? j->w->mimo_x + ((size_t)h * R + (r)) * P : NULL)
#define ROW(r)  ((((size_t)row * R + (r)) * H + h))
    for (int r = 0; r < R; r++)
        for (int r2 = 0; r2 < R; r2++) {
            cqk[r * R + r2] = k_dotf(j->q + ROW(r) * N, j->k + ROW(r2) * N, N);
            float s = 0.0f; // Σ_p ∂y_r·v_r2
            for (int p = 0; p < P; p++)
                s += j->dyp[ROW(r) * P + p] * m3_v(x, MX(r2), h, p, P);
            e[r * R + r2] = s;
        }
    float dS = 0.0f, dgc = 0.0f, dbc = 0.0f, hd = 0.0f;
    for (int r2 = 0; r2 < R; r2++) {
        const float *dX = j->dX + ROW(r2) * P, *dy2 = j->dyp + ROW(r2) * P;
        for (int p = 0; p < P; p++) {
            float v = m3_v(x, MX(r2), h, p, P);
            float dv = dX[p] * sc + D * dy2[p];
            for (int r = 0; r < R; r++)
                dv += j->dyp[ROW(r) * P + p] * cqk[r * R + r2] * (r2 > r ? gam : -bn);
            dS += dX[p] * v;
            hd += dy2[p] * v;
            if (MX(r2)) {
                j->dmx[(((size_t)row * H + h) * R + r2) * P + p] = dv * x[(size_t)h * P + p];
                dx[p] = r2 == 0 ? dv * MX(r2)[p] : dx[p] + dv * MX(r2)[p];
            } else {
                dx[p] = dv;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int r2 = 0; r2 < R; r2++) {
            float ce = cqk[r * R + r2] * e[r * R + r2];
            if (r2 > r)
                dgc += ce;
            else
                dbc -= ce;
            float dc = (r2 > r ? gam : -bn) * e[r * R + r2];
            float *dqr = j->dq + ROW(r) * N, *dkr = j->dk + ROW(r2) * N;
            const float *qr = j->q + ROW(r) * N, *kr = j->k + ROW(r2) * N;
            for (int i = 0; i < N; i++) {
                dqr[i] += dc * kr[i];
                dkr[i] += dc * qr[i];
            }
        }
#undef MX
#undef ROW
    size_t o = (size_t)row * H + h;
    j->ddA[o] = j->ddAx[(size_t)row * R * H + h];
    j->dgam[o] = dS + dgc;
    if (!last)
        j->dbet[o + H] = dS + dbc;
    if (row % j->T == 0)
        j->dbet[o] = 0.0f;
    if (j->hsD)
        j->hsD[o] = hd;
}

// rows in contiguous ranges; dq/dk of a row are touched only by its heads, in order
static void mixb_run(void *arg, int ith, int nth) {
    const mixb_task *j = arg;
    int lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++)
        for (int h = 0; h < j->c->H; h++)
            mixb_head(j, row, h);
}

void cpu_m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                         float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                         const float *ddAx, const float *dypre, const float *q, const float *k,
                         const float *zx, int ldz, const float *dlt, const float *lam,
                         const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    MOLT_ASSERT(T >= 1 && n % T == 0 && c->R <= M3_RMAX);
    MOLT_ASSERT(!w->mimo_x || dmx);
    mixb_task j = {dzx, dq, dk, ddA, dgam, dbet, dmx, hsD, dX, ddAx, dypre, q, k,
                   zx,  dlt, lam, w, ldz, n, T, c};
    size_t cost =
        (size_t)n * c->H * (size_t)c->R * ((size_t)c->R * (3 * c->P + 3 * c->N) + 4 * c->P);
    molt_pool_run(rows_nth(ex, n, cost), mixb_run, &j);
}

// ----------------------------------------------------------------------------
// gate

typedef struct gateb_task {
    float *dyp, *dzx, *dmz, *dmo, *dnw;
    const float *dg, *ypre, *zx, *rstd;
    const m3_rows_w *w;
    int ldz, n;
    const m3_rows_cfg *c;
} gateb_task;

static void gateb_run(void *arg, int ith, int nth) {
    const gateb_task *j = arg;
    const m3_rows_cfg *c = j->c;
    const m3_rows_w *w = j->w;
    int H = c->H, P = c->P, R = c->R, Di = H * P, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int row = lo; row < hi; row++) {
        const float *z = j->zx + (size_t)row * j->ldz, *dg = j->dg + (size_t)row * Di;
        float *dz = j->dzx + (size_t)row * j->ldz;
        for (int h = 0; h < H; h++)
            for (int r = 0; r < R; r++) {
                size_t o = ((size_t)row * R + r) * H + h, wo = ((size_t)h * R + r) * P;
                const float *y = j->ypre + o * P;
                float *dy = j->dyp + o * P;
                float rs = c->norm ? j->rstd[o] : 1.0f, dot = 0.0f;
                if (c->norm) // Σ_p ∂yn·w·y  (∂yn = ∂g_r·silu(zz))
                    for (int p = 0; p < P; p++) {
                        float zz = z[h * P + p] * (w->mimo_z ? w->mimo_z[wo + p] : 1.0f);
                        float dgr = dg[h * P + p] * (w->mimo_o ? w->mimo_o[wo + p] : 1.0f);
                        dot += dgr * k_silu(zz) * w->norm[h * P + p] * y[p];
                    }
                float f = dot * rs * rs * rs / (float)P;
                for (int p = 0; p < P; p++) {
                    float zz = z[h * P + p] * (w->mimo_z ? w->mimo_z[wo + p] : 1.0f);
                    float dgr = dg[h * P + p] * (w->mimo_o ? w->mimo_o[wo + p] : 1.0f);
                    float sz = k_silu(zz);
                    float yn = c->norm ? y[p] * rs * w->norm[h * P + p] : y[p];
                    if (j->dmo)
                        j->dmo[((size_t)row * H + h) * R * P + (size_t)r * P + p] =
                            dg[h * P + p] * yn * sz;
                    if (c->norm) {
                        float dyn = dgr * sz;
                        if (j->dnw) {
                            float t = dyn * y[p] * rs;
                            float *d = j->dnw + (size_t)row * Di + h * P + p;
                            *d = r == 0 ? t : *d + t;
                        }
                        dy[p] = rs * dyn * w->norm[h * P + p] - y[p] * f;
                    } else {
                        dy[p] = dgr * sz;
                    }
                    float dzz = dgr * yn * rows_dsilu(zz);
                    if (w->mimo_z) {
                        if (j->dmz)
                            j->dmz[((size_t)row * H + h) * R * P + (size_t)r * P + p] =
                                dzz * z[h * P + p];
                        float t = dzz * w->mimo_z[wo + p];
                        dz[h * P + p] = r == 0 ? t : dz[h * P + p] + t;
                    } else {
                        dz[h * P + p] = dzz;
                    }
                }
            }
    }
}

void cpu_m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz, float *dmo,
                          float *dnw, const float *dg, const float *ypre, const float *zx,
                          int ldz, const float *rstd, const m3_rows_w *w, int n,
                          const m3_rows_cfg *c) {
    if (n <= 0)
        return;
    gateb_task j = {dypre, dzx, dmz, dmo, dnw, dg, ypre, zx, rstd, w, ldz, n, c};
    molt_pool_run(rows_nth(ex, n, (size_t)n * c->R * c->H * c->P * 12), gateb_run, &j);
}

// ----------------------------------------------------------------------------
// materialized matrix. work: q̄, k̄, ∂q̄, ∂k̄ [T,H,N], row [H,T], ∂S [H,T]

size_t m3_materialize_backward_work(int T, const m3_rows_cfg *c) {
    if (T <= 0)
        return 0;
    return 4 * (size_t)T * c->H * c->N + 2 * (size_t)c->H * T;
}

typedef struct matb_task {
    float *dq, *dk, *ddA, *dgam, *dbet, *dD;
    float *qb, *kb, *dqb, *dkb, *row, *dS;
    const float *dM, *q, *k, *dA, *dlt, *lam;
    int T, nonpos;
    const m3_rows_cfg *c;
} matb_task;

static void matb_means(void *arg, int ith, int nth) {
    const matb_task *j = arg;
    int lo, hi;
    molt_pool_range(j->T, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++)
        m3_rank_mean(j->qb, j->kb, j->q, j->k, t, j->c);
}

static void matb_heads(void *arg, int ith, int nth) {
    const matb_task *j = arg;
    int T = j->T, H = j->c->H, N = j->c->N, lo, hi;
    molt_pool_range(H, ith, nth, &lo, &hi);
    for (int h = lo; h < hi; h++) {
        float *w = j->row + (size_t)h * T, *dS = j->dS + (size_t)h * T, dDh = 0.0f;
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * H + h;
            j->ddA[o] = j->dgam[o] = 0.0f;
            dS[t] = 0.0f;
            memset(j->dqb + o * N, 0, sizeof(float) * (size_t)N);
            memset(j->dkb + o * N, 0, sizeof(float) * (size_t)N);
        }
        for (int t = 0; t < T; t++) {
            const float *dMt = j->dM + ((size_t)h * T + t) * T;
            const float *qt = j->qb + ((size_t)t * H + h) * N;
            float *dqt = j->dqb + ((size_t)t * H + h) * N, seg = 0.0f;
            int s_lo = 0;
            dDh += dMt[t];
            for (int s = t; s >= 0; s--) {
                if (seg < SSM_EXP_FLUSH) {
                    w[s] = 0.0f;
                    if (j->nonpos) {
                        s_lo = s;
                        break;
                    }
                    seg += j->dA[(size_t)s * H + h];
                    continue;
                }
                const float *ks = j->kb + ((size_t)s * H + h) * N;
                float m = dMt[s], L = expf(seg), cc = k_dotf(qt, ks, N);
                float wgt = s == t ? m3_gamma(j->lam, j->dlt, t, h, H)
                                   : m3_gamma(j->lam, j->dlt, s, h, H) +
                                         m3_b(j->lam, j->dlt, s + 1, h, H);
                float gl = m * L * wgt;
                float *dks = j->dkb + ((size_t)s * H + h) * N;
                for (int i = 0; i < N; i++) {
                    dqt[i] += gl * ks[i];
                    dks[i] += gl * qt[i];
                }
                if (s == t)
                    j->dgam[(size_t)t * H + h] += m * cc;
                else
                    dS[s] += m * cc * L;
                w[s] = gl * cc;
                seg += j->dA[(size_t)s * H + h];
            }
            float acc = 0.0f;
            for (int kk = s_lo + 1; kk <= t; kk++) {
                acc += w[kk - 1];
                j->ddA[(size_t)kk * H + h] += acc;
            }
        }
        for (int t = 0; t < T; t++) { // S_s = γ_s + b_{s+1}
            j->dgam[(size_t)t * H + h] += dS[t];
            if (t + 1 < T)
                j->dbet[(size_t)(t + 1) * H + h] = dS[t];
        }
        j->dbet[h] = 0.0f;
        if (j->dD)
            j->dD[h] += dDh / (float)j->c->R;
    }
}

static void matb_expand(void *arg, int ith, int nth) {
    const matb_task *j = arg;
    int H = j->c->H, N = j->c->N, R = j->c->R, lo, hi;
    molt_pool_range(j->T, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++)
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < N; i++) {
                    size_t src = ((size_t)t * H + h) * N + i;
                    size_t dst = (((size_t)t * R + r) * H + h) * N + i;
                    j->dq[dst] = j->dqb[src] / (float)R;
                    j->dk[dst] = j->dkb[src] / (float)R;
                }
}

void cpu_m3_materialize_backward(const molt_exec *ex, float *dq, float *dk, float *ddA,
                                 float *dgam, float *dbet, float *dD, const float *dM,
                                 const float *q, const float *k, const float *dA,
                                 const float *dlt, const float *lam, const float *D, int T,
                                 const m3_rows_cfg *c, float *work) {
    if (T <= 0)
        return;
    size_t THN = (size_t)T * c->H * c->N, HT = (size_t)c->H * T;
    matb_task j = {dq,   dk,       ddA,          dgam,         dbet,     D ? dD : NULL,
                   work, work + THN, work + 2 * THN, work + 3 * THN, work + 4 * THN,
                   work + 4 * THN + HT, dM, q, k, dA, dlt, lam, T,
                   m3_all_nonpos(dA, (size_t)T * c->H), c};
    size_t cost = THN * (size_t)c->R * 2;
    molt_pool_run(rows_nth(ex, T, cost), matb_means, &j);
    molt_pool_run(rows_nth(ex, c->H, HT * (size_t)T * (size_t)(3 * c->N + 4) / 2), matb_heads, &j);
    molt_pool_run(rows_nth(ex, T, cost), matb_expand, &j);
}
