/*
 * model_train.c — whole-model training forward and backward (see
 * model_train.h). Shapes: N = B·T rows, d d_model, F d_ff, V vocab.
 *
 * Forward, per block l:
 *     u = rmsnorm(x_in)                         (rstd1 saved)
 *     mix = attention(u) | ssm(u) | combine(ssm(u), attn_kept(u))
 *     x_mid = x_in + mix
 *     v = rmsnorm(x_mid);  h = silu(v·W_gᵀ) ⊙ (v·W_uᵀ);  x_out = x_mid + h·W_dᵀ   (if MLP)
 *     (v·W_gᵀ and v·W_uᵀ are one GEMM into [N, 2F] rows: gate | up)
 * Backward is the same list in reverse; the residual stream's gradient flows
 * through unchanged and every branch adds to it.
 */
#include "train/model_train.h"

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "mixers/attn_train.h"
#include "mixers/hybrid_train.h"
#include "mixers/ssm_train.h"
#include "models/forward.h"
#include "train/loss.h"

#include <string.h>

// ----------------------------------------------------------------------------
// arena layout: one pure function computes it, used for sizing and carving

typedef struct carve {
    float *base;  // NULL while sizing
    size_t used;
} carve;

static float *take(carve *c, size_t n) {
    size_t off = (c->used + 15) & ~(size_t)15; // 64-byte aligned pieces
    c->used = off + n;
    return c->base ? c->base + off : NULL;
}

static size_t mixer_work(const molt_model *m, int l, int B, int T) {
    const model_cfg *c = &m->cfg;
    size_t w = 0;
    if (c->kind[l] != LAYER_SSM) {
        attn_cfg ac;
        attn_weights aw;
        layer_attn(m, l, &ac, &aw);
        w = MOLT_MAX(w, attn_train_work_floats(&ac, B, T));
    }
    if (c->kind[l] != LAYER_ATTN)
        w = MOLT_MAX(w, ssm_train_work_floats(&c->ssm, B, T));
    return w;
}

static void layout(train_model *tm, const molt_model *m, int B, int T, carve *cv) {
    const model_cfg *c = &m->cfg;
    size_t N = (size_t)B * T, d = (size_t)c->d_model, F = c->has_mlp ? (size_t)c->d_ff : 0,
           V = (size_t)c->vocab;
    size_t work = 0;
    for (int l = 0; l < c->n_layer; l++) {
        tm_layer_act *a = &tm->L[l];
        memset(a, 0, sizeof *a);
        a->x_in = take(cv, N * d);
        a->u = take(cv, N * d);
        a->rstd1 = take(cv, N);
        if (c->kind[l] != LAYER_SSM) {
            attn_cfg ac;
            attn_weights aw;
            layer_attn(m, l, &ac, &aw);
            a->attn = take(cv, attn_train_act_floats(&ac, B, T));
        }
        if (c->kind[l] != LAYER_ATTN)
            a->ssm = take(cv, ssm_train_act_floats(&c->ssm, B, T));
        if (c->kind[l] == LAYER_HYBRID) {
            a->s = take(cv, N * d);
            a->a = take(cv, N * d);
            a->comb = take(cv, hybrid_combine_act_floats((int)N, (int)d));
        }
        a->x_mid = take(cv, N * d);
        if (F) {
            a->v = take(cv, N * d);
            a->rstd2 = take(cv, N);
            a->g = take(cv, N * 2 * F); // [N, 2F]: gate | up per row (one GEMM)
            a->up = a->g + F;            // view, row stride 2F
            a->h = take(cv, N * F);
        }
        work = MOLT_MAX(work, mixer_work(m, l, B, T));
    }
    tm->x_last = take(cv, N * d);
    tm->xn = take(cv, N * d);
    tm->rstdf = take(cv, N);
    tm->logits = take(cv, N * V);
    tm->dlogits = take(cv, N * V);
    tm->dx = take(cv, N * d);
    tm->dmix = take(cv, N * d);
    tm->du = take(cv, N * d);
    tm->du2 = take(cv, N * d);
    tm->ds = take(cv, N * d);
    tm->da = take(cv, N * d);
    tm->dv = take(cv, N * d);
    tm->dg = take(cv, N * 2 * MOLT_MAX(F, 1)); // [N, 2F] like L[l].g
    tm->dup = tm->dg + F;
    tm->dh = take(cv, N * MOLT_MAX(F, 1));
    tm->work = take(cv, work);
}

size_t tm_arena_floats(const molt_model *m, int B, int T) {
    train_model tmp;
    carve cv = {NULL, 0};
    layout(&tmp, m, B, T, &cv);
    return cv.used;
}

molt_status tm_new(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out) {
    *out = NULL;
    if (B <= 0 || T <= 0 || T > m->cfg.max_seq)
        return molt__err(ctx, MOLT_ERR_ARG, "batch %d × sequence %d (the model's context is %d)",
                         B, T, m->cfg.max_seq);
    train_model *tm = molt__calloc(1, sizeof *tm);
    if (!tm)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    tm->m = m;
    tm->B = B;
    tm->T = T;
    tm->N = B * T;
    tm->arena_floats = tm_arena_floats(m, B, T);
    tm->arena = molt__malloc_aligned(tm->arena_floats * sizeof(float));
    tm->grad = molt__malloc_aligned(m->n_floats * sizeof(float));
    tm->ids = molt__malloc(sizeof(int32_t) * (size_t)tm->N);
    if (!tm->arena || !tm->grad || !tm->ids) {
        tm_free(tm);
        return molt__err(ctx, MOLT_ERR_OOM,
                         "out of memory for training activations (%.1f MB for batch %d × %d)",
                         (double)tm_arena_floats(m, B, T) * 4e-6, B, T);
    }
    memset(tm->arena, 0, tm->arena_floats * sizeof(float));
    carve cv = {tm->arena, 0};
    layout(tm, m, B, T, &cv);
    MOLT_ASSERT(cv.used == tm->arena_floats);
    tm_zero_grad(tm);
    *out = tm;
    return MOLT_OK;
}

void tm_free(train_model *tm) {
    if (!tm)
        return;
    molt__free_aligned(tm->arena);
    molt__free_aligned(tm->grad);
    molt__free(tm->ids);
    molt__free(tm);
}

void tm_zero_grad(train_model *tm) { memset(tm->grad, 0, tm->m->n_floats * sizeof(float)); }

float *tm_grad_of(const train_model *tm, const float *w) {
    return w ? tm->grad + (w - tm->m->data) : NULL;
}

static void grads_of_attn(const train_model *tm, const attn_weights *w, attn_grads *g) {
    g->wq = tm_grad_of(tm, w->wq);
    g->wk = tm_grad_of(tm, w->wk);
    g->wv = tm_grad_of(tm, w->wv);
    g->wo = tm_grad_of(tm, w->wo);
    g->bq = tm_grad_of(tm, w->bq);
    g->bk = tm_grad_of(tm, w->bk);
    g->bv = tm_grad_of(tm, w->bv);
    g->bo = tm_grad_of(tm, w->bo);
}

static void grads_of_ssm(const train_model *tm, const ssm_weights *w, ssm_grads *g) {
    g->in_proj = tm_grad_of(tm, w->in_proj);
    g->in_proj_b = tm_grad_of(tm, w->in_proj_b);
    g->conv_w = tm_grad_of(tm, w->conv_w);
    g->conv_b = tm_grad_of(tm, w->conv_b);
    g->dt_bias = tm_grad_of(tm, w->dt_bias);
    g->A_log = tm_grad_of(tm, w->A_log);
    g->D = tm_grad_of(tm, w->D);
    g->norm_w = tm_grad_of(tm, w->norm_w);
    g->z_bias = tm_grad_of(tm, w->z_bias);
    g->out_proj = tm_grad_of(tm, w->out_proj);
    g->out_proj_b = tm_grad_of(tm, w->out_proj_b);
}

// ----------------------------------------------------------------------------
// the MLP's input projections as one GEMM: gate_proj and up_proj are adjacent
// in the parameter buffer (declared in that order; adjacent whenever F·d is a
// multiple of the 16-float alignment), so [W_g; W_u] is one [2F, d] matrix
// and its gradient is adjacent too. Otherwise: two GEMMs through [N,F] scratch.

static bool mlp_in_fused(const layer_weights *w, int d, int F) {
    return w->w_up == w->w_gate + (size_t)F * d;
}

// gu[N, 2F] = v · [W_g; W_u]ᵀ
static void mlp_in_forward(const molt_exec *ex, float *gu, const float *v, const layer_weights *w, int N, int d, int F,
                           float *scratch) {
    if (mlp_in_fused(w, d, F)) {
        k_matmul(ex, gu, v, w->w_gate, NULL, N, d, 2 * F, 0);
        return;
    }
    k_matmul(ex, scratch, v, w->w_gate, NULL, N, d, F, 0);
    k_copy_cols(gu, 2 * (size_t)F, scratch, (size_t)F, N, F);
    k_matmul(ex, scratch, v, w->w_up, NULL, N, d, F, 0);
    k_copy_cols(gu + F, 2 * (size_t)F, scratch, (size_t)F, N, F);
}

// from tm->dg ([N, 2F], ∂gu): tm->dv = ∂v (written), grads of W_g, W_u +=
static void mlp_in_backward(const molt_exec *ex, train_model *tm, const layer_weights *w, const float *v, int N, int d,
                            int F) {
    if (mlp_in_fused(w, d, F)) {
        k_matmul_backward(ex, tm->dv, tm_grad_of(tm, w->w_gate), NULL, tm->dg, v, w->w_gate, N, d,
                          2 * F, 0);
        return;
    }
    k_copy_cols(tm->dh, (size_t)F, tm->dg, 2 * (size_t)F, N, F);
    k_matmul_backward(ex, tm->dv, tm_grad_of(tm, w->w_gate), NULL, tm->dh, v, w->w_gate, N, d, F, 0);
    k_copy_cols(tm->dh, (size_t)F, tm->dg + F, 2 * (size_t)F, N, F);
    k_matmul_backward(ex, tm->dv, tm_grad_of(tm, w->w_up), NULL, tm->dh, v, w->w_up, N, d, F, 1);
}

// ----------------------------------------------------------------------------
// one block

void tm_block_forward(const molt_exec *ex, train_model *tm, int l, const float *x_in, float *x_out) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    tm_layer_act *a = &tm->L[l];
    int N = tm->N, d = c->d_model, F = c->d_ff;
    size_t Nd = (size_t)N * d;
    memcpy(a->x_in, x_in, Nd * sizeof(float));
    k_rmsnorm_forward(ex, a->u, a->rstd1, a->x_in, w->attn_norm, N, d, c->norm_eps);
    float *mix = tm->dmix; // forward scratch (backward scratch is free now)
    attn_cfg ac;
    attn_weights aw;
    if (c->kind[l] != LAYER_SSM)
        layer_attn(m, l, &ac, &aw);
    switch (c->kind[l]) {
    case LAYER_ATTN:
        attn_train_forward(ex, mix, a->attn, a->u, tm->B, tm->T, &ac, &aw, m->rope_cos, m->rope_sin,
                           tm->work);
        break;
    case LAYER_SSM:
        ssm_train_forward(ex, mix, a->ssm, a->u, tm->B, tm->T, &c->ssm, &w->ssm, tm->work);
        break;
    default:
        ssm_train_forward(ex, a->s, a->ssm, a->u, tm->B, tm->T, &c->ssm, &w->ssm, tm->work);
        attn_train_forward(ex, a->a, a->attn, a->u, tm->B, tm->T, &ac, &aw, m->rope_cos, m->rope_sin,
                           tm->work);
        hybrid_combine_forward(ex, mix, a->comb, a->s, a->a, w->adapter_w, w->adapter_b, N, d);
        break;
    }
    for (size_t i = 0; i < Nd; i++)
        a->x_mid[i] = a->x_in[i] + mix[i];
    if (!c->has_mlp) {
        memcpy(x_out, a->x_mid, Nd * sizeof(float));
        return;
    }
    k_rmsnorm_forward(ex, a->v, a->rstd2, a->x_mid, w->ffn_norm, N, d, c->norm_eps);
    // [g | up] = v·[W_g; W_u]ᵀ, h = silu(g) ⊙ up
    mlp_in_forward(ex, a->g, a->v, w, N, d, F, tm->dh);
    k_swiglu_pair(ex, a->h, a->g, N, F);
    if (x_out != a->x_mid)
        memcpy(x_out, a->x_mid, Nd * sizeof(float));
    k_matmul(ex, x_out, a->h, w->w_down, NULL, N, F, d, 1);
}

void tm_block_backward(const molt_exec *ex, train_model *tm, int l, float *dx) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    const tm_layer_act *a = &tm->L[l];
    int N = tm->N, d = c->d_model, F = c->d_ff;
    size_t Nd = (size_t)N * d;
    if (c->has_mlp) {
        // x_out = x_mid + h·W_dᵀ
        k_matmul_backward(ex, tm->dh, tm_grad_of(tm, w->w_down), NULL, dx, a->h, w->w_down, N, F, d, 0);
        // h = silu(g) ⊙ up
        k_swiglu_pair_backward(ex, tm->dg, tm->dh, a->g, N, F);
        // [g | up] = v·[W_g; W_u]ᵀ   (dh is free scratch now)
        mlp_in_backward(ex, tm, w, a->v, N, d, F);
        // v = rmsnorm(x_mid): dx (= ∂/∂x_mid, residual) += rmsnorm'ᵀ dv
        k_rmsnorm_backward(ex, dx, tm_grad_of(tm, w->ffn_norm), tm->dv, a->x_mid, w->ffn_norm,
                           a->rstd2, N, d);
    }
    // x_mid = x_in + mix:  ∂mix = ∂x_mid = dx
    attn_cfg ac;
    attn_weights aw;
    attn_grads ag;
    ssm_grads sg;
    if (c->kind[l] != LAYER_SSM) {
        layer_attn(m, l, &ac, &aw);
        grads_of_attn(tm, &aw, &ag);
    }
    if (c->kind[l] != LAYER_ATTN)
        grads_of_ssm(tm, &w->ssm, &sg);
    switch (c->kind[l]) {
    case LAYER_ATTN:
        attn_train_backward(ex, tm->du, &ag, dx, a->attn, a->u, tm->B, tm->T, &ac, &aw, m->rope_cos,
                            m->rope_sin, tm->work);
        break;
    case LAYER_SSM:
        ssm_train_backward(ex, tm->du, &sg, dx, a->ssm, a->u, tm->B, tm->T, &c->ssm, &w->ssm,
                           tm->work);
        break;
    default:
        // mix = combine(s, a)
        hybrid_combine_backward(ex, tm->ds, tm->da, tm_grad_of(tm, w->adapter_w),
                                tm_grad_of(tm, w->adapter_b), dx, a->comb, a->s, a->a,
                                w->adapter_w, N, d);
        attn_train_backward(ex, tm->du, &ag, tm->da, a->attn, a->u, tm->B, tm->T, &ac, &aw,
                            m->rope_cos, m->rope_sin, tm->work);
        ssm_train_backward(ex, tm->du2, &sg, tm->ds, a->ssm, a->u, tm->B, tm->T, &c->ssm, &w->ssm,
                           tm->work);
        k_add(tm->du, tm->du2, Nd);
        break;
    }
    // u = rmsnorm(x_in): dx (now ∂/∂x_in) += rmsnorm'ᵀ du
    k_rmsnorm_backward(ex, dx, tm_grad_of(tm, w->attn_norm), tm->du, a->x_in, w->attn_norm, a->rstd1,
                       N, d);
}

// ----------------------------------------------------------------------------
// whole model

void tm_forward(const molt_exec *ex, train_model *tm, const int32_t *ids) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    int N = tm->N, d = c->d_model;
    memcpy(tm->ids, ids, sizeof(int32_t) * (size_t)N);
    float *x = tm->x_last; // the residual stream is carried in x_last between blocks
    for (int i = 0; i < N; i++)
        memcpy(x + (size_t)i * d, m->embed + (size_t)ids[i] * d, sizeof(float) * (size_t)d);
    for (int l = 0; l < c->n_layer; l++)
        tm_block_forward(ex, tm, l, x, x); // x_in is copied into L[l] before x is overwritten
    if (tm->skip_head)
        return;
    k_rmsnorm_forward(ex, tm->xn, tm->rstdf, x, m->final_norm, N, d, c->norm_eps);
    k_matmul(ex, tm->logits, tm->xn, m->lm_head, NULL, N, d, c->vocab, 0);
}

double tm_loss_ce(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale) {
    int64_t count = 0;
    // count first so the gradient is the mean
    for (int i = 0; i < tm->N; i++)
        count += targets[i] >= 0;
    if (count == 0) {
        memset(tm->dlogits, 0, sizeof(float) * (size_t)tm->N * tm->m->cfg.vocab);
        return 0.0;
    }
    double sum = loss_ce(ex, tm->dlogits, tm->logits, targets, tm->N, tm->m->cfg.vocab,
                         scale / (float)count, NULL);
    return sum / (double)count;
}

void tm_backward(const molt_exec *ex, train_model *tm) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    int N = tm->N, d = c->d_model, V = c->vocab;
    // logits = xn · headᵀ   (tied: head is the embedding, its grad accumulates there)
    k_matmul_backward(ex, tm->du, tm_grad_of(tm, m->lm_head), NULL, tm->dlogits, tm->xn, m->lm_head,
                      N, d, V, 0);
    // xn = rmsnorm(x_last)
    memset(tm->dx, 0, sizeof(float) * (size_t)N * d);
    k_rmsnorm_backward(ex, tm->dx, tm_grad_of(tm, m->final_norm), tm->du, tm->x_last, m->final_norm,
                       tm->rstdf, N, d);
    // x_last holds the final residual; each block saved its own x_in
    for (int l = c->n_layer - 1; l >= 0; l--)
        tm_block_backward(ex, tm, l, tm->dx);
    // x = embed[ids]
    k_embedding_backward(ex, tm_grad_of(tm, m->embed), tm->dx, tm->ids, N, d);
}
