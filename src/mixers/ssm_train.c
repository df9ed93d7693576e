/*
 * ssm_train.c — training forward / backward of the Mamba-2 and DiscreteMamba2
 * (Llamba) mixers over B independent sequences, and of their materialized
 * mixing matrix (MOHAWK stage 1). Contracts in mixers/ssm_train.h; the forward
 * is the stage list of mixers/ssm_mixer.c (same numerics), equations in
 * shared/docs/ALGORITHMS.md §1.2, §1.4, §2.2.
 *
 * Accumulation contract: du is written (=); parameter grads are accumulated
 * (+=); a NULL grad pointer means "not wanted" and its work is skipped. Every
 * internal activation grad is written (=) into work before it is read.
 *
 * Letters: B sequences, T tokens, BT = B·T rows, d = d_model, Di = d_inner =
 * H·P, R = in_proj rows, Cc = Di + 2·G·N conv channels, GN = G·N, K conv
 * width, Q = cfg->chunk. Row r = b·T + t. Layouts row-major.
 *
 * Forward stages, and the backward as the same list in reverse:
 *   1 proj   zx[BT,R] = u·in_projᵀ (+b)            du = dzx·in_proj, d in_proj += dzxᵀ·u
 *   2 conv   xcp = conv1d(xr = zx[:, xBC]) per seq  conv1d_causal_backward per seq
 *   3 prep   x|B|C = act(xcp);  Δ, dA, X            row-wise chain rule
 *   4 scan   ys = SSD(X, dA, B, C) chunked per seq  ssd_scan_chunked_backward per seq
 *   5 gate   ypre = ys + D·x;  g = gate(ypre, z)    row-wise, then column sums
 *   6 out    y = g·out_projᵀ (+b)                   dg = dy·out_proj, d out_proj += dyᵀ·g
 * Materialized: 1, 2, 3, then M = ssd_materialize(ex, dA, B, C, Δ | 1, D) per seq.
 *
 * Every stage is a backend op (kernels.h): the projections k_matmul /
 * k_matmul_backward (fixed sgemm blocks), conv1d_causal and the SSD scan per
 * sequence, and the row ops of kernels/ssm_rows.h (ssm_prep, ssm_gate and
 * their backward passes, k_colsum for the parameter column sums), the same
 * ops the inference path (ssm_mixer.c) runs. Threads are the ops' business;
 * every backward output has one writer and a fixed summation order, so the
 * backward is bit-identical for any thread count. (The forward projections
 * use k_matmul, whose BLAS blocks follow the thread count: the forward agrees
 * across thread counts to rounding, ~1e-7 relative, not bit for bit.)
 */
#include "mixers/ssm_train.h"

#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"
#include "kernels/backward.h"
#include "kernels/ssm_rows.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// ----------------------------------------------------------------------------
// dimensions and buffers

typedef struct dims {
    int    B, T, BT, d, R, Cc, Di, H, P, N, G, GN, K, Q, mamba;
    int    oz, oxbc, odt; // column offsets inside a zx row
    size_t sw;            // ssd_chunked_work per sequence (saved by the forward)
    size_t sbw;           // ssd_chunked_backward_work per sequence
    size_t mbw;           // ssd_materialize_backward_work per sequence
} dims;

static void dims_of(dims *m, const ssm_cfg *c, int B, int T) {
    m->B = B, m->T = T, m->BT = B * T, m->d = c->d_model, m->R = ssm_in_proj_rows(c);
    m->Cc = ssm_conv_dim(c), m->Di = c->d_inner, m->H = c->H, m->P = c->P, m->N = c->N;
    m->G = c->G, m->GN = c->G * c->N, m->K = c->K, m->Q = c->chunk;
    m->mamba = c->kind == SSM_MAMBA2;
    ssm_in_proj_cols(c, &m->oz, &m->oxbc, &m->odt);
    m->sw = ssd_chunked_work(T, c->H, c->P, c->N, c->G, c->chunk);
    m->sbw = ssd_chunked_backward_work(T, c->H, c->P, c->N, c->G, c->chunk);
    m->mbw = ssd_materialize_backward_work(T, c->H, c->N, c->G);
}

// Everything a stage reads or writes. Views into act (saved) and work (scratch).
typedef struct job {
    const molt_exec   *ex;
    dims               m;
    const ssm_cfg     *c;
    const ssm_weights *w;
    const ssm_grads   *g;
    const float       *u, *dy, *dM;
    float             *y, *M;
    // act (train: all; materialized: zx, xcp, Bm, Cm, dA, dlt)
    float *zx;   // [BT,R]   in_proj output
    float *xcp;  // [BT,Cc]  Mamba-2: conv output before SiLU (NULL for Discrete)
    float *x;    // [BT,Di]  post-conv x
    float *Bm;   // [BT,G,N] post-conv B
    float *Cm;   // [BT,G,N] post-conv C
    float *X;    // [BT,H,P] scan input: x·Δ (Mamba-2); aliases x (Discrete)
    float *dA;   // [BT,H]   log decay
    float *dlt;  // [BT,H]   Δ (Mamba-2)
    float *ypre; // [BT,Di]  ys + D·x, the gate input
    float *rstd; // [BT,G]   Mamba-2 gated-RMSNorm 1/rms per group
    float *scan; // [B,sw]   states entering each chunk, chunk decays (ssd_scan_chunked)
    // work
    float *xr;   // [BT,Cc]  conv input zx[:, xBC], dense
    float *xct;  // [BT,Cc]  Discrete: conv output (forward only)
    float *gb;   // [BT,Di]  forward: gated output g
    float *dg;   // [BT,Di]  ∂g, then ∂ypre (= ∂ys) in place
    float *tmp;  // [BT,Di]  recomputed g, then ∂norm_w terms
    float *dX;   // [BT,H,P]
    float *ddA;  // [BT,H]
    float *dcs;  // [BT,H]   materialized Mamba-2: ∂colscale = ∂Δ (direct part)
    float *dBm;  // [BT,G,N]
    float *dCm;  // [BT,G,N]
    float *dxc;  // [BT,Cc]  ∂(conv output): post-activation, then pre-activation
    float *dxr;  // [BT,Cc]  ∂(conv input)
    float *dzx;  // [BT,R]
    float *hs1;  // [BT,H]   per-row Σ_p ∂ypre·x      (→ ∂D)
    float *hs2;  // [BT,H]   per-row ∂dA·Δ·A          (→ ∂A_log)
    float *dDp;  // [B,H]    materialized: per-sequence ∂D
    float *sbw;  // [B,sbw]  scan backward work (saved part copied in) / [B,mbw]
} job;

// consecutive views of one buffer; with base NULL only the size is counted
typedef struct carve {
    float *base;
    size_t off;
} carve;

static float *take(carve *cv, size_t n, int want) {
    if (!want)
        return NULL;
    float *p = cv->base ? cv->base + cv->off : NULL;
    cv->off += n;
    return p;
}

// act for the training forward; returns its size in floats
static size_t train_act_views(job *j, float *base) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->zx = take(&cv, BT * m->R, 1);
    j->xcp = take(&cv, BT * m->Cc, m->mamba);
    j->x = take(&cv, BT * m->Di, 1);
    j->Bm = take(&cv, BT * m->GN, 1);
    j->Cm = take(&cv, BT * m->GN, 1);
    j->X = m->mamba ? take(&cv, BT * m->Di, 1) : j->x;
    j->dA = take(&cv, BT * m->H, 1);
    j->dlt = take(&cv, BT * m->H, m->mamba);
    j->ypre = take(&cv, BT * m->Di, 1);
    j->rstd = take(&cv, BT * m->G, m->mamba);
    j->scan = take(&cv, (size_t)m->B * m->sw, 1);
    return cv.off;
}

// work for the training forward and backward (the two share the buffer)
static size_t train_work_views(job *j, float *base, int backward) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->xr = take(&cv, BT * m->Cc, 1);
    if (!backward) {
        j->xct = take(&cv, BT * m->Cc, !m->mamba);
        j->gb = take(&cv, BT * m->Di, 1);
        return cv.off;
    }
    j->dg = take(&cv, BT * m->Di, 1);
    j->tmp = take(&cv, BT * m->Di, 1);
    j->dX = take(&cv, BT * m->Di, 1);
    j->ddA = take(&cv, BT * m->H, 1);
    j->dcs = NULL;
    j->dBm = take(&cv, BT * m->GN, 1);
    j->dCm = take(&cv, BT * m->GN, 1);
    j->dxc = take(&cv, BT * m->Cc, 1);
    j->dxr = take(&cv, BT * m->Cc, 1);
    j->dzx = take(&cv, BT * m->R, 1);
    j->hs1 = take(&cv, BT * m->H, 1);
    j->hs2 = take(&cv, BT * m->H, 1);
    j->dDp = NULL;
    j->sbw = take(&cv, (size_t)m->B * m->sbw, 1);
    return cv.off;
}

static size_t mat_act_views(job *j, float *base) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->zx = take(&cv, BT * m->R, 1);
    j->xcp = take(&cv, BT * m->Cc, m->mamba);
    j->x = j->X = j->ypre = j->rstd = j->scan = NULL;
    j->Bm = take(&cv, BT * m->GN, 1);
    j->Cm = take(&cv, BT * m->GN, 1);
    j->dA = take(&cv, BT * m->H, 1);
    j->dlt = take(&cv, BT * m->H, m->mamba);
    return cv.off;
}

static size_t mat_work_views(job *j, float *base, int backward) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->xr = take(&cv, BT * m->Cc, 1);
    if (!backward) {
        j->xct = take(&cv, BT * m->Cc, !m->mamba);
        return cv.off;
    }
    j->dg = j->tmp = j->dX = j->hs1 = NULL;
    j->ddA = take(&cv, BT * m->H, 1);
    j->dcs = take(&cv, BT * m->H, m->mamba);
    j->dBm = take(&cv, BT * m->GN, 1);
    j->dCm = take(&cv, BT * m->GN, 1);
    j->dxc = take(&cv, BT * m->Cc, 1);
    j->dxr = take(&cv, BT * m->Cc, 1);
    j->dzx = take(&cv, BT * m->R, 1);
    j->hs2 = take(&cv, BT * m->H, 1);
    j->dDp = take(&cv, (size_t)m->B * m->H, 1);
    j->sbw = take(&cv, (size_t)m->B * m->mbw, 1);
    return cv.off;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t ssm_train_act_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return train_act_views(&j, NULL);
}

size_t ssm_train_work_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(train_work_views(&j, NULL, 0), train_work_views(&j, NULL, 1));
}

size_t ssm_mat_act_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return mat_act_views(&j, NULL);
}

size_t ssm_mat_work_floats(const ssm_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(mat_work_views(&j, NULL, 0), mat_work_views(&j, NULL, 1));
}

// The backward only reads act; the views are typed float * for brevity.
static float *unconst(const float *p) { return (float *)(uintptr_t)p; }

static ssm_rows_cfg rows_cfg(const job *j) { return ssm_rows_of(j->c); }

// ----------------------------------------------------------------------------
// 1 proj:  zx = u·in_projᵀ (+b);  xr = zx[:, xBC]

static void extract_xr(const job *j) {
    const dims *m = &j->m;
    k_copy_cols(j->ex, j->xr, (size_t)m->Cc, j->zx + m->oxbc, (size_t)m->R, (size_t)m->BT, (size_t)m->Cc);
}

// backward (after dzx is complete):
//   ∂u = ∂zx·in_proj   ∂in_proj += ∂zxᵀ·u   ∂in_proj_b += Σ_r ∂zx
static void proj_backward(float *du, const job *j) {
    const dims *m = &j->m;
    k_matmul_backward(j->ex, du, j->g->in_proj, j->w->in_proj_b ? j->g->in_proj_b : NULL, j->dzx,
                      j->u, j->w->in_proj, m->BT, m->d, m->R, 0);
}

// ----------------------------------------------------------------------------
// 2 conv:  xc = conv1d_causal(ex, xr) per sequence, zero initial state

static void conv_forward(const job *j) {
    const dims *m = &j->m;
    float      *out = m->mamba ? j->xcp : j->xct;
    for (int b = 0; b < m->B; b++) {
        size_t o = (size_t)b * m->T * m->Cc;
        conv1d_causal(j->ex, out + o, j->xr + o, j->w->conv_w, j->w->conv_b, NULL, m->T, m->Cc,
                      m->K);
    }
}

// backward, ∂xc (pre-activation) → ∂xr, ∂conv_w, ∂conv_b. The weight grads
// accumulate over sequences, so sequences go one at a time, in order.
//   ∂zx[:, xBC] = ∂xr;  the unused [z0, x0] columns (d_mlp) get 0
static void conv_backward(const job *j) {
    const dims *m = &j->m;
    extract_xr(j);
    for (int b = 0; b < m->B; b++) {
        size_t o = (size_t)b * m->T * m->Cc;
        conv1d_causal_backward(j->ex, j->dxr + o, j->g->conv_w, j->w->conv_b ? j->g->conv_b : NULL,
                               j->dxc + o, j->xr + o, j->w->conv_w, m->T, m->Cc, m->K);
    }
    k_copy_cols(j->ex, j->dzx + m->oxbc, (size_t)m->R, j->dxr, (size_t)m->Cc, (size_t)m->BT,
                (size_t)m->Cc);
    if (m->mamba && j->c->d_mlp > 0)
        for (int r = 0; r < m->BT; r++)
            be_zero(j->ex, j->dzx + (size_t)r * m->R, sizeof(float) * 2 * (size_t)j->c->d_mlp);
}

// ----------------------------------------------------------------------------
// 3 prep (ssm_prep, kernels/ssm_rows.h):  x|B|C = act(xc)  (SiLU for Mamba-2,
//   identity for Discrete);  Mamba-2: Δ = clamp(softplus(dt + dt_bias)), dA = Δ·A,
//   X = x·Δ;  Discrete: dA = −softplus(a_t) (the A_log columns of zx), X = x

static void prep_forward(const job *j) {
    const dims  *m = &j->m;
    ssm_rows_cfg rc = rows_cfg(j);
    ssm_prep(j->ex, j->x, m->mamba ? j->X : NULL, j->Bm, j->Cm, j->dA, j->dlt,
             m->mamba ? j->xcp : j->xct, j->zx + m->odt, m->R, j->w->dt_bias, j->w->A_log, m->BT,
             &rc);
}

// backward (ssm_prep_backward): ∂X (train; NULL for M), ∂ypre for the D·x skip
// (train; NULL for M), ∂dA, ∂B, ∂C, ∂colscale (M, Mamba-2) → ∂xc, ∂dt into
// dzx, the per-row ∂A_log terms into hs2; then the parameter column sums
static void prep_backward(const job *j) {
    const dims        *m = &j->m;
    const ssm_weights *w = j->w;
    ssm_rows_cfg       rc = rows_cfg(j);
    ssm_prep_backward(j->ex, j->dxc, j->dzx + m->odt, j->hs2, j->dX, j->dg, j->ddA, j->dBm,
                      j->dCm, j->dcs, j->xcp, j->x, j->dlt, j->zx + m->odt, m->R, w->dt_bias,
                      w->A_log, w->D, m->BT, &rc);
    if (!m->mamba)
        return; // Discrete: A_log is a per-token projection, no parameter
    if (w->dt_bias)
        k_colsum(j->ex, j->g->dt_bias, j->dzx + m->odt, m->BT, m->H, m->R);
    k_colsum(j->ex, j->g->A_log, j->hs2, m->BT, m->H, m->H);
}

// ----------------------------------------------------------------------------
// 4 scan:  ys = SSD(X, dA, B, C), chunked, per sequence from a zero state;
//          what the backward needs is left in act (scan[b])

static void scan_forward(const job *j) {
    const dims *m = &j->m;
    for (int b = 0; b < m->B; b++) {
        size_t r = (size_t)b * m->T;
        ssd_scan_chunked(j->ex, j->ypre + r * m->Di, NULL, j->X + r * m->Di, j->dA + r * m->H,
                         j->Bm + r * m->GN, j->Cm + r * m->GN, m->T, m->H, m->P, m->N, m->G,
                         m->Q, j->scan + (size_t)b * m->sw);
    }
}

// backward: ∂ys = ∂ypre (dg after the gate backward) → ∂X, ∂dA, ∂B, ∂C.
// The saved part is copied in front of the kernel's own scratch (act stays read-only).
static void scan_backward(const job *j) {
    const dims *m = &j->m;
    for (int b = 0; b < m->B; b++) {
        size_t r = (size_t)b * m->T;
        float *work = j->sbw + (size_t)b * m->sbw;
        be_copy(j->ex, work, j->scan + (size_t)b * m->sw, sizeof(float) * m->sw);
        ssd_scan_chunked_backward(j->ex, j->dX + r * m->Di, j->ddA + r * m->H, j->dBm + r * m->GN,
                                  j->dCm + r * m->GN, j->dg + r * m->Di, j->X + r * m->Di,
                                  j->dA + r * m->H, j->Bm + r * m->GN, j->Cm + r * m->GN, m->T,
                                  m->H, m->P, m->N, m->G, m->Q, work);
    }
}

// ----------------------------------------------------------------------------
// 5 gate (ssm_gate):  ypre = ys + D·x
//   Mamba-2:  gz = ypre·silu(z);  g = gz·rstd·norm_w per group of gs = Di/G,
//             rstd = 1/sqrt(mean_group(gz²) + eps)
//   Discrete: g = ypre·silu(z + z_bias)
// save: the forward (adds D·x into ypre, saves rstd); else the backward's
// recompute of g into tmp (ypre and rstd untouched, the same bits)

static void gate_forward(const job *j, int save) {
    const dims        *m = &j->m;
    const ssm_weights *w = j->w;
    ssm_rows_cfg       rc = rows_cfg(j);
    ssm_gate(j->ex, save ? j->gb : j->tmp, j->ypre, save ? j->rstd : NULL, save ? j->x : NULL,
             j->zx + m->oz, m->R, w->D, w->norm_w, w->z_bias, m->BT, &rc);
}

// backward (ssm_gate_backward): ∂g in dg → ∂ypre in dg, ∂z into dzx, per-row
// ∂norm_w terms into tmp and Σ_p ∂ypre·x into hs1; then the column sums
static void gate_backward(const job *j) {
    const dims        *m = &j->m;
    const ssm_weights *w = j->w;
    ssm_rows_cfg       rc = rows_cfg(j);
    ssm_gate_backward(j->ex, j->dg, j->dzx + m->oz, m->mamba ? j->tmp : NULL, j->hs1, j->ypre,
                      j->x, j->zx + m->oz, m->R, j->rstd, w->norm_w, w->z_bias, m->BT, &rc);
    if (m->mamba)
        k_colsum(j->ex, j->g->norm_w, j->tmp, m->BT, m->Di, m->Di);
    else if (w->z_bias)
        k_colsum(j->ex, j->g->z_bias, j->dzx + m->oz, m->BT, m->Di, m->R);
    if (w->D)
        k_colsum(j->ex, j->g->D, j->hs1, m->BT, m->H, m->H);
}

// ----------------------------------------------------------------------------
// training forward / backward

static void job_init(const molt_exec *ex, job *j, const ssm_cfg *c, const ssm_weights *w, const ssm_grads *g, int B,
                     int T) {
    memset(j, 0, sizeof *j);
    MOLT_ASSERT(ssm_cfg_check(c) == NULL);
    MOLT_ASSERT(B >= 0 && T >= 0);
    MOLT_ASSERT(w->in_proj && w->conv_w);
    MOLT_ASSERT(c->kind != SSM_MAMBA2 || (w->A_log && w->norm_w));
    dims_of(&j->m, c, B, T);
    j->c = c, j->w = w, j->g = g, j->ex = ex;
}

// the shared front of both forwards: 1 proj, 2 conv, 3 prep
static void forward_front(const job *j) {
    const dims *m = &j->m;
    k_matmul(j->ex, j->zx, j->u, j->w->in_proj, j->w->in_proj_b, m->BT, m->d, m->R, 0);
    extract_xr(j);
    conv_forward(j);
    prep_forward(j);
}

void ssm_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B, int T, const ssm_cfg *c,
                       const ssm_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    MOLT_ASSERT(w->out_proj);
    if (B * T == 0)
        return;
    train_act_views(&j, act);
    train_work_views(&j, work, 0);
    j.u = u, j.y = y;
    const dims *m = &j.m;
    forward_front(&j);
    scan_forward(&j);
    gate_forward(&j, 1);
    k_matmul(ex, y, j.gb, w->out_proj, w->out_proj_b, m->BT, m->Di, m->d, 0);
}

void ssm_train_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dy, const float *act,
                        const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                        float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    train_act_views(&j, unconst(act));
    train_work_views(&j, work, 1);
    j.u = u, j.dy = dy;
    const dims *m = &j.m;
    // 6  y = g·out_projᵀ (+b):  ∂g = ∂y·out_proj,  ∂out_proj += ∂yᵀ·g,  ∂out_proj_b += Σ ∂y
    if (g->out_proj)
        gate_forward(&j, 0); // recompute g into tmp
    k_matmul_backward(ex, j.dg, g->out_proj, w->out_proj_b ? g->out_proj_b : NULL, dy, j.tmp,
                      w->out_proj, m->BT, m->Di, m->d, 0);
    // 5  gate
    gate_backward(&j);
    // 4  scan
    scan_backward(&j);
    // 3  prep
    prep_backward(&j);
    // 2  conv, 1  proj
    conv_backward(&j);
    proj_backward(du, &j);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix (MOHAWK stage 1)
//
//   M[b,h,t,s] = (C_t·B_s)·exp(Σ_{k=s+1..t} dA_k)·cs_s  (+ D[h] on the diagonal),
//   cs = Δ (Mamba-2) or 1 (Discrete). Depends on u through B, C, dA (and Δ);
//   not on x, z, the gate or out_proj.

static void materialize_forward(const job *j) {
    const dims *m = &j->m;
    for (int b = 0; b < m->B; b++) {
        size_t r = (size_t)b * m->T;
        ssd_materialize(j->ex, j->M + (size_t)b * m->H * m->T * m->T, j->dA + r * m->H,
                        j->Bm + r * m->GN, j->Cm + r * m->GN, m->mamba ? j->dlt + r * m->H : NULL,
                        j->w->D, m->T, m->H, m->N, m->G);
    }
}

// backward: ∂dA, ∂B, ∂C, ∂cs (= ∂Δ direct) written; ∂D per sequence, then
// added to the gradient in sequence order
static void materialize_backward(const job *j) {
    const dims *m = &j->m;
    for (int b = 0; b < m->B; b++) {
        size_t r = (size_t)b * m->T;
        float *dD = j->dDp + (size_t)b * m->H;
        be_zero(j->ex, dD, sizeof(float) * (size_t)m->H);
        ssd_materialize_backward(j->ex, j->ddA + r * m->H, j->dBm + r * m->GN, j->dCm + r * m->GN,
                                 m->mamba ? j->dcs + r * m->H : NULL, j->w->D ? dD : NULL,
                                 j->dM + (size_t)b * m->H * m->T * m->T, j->dA + r * m->H,
                                 j->Bm + r * m->GN, j->Cm + r * m->GN,
                                 m->mamba ? j->dlt + r * m->H : NULL, j->w->D, m->T, m->H, m->N,
                                 m->G, j->sbw + (size_t)b * m->mbw);
    }
    if (j->w->D && j->g->D)
        for (int b = 0; b < m->B; b++) // in sequence order
            k_add(j->ex, j->g->D, j->g->D, j->dDp + (size_t)b * m->H, (size_t)m->H);
}

void ssm_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T, const ssm_cfg *c,
                     const ssm_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    if (B * T == 0)
        return;
    mat_act_views(&j, act);
    mat_work_views(&j, work, 0);
    j.u = u, j.M = M;
    forward_front(&j);
    materialize_forward(&j);
}

void ssm_mat_backward(const molt_exec *ex, float *du, const ssm_grads *g, const float *dM, const float *act,
                      const float *u, int B, int T, const ssm_cfg *c, const ssm_weights *w,
                      float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    mat_act_views(&j, unconst(act));
    mat_work_views(&j, work, 1);
    j.u = u, j.dM = dM;
    const dims *m = &j.m;
    materialize_backward(&j);
    // 3  prep (∂X = 0, no D·x path: M's D term does not involve x)
    prep_backward(&j);
    // M does not depend on z: its columns of ∂zx are 0
    for (int r = 0; r < m->BT; r++)
        be_zero(ex, j.dzx + (size_t)r * m->R + m->oz, sizeof(float) * (size_t)m->Di);
    // 2  conv, 1  proj
    conv_backward(&j);
    proj_backward(du, &j);
}
