/*
 * forward.c — running a model over a sequence: molt_seq (the per-sequence KV
 * cache and recurrent state, plus scratch sized once) and the block loop.
 *
 *     x = embed[ids]                                   [T,d]
 *     per layer l:  u = rmsnorm(x)                     [T,d]
 *                   x += mixer_l(u)                    attention | SSM | hybrid
 *                   x += down(silu(gate(v)) * up(v)),  v = rmsnorm(x)   (if the block has an MLP)
 *     logits = rmsnorm(x) · headᵀ                      [T,V]
 *
 * Hybrid layers (retrieval-aware, ALGORITHMS.md §7 / mohawk DoubleBlockAdapter):
 *     s = SSM(u);  a = Attn_kept(u)
 *     a' = (a − mean(a)) / (std(a) + 1e-5) · (std(s) + 1e-5) + mean(s)   per token,
 *          std unbiased (torch.std), over the hidden dim
 *     mixer(u) = 0.5 · (s + adapter(a'))
 *
 * A feed of n tokens is processed in pieces of at most seq->chunk tokens so
 * scratch stays bounded; pieces are exact (the KV cache and SSM state carry).
 * No allocation happens after molt_seq_new.
 */
#include "models/forward.h"

#include "kernels/kernels.h"
#include "mixers/attention.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// per-layer attention config / weights of a model layer

void layer_attn(const molt_model *m, int l, attn_cfg *c, attn_weights *w) {
    const model_cfg *cfg = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    c->d = cfg->d_model;
    c->hd = cfg->head_dim;
    if (cfg->kind[l] == LAYER_HYBRID) {
        c->H = c->KV = cfg->n_keep[l];
    } else {
        c->H = cfg->n_head;
        c->KV = cfg->n_kv_head;
    }
    w->wq = lw->wq;
    w->wk = lw->wk;
    w->wv = lw->wv;
    w->wo = lw->wo;
    w->bq = lw->bq;
    w->bk = lw->bk;
    w->bv = lw->bv;
    w->bo = lw->bo;
}

// ----------------------------------------------------------------------------
// sequence state

static size_t scratch_floats(const molt_model *m, int chunk, int cap, int nth) {
    const model_cfg *c = &m->cfg;
    size_t T = (size_t)chunk, d = (size_t)c->d_model;
    size_t n = 4 * T * d; // x, u, mix, s (hybrid SSM output)
    if (c->has_mlp)
        n += 2 * T * (size_t)c->d_ff;
    size_t mixer = 0;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_SSM) {
            attn_cfg ac;
            attn_weights aw;
            layer_attn(m, l, &ac, &aw);
            mixer = MOLT_MAX(mixer, attn_work(&ac, chunk, cap, nth));
        }
        if (c->kind[l] != LAYER_ATTN)
            mixer = MOLT_MAX(mixer, ssm_mixer_work(&c->ssm, chunk));
    }
    return n + mixer;
}

size_t seq_state_floats(const molt_model *m, int cap) {
    const model_cfg *c = &m->cfg;
    size_t total = 0;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_SSM) {
            int kv = c->kind[l] == LAYER_HYBRID ? c->n_keep[l] : c->n_kv_head;
            total += 2 * (size_t)kv * (size_t)cap * (size_t)c->head_dim;
        }
        if (c->kind[l] != LAYER_ATTN)
            total += ssm_state_floats(&c->ssm);
    }
    return total;
}

int seq_chunk(int cap) {
    // bounded so that a chunk's score block [chunk, cap] stays ≤ 16 MB
    return (int)MOLT_MIN(256, MOLT_MAX(1, (4 << 20) / cap));
}

size_t seq_scratch_floats(const molt_model *m, int cap, int nth) {
    return scratch_floats(m, seq_chunk(cap), cap, nth);
}

void seq_view(molt_seq *s, const molt_model *m, int cap, int nth, float *state, float *scratch) {
    const model_cfg *c = &m->cfg;
    memset(s, 0, sizeof *s);
    s->m = m;
    s->cap = cap;
    s->chunk = seq_chunk(cap);
    s->nth = nth;
    s->state_floats = seq_state_floats(m, cap);
    float *p = state;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_SSM) {
            int kv = c->kind[l] == LAYER_HYBRID ? c->n_keep[l] : c->n_kv_head;
            size_t n = (size_t)kv * (size_t)cap * (size_t)c->head_dim;
            s->k[l] = p;
            s->v[l] = p + n;
            p += 2 * n;
        }
        if (c->kind[l] != LAYER_ATTN) {
            s->ssm[l].conv = p;
            s->ssm[l].ssm = p + (size_t)ssm_conv_dim(&c->ssm) * (size_t)(c->ssm.K - 1);
            p += ssm_state_floats(&c->ssm);
        }
    }
    s->scratch = scratch;
}

molt_status molt_seq_new(molt_ctx *ctx, const molt_model *m, int32_t max_len, molt_seq **out) {
    *out = NULL;
    const model_cfg *c = &m->cfg;
    if (max_len < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "sequence length %d is negative", max_len);
    int cap = max_len ? max_len : c->max_seq;
    if (cap > c->max_seq)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "sequence length %d exceeds the model's maximum of %d positions", cap,
                         c->max_seq);
    molt_seq *s = molt__calloc(1, sizeof *s);
    if (!s)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for a sequence");
    int nth = molt_ctx_threads(ctx);
    size_t state = seq_state_floats(m, cap), total = state + seq_scratch_floats(m, cap, nth);
    float *buf = molt__malloc_aligned(total * sizeof(float));
    if (!buf) {
        molt__free(s);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for sequence state (%.1f MB)",
                         (double)total * 4e-6);
    }
    seq_view(s, m, cap, nth, buf, buf + state);
    s->buf = buf;
    molt_seq_reset(s);
    *out = s;
    return MOLT_OK;
}

void molt_seq_free(molt_seq *s) {
    if (!s)
        return;
    molt__free_aligned(s->buf);
    molt__free(s);
}

void molt_seq_reset(molt_seq *s) {
    // the KV cache needs no clearing (positions ≥ pos are never read); the
    // recurrent state must start at zero
    const model_cfg *c = &s->m->cfg;
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_ATTN)
            memset(s->ssm[l].conv, 0, ssm_state_floats(&c->ssm) * sizeof(float));
    s->pos = 0;
}

int32_t molt_seq_pos(const molt_seq *s) { return s->pos; }

size_t seq_snap_floats(const molt_seq *s) {
    const model_cfg *c = &s->m->cfg;
    size_t n = 0;
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_ATTN)
            n += ssm_state_floats(&c->ssm);
    return n;
}

// Each recurrent layer's state is one block [conv | ssm] starting at ssm[l].conv.
void seq_snap_save(const molt_seq *s, seq_snap *snap) {
    const model_cfg *c = &s->m->cfg;
    size_t n = ssm_state_floats(&c->ssm), o = 0;
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_ATTN) {
            memcpy(snap->rec + o, s->ssm[l].conv, n * sizeof(float));
            o += n;
        }
    snap->pos = s->pos;
}

void seq_snap_restore(molt_seq *s, const seq_snap *snap) {
    const model_cfg *c = &s->m->cfg;
    size_t n = ssm_state_floats(&c->ssm), o = 0;
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_ATTN) {
            memcpy(s->ssm[l].conv, snap->rec + o, n * sizeof(float));
            o += n;
        }
    s->pos = snap->pos;
}

// ----------------------------------------------------------------------------
// hybrid combiner: a' = (a-μa)/(σa+ε)·(σs+ε) + μs  per token (unbiased σ)

void hybrid_match_stats(float *a, const float *s, int T, int d) {
    const float eps = 1e-5f;
    for (int t = 0; t < T; t++) {
        float *at = a + (size_t)t * d;
        const float *st = s + (size_t)t * d;
        double ma = 0, ms = 0;
        for (int i = 0; i < d; i++) {
            ma += (double)at[i];
            ms += (double)st[i];
        }
        ma /= d;
        ms /= d;
        double va = 0, vs = 0;
        for (int i = 0; i < d; i++) {
            va += ((double)at[i] - ma) * ((double)at[i] - ma);
            vs += ((double)st[i] - ms) * ((double)st[i] - ms);
        }
        float sa = (float)sqrt(va / (d - 1)), ss = (float)sqrt(vs / (d - 1));
        float k = (ss + eps) / (sa + eps);
        for (int i = 0; i < d; i++)
            at[i] = (at[i] - (float)ma) * k + (float)ms;
    }
}

// ----------------------------------------------------------------------------
// one piece of ≤ chunk tokens

static void forward_piece(const molt_exec *ex, molt_seq *s, const int32_t *ids, int T, float *logits, int all_logits) {
    const molt_model *m = s->m;
    const model_cfg *c = &m->cfg;
    int d = c->d_model;
    float *x = s->scratch;                  // [T,d] residual stream
    float *u = x + (size_t)s->chunk * d;    // [T,d] normed input
    float *mix = u + (size_t)s->chunk * d;  // [T,d] mixer output
    float *sb = mix + (size_t)s->chunk * d; // [T,d] hybrid SSM output
    float *g = sb + (size_t)s->chunk * d;   // [T,F]
    float *up = g + (c->has_mlp ? (size_t)s->chunk * c->d_ff : 0);
    float *work = up + (c->has_mlp ? (size_t)s->chunk * c->d_ff : 0);

    for (int t = 0; t < T; t++)
        memcpy(x + (size_t)t * d, m->embed + (size_t)ids[t] * d, sizeof(float) * (size_t)d);

    for (int l = 0; l < c->n_layer; l++) {
        const layer_weights *w = &m->layers[l];
        k_rmsnorm(ex, u, x, w->attn_norm, T, d, c->norm_eps);
        ssm_mode mode = T == 1 ? SSM_MODE_RECURRENT : SSM_MODE_CHUNKED;
        if (c->kind[l] == LAYER_ATTN) {
            attn_cfg ac;
            attn_weights aw;
            layer_attn(m, l, &ac, &aw);
            attn_forward(ex, mix, NULL, u, T, s->pos, &ac, &aw, s->k[l], s->v[l], s->cap,
                         m->rope_cos, m->rope_sin, work, s->nth);
        } else if (c->kind[l] == LAYER_SSM) {
            ssm_mixer_forward(ex, mix, u, T, &c->ssm, &w->ssm, &s->ssm[l], mode, work);
        } else {
            attn_cfg ac;
            attn_weights aw;
            layer_attn(m, l, &ac, &aw);
            ssm_mixer_forward(ex, sb, u, T, &c->ssm, &w->ssm, &s->ssm[l], mode, work);
            attn_forward(ex, mix, NULL, u, T, s->pos, &ac, &aw, s->k[l], s->v[l], s->cap,
                         m->rope_cos, m->rope_sin, work, s->nth);
            hybrid_match_stats(mix, sb, T, d);
            // adapter(a') then average with s; u is free to reuse as the adapter output
            k_matmul(ex, u, mix, w->adapter_w, w->adapter_b, T, d, d, 0);
            for (size_t i = 0; i < (size_t)T * d; i++)
                mix[i] = 0.5f * (sb[i] + u[i]);
        }
        k_add(x, mix, (size_t)T * d);
        if (c->has_mlp) {
            int F = c->d_ff;
            k_rmsnorm(ex, u, x, w->ffn_norm, T, d, c->norm_eps);
            k_matmul(ex, g, u, w->w_gate, NULL, T, d, F, 0);
            k_matmul(ex, up, u, w->w_up, NULL, T, d, F, 0);
            k_swiglu(ex, g, up, (size_t)T * F);
            k_matmul(ex, x, g, w->w_down, NULL, T, F, d, 1); // residual: x += down(...)
        }
    }
    s->pos += T;
    if (!logits)
        return;
    int t0 = all_logits ? 0 : T - 1, n = T - t0;
    k_rmsnorm(ex, u, x + (size_t)t0 * d, m->final_norm, n, d, c->norm_eps);
    k_matmul(ex, logits, u, m->lm_head, NULL, n, d, c->vocab, 0);
}

void seq_feed(const molt_exec *ex, molt_seq *s, const int32_t *ids, int n, int all_logits,
              float *logits) {
    int V = s->m->cfg.vocab;
    for (int i = 0; i < n; i += s->chunk) {
        int T = MOLT_MIN(s->chunk, n - i);
        bool last = i + T == n;
        float *lg = NULL;
        if (logits && all_logits)
            lg = logits + (size_t)i * V;
        else if (logits && last)
            lg = logits;
        forward_piece(ex, s, ids + i, T, lg, all_logits);
    }
}

molt_status seq_check_ids(molt_ctx *ctx, const molt_model *m, const int32_t *ids, int32_t n) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            return molt__err(ctx, MOLT_ERR_ARG, "token id %d at position %d is outside the vocab "
                                                "(0..%d)", ids[i], i, m->cfg.vocab - 1);
    return MOLT_OK;
}

molt_status molt_seq_feed(molt_ctx *ctx, molt_seq *s, const int32_t *ids, int32_t n,
                          int all_logits, float *logits) {
    if (n <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "no tokens to feed");
    if ((int64_t)s->pos + n > s->cap)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "sequence full: %d tokens held + %d new exceed the capacity of %d", s->pos,
                         n, s->cap);
    molt_status st = seq_check_ids(ctx, s->m, ids, n);
    if (st != MOLT_OK)
        return st;
    molt_exec ex = molt_exec_cpu(MOLT_MIN(molt_ctx_threads(ctx), s->nth));
    seq_feed(&ex, s, ids, n, all_logits, logits);
    return MOLT_OK;
}
