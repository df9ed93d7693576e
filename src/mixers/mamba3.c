/*
 * mamba3.c — the Mamba-3 mixer's inference paths over the ops of
 * kernels/mamba3.h and the SSD scan of kernels/ssm.h. Contracts in
 * mixers/mamba3.h; equations in kernels/mamba3.h and shared/docs/
 * ALGORITHMS.md §8 (state-spaces/mamba Mamba3, its step and chunk references).
 *
 * Forward, as a list of stages (each one backend op):
 *   1 proj    zx[T,Rin] = u·in_projᵀ
 *   2 angles  φ (m3_angles, continuing the state's angles)
 *   3 prep    q, k (normed, biased, rotated), dA, Δ, λ (m3_prep)
 *   4 scan    chunked: m3_fold (the previous token's trapezoid term into the
 *             state), m3_mix (X = v·S, rank-expanded decay), ssd_scan_chunked
 *             over T·R steps (B = k, C = q, G = H, chunk·R), m3_corr
 *             (within-token terms, D skip), then k_prev, v_prev ← the last token;
 *             recurrent: per token m3_angles, m3_prep, m3_step_rows
 *   5 gate    m3_gate (silu(z) or the per-head gated RMSNorm; MIMO: Σ_r mimo_o)
 *   6 out     y = g·out_projᵀ
 * forward and step_rows multiply by the typed views (k_matmul_w), materialize
 * by the f32 master.
 */
#include "mixers/mamba3.h"

#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/ssm.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// dimensions

int mamba3_angles(const mamba3_cfg *c) {
    int split = (int)((float)c->N * c->rope_fraction);
    if (split % 2)
        split--;
    return split / 2;
}

m3_rows_cfg mamba3_rows_of(const mamba3_cfg *c) {
    return (m3_rows_cfg){c->H, c->P, c->N, c->G, c->R, mamba3_angles(c), c->mimo,
                         c->outproj_norm, c->A_floor, c->eps};
}

m3_rows_w mamba3_rows_w(const mamba3_weights *w) {
    return (m3_rows_w){w->dt_bias, w->B_norm, w->C_norm, w->B_bias, w->C_bias, w->mimo_x,
                       w->mimo_z,  w->mimo_o, w->D,      w->norm};
}

int mamba3_in_rows(const mamba3_cfg *c) {
    m3_rows_cfg rc = mamba3_rows_of(c);
    return m3_in_rows(&rc);
}

size_t mamba3_state_floats(const mamba3_cfg *c) {
    m3_rows_cfg rc = mamba3_rows_of(c);
    return m3_state_floats(&rc);
}

const char *mamba3_cfg_check(const mamba3_cfg *c) {
    if (c->d_model < 1 || c->d_inner < 1)
        return "mamba3: d_model and d_inner must be >= 1";
    if (c->H < 1 || c->P < 1 || c->N < 1 || c->G < 1 || c->R < 1)
        return "mamba3: heads, headdim, d_state, ngroups and mimo_rank must be >= 1";
    if ((long long)c->H * c->P != c->d_inner)
        return "mamba3: heads * headdim != d_inner";
    if (c->H % c->G)
        return "mamba3: heads must be a multiple of ngroups";
    if (c->N > 1024)
        return "mamba3: d_state must be <= 1024";
    if (c->R > 16 || (!c->mimo && c->R != 1))
        return "mamba3: mimo_rank must be 1..16 (and 1 without MIMO)";
    if (c->rope_fraction != 0.5f && c->rope_fraction != 1.0f)
        return "mamba3: rope_fraction must be 0.5 or 1.0";
    if (mamba3_angles(c) < 1)
        return "mamba3: no rotary angles (d_state * rope_fraction < 2)";
    if (c->mimo && c->N % 2)
        return "mamba3: MIMO rotates pairs (n, N/2 + n): d_state must be even";
    if (c->chunk < 1)
        return "mamba3: chunk_size must be >= 1";
    if (!(c->A_floor >= 0.0f) || !(c->A_floor < 1e30f))
        return "mamba3: A_floor must be >= 0 and finite";
    if (!(c->eps > 0.0f) || !(c->eps < 1.0f))
        return "mamba3: norm eps must be in (0, 1)";
    return NULL;
}

// ----------------------------------------------------------------------------
// work buffers

typedef struct bufs {
    float *zx;   // [T,Rin]
    float *phi;  // [T,H,S]
    float *q, *k; // [T,R,H,N]
    float *dA, *dlt, *lam; // [T,H]
    float *X;    // [T,R,H,P]  scan input
    float *dAx;  // [T,R,H]    expanded decay
    float *ys;   // [T,R,H,P]  scan output, then ypre
    float *g;    // [T,Di]
    float *tst;  // state block when the caller gives none (recurrent)
    float *scan; // ssd_chunked_work of the expanded time, or m3_materialize_work
} bufs;

static size_t bufs_of(const mamba3_cfg *c, int T, int with_scan, bufs *b, float *work) {
    m3_rows_cfg rc = mamba3_rows_of(c);
    size_t Tz = (size_t)(T > 0 ? T : 0), H = (size_t)c->H, R = (size_t)c->R;
    size_t RHN = R * H * c->N, RHP = R * H * c->P;
    size_t scan = 0;
    if (with_scan && T > 0)
        scan = MOLT_MAX(ssd_chunked_work(T * c->R, c->H, c->P, c->N, c->H, c->chunk * c->R),
                        m3_materialize_work(T, &rc));
    size_t sizes[13] = {Tz * (size_t)m3_in_rows(&rc),
                        Tz * H * (size_t)rc.S,
                        Tz * RHN,
                        Tz * RHN,
                        Tz * H,
                        Tz * H,
                        Tz * H,
                        with_scan ? Tz * RHP : 0,
                        with_scan ? Tz * R * H : 0,
                        Tz * RHP,
                        Tz * (size_t)c->d_inner,
                        with_scan ? m3_state_floats(&rc) : 0,
                        scan};
    bufs dummy;
    if (!b)
        b = &dummy;
    float **ptrs[13] = {&b->zx, &b->phi, &b->q,  &b->k, &b->dA,  &b->dlt, &b->lam,
                        &b->X,  &b->dAx, &b->ys, &b->g, &b->tst, &b->scan};
    size_t off = 0;
    for (int i = 0; i < 13; i++) {
        *ptrs[i] = work ? work + off : NULL;
        off += (sizes[i] + 15) & ~(size_t)15;
    }
    return off;
}

size_t mamba3_work(const mamba3_cfg *c, int T) { return bufs_of(c, T, 1, NULL, NULL); }
size_t mamba3_rows_work(const mamba3_cfg *c, int n) { return bufs_of(c, n, 0, NULL, NULL); }

static molt_w tw(molt_w t, const float *f) { return t.data ? t : molt_w_f32(f); }

// 1-3 for rows [t0, t0 + n) of one sequence (state: its block, or NULL)
static void front(const molt_exec *ex, const bufs *b, int t0, int n, float *state,
                  const mamba3_cfg *c, const mamba3_weights *w) {
    m3_rows_cfg rc = mamba3_rows_of(c);
    m3_rows_w   rw = mamba3_rows_w(w);
    int         Rin = m3_in_rows(&rc);
    size_t      t = (size_t)t0, HS = (size_t)c->H * rc.S, RHN = (size_t)c->R * c->H * c->N;
    float      *st[1] = {state};
    m3_angles(ex, b->phi + t * HS, state ? st : NULL, b->zx + t * Rin, Rin, w->dt_bias, n, n, &rc);
    m3_prep(ex, b->q + t * RHN, b->k + t * RHN, b->dA + t * c->H, b->dlt + t * c->H,
            b->lam + t * c->H, NULL, b->zx + t * Rin, Rin, b->phi + t * HS, &rw, n, &rc);
}

// ----------------------------------------------------------------------------
// forward

void mamba3_forward(const molt_exec *ex, float *y, const float *u, int T, const mamba3_cfg *c,
                    const mamba3_weights *w, float *st, mamba3_mode mode, float *work) {
    MOLT_ASSERT(mamba3_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->out_proj);
    if (T <= 0)
        return;
    bufs b;
    bufs_of(c, T, 1, &b, work);
    m3_rows_cfg rc = mamba3_rows_of(c);
    m3_rows_w   rw = mamba3_rows_w(w);
    int         Rin = m3_in_rows(&rc), H = c->H, R = c->R;
    size_t      RHN = (size_t)R * H * c->N, RHP = (size_t)R * H * c->P;
    k_matmul_w(ex, b.zx, u, tw(w->in_proj_t, w->in_proj), NULL, T, c->d_model, Rin, 0);
    if (mode == M3_CHUNKED) {
        front(ex, &b, 0, T, st, c, w);
        if (st)
            m3_fold(ex, st, b.dlt, b.lam, &rw, &rc);
        m3_mix(ex, b.X, b.dAx, b.zx, Rin, b.dA, b.dlt, b.lam, &rw, T, T, &rc);
        ssd_scan_chunked(ex, b.ys, st, b.X, b.dAx, b.k, b.q, T * R, H, c->P, c->N, H,
                         c->chunk * R, b.scan);
        m3_corr(ex, b.ys, b.ys, b.q, b.k, b.zx, Rin, b.dlt, b.lam, &rw, T, T, &rc);
        if (st) { // the last token's k and raw x are the next call's k_prev, v_prev
            be_copy(ex, st + m3_off_kprev(&rc), b.k + (size_t)(T - 1) * RHN,
                    sizeof(float) * RHN);
            be_copy(ex, st + m3_off_vprev(&rc), b.zx + (size_t)(T - 1) * Rin + m3_col_x(&rc),
                    sizeof(float) * (size_t)c->d_inner);
        }
    } else {
        if (!st) {
            st = b.tst;
            be_zero(ex, st, sizeof(float) * m3_state_floats(&rc));
        }
        float *sp[1] = {st};
        for (int t = 0; t < T; t++) {
            front(ex, &b, t, 1, st, c, w);
            m3_step_rows(ex, b.ys + (size_t)t * RHP, sp, b.q + (size_t)t * RHN,
                         b.k + (size_t)t * RHN, b.zx + (size_t)t * Rin, Rin, b.dA + (size_t)t * H,
                         b.dlt + (size_t)t * H, b.lam + (size_t)t * H, &rw, 1, &rc);
        }
    }
    m3_gate(ex, b.g, NULL, b.ys, b.zx, Rin, &rw, T, &rc);
    k_matmul_w(ex, y, b.g, tw(w->out_proj_t, w->out_proj), NULL, T, c->d_inner, c->d_model, 0);
}

// ----------------------------------------------------------------------------
// batched decode

void mamba3_step_rows(const molt_exec *ex, float *y, const float *u, int n, const mamba3_cfg *c,
                      const mamba3_weights *w, float *const *state, float *work) {
    MOLT_ASSERT(mamba3_cfg_check(c) == NULL);
    if (n <= 0)
        return;
    bufs b;
    bufs_of(c, n, 0, &b, work);
    m3_rows_cfg rc = mamba3_rows_of(c);
    m3_rows_w   rw = mamba3_rows_w(w);
    int         Rin = m3_in_rows(&rc);
    k_matmul_w(ex, b.zx, u, tw(w->in_proj_t, w->in_proj), NULL, n, c->d_model, Rin, 0);
    m3_angles(ex, b.phi, state, b.zx, Rin, w->dt_bias, n, 1, &rc);
    m3_prep(ex, b.q, b.k, b.dA, b.dlt, b.lam, NULL, b.zx, Rin, b.phi, &rw, n, &rc);
    m3_step_rows(ex, b.ys, state, b.q, b.k, b.zx, Rin, b.dA, b.dlt, b.lam, &rw, n, &rc);
    m3_gate(ex, b.g, NULL, b.ys, b.zx, Rin, &rw, n, &rc);
    k_matmul_w(ex, y, b.g, tw(w->out_proj_t, w->out_proj), NULL, n, c->d_inner, c->d_model, 0);
}

// ----------------------------------------------------------------------------
// materialized mixing matrix

void mamba3_materialize(const molt_exec *ex, float *M, const float *u, int T,
                        const mamba3_cfg *c, const mamba3_weights *w, float *work) {
    MOLT_ASSERT(mamba3_cfg_check(c) == NULL);
    if (T <= 0)
        return;
    bufs b;
    bufs_of(c, T, 1, &b, work);
    m3_rows_cfg rc = mamba3_rows_of(c);
    k_matmul(ex, b.zx, u, w->in_proj, NULL, T, c->d_model, m3_in_rows(&rc), 0);
    front(ex, &b, 0, T, NULL, c, w);
    m3_materialize(ex, M, b.q, b.k, b.dA, b.dlt, b.lam, w->D, T, &rc, b.scan);
}
