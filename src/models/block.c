/*
 * block.c — the one block loop (see block.h): every forward and the training
 * backward of a block. Shapes: N rows, d d_model, F d_ff.
 */
#include "models/block.h"

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "mixers/mixer.h"

#include <stdlib.h>
#include <string.h>

#define A16(n) (((size_t)(n) + 15) & ~(size_t)15)

// ----------------------------------------------------------------------------
// the MLP's input projections as one GEMM: gate_proj and up_proj are adjacent
// in the parameter buffer (declared in that order; adjacent whenever F·d is a
// multiple of the 16-float alignment), so [W_g; W_u] is one [2F, d] matrix
// and its gradient is adjacent too. Otherwise: two GEMMs through [N,F] scratch.

static bool mlp_in_fused(const layer_weights *w, int d, int F) {
    return w->w_up == w->w_gate + (size_t)F * d;
}

// The matrices a forward multiplies by: the typed views (molt_w) for inference
// (SEQ, ROWS), the f32 master for training and capture (BATCH: its backward
// reads the same master). In the typed buffer gate and up are always adjacent.
typedef struct mlp_mats {
    molt_w gate, up, down;
} mlp_mats;

static mlp_mats mlp_mats_of(const layer_weights *w, block_mode mode) {
    if (mode == BLOCK_BATCH)
        return (mlp_mats){molt_w_f32(w->w_gate), molt_w_f32(w->w_up), molt_w_f32(w->w_down)};
    return (mlp_mats){w->t_gate, w->t_up, w->t_down};
}

// Training under MOLT_EXEC_BF16 on a backend with train_mlp_b16 (kernels.h):
// h [N,F] and ∂gu [N,2F] are read only by bf16 GEMMs (down's forward and dW;
// gate_up's dx and dW), so the SwiGLU ops write them as bf16 (into the same
// buffers, half their bytes) and the GEMMs take them as they are — the same
// bits as fp32 rounded by each GEMM. Needs the fused gate|up GEMM (its ∂gu is
// one matrix). MOLT_MLP_B16=0 keeps the fp32 buffers.
static bool mlp_b16(const molt_exec *ex, const layer_weights *w, int d, int F) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("MOLT_MLP_B16");
        env = !(e && !strcmp(e, "0"));
    }
    return env && (ex->flags & MOLT_EXEC_BF16) && ex->be->train_mlp_b16 && mlp_in_fused(w, d, F);
}

// gu[N, 2F] = v · [W_g; W_u]ᵀ
static void mlp_in_forward(const molt_exec *ex, float *gu, const float *v, const mlp_mats *w,
                           int N, int d, int F, float *scratch) {
    size_t gb = molt_w_bytes(w->gate.dt, (size_t)F, (size_t)d);
    if (w->up.dt == w->gate.dt && (const char *)w->up.data == (const char *)w->gate.data + gb) {
        k_matmul_w(ex, gu, v, w->gate, NULL, N, d, 2 * F, 0);
        return;
    }
    k_matmul_w(ex, scratch, v, w->gate, NULL, N, d, F, 0);
    k_copy_cols(ex, gu, 2 * (size_t)F, scratch, (size_t)F, N, F);
    k_matmul_w(ex, scratch, v, w->up, NULL, N, d, F, 0);
    k_copy_cols(ex, gu + F, 2 * (size_t)F, scratch, (size_t)F, N, F);
}

// from dg ([N, 2F], ∂gu): dv = ∂v (written), grads of W_g, W_u += (dh: [N,F] scratch)
static void mlp_in_backward(const molt_exec *ex, const molt_model *m, float *grad,
                            const layer_weights *w, const float *v, int N, int d, int F,
                            const block_grad_scratch *sc) {
    if (mlp_in_fused(w, d, F)) {
        k_matmul_backward(ex, sc->dv, mixer_grad(m, grad, w->w_gate), NULL, sc->dg, v, w->w_gate,
                          N, d, 2 * F, 0);
        return;
    }
    k_copy_cols(ex, sc->dh, (size_t)F, sc->dg, 2 * (size_t)F, N, F);
    k_matmul_backward(ex, sc->dv, mixer_grad(m, grad, w->w_gate), NULL, sc->dh, v, w->w_gate, N,
                      d, F, 0);
    k_copy_cols(ex, sc->dh, (size_t)F, sc->dg + F, 2 * (size_t)F, N, F);
    k_matmul_backward(ex, sc->dv, mixer_grad(m, grad, w->w_up), NULL, sc->dh, v, w->w_up, N, d,
                      F, 1);
}

// ----------------------------------------------------------------------------
// forward

static void run_mixer(const molt_exec *ex, const molt_model *m, int l, const block_mix *bm, int N,
                      float *y, const float *u, float *work) {
    const mixer_vt *v = layer_mixer(m, l);
    switch (bm->mode) {
    case BLOCK_SEQ:
        v->forward(ex, m, l, y, u, N, bm->pos, bm->state, bm->cap, work, bm->nth);
        break;
    case BLOCK_ROWS:
        v->step_rows(ex, m, l, y, u, N, bm->rpos, bm->rstate, bm->cap, work);
        break;
    case BLOCK_BATCH:
        v->train_forward(ex, m, l, y, bm->act, u, bm->B, bm->T, work);
        break;
    }
}

void block_forward(const molt_exec *ex, const molt_model *m, int l, const block_mix *bm, int N,
                   float *x, const block_act *a, float *mix, float *mlp_tmp, float *work) {
    const model_cfg *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    int d = c->d_model, F = c->d_ff;
    size_t Nd = (size_t)N * d;
    if (a->x_in)
        be_copy(ex, a->x_in, x, Nd * sizeof(float));
    k_rmsnorm_forward(ex, a->u, a->rstd1, x, w->attn_norm, N, d, c->norm_eps);
    run_mixer(ex, m, l, bm, N, mix, a->u, work);
    float *xm = a->x_mid;
    if (c->has_mlp) // x_mid = x + mix, v = rmsnorm(x_mid) in one pass
        k_add_rmsnorm(ex, xm, a->v, a->rstd2, x, mix, w->ffn_norm, N, d, c->norm_eps);
    else
        k_add(ex, xm, x, mix, Nd);
    if (xm != x)
        be_copy(ex, x, xm, Nd * sizeof(float));
    if (!c->has_mlp)
        return;
    mlp_mats mm = mlp_mats_of(w, bm->mode);
    mlp_in_forward(ex, a->g, a->v, &mm, N, d, F, mlp_tmp);
    if (bm->mode == BLOCK_BATCH && mlp_b16(ex, w, d, F)) { // h in bf16 (mlp_b16)
        k_swiglu_pair_b16(ex, (uint16_t *)a->h, a->g, N, F);
        k_matmul_b16(ex, x, (const uint16_t *)a->h, w->w_down, N, F, d, 1);
        return;
    }
    k_swiglu_pair(ex, a->h, a->g, N, F);
    k_matmul_w(ex, x, a->h, mm.down, NULL, N, F, d, 1); // x = x_mid + h·W_dᵀ
}

// ----------------------------------------------------------------------------
// backward (BATCH): the forward's list in reverse; the residual's gradient
// flows through unchanged and every branch adds to it

void block_backward(const molt_exec *ex, const molt_model *m, int l, int B, int T, float *dx,
                    float *grad, const block_act *a, const block_grad_scratch *sc, float *work) {
    const model_cfg *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    int N = B * T, d = c->d_model, F = c->d_ff;
    if (c->has_mlp) {
        if (mlp_b16(ex, w, d, F)) { // the same steps, h and ∂gu in bf16 (mlp_b16)
            uint16_t *hb = (uint16_t *)a->h, *dgb = (uint16_t *)sc->dg;
            if (a->h_again)
                k_swiglu_pair_b16(ex, hb, a->g, N, F);
            k_matmul_backward_b16(ex, sc->dh, mixer_grad(m, grad, w->w_down), dx, NULL, NULL, hb,
                                  w->w_down, N, F, d, 0);
            k_swiglu_pair_backward_b16(ex, dgb, sc->dh, a->g, N, F);
            k_matmul_backward_b16(ex, sc->dv, mixer_grad(m, grad, w->w_gate), NULL, dgb, a->v,
                                  NULL, w->w_gate, N, d, 2 * F, 0);
        } else {
            if (a->h_again) // h = silu(g) ⊙ up again (the same kernel: the forward's bits)
                k_swiglu_pair(ex, a->h, a->g, N, F);
            // x_out = x_mid + h·W_dᵀ
            k_matmul_backward(ex, sc->dh, mixer_grad(m, grad, w->w_down), NULL, dx, a->h,
                              w->w_down, N, F, d, 0);
            // h = silu(g) ⊙ up
            k_swiglu_pair_backward(ex, sc->dg, sc->dh, a->g, N, F);
            // [g | up] = v·[W_g; W_u]ᵀ   (dh is free scratch now)
            mlp_in_backward(ex, m, grad, w, a->v, N, d, F, sc);
        }
        // v = rmsnorm(x_mid): dx (= ∂/∂x_mid, residual) += rmsnorm'ᵀ dv
        k_rmsnorm_backward(ex, dx, mixer_grad(m, grad, w->ffn_norm), sc->dv, a->x_mid, w->ffn_norm,
                           a->rstd2, N, d);
    }
    // x_mid = x_in + mix:  ∂mix = ∂x_mid = dx
    layer_mixer(m, l)->train_backward(ex, m, l, sc->du, grad, dx, a->mx, a->u, B, T, work);
    // u = rmsnorm(x_in): dx (now ∂/∂x_in) += rmsnorm'ᵀ du
    k_rmsnorm_backward(ex, dx, mixer_grad(m, grad, w->attn_norm), sc->du, a->x_in, w->attn_norm,
                       a->rstd1, N, d);
}

// ----------------------------------------------------------------------------
// ends of the stack

void block_embed(const molt_exec *ex, const molt_model *m, const int32_t *ids, int N, float *x) {
    k_embedding(ex, x, m->embed, ids, N, m->cfg.d_model);
}

void block_head(const molt_exec *ex, const molt_model *m, const float *x, int N, float *xn,
                float *rstd, float *logits) {
    const model_cfg *c = &m->cfg;
    k_rmsnorm_forward(ex, xn, rstd, x, m->final_norm, N, c->d_model, model_final_eps(c));
    k_matmul(ex, logits, xn, m->lm_head, NULL, N, c->d_model, c->vocab, 0);
}

void block_logits(const molt_exec *ex, const molt_model *m, const float *x, int N, float *xn,
                  float *logits) {
    const model_cfg *c = &m->cfg;
    k_rmsnorm_forward(ex, xn, NULL, x, m->final_norm, N, c->d_model, model_final_eps(c));
    k_matmul_w(ex, logits, xn, m->lm_head_t, NULL, N, c->d_model, c->vocab, 0);
}

// ----------------------------------------------------------------------------
// inference scratch: u (= v) [N,d], rstd [N], mix [N,d], g [N,2F], h and mlp_tmp [N,F]

size_t block_scratch_floats(const molt_model *m, int N) {
    const model_cfg *c = &m->cfg;
    size_t n = (size_t)N, d = (size_t)c->d_model, F = c->has_mlp ? (size_t)c->d_ff : 0;
    return 2 * A16(n * d) + A16(n) + A16(2 * n * F) + 2 * A16(n * F);
}

float *block_scratch(const molt_model *m, int N, float *p, float *x, block_act *a,
                     float **mlp_tmp) {
    const model_cfg *c = &m->cfg;
    size_t n = (size_t)N, d = (size_t)c->d_model, F = c->has_mlp ? (size_t)c->d_ff : 0;
    memset(a, 0, sizeof *a);
    a->u = a->v = p;
    p += A16(n * d);
    a->rstd1 = a->rstd2 = p;
    p += A16(n);
    float *mix = p;
    p += A16(n * d);
    a->g = p;
    a->up = p + F;
    p += A16(2 * n * F);
    a->h = p;
    p += A16(n * F);
    *mlp_tmp = p;
    a->x_mid = x;
    return mix;
}
