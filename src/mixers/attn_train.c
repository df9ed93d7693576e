/*
 * attn_train.c — training forward / backward of GQA causal attention with
 * RoPE over B sequences of T tokens (see attn_train.h for the act layout).
 * The projections are GEMMs here; RoPE and the attention core are backend
 * ops (kernels/attn.h: k_rope, k_attn_train_forward, k_attn_train_backward).
 *
 * Letters: B sequences, T tokens, d d_model, H query heads, KV kv heads,
 * grp = H/KV, hd head dim.
 *
 * Forward, per sequence (HF LlamaAttention, eager):
 *     q = rope(u·Wqᵀ + bq)   k = rope(u·Wkᵀ + bk)   v = u·Wvᵀ + bv
 *     S_h = (q_h · k_jᵀ)·hd^-½ ,  P_h = softmax_causal(S_h) ,  heads_h = P_h · v_j
 *     out = heads · Woᵀ + bo
 * Backward runs the list in reverse.
 *
 * Accumulation: weight / bias grads +=; du written.
 */
#include "mixers/attn_train.h"

#include "kernels/attn.h"
#include "kernels/backward.h"
#include "kernels/kernels.h"

#include <stdbool.h>

// the saved softmax statistics: P [B,H,T,T], or (flash) lse [B,H,T]
static size_t saved_floats(const attn_cfg *c, int B, int T) {
    return (size_t)B * c->H * T * (c->flash ? 1 : (size_t)T);
}

size_t attn_train_act_floats(const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T;
    return BT * (size_t)(2 * c->H * c->hd + 2 * c->KV * c->hd) + saved_floats(c, B, T);
}

const float *attn_train_saved_probs(const float *act, const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T;
    if (c->flash)
        return NULL; // only lse is saved
    return act + BT * (size_t)c->H * c->hd + 2 * BT * (size_t)c->KV * c->hd; // after q, k, v
}

// dheads [B·T, H·hd]; dqkv [B·T, (H+2KV)·hd] (the gradient of the fused
// projection, same column layout as act's qkv); then the core's scratch
// (k_attn_train_backward_work). attn_train_probs uses the first
// B·T·(H+KV)·hd + B·T·H·hd floats.
size_t attn_train_work_floats(const attn_cfg *c, int B, int T) {
    size_t BT = (size_t)B * T, Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd;
    size_t core = c->flash ? k_attn_flash_backward_work(B, T, c->H, c->KV, c->hd)
                           : k_attn_train_backward_work(B, T, c->H, c->KV, c->hd);
    return 2 * BT * Hh + 2 * BT * KVh + core;
}

// RoPE on the q or k heads of the fused rows (row stride ld), positions
// restarting at 0 every T rows; inverse: the backward (rotation by −angle)
static void rope_rows(const molt_exec *ex, float *x, int ld, int rows, int T, int nh, int hd,
                      const float *cos, const float *sin, int inverse) {
    k_rope(ex, x, ld, rows, nh, hd, 0, T, NULL, cos, sin, inverse);
}

// ----------------------------------------------------------------------------
// The q, k, v projections as one GEMM. q_proj, k_proj and v_proj are declared
// one after the other, so their weights (and gradients, same layout) form one
// [(H+2KV)·hd, d] matrix whenever each size is a multiple of the 16-float
// alignment (biases likewise). Otherwise: one GEMM each through scratch.

static bool adjacent3(const float *a, const float *b, const float *c, size_t na, size_t nb) {
    return (!a && !b && !c) || (a && b == a + na && c == b + nb);
}

static bool qkv_fused(const attn_cfg *c, const attn_weights *w) {
    size_t Hh = (size_t)c->H * c->hd, KVh = (size_t)c->KV * c->hd;
    return adjacent3(w->wq, w->wk, w->wv, Hh * c->d, KVh * c->d) &&
           adjacent3(w->bq, w->bk, w->bv, Hh, KVh);
}

// qkv[BT, ld] columns [0, n_out) = u · [Wq; Wk; Wv][0:n_out]ᵀ (+ bias), then RoPE
// on q and k. n_out = (H+2KV)·hd, or (H+KV)·hd for q and k only. scratch: BT·H·hd
// floats (the unfused path).
static void project(const molt_exec *ex, float *qkv, int ld, int n_out, const float *u, int B, int T,
                    const attn_cfg *c, const attn_weights *w, const float *cos, const float *sin,
                    float *scratch) {
    int    Hh = c->H * c->hd, KVh = c->KV * c->hd, BT = B * T;
    size_t ldz = (size_t)ld;
    if (qkv_fused(c, w) && ld == n_out) {
        k_matmul(ex, qkv, u, w->wq, w->bq, BT, c->d, n_out, 0);
    } else {
        const float *W[3] = {w->wq, w->wk, w->wv}, *bias[3] = {w->bq, w->bk, w->bv};
        int          n[3] = {Hh, KVh, KVh}, col = 0;
        for (int i = 0; i < 3 && col < n_out; col += n[i], i++) {
            k_matmul(ex, scratch, u, W[i], bias[i], BT, c->d, n[i], 0);
            k_copy_cols(ex, qkv + col, ldz, scratch, (size_t)n[i], (size_t)BT, (size_t)n[i]);
        }
    }
    rope_rows(ex, qkv, ld, BT, T, c->H, c->hd, cos, sin, 0);
    rope_rows(ex, qkv + Hh, ld, BT, T, c->KV, c->hd, cos, sin, 0);
}

// ----------------------------------------------------------------------------
// forward

void attn_train_forward(const molt_exec *ex, float *out, float *act, const float *u, int B, int T, const attn_cfg *c,
                        const attn_weights *w, const float *cos, const float *sin, float *work) {
    int    H = c->H, KV = c->KV, hd = c->hd, W = (H + 2 * KV) * hd;
    size_t BT = (size_t)B * T;
    float *qkv = act;                      // [B,T,W]: q | k | v per row
    float *P = qkv + BT * W;               // [B,H,T,T], or lse [B,H,T] (flash)
    float *heads = P + saved_floats(c, B, T); // [B,T,H·hd]
    // the unfused projection's scratch: heads is free until the heads pass
    project(ex, qkv, W, W, u, B, T, c, w, cos, sin, heads);
    if (c->flash)
        k_attn_flash_forward(ex, heads, P, qkv, W, B, T, H, KV, hd);
    else
        k_attn_train_forward(ex, P, heads, qkv, W, B, T, H, KV, hd);
    k_matmul(ex, out, heads, w->wo, w->bo, B * T, H * hd, c->d, 0);
    (void)work;
}

void attn_train_probs(const molt_exec *ex, float *A, const float *u, int B, int T, const attn_cfg *c,
                      const attn_weights *w, const float *cos, const float *sin, float *work) {
    int    H = c->H, KV = c->KV, hd = c->hd, ld = (H + KV) * hd;
    float *qk = work, *scratch = qk + (size_t)B * T * ld; // [B,T,(H+KV)·hd], [B,T,H·hd]
    project(ex, qk, ld, ld, u, B, T, c, w, cos, sin, scratch);
    k_attn_train_forward(ex, A, NULL, qk, ld, B, T, H, KV, hd);
}

// ----------------------------------------------------------------------------
// backward

// qkv = u·[Wq; Wk; Wv]ᵀ + b:  du = dqkv·[Wq; Wk; Wv] (written), weight/bias grads +=.
// One GEMM pair when the weights and the requested grads are adjacent; else
// one per projection, its columns of dqkv copied to scratch ([BT, H·hd]).
static void project_backward(const molt_exec *ex, float *du, const attn_grads *g, const float *dqkv, const float *u,
                             int BT, const attn_cfg *c, const attn_weights *w, float *scratch) {
    int          Hh = c->H * c->hd, KVh = c->KV * c->hd, W = Hh + 2 * KVh, d = c->d;
    float       *gw[3] = {g ? g->wq : NULL, g ? g->wk : NULL, g ? g->wv : NULL};
    float       *gb[3] = {g ? g->bq : NULL, g ? g->bk : NULL, g ? g->bv : NULL};
    const float *Wm[3] = {w->wq, w->wk, w->wv};
    size_t       nW[3] = {(size_t)Hh * d, (size_t)KVh * d, (size_t)KVh * d};
    if (qkv_fused(c, w) && adjacent3(gw[0], gw[1], gw[2], nW[0], nW[1]) &&
        adjacent3(gb[0], gb[1], gb[2], (size_t)Hh, (size_t)KVh)) {
        k_matmul_backward(ex, du, gw[0], gb[0], dqkv, u, w->wq, BT, d, W, 0);
        return;
    }
    int n[3] = {Hh, KVh, KVh}, col = 0;
    for (int i = 0; i < 3; col += n[i], i++) {
        k_copy_cols(ex, scratch, (size_t)n[i], dqkv + col, (size_t)W, (size_t)BT, (size_t)n[i]);
        k_matmul_backward(ex, du, gw[i], gb[i], scratch, u, Wm[i], BT, d, n[i], i > 0);
    }
}

void attn_train_backward(const molt_exec *ex, float *du, const attn_grads *g, const float *dout, const float *act,
                         const float *u, int B, int T, const attn_cfg *c, const attn_weights *w,
                         const float *cos, const float *sin, float *work) {
    int          H = c->H, KV = c->KV, hd = c->hd, d = c->d, W = (H + 2 * KV) * hd;
    size_t       BT = (size_t)B * T;
    const float *qkv = act, *P = qkv + BT * W, *heads = P + saved_floats(c, B, T);
    float       *dheads = work;               // [B,T,H·hd]
    float       *dqkv = dheads + BT * H * hd; // [B,T,W]: dq | dk | dv per row
    float       *core = dqkv + BT * W;        // k_attn_train_backward_work

    // out = heads·Woᵀ + bo:   dheads = dout·Wo;  dWo += doutᵀ·heads;  dbo += Σ dout
    k_matmul_backward(ex, dheads, g ? g->wo : NULL, g ? g->bo : NULL, dout, heads, w->wo, B * T,
                      H * hd, d, 0);

    // per (b, h): heads_h = P_h·v_j,  P_h = softmax_causal(S_h),  S_h = (q_h·k_jᵀ)·hd^-½
    if (c->flash) // P = exp(S − lse) recomputed
        k_attn_flash_backward(ex, dqkv, dheads, qkv, heads, P, B, T, H, KV, hd, core);
    else
        k_attn_train_backward(ex, dqkv, dheads, qkv, P, B, T, H, KV, hd, core);

    // q = rope(q_lin), k = rope(k_lin):   d(q_lin) = rope⁻¹(dq)  (in place)
    rope_rows(ex, dqkv, W, (int)BT, T, H, hd, cos, sin, 1);
    rope_rows(ex, dqkv + H * hd, W, (int)BT, T, KV, hd, cos, sin, 1);

    // [q_lin | k_lin | v] = u·[Wq; Wk; Wv]ᵀ + b   (dheads is free scratch now)
    project_backward(ex, du, g, dqkv, u, B * T, c, w, dheads);
}
