/*
 * mamba3_train.c — training forward / backward of the Mamba-3 mixer over B
 * independent sequences (each from a zero state, the chunked form of
 * mamba3.c), and of its materialized mixing matrix (MOHAWK stage 1).
 * Contracts in mixers/mamba3.h; the op contracts in kernels/mamba3.h.
 *
 * Forward stages and the backward as the same list in reverse:
 *   1 proj    zx = u·in_projᵀ                 du = dzx·in_proj, d in_proj += dzxᵀ·u
 *   2 angles  φ (m3_angles, per sequence)     m3_angles_backward (angles, +Δ), dt_bias
 *   3 prep    q, k, dA, Δ, λ (m3_prep)        m3_prep_backward; norms, biases
 *   4 mix     X, dAx (m3_mix)                 m3_mix_backward (with 6); mimo_x, D
 *   5 scan    ssd_scan_chunked per sequence   ssd_scan_chunked_backward per sequence
 *   6 corr    ypre (m3_corr)                  (in m3_mix_backward)
 *   7 gate    g (m3_gate)                     m3_gate_backward; mimo_z, mimo_o, norm
 *   8 out     y = g·out_projᵀ                 dg = dy·out_proj, d out_proj += dyᵀ·g
 * Parameter gradients: per-row partials summed by k_colsum (rows in order, in
 * double), so the backward is bit-identical for any thread count.
 *
 * Letters: B sequences, T tokens, BT rows, d, Di = H·P, N, G, R, S, Rin
 * (mixers/mamba3.h). Row r = b·T + t.
 */
#include "mixers/mamba3.h"

#include "core/core.h"
#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"

#include <stdint.h>
#include <string.h>

typedef struct dims {
    int    B, T, BT, d, Rin, Di, H, P, N, G, R, S, TR, QR;
    size_t sw, sbw, mw, mbw; // scan fwd / bwd, materialize fwd / bwd work per sequence
} dims;

static void dims_of(dims *m, const mamba3_cfg *c, int B, int T) {
    m3_rows_cfg rc = mamba3_rows_of(c);
    m->B = B, m->T = T, m->BT = B * T, m->d = c->d_model, m->Rin = m3_in_rows(&rc);
    m->Di = c->d_inner, m->H = c->H, m->P = c->P, m->N = c->N, m->G = c->G, m->R = c->R;
    m->S = rc.S, m->TR = T * c->R, m->QR = c->chunk * c->R;
    m->sw = ssd_chunked_work(m->TR, m->H, m->P, m->N, m->H, m->QR);
    m->sbw = ssd_chunked_backward_work(m->TR, m->H, m->P, m->N, m->H, m->QR);
    m->mw = m3_materialize_work(T, &rc);
    m->mbw = m3_materialize_backward_work(T, &rc);
}

typedef struct job {
    const molt_exec      *ex;
    dims                  m;
    m3_rows_cfg           rc;
    m3_rows_w             rw;
    const mamba3_cfg     *c;
    const mamba3_weights *w;
    const mamba3_grads   *g;
    const float          *u;
    // act
    float *zx, *phi, *q, *k, *dA, *dlt, *lam, *rstd, *X, *dAx, *ypre, *rso, *scan;
    // work
    float *gb, *dg, *dyp, *dX, *ddAx, *dq, *dk, *ddA, *dgam, *dbet, *dphi, *dzx;
    float *dmx, *dmz, *dmo, *dnw, *hsD, *dBn, *dCn, *dBb, *dCb, *dDp, *wk;
} job;

typedef struct carve {
    float *base;
    size_t off;
} carve;

static float *take(carve *cv, size_t n, int want) {
    if (!want)
        return NULL;
    float *p = cv->base ? cv->base + cv->off : NULL;
    cv->off += (n + 15) & ~(size_t)15;
    return p;
}

// the front's activations (both forwards) and, for training, the rest
static size_t act_views(job *j, float *base, int train) {
    const dims *m = &j->m;
    size_t BT = (size_t)m->BT, RH = (size_t)m->R * m->H;
    carve cv = {base, 0};
    j->zx = take(&cv, BT * m->Rin, 1);
    j->phi = take(&cv, BT * m->H * m->S, 1);
    j->q = take(&cv, BT * RH * m->N, 1);
    j->k = take(&cv, BT * RH * m->N, 1);
    j->dA = take(&cv, BT * m->H, 1);
    j->dlt = take(&cv, BT * m->H, 1);
    j->lam = take(&cv, BT * m->H, 1);
    j->rstd = take(&cv, BT * 2 * (size_t)m->R * m->G, 1);
    j->X = take(&cv, BT * RH * m->P, train);
    j->dAx = take(&cv, BT * RH, train);
    j->ypre = take(&cv, BT * RH * m->P, train);
    j->rso = take(&cv, BT * RH, train && j->c->outproj_norm);
    j->scan = take(&cv, (size_t)m->B * m->sw, train);
    return cv.off;
}

// backward scratch (mat: the materialized matrix's); the forward needs gb / wk
static size_t work_views(job *j, float *base, int backward, int mat) {
    const dims *m = &j->m;
    size_t BT = (size_t)m->BT, RH = (size_t)m->R * m->H, HRP = RH * m->P;
    int mimo = j->c->mimo, train = !mat;
    carve cv = {base, 0};
    if (!backward) {
        j->gb = take(&cv, BT * m->Di, train);
        j->wk = take(&cv, m->mw, mat);
        return cv.off;
    }
    j->dg = take(&cv, BT * m->Di, train);
    j->gb = take(&cv, BT * m->Di, train); // the recomputed g
    j->dyp = take(&cv, BT * HRP, train);
    j->dX = take(&cv, BT * HRP, train);
    j->ddAx = take(&cv, BT * RH, train);
    j->dq = take(&cv, BT * RH * m->N, 1);
    j->dk = take(&cv, BT * RH * m->N, 1);
    j->ddA = take(&cv, BT * m->H, 1);
    j->dgam = take(&cv, BT * m->H, 1);
    j->dbet = take(&cv, BT * m->H, 1);
    j->dphi = take(&cv, BT * m->H * m->S, 1);
    j->dzx = take(&cv, BT * m->Rin, 1);
    j->dmx = take(&cv, BT * HRP, train && mimo);
    j->dmz = take(&cv, BT * HRP, train && mimo);
    j->dmo = take(&cv, BT * HRP, train && mimo);
    j->dnw = take(&cv, BT * m->Di, train && j->c->outproj_norm);
    j->hsD = take(&cv, BT * m->H, train);
    j->dBn = take(&cv, BT * m->N, 1);
    j->dCn = take(&cv, BT * m->N, 1);
    j->dBb = take(&cv, BT * RH * m->N, 1);
    j->dCb = take(&cv, BT * RH * m->N, 1);
    j->dDp = take(&cv, (size_t)m->B * m->H, mat);
    j->wk = take(&cv, MOLT_MAX(m->sbw, m->mbw), 1);
    return cv.off;
}

static void job_init(const molt_exec *ex, job *j, const mamba3_cfg *c, const mamba3_weights *w,
                     const mamba3_grads *g, int B, int T) {
    memset(j, 0, sizeof *j);
    MOLT_ASSERT(mamba3_cfg_check(c) == NULL && B >= 0 && T >= 0);
    MOLT_ASSERT(w->in_proj);
    dims_of(&j->m, c, B, T);
    j->rc = mamba3_rows_of(c);
    j->rw = mamba3_rows_w(w);
    j->ex = ex, j->c = c, j->w = w, j->g = g;
}

size_t mamba3_train_act_floats(const mamba3_cfg *c, int B, int T) {
    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    dims_of(&j.m, c, B, T);
    return act_views(&j, NULL, 1);
}

size_t mamba3_train_work_floats(const mamba3_cfg *c, int B, int T) {
    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    dims_of(&j.m, c, B, T);
    return MOLT_MAX(work_views(&j, NULL, 0, 0), work_views(&j, NULL, 1, 0));
}

size_t mamba3_mat_act_floats(const mamba3_cfg *c, int B, int T) {
    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    dims_of(&j.m, c, B, T);
    return act_views(&j, NULL, 0);
}

size_t mamba3_mat_work_floats(const mamba3_cfg *c, int B, int T) {
    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    dims_of(&j.m, c, B, T);
    return MOLT_MAX(work_views(&j, NULL, 0, 1), work_views(&j, NULL, 1, 1));
}

static float *unconst(const float *p) { return (float *)(uintptr_t)p; }

// ----------------------------------------------------------------------------
// the shared front (1-3) and the back of the backward (3-1)

static void front_forward(const job *j) {
    const dims *m = &j->m;
    k_matmul(j->ex, j->zx, j->u, j->w->in_proj, NULL, m->BT, m->d, m->Rin, 0);
    m3_angles(j->ex, j->phi, NULL, j->zx, m->Rin, j->w->dt_bias, m->BT, m->T, &j->rc);
    m3_prep(j->ex, j->q, j->k, j->dA, j->dlt, j->lam, j->rstd, j->zx, m->Rin, j->phi, &j->rw,
            m->BT, &j->rc);
}

// from dq, dk, ddA, dgam, dbet (and the other columns of dzx already written)
static void front_backward(const job *j, float *du) {
    const dims *m = &j->m;
    const mamba3_grads *g = j->g;
    size_t RHN = (size_t)m->R * m->H * m->N;
    m3_prep_backward(j->ex, j->dzx, j->dphi, j->dBn, j->dCn, j->dBb, j->dCb, j->dq, j->dk,
                     j->ddA, j->dgam, j->dbet, j->q, j->k, j->rstd, j->zx, m->Rin, j->phi,
                     &j->rw, m->BT, &j->rc);
    m3_angles_backward(j->ex, j->dzx, j->dphi, j->zx, m->Rin, j->w->dt_bias, m->BT, m->T, &j->rc);
    if (j->w->dt_bias)
        k_colsum(j->ex, g->dt_bias, j->dzx + m3_col_dt(&j->rc), m->BT, m->H, m->Rin);
    if (j->w->B_norm)
        k_colsum(j->ex, g->B_norm, j->dBn, m->BT, m->N, m->N);
    if (j->w->C_norm)
        k_colsum(j->ex, g->C_norm, j->dCn, m->BT, m->N, m->N);
    if (j->w->B_bias)
        k_colsum(j->ex, g->B_bias, j->dBb, m->BT, (int)RHN, (int)RHN);
    if (j->w->C_bias)
        k_colsum(j->ex, g->C_bias, j->dCb, m->BT, (int)RHN, (int)RHN);
    k_matmul_backward(j->ex, du, g->in_proj, NULL, j->dzx, j->u, j->w->in_proj, m->BT, m->d,
                      m->Rin, 0);
}

// ----------------------------------------------------------------------------
// training

static void gate(const job *j, int save) {
    m3_gate(j->ex, j->gb, save ? j->rso : NULL, j->ypre, j->zx, j->m.Rin, &j->rw, j->m.BT, &j->rc);
}

void mamba3_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B,
                          int T, const mamba3_cfg *c, const mamba3_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    MOLT_ASSERT(w->out_proj);
    if (B * T == 0)
        return;
    act_views(&j, act, 1);
    work_views(&j, work, 0, 0);
    j.u = u;
    const dims *m = &j.m;
    size_t RHP = (size_t)m->R * m->H * m->P, RHN = (size_t)m->R * m->H * m->N;
    front_forward(&j);
    m3_mix(ex, j.X, j.dAx, j.zx, m->Rin, j.dA, j.dlt, j.lam, &j.rw, m->BT, T, &j.rc);
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        ssd_scan_chunked(ex, j.ypre + r * RHP, NULL, j.X + r * RHP, j.dAx + r * m->R * m->H,
                         j.k + r * RHN, j.q + r * RHN, m->TR, m->H, m->P, m->N, m->H, m->QR,
                         j.scan + (size_t)b * m->sw);
    }
    m3_corr(ex, j.ypre, j.ypre, j.q, j.k, j.zx, m->Rin, j.dlt, j.lam, &j.rw, m->BT, T, &j.rc);
    gate(&j, 1);
    k_matmul(ex, y, j.gb, w->out_proj, NULL, m->BT, m->Di, m->d, 0);
}

void mamba3_train_backward(const molt_exec *ex, float *du, const mamba3_grads *g,
                           const float *dy, const float *act, const float *u, int B, int T,
                           const mamba3_cfg *c, const mamba3_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    act_views(&j, unconst(act), 1);
    work_views(&j, work, 1, 0);
    j.u = u;
    const dims *m = &j.m;
    size_t RHP = (size_t)m->R * m->H * m->P, RHN = (size_t)m->R * m->H * m->N;
    size_t HRP = RHP;
    // 8 out
    if (g->out_proj)
        gate(&j, 0); // recompute g
    k_matmul_backward(ex, j.dg, g->out_proj, NULL, dy, j.gb, w->out_proj, m->BT, m->Di, m->d, 0);
    // 7 gate
    m3_gate_backward(ex, j.dyp, j.dzx, j.dmz, j.dmo, j.dnw, j.dg, j.ypre, j.zx, m->Rin, j.rso,
                     &j.rw, m->BT, &j.rc);
    if (c->mimo) {
        k_colsum(ex, g->mimo_z, j.dmz, m->BT, (int)HRP, (int)HRP);
        k_colsum(ex, g->mimo_o, j.dmo, m->BT, (int)HRP, (int)HRP);
    }
    if (c->outproj_norm)
        k_colsum(ex, g->norm, j.dnw, m->BT, m->Di, m->Di);
    // 6, 5 scan per sequence (∂ys = ∂ypre), the saved chunk states copied in
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        be_copy(ex, j.wk, j.scan + (size_t)b * m->sw, sizeof(float) * m->sw);
        ssd_scan_chunked_backward(ex, j.dX + r * RHP, j.ddAx + r * m->R * m->H, j.dk + r * RHN,
                                  j.dq + r * RHN, j.dyp + r * RHP, j.X + r * RHP,
                                  j.dAx + r * m->R * m->H, j.k + r * RHN, j.q + r * RHN, m->TR,
                                  m->H, m->P, m->N, m->H, m->QR, j.wk);
    }
    // 4, 6 mix and correction
    m3_mix_backward(ex, j.dzx, j.dq, j.dk, j.ddA, j.dgam, j.dbet, j.dmx, j.hsD, j.dX, j.ddAx,
                    j.dyp, j.q, j.k, j.zx, m->Rin, j.dlt, j.lam, &j.rw, m->BT, T, &j.rc);
    if (c->mimo)
        k_colsum(ex, g->mimo_x, j.dmx, m->BT, (int)HRP, (int)HRP);
    if (w->D)
        k_colsum(ex, g->D, j.hsD, m->BT, m->H, m->H);
    // 3, 2, 1
    front_backward(&j, du);
}

// ----------------------------------------------------------------------------
// materialized matrix (MOHAWK stage 1)

void mamba3_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T,
                        const mamba3_cfg *c, const mamba3_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    if (B * T == 0)
        return;
    act_views(&j, act, 0);
    work_views(&j, work, 0, 1);
    j.u = u;
    const dims *m = &j.m;
    size_t RHN = (size_t)m->R * m->H * m->N, H = (size_t)m->H;
    front_forward(&j);
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        m3_materialize(ex, M + (size_t)b * H * T * T, j.q + r * RHN, j.k + r * RHN, j.dA + r * H,
                       j.dlt + r * H, j.lam + r * H, w->D, T, &j.rc, j.wk);
    }
}

void mamba3_mat_backward(const molt_exec *ex, float *du, const mamba3_grads *g, const float *dM,
                         const float *act, const float *u, int B, int T, const mamba3_cfg *c,
                         const mamba3_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    act_views(&j, unconst(act), 0);
    work_views(&j, work, 1, 1);
    j.u = u;
    const dims *m = &j.m;
    size_t RHN = (size_t)m->R * m->H * m->N, H = (size_t)m->H;
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        float *dD = j.dDp + (size_t)b * H;
        be_zero(ex, dD, sizeof(float) * H);
        m3_materialize_backward(ex, j.dq + r * RHN, j.dk + r * RHN, j.ddA + r * H,
                                j.dgam + r * H, j.dbet + r * H, w->D ? dD : NULL,
                                dM + (size_t)b * H * T * T, j.q + r * RHN, j.k + r * RHN,
                                j.dA + r * H, j.dlt + r * H, j.lam + r * H, w->D, T, &j.rc, j.wk);
    }
    if (w->D && g->D)
        for (int b = 0; b < B; b++) // in sequence order
            k_add(ex, g->D, g->D, j.dDp + (size_t)b * H, H);
    // M does not depend on z, x: their columns of ∂zx are 0 (the rest written below)
    be_zero(ex, j.dzx, sizeof(float) * (size_t)m->BT * m->Rin);
    front_backward(&j, du);
}
