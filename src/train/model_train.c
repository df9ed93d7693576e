/*
 * model_train.c — whole-model training forward and backward (see
 * model_train.h) over one activation arena. Shapes: N = B·T rows, d d_model,
 * F d_ff, V vocab. The blocks run through the block loop (models/block.c) in
 * BLOCK_BATCH mode — the same code as prefill and decode — and each block's
 * backward is its forward list in reverse (block_backward); here are the
 * embedding, the head, the loss and the arena.
 */
#include "train/model_train.h"

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "mixers/mixer.h"
#include "models/block.h"
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

// Saved: per layer the block's activations (block.h) and its mixer's (act_floats) — but
// for TM_TRAIN one SwiGLU output h serves every layer (block_backward recomputes it).
// Backward scratch (not in a capture): dlogits, dx, du, dv [N,d], dg [N,2F], dh [N,F].
// TM_LOGITS: one set of block activations (the largest layer's) shared by every
// layer — each block overwrites the last one's, only the logits are kept.
// TM_RECOMPUTE: the same sharing, but every layer keeps its own x_in (the
// backward recomputes the rest from it), plus the training buffers.
// the forward-only kinds: no gradients, no backward scratch
static bool kind_captures(tm_kind kind) { return kind == TM_CAPTURE || kind == TM_LOGITS; }

// head_rows: the rows of logits held (N, or fewer: the head then runs by chunk, the
// loss writing its gradient over the chunk's logits — dlogits is logits)
static void layout(train_model *tm, const molt_model *m, int B, int T, tm_kind kind,
                   int head_rows, carve *cv) {
    const model_cfg *c = &m->cfg;
    size_t N = (size_t)B * T, d = (size_t)c->d_model, F = c->has_mlp ? (size_t)c->d_ff : 0,
           V = (size_t)c->vocab;
    bool capture = kind_captures(kind);
    bool shared = kind == TM_LOGITS || kind == TM_RECOMPUTE;
    size_t work = 0, act_max = 0;
    for (int l = 0; l < c->n_layer; l++)
        act_max = MOLT_MAX(act_max, layer_mixer(m, l)->act_floats(m, l, B, T));
    for (int l = 0; l < c->n_layer; l++) {
        const mixer_vt *mx = layer_mixer(m, l);
        block_act *a = &tm->L[l];
        work = MOLT_MAX(work, mx->train_work_floats(m, l, B, T));
        if (shared && l > 0) {
            *a = tm->L[0];
            if (kind == TM_RECOMPUTE)
                a->x_in = take(cv, N * d);
            continue;
        }
        memset(a, 0, sizeof *a);
        a->x_in = take(cv, N * d);
        a->u = take(cv, N * d);
        a->rstd1 = take(cv, N);
        a->mx = take(cv, shared ? act_max : mx->act_floats(m, l, B, T));
        a->x_mid = take(cv, N * d);
        if (F) {
            a->v = take(cv, N * d);
            a->rstd2 = take(cv, N);
            a->g = take(cv, N * 2 * F);     // [N, 2F]: gate | up per row (one GEMM)
            a->up = a->g ? a->g + F : NULL; // view, row stride 2F
            // training: one h for every layer, recomputed from g by the backward (an
            // elementwise op: N·F floats a layer saved, 4 GB for a 1B model at 4 × 2048)
            a->h = kind == TM_TRAIN && l > 0 ? tm->L[0].h : take(cv, N * F);
            a->h_again = kind == TM_TRAIN;
        }
    }
    tm->x_last = take(cv, N * d);
    tm->xn = take(cv, N * d);
    tm->rstdf = take(cv, N);
    tm->logits = take(cv, (size_t)head_rows * V);
    tm->dmix = take(cv, N * d); // the mixer's output in the forward
    tm->mlp_tmp = take(cv, N * MOLT_MAX(F, 1));
    if (!capture) {
        tm->dlogits = (size_t)head_rows < N ? tm->logits : take(cv, N * V);
        tm->dx = take(cv, N * d);
        tm->sc.du = take(cv, N * d);
        tm->sc.dv = take(cv, N * d);
        tm->sc.dg = take(cv, N * 2 * MOLT_MAX(F, 1)); // [N, 2F] like L[l].g
        tm->sc.dh = take(cv, N * MOLT_MAX(F, 1));
    }
    tm->work = take(cv, work);
}

static size_t arena_floats(const molt_model *m, int B, int T, tm_kind kind, int head_rows) {
    train_model tmp;
    carve cv = {NULL, 0};
    layout(&tmp, m, B, T, kind, head_rows, &cv);
    return cv.used;
}

size_t tm_arena_floats(const molt_model *m, int B, int T) {
    return arena_floats(m, B, T, TM_TRAIN, B * T);
}

int tm_auto_head_rows(const molt_model *m, int B, int T) {
    int    N = B * T;
    size_t V = (size_t)m->cfg.vocab;
    if ((size_t)N * V <= TM_HEAD_CHUNK_FLOATS)
        return N;
    size_t r = TM_HEAD_CHUNK_FLOATS / V / 64 * 64; // a multiple of 64 rows, at least 64
    return (int)MOLT_MIN((size_t)N, MOLT_MAX(r, (size_t)64));
}

molt_status tm_new_kind(molt_ctx *ctx, molt_model *m, int B, int T, tm_kind kind, int head_rows,
                        train_model **out) {
    bool capture = kind_captures(kind);
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
    tm->capture = capture;
    tm->recompute = kind == TM_RECOMPUTE;
    tm->head_rows = head_rows > 0 && head_rows < tm->N ? head_rows : tm->N;
    tm->arena_floats = arena_floats(m, B, T, kind, tm->head_rows);
    tm->arena = be_allocf(m->be, tm->arena_floats);
    tm->grad = capture ? NULL : be_allocf(m->be, m->n_floats);
    tm->ids = molt__malloc(sizeof(int32_t) * (size_t)tm->N);
    tm->loss_rows = capture ? NULL : be_alloc(m->be, sizeof(double) * (size_t)tm->N);
    if (!tm->arena || (!capture && (!tm->grad || !tm->loss_rows)) || !tm->ids) {
        size_t need = tm->arena_floats;
        tm_free(tm);
        return molt__err(ctx, MOLT_ERR_OOM,
                         "out of memory for %s activations (%.1f MB for batch %d × %d)",
                         capture ? "captured" : "training", (double)need * 4e-6, B, T);
    }
    molt_exec ex = be_exec1(m->be);
    be_zero(&ex, tm->arena, tm->arena_floats * sizeof(float));
    carve cv = {tm->arena, 0};
    layout(tm, m, B, T, kind, tm->head_rows, &cv);
    MOLT_ASSERT(cv.used == tm->arena_floats);
    tm_zero_grad(tm);
    *out = tm;
    return MOLT_OK;
}

molt_status tm_new(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out) {
    return tm_new_kind(ctx, m, B, T, TM_TRAIN, 0, out);
}

molt_status tm_new_recompute(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out) {
    return tm_new_kind(ctx, m, B, T, TM_RECOMPUTE, 0, out);
}

molt_status tm_new_capture(molt_ctx *ctx, const molt_model *m, int B, int T, train_model **out) {
    return tm_new_kind(ctx, (molt_model *)(uintptr_t)m, B, T, TM_CAPTURE, 0, out);
}

molt_status tm_new_logits(molt_ctx *ctx, const molt_model *m, int B, int T, train_model **out) {
    return tm_new_kind(ctx, (molt_model *)(uintptr_t)m, B, T, TM_LOGITS, 0, out);
}

void tm_free(train_model *tm) {
    if (!tm)
        return;
    be_free(tm->m->be, tm->arena);
    be_free(tm->m->be, tm->grad);
    be_free(tm->m->be, tm->loss_rows);
    molt__free(tm->ids);
    molt__free(tm);
}

void tm_zero_grad(train_model *tm) {
    if (tm->grad) {
        molt_exec ex = be_exec1(tm->m->be);
        be_zero(&ex, tm->grad, tm->m->n_floats * sizeof(float));
    }
}

float *tm_grad_of(const train_model *tm, const float *w) {
    return w ? tm->grad + (w - tm->m->data) : NULL;
}

ssm_grads tm_ssm_grads(const train_model *tm, const ssm_weights *w) {
    return (ssm_grads){tm_grad_of(tm, w->in_proj),    tm_grad_of(tm, w->in_proj_b),
                       tm_grad_of(tm, w->conv_w),     tm_grad_of(tm, w->conv_b),
                       tm_grad_of(tm, w->dt_bias),    tm_grad_of(tm, w->A_log),
                       tm_grad_of(tm, w->D),          tm_grad_of(tm, w->norm_w),
                       tm_grad_of(tm, w->z_bias),     tm_grad_of(tm, w->out_proj),
                       tm_grad_of(tm, w->out_proj_b)};
}

// ----------------------------------------------------------------------------
// one block: the block loop's own code (models/block.c) in BLOCK_BATCH mode

void tm_block_forward(const molt_exec *ex, train_model *tm, int l, const float *x_in, float *x_out) {
    if (x_out != x_in)
        be_copy(ex, x_out, x_in, (size_t)tm->N * (size_t)tm->m->cfg.d_model * sizeof(float));
    block_mix bm = {.mode = BLOCK_BATCH, .B = tm->B, .T = tm->T, .act = tm->L[l].mx};
    block_forward(ex, tm->m, l, &bm, tm->N, x_out, &tm->L[l], tm->dmix, tm->mlp_tmp, tm->work);
}

void tm_block_backward(const molt_exec *ex, train_model *tm, int l, float *dx) {
    MOLT_ASSERT(!tm->capture);
    block_backward(ex, tm->m, l, tm->B, tm->T, dx, tm->grad, &tm->L[l], &tm->sc, tm->work);
}

// ----------------------------------------------------------------------------
// whole model

void tm_forward(const molt_exec *ex, train_model *tm, const int32_t *ids) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    int N = tm->N;
    memcpy(tm->ids, ids, sizeof(int32_t) * (size_t)N);
    float *x = tm->x_last; // the residual stream is carried in x_last between blocks
    block_embed(ex, m, ids, N, x);
    for (int l = 0; l < c->n_layer; l++)
        tm_block_forward(ex, tm, l, x, x); // x_in is copied into L[l] before x is overwritten
    if (tm->skip_head || tm->head_rows < N)
        return;
    block_head(ex, m, x, N, tm->xn, tm->rstdf, tm->logits);
}

void tm_head(const molt_exec *ex, train_model *tm, int r0, int rows) {
    size_t d = (size_t)tm->m->cfg.d_model;
    MOLT_ASSERT(r0 >= 0 && rows > 0 && rows <= tm->head_rows && r0 + rows <= tm->N);
    block_head(ex, tm->m, tm->x_last + (size_t)r0 * d, rows, tm->xn + (size_t)r0 * d,
               tm->rstdf + r0, tm->logits);
}

void tm_head_backward(const molt_exec *ex, train_model *tm, int r0, int rows,
                      const float *dlogits) {
    const molt_model *m = tm->m;
    size_t d = (size_t)m->cfg.d_model;
    MOLT_ASSERT(!tm->capture && r0 >= 0 && rows > 0 && r0 + rows <= tm->N);
    // logits = xn · headᵀ   (tied: head is the embedding, its grad accumulates there)
    k_matmul_backward(ex, tm->sc.du + (size_t)r0 * d, tm_grad_of(tm, m->lm_head), NULL, dlogits,
                      tm->xn + (size_t)r0 * d, m->lm_head, rows, (int)d, m->cfg.vocab, 0);
}

// The logits of rows [r0, r0 + rows), at tm->logits + the returned offset: a chunked
// model's head runs now into its chunk buffer (offset 0); an unchunked one's rows were
// written by tm_forward (offset r0·V).
static size_t chunk_logits(const molt_exec *ex, train_model *tm, int r0, int rows) {
    if (tm->head_rows == tm->N)
        return (size_t)r0 * (size_t)tm->m->cfg.vocab;
    tm_head(ex, tm, r0, rows);
    return 0;
}

double tm_kd_step(const molt_exec *ex, train_model *ts, train_model *tt, tm_kd_loss fn,
                  float tau, float scale, bool backward) {
    int    N = ts->N, V = ts->m->cfg.vocab;
    int    R = MOLT_MIN(ts->head_rows, tt->head_rows); // N: one pass, as tm_backward
    double sum = 0;
    MOLT_ASSERT(tt->N == N && tt->m->cfg.vocab == V && !ts->capture);
    for (int r0 = 0; r0 < N; r0 += R) {
        int    rows = MOLT_MIN(R, N - r0);
        size_t to = chunk_logits(ex, tt, r0, rows), so = chunk_logits(ex, ts, r0, rows);
        sum += fn(ex, ts->loss_rows, ts->dlogits + so, ts->logits + so, tt->logits + to, rows, V,
                  tau, scale);
        if (backward) // this chunk's gradient, before the next chunk overwrites it
            tm_head_backward(ex, ts, r0, rows, ts->dlogits + so);
    }
    if (backward)
        tm_backward_body(ex, ts);
    return sum;
}

double tm_loss_ce(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale) {
    MOLT_ASSERT(tm->head_rows == tm->N); // a chunked head: tm_ce_step with its backward
    return tm_ce_step(ex, tm, targets, scale, false);
}

double tm_ce_step(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale,
                  bool backward) {
    int N = tm->N, V = tm->m->cfg.vocab, R = tm->head_rows; // R = N: one chunk, no head call
    MOLT_ASSERT(!tm->capture);
    int64_t count = 0; // first, so that every chunk's gradient is of the mean
    for (int i = 0; i < N; i++)
        count += targets[i] >= 0;
    // no targets: every row is ignored, its loss and gradient zero
    float  s = count ? scale / (float)count : 0.0f;
    double sum = 0;
    for (int r0 = 0; r0 < N; r0 += R) {
        int    rows = MOLT_MIN(R, N - r0);
        size_t o = chunk_logits(ex, tm, r0, rows);
        sum += loss_ce(ex, tm->loss_rows, tm->dlogits + o, tm->logits + o, targets + r0, rows, V,
                       s, NULL);
        if (backward)
            tm_head_backward(ex, tm, r0, rows, tm->dlogits + o);
    }
    if (backward)
        tm_backward_body(ex, tm);
    return count ? sum / (double)count : 0.0;
}

void tm_backward(const molt_exec *ex, train_model *tm) {
    MOLT_ASSERT(tm->head_rows == tm->N); // a chunked head: tm_kd_step
    tm_head_backward(ex, tm, 0, tm->N, tm->dlogits);
    tm_backward_body(ex, tm);
}

void tm_backward_body(const molt_exec *ex, train_model *tm) {
    const molt_model *m = tm->m;
    const model_cfg *c = &m->cfg;
    int N = tm->N, d = c->d_model;
    MOLT_ASSERT(!tm->capture);
    // xn = rmsnorm(x_last)
    be_zero(ex, tm->dx, sizeof(float) * (size_t)N * d);
    k_rmsnorm_backward(ex, tm->dx, tm_grad_of(tm, m->final_norm), tm->sc.du, tm->x_last, m->final_norm,
                       tm->rstdf, N, d);
    // x_last holds the final residual; each block saved its own x_in
    for (int l = c->n_layer - 1; l >= 0; l--) {
        // recompute: block l's activations from its input (x_last, read above, is the
        // output's scratch); the last block's are still those of the forward
        if (tm->recompute && l < c->n_layer - 1)
            tm_block_forward(ex, tm, l, tm->L[l].x_in, tm->x_last);
        tm_block_backward(ex, tm, l, tm->dx);
        if (tm->grad_ready)
            tm->grad_ready(tm->grad_user, ex, l);
    }
    // x = embed[ids]
    k_embedding_backward(ex, tm_grad_of(tm, m->embed), tm->dx, tm->ids, N, d);
}
