/*
 * gl_mixer.c — the GateLoop token mixer over the kernels of
 * kernels/gateloop.h. Contracts and equations in mixers/gl_mixer.h
 * (shared/docs/ALGORITHMS.md §9).
 *
 * Forward, as a list of stages, each one backend op (the same ops the
 * training forward and backward in gl_train.c call):
 *   1 proj   zx[T,R] = u · in_projᵀ                  (typed view: k_matmul_w)
 *   2 prep   la, th = gl_prep(zx[:, m|φ], a_bias)     log|a|, arg a   [T,HJ]
 *   3 scan   ys = GateLoop(q, k, v, la, th)           gl_scan_chunked, or gl_step_rows
 *                                                     token by token (recurrent / decode),
 *                                                     or gl_scan_assoc (the paper's form)
 *   4 gate   ys ← ys · silu(g + g_bias)               ssm_gate (DiscreteMamba2's gate
 *                                                     form, no D skip)
 *   5 out    y = ys · out_projᵀ
 * materialize: 1, 2, then M = gl_materialize(q, k, la, th) (f32 master).
 * Work buffers (floats) hold every intermediate: see bufs.
 */
#include "mixers/gl_mixer.h"

#include "core/core.h"
#include "kernels/gateloop.h"
#include "kernels/kernels.h"
#include "kernels/ssm_rows.h"

#include <string.h>

int    gl_in_proj_rows(const gateloop_cfg *c) { return 5 * c->d_inner; }
size_t gl_state_floats(const gateloop_cfg *c) { return (size_t)c->H * c->P * (size_t)c->P; }

const char *gl_cfg_check(const gateloop_cfg *c) {
    if (c->d_model < 1 || c->d_inner < 1)
        return "gateloop: d_model and d_inner must be >= 1";
    if (c->H < 1 || c->P < 2)
        return "gateloop: heads must be >= 1 and head_dim >= 2";
    if (c->P % 2)
        return "gateloop: head_dim must be even (its q/k dims pair into complex numbers)";
    if ((long long)c->H * c->P != c->d_inner)
        return "gateloop: heads * head_dim != d_inner";
    if (c->chunk < 1)
        return "gateloop: chunk size must be >= 1";
    return NULL;
}

typedef struct bufs {
    float *zx;   // [T,R]   in_proj output
    float *la;   // [T,HJ]  log|a|
    float *th;   // [T,HJ]  arg a
    float *ys;   // [T,Di]  scan output, then the gated output
    float *sst;  // [H,P,P] state when the caller gives none (recurrent)
    float *scan; // gl_chunked_work or gl_materialize_work floats
} bufs;

static size_t bufs_of(const gateloop_cfg *c, int T, bufs *b, float *work) {
    size_t Tz = (size_t)(T > 0 ? T : 0), Di = (size_t)c->d_inner, HJ = Di / 2;
    size_t sw = gl_chunked_work(T, c->H, c->P, c->P, c->chunk);
    size_t mw = gl_materialize_work(T, c->H, c->P);
    size_t sizes[6] = {Tz * (size_t)gl_in_proj_rows(c), Tz * HJ, Tz * HJ, Tz * Di,
                       gl_state_floats(c), sw > mw ? sw : mw};
    bufs   dummy;
    if (!b)
        b = &dummy;
    float **ptrs[6] = {&b->zx, &b->la, &b->th, &b->ys, &b->sst, &b->scan};
    size_t  off = 0;
    for (int i = 0; i < 6; i++) {
        *ptrs[i] = work ? work + off : NULL;
        off += sizes[i];
    }
    return off;
}

size_t gl_mixer_work(const gateloop_cfg *c, int T) { return bufs_of(c, T, NULL, NULL); }

// the assoc scan's work replaces the scan slot
size_t gl_mixer_work_assoc(const gateloop_cfg *c, int T) {
    return bufs_of(c, T, NULL, NULL) + gl_assoc_work(T, c->H, c->P, c->P);
}

// the typed view, or the f32 matrix when the struct was built without one
static molt_w tw(molt_w t, const float *f) { return t.data ? t : molt_w_f32(f); }

static ssm_rows_cfg gate_cfg(const gateloop_cfg *c) {
    return (ssm_rows_cfg){0, c->H, c->P, 1, 1, 0.0f, 0.0f, 0.0f};
}

// 1 proj, 2 prep over n rows (typed: the inference paths' typed view)
static void stage_front(const molt_exec *ex, const bufs *b, const float *u, int n,
                        const gateloop_cfg *c, const gl_weights *w, bool typed) {
    int R = gl_in_proj_rows(c);
    if (typed)
        k_matmul_w(ex, b->zx, u, tw(w->in_proj_t, w->in_proj), NULL, n, c->d_model, R, 0);
    else
        k_matmul(ex, b->zx, u, w->in_proj, NULL, n, c->d_model, R, 0);
    gl_prep(ex, b->la, b->th, b->zx + GL_COL_A(c), R, w->a_bias, n, c->d_inner / 2);
}

// 4 gate, 5 out over n rows
static void stage_back(const molt_exec *ex, const bufs *b, float *y, int n,
                       const gateloop_cfg *c, const gl_weights *w) {
    ssm_rows_cfg rc = gate_cfg(c);
    ssm_gate(ex, b->ys, b->ys, NULL, NULL, b->zx + GL_COL_G(c), gl_in_proj_rows(c), NULL, NULL,
             w->g_bias, n, &rc);
    k_matmul_w(ex, y, b->ys, tw(w->out_proj_t, w->out_proj), NULL, n, c->d_inner, c->d_model, 0);
}

void gl_mixer_forward(const molt_exec *ex, float *y, const float *u, int T,
                      const gateloop_cfg *c, const gl_weights *w, float *state, gl_mode mode,
                      float *work) {
    MOLT_ASSERT(gl_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->a_bias && w->out_proj);
    if (T <= 0)
        return;
    bufs b;
    bufs_of(c, T, &b, work);
    int R = gl_in_proj_rows(c), H = c->H, P = c->P, Di = c->d_inner, HJ = Di / 2;
    stage_front(ex, &b, u, T, c, w, true);
    if (mode == GL_MODE_CHUNKED) {
        gl_scan_chunked(ex, b.ys, state, b.zx + GL_COL_Q(c), b.zx + GL_COL_K(c),
                        b.zx + GL_COL_V(c), R, b.la, b.th, T, H, P, P, c->chunk, b.scan);
    } else if (mode == GL_MODE_ASSOC) {
        gl_scan_assoc(ex, b.ys, state, b.zx + GL_COL_Q(c), b.zx + GL_COL_K(c), b.zx + GL_COL_V(c),
                      R, b.la, b.th, T, H, P, P, work + gl_mixer_work(c, T));
    } else {
        float *st = state;
        if (!st) {
            st = b.sst;
            be_zero(ex, st, sizeof(float) * gl_state_floats(c));
        }
        for (int t = 0; t < T; t++) {
            const float *zt = b.zx + (size_t)t * R;
            gl_step_rows(ex, b.ys + (size_t)t * Di, &st, zt + GL_COL_Q(c), zt + GL_COL_K(c),
                         zt + GL_COL_V(c), R, b.la + (size_t)t * HJ, b.th + (size_t)t * HJ, 1, H,
                         P, P);
        }
    }
    stage_back(ex, &b, y, T, c, w);
}

void gl_mixer_step_rows(const molt_exec *ex, float *y, const float *u, int n,
                        const gateloop_cfg *c, const gl_weights *w, float *const *state,
                        float *work) {
    MOLT_ASSERT(gl_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->a_bias && w->out_proj);
    if (n <= 0)
        return;
    bufs b;
    bufs_of(c, n, &b, work);
    int R = gl_in_proj_rows(c);
    stage_front(ex, &b, u, n, c, w, true);
    gl_step_rows(ex, b.ys, state, b.zx + GL_COL_Q(c), b.zx + GL_COL_K(c), b.zx + GL_COL_V(c), R,
                 b.la, b.th, n, c->H, c->P, c->P);
    stage_back(ex, &b, y, n, c, w);
}

void gl_mixer_materialize(const molt_exec *ex, float *M, const float *u, int T,
                          const gateloop_cfg *c, const gl_weights *w, float *work) {
    MOLT_ASSERT(gl_cfg_check(c) == NULL);
    MOLT_ASSERT(w->in_proj && w->a_bias);
    if (T <= 0)
        return;
    bufs b;
    bufs_of(c, T, &b, work);
    stage_front(ex, &b, u, T, c, w, false);
    gl_materialize(ex, M, b.zx + GL_COL_Q(c), b.zx + GL_COL_K(c), gl_in_proj_rows(c), b.la, b.th,
                   T, c->H, c->P, b.scan);
}
