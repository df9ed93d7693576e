/*
 * gl_train.c — training forward / backward of the GateLoop mixer over B
 * independent sequences, and of its materialized mixing matrix (MOHAWK
 * stage 1). Contracts in mixers/gl_train.h; the forward is the stage list of
 * mixers/gl_mixer.c (same ops, same numerics).
 *
 * Letters: B sequences, T tokens, BT = B·T rows (row r = b·T + t), d =
 * d_model, Di = d_inner = H·P, HJ = Di/2, R = 5·Di, Q = cfg->chunk.
 *
 * Forward stages, and the backward as the same list in reverse:
 *   1 proj  zx = u·in_projᵀ                       du = dzx·in_proj, d in_proj += dzxᵀ·u
 *   2 prep  la, th = gl_prep(zx[:, m|φ], a_bias)  gl_prep_backward; d a_bias = colsum
 *   3 scan  ys = gl_scan_chunked per sequence     gl_scan_chunked_backward per sequence
 *                                                  (dq | dk | dv into dzx's columns)
 *   4 gate  g = ys·silu(zg + g_bias)               ssm_gate_backward; d g_bias = colsum
 *   5 out   y = g·out_projᵀ                        dg = dy·out_proj, d out_proj += dyᵀ·g
 * Materialized: 1, 2, then M = gl_materialize per sequence; its backward
 * writes dq | dk, the other columns of dzx are 0.
 * Every stage is a backend op; every backward output has one writer and a
 * fixed summation order (bit-identical for any thread count).
 */
#include "mixers/gl_train.h"

#include "core/core.h"
#include "kernels/backward.h"
#include "kernels/gateloop.h"
#include "kernels/kernels.h"
#include "kernels/ssm_rows.h"

#include <stdint.h>
#include <string.h>

typedef struct dims {
    int    B, T, BT, d, R, Di, H, P, HJ, Q;
    size_t sw, sbw, mw, mbw; // per sequence: scan work (saved), its backward, materialize fwd / bwd
} dims;

static void dims_of(dims *m, const gateloop_cfg *c, int B, int T) {
    m->B = B, m->T = T, m->BT = B * T, m->d = c->d_model, m->R = gl_in_proj_rows(c);
    m->Di = c->d_inner, m->H = c->H, m->P = c->P, m->HJ = c->d_inner / 2, m->Q = c->chunk;
    m->sw = gl_chunked_work(T, c->H, c->P, c->P, c->chunk);
    m->sbw = gl_chunked_backward_work(T, c->H, c->P, c->P, c->chunk);
    m->mw = gl_materialize_work(T, c->H, c->P);
    m->mbw = gl_materialize_backward_work(T, c->H, c->P);
}

typedef struct job {
    const molt_exec    *ex;
    dims                m;
    const gateloop_cfg *c;
    const gl_weights   *w;
    const gl_grads     *g;
    // act
    float *zx;   // [BT,R]
    float *la;   // [BT,HJ]
    float *th;   // [BT,HJ]
    float *ys;   // [BT,Di]  scan output = the gate input (train)
    float *scan; // [B,sw]   states entering each chunk (train)
    // work
    float *gb;   // [BT,Di]  gated output (forward) / recomputed (backward)
    float *dg;   // [BT,Di]  ∂g, then ∂ys in place
    float *dzx;  // [BT,R]
    float *dla;  // [BT,HJ]
    float *dth;  // [BT,HJ]
    float *kw;   // one sequence's kernel work (scan backward / materialize)
} job;

typedef struct carve {
    float *base;
    size_t off;
} carve;

static float *take(carve *cv, size_t n) {
    float *p = cv->base ? cv->base + cv->off : NULL;
    cv->off += n;
    return p;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static size_t act_views(job *j, float *base, int mat) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->zx = take(&cv, BT * m->R);
    j->la = take(&cv, BT * m->HJ);
    j->th = take(&cv, BT * m->HJ);
    j->ys = mat ? NULL : take(&cv, BT * m->Di);
    j->scan = mat ? NULL : take(&cv, (size_t)m->B * m->sw);
    return cv.off;
}

static size_t work_views(job *j, float *base, int mat, int backward) {
    const dims *m = &j->m;
    size_t      BT = (size_t)m->BT;
    carve       cv = {base, 0};
    j->gb = mat ? NULL : take(&cv, BT * m->Di);
    if (!backward) {
        j->kw = mat ? take(&cv, m->mw) : NULL;
        return cv.off;
    }
    j->dg = mat ? NULL : take(&cv, BT * m->Di);
    j->dzx = take(&cv, BT * m->R);
    j->dla = take(&cv, BT * m->HJ);
    j->dth = take(&cv, BT * m->HJ);
    j->kw = take(&cv, mat ? m->mbw : m->sbw);
    return cv.off;
}

size_t gl_train_act_floats(const gateloop_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return act_views(&j, NULL, 0);
}
size_t gl_train_work_floats(const gateloop_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(work_views(&j, NULL, 0, 0), work_views(&j, NULL, 0, 1));
}
size_t gl_mat_act_floats(const gateloop_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return act_views(&j, NULL, 1);
}
size_t gl_mat_work_floats(const gateloop_cfg *c, int B, int T) {
    job j;
    dims_of(&j.m, c, B, T);
    return max_sz(work_views(&j, NULL, 1, 0), work_views(&j, NULL, 1, 1));
}

static void job_init(const molt_exec *ex, job *j, const gateloop_cfg *c, const gl_weights *w,
                     const gl_grads *g, int B, int T) {
    memset(j, 0, sizeof *j);
    MOLT_ASSERT(gl_cfg_check(c) == NULL);
    MOLT_ASSERT(B >= 0 && T >= 0);
    MOLT_ASSERT(w->in_proj && w->a_bias);
    dims_of(&j->m, c, B, T);
    j->ex = ex, j->c = c, j->w = w, j->g = g;
}

static float *unconst(const float *p) { return (float *)(uintptr_t)p; }

static ssm_rows_cfg gate_cfg(const job *j) {
    return (ssm_rows_cfg){0, j->m.H, j->m.P, 1, 1, 0.0f, 0.0f, 0.0f};
}

// 1 proj, 2 prep
static void front(const job *j, const float *u) {
    const dims *m = &j->m;
    k_matmul(j->ex, j->zx, u, j->w->in_proj, NULL, m->BT, m->d, m->R, 0);
    gl_prep(j->ex, j->la, j->th, j->zx + GL_COL_A(j->c), m->R, j->w->a_bias, m->BT, m->HJ);
}

// backward of 2 prep (dla, dth → dzx[:, m|φ], d a_bias) and 1 proj
static void front_backward(const job *j, float *du, const float *u) {
    const dims *m = &j->m;
    float      *da = j->dzx + GL_COL_A(j->c);
    gl_prep_backward(j->ex, da, m->R, j->dla, j->dth, j->zx + GL_COL_A(j->c), j->w->a_bias, m->BT,
                     m->HJ);
    k_colsum(j->ex, j->g->a_bias, da, m->BT, m->Di, m->R);
    k_matmul_backward(j->ex, du, j->g->in_proj, NULL, j->dzx, u, j->w->in_proj, m->BT, m->d, m->R,
                      0);
}

// 4 gate: g = ys·silu(zg + g_bias) into out
static void gate(const job *j, float *out) {
    ssm_rows_cfg rc = gate_cfg(j);
    ssm_gate(j->ex, out, j->ys, NULL, NULL, j->zx + GL_COL_G(j->c), j->m.R, NULL, NULL,
             j->w->g_bias, j->m.BT, &rc);
}

void gl_train_forward(const molt_exec *ex, float *y, float *act, const float *u, int B, int T,
                      const gateloop_cfg *c, const gl_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    MOLT_ASSERT(w->out_proj);
    if (B * T == 0)
        return;
    act_views(&j, act, 0);
    work_views(&j, work, 0, 0);
    const dims *m = &j.m;
    front(&j, u);
    for (int b = 0; b < B; b++) {
        const float *z = j.zx + (size_t)b * T * m->R;
        size_t       r = (size_t)b * T;
        gl_scan_chunked(ex, j.ys + r * m->Di, NULL, z + GL_COL_Q(c), z + GL_COL_K(c),
                        z + GL_COL_V(c), m->R, j.la + r * m->HJ, j.th + r * m->HJ, T, m->H, m->P,
                        m->P, m->Q, j.scan + (size_t)b * m->sw);
    }
    gate(&j, j.gb);
    k_matmul(ex, y, j.gb, w->out_proj, NULL, m->BT, m->Di, m->d, 0);
}

void gl_train_backward(const molt_exec *ex, float *du, const gl_grads *g, const float *dy,
                       const float *act, const float *u, int B, int T, const gateloop_cfg *c,
                       const gl_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    act_views(&j, unconst(act), 0);
    work_views(&j, work, 0, 1);
    const dims  *m = &j.m;
    ssm_rows_cfg rc = gate_cfg(&j);
    // 5 out:  ∂g = ∂y·out_proj,  ∂out_proj += ∂yᵀ·g
    if (g->out_proj)
        gate(&j, j.gb); // recompute g
    k_matmul_backward(ex, j.dg, g->out_proj, NULL, dy, j.gb, w->out_proj, m->BT, m->Di, m->d, 0);
    // 4 gate: ∂g → ∂ys (in place), ∂zg into dzx
    ssm_gate_backward(ex, j.dg, j.dzx + GL_COL_G(c), NULL, NULL, j.ys, NULL,
                      j.zx + GL_COL_G(c), m->R, NULL, NULL, w->g_bias, m->BT, &rc);
    if (w->g_bias)
        k_colsum(ex, g->g_bias, j.dzx + GL_COL_G(c), m->BT, m->Di, m->R);
    // 3 scan, per sequence: ∂q | ∂k | ∂v into dzx, ∂la, ∂th
    for (int b = 0; b < B; b++) {
        size_t       r = (size_t)b * T;
        const float *z = j.zx + r * m->R;
        float       *dz = j.dzx + r * m->R;
        be_copy(ex, j.kw, j.scan + (size_t)b * m->sw, sizeof(float) * m->sw);
        gl_scan_chunked_backward(ex, dz + GL_COL_Q(c), dz + GL_COL_K(c), dz + GL_COL_V(c), m->R,
                                 j.dla + r * m->HJ, j.dth + r * m->HJ, j.dg + r * m->Di,
                                 z + GL_COL_Q(c), z + GL_COL_K(c), z + GL_COL_V(c), m->R,
                                 j.la + r * m->HJ, j.th + r * m->HJ, T, m->H, m->P, m->P, m->Q,
                                 j.kw);
    }
    // 2 prep, 1 proj
    front_backward(&j, du, u);
}

void gl_mat_forward(const molt_exec *ex, float *M, float *act, const float *u, int B, int T,
                    const gateloop_cfg *c, const gl_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, NULL, B, T);
    if (B * T == 0)
        return;
    act_views(&j, act, 1);
    work_views(&j, work, 1, 0);
    const dims *m = &j.m;
    front(&j, u);
    for (int b = 0; b < B; b++) {
        size_t       r = (size_t)b * T;
        const float *z = j.zx + r * m->R;
        gl_materialize(ex, M + (size_t)b * m->H * T * T, z + GL_COL_Q(c), z + GL_COL_K(c), m->R,
                       j.la + r * m->HJ, j.th + r * m->HJ, T, m->H, m->P, j.kw);
    }
}

void gl_mat_backward(const molt_exec *ex, float *du, const gl_grads *g, const float *dM,
                     const float *act, const float *u, int B, int T, const gateloop_cfg *c,
                     const gl_weights *w, float *work) {
    job j;
    job_init(ex, &j, c, w, g, B, T);
    if (B * T == 0)
        return;
    act_views(&j, unconst(act), 1);
    work_views(&j, work, 1, 1);
    const dims *m = &j.m;
    be_zero(ex, j.dzx, sizeof(float) * (size_t)m->BT * m->R); // v, g columns: M does not read them
    for (int b = 0; b < B; b++) {
        size_t       r = (size_t)b * T;
        const float *z = j.zx + r * m->R;
        float       *dz = j.dzx + r * m->R;
        gl_materialize_backward(ex, dz + GL_COL_Q(c), dz + GL_COL_K(c), m->R, j.dla + r * m->HJ,
                                j.dth + r * m->HJ, dM + (size_t)b * m->H * T * T, z + GL_COL_Q(c),
                                z + GL_COL_K(c), m->R, j.la + r * m->HJ, j.th + r * m->HJ, T, m->H,
                                m->P, j.kw);
    }
    front_backward(&j, du, u);
}
