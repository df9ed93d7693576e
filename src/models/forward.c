/*
 * forward.c — running a model over one sequence: molt_seq (per layer the
 * mixer's state block — KV cache and/or recurrent state — plus scratch sized
 * once) fed through the block loop of models/block.c, in BLOCK_SEQ mode.
 *
 * A feed of n tokens is processed in pieces of at most seq->chunk tokens so
 * scratch stays bounded; pieces are exact (the KV cache and SSM state carry):
 * a piece of T > 1 tokens runs each mixer's prefill (GEMMs, the chunked scan),
 * one token its decode step. No allocation happens after molt_seq_new.
 *
 * hybrid_match_stats is the hybrid combiner's statistics matching on its own
 * (the combiner itself is mixers/hybrid_train.c): tests check against it.
 */
#include "models/forward.h"

#include "kernels/kernels.h"
#include "kernels/mem.h"
#include "mixers/mixer.h"
#include "models/block.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// sequence state: per layer one block [rec | K | V] (mixers/mixer.h)

#define A16(n) (((size_t)(n) + 15) & ~(size_t)15)

static size_t scratch_floats(const molt_model *m, int chunk, int cap, int nth) {
    const model_cfg *c = &m->cfg;
    size_t work = 0;
    for (int l = 0; l < c->n_layer; l++)
        work = MOLT_MAX(work, layer_mixer(m, l)->work_floats(m, l, chunk, cap, nth));
    return A16((size_t)chunk * (size_t)c->d_model) + block_scratch_floats(m, chunk) + work;
}

size_t seq_logits_stage_floats(const molt_model *m, int rows) {
    return m->be->mem.host_visible ? 0 : A16((size_t)rows * (size_t)m->cfg.vocab);
}

molt_exec model_exec(const molt_ctx *ctx, const molt_model *m, int nth) {
    molt_exec ex = molt_exec_cpu(nth);
    ex.be = m->be;
    ex.flags = ctx ? molt__exec(ctx).flags : 0; // molt_ctx_set_matmul's precision
    return ex;
}

size_t seq_state_floats(const molt_model *m, int cap) {
    size_t total = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        total += A16(mixer_state_floats(m, l, cap));
    return total;
}

int seq_chunk(int cap) {
    // bounded so that a chunk's score block [chunk, cap] stays ≤ 16 MB
    return (int)MOLT_MIN(256, MOLT_MAX(1, (4 << 20) / cap));
}

size_t seq_scratch_floats(const molt_model *m, int cap, int nth) {
    int chunk = seq_chunk(cap);
    return scratch_floats(m, chunk, cap, nth) + seq_logits_stage_floats(m, chunk);
}

void seq_view(molt_seq *s, const molt_model *m, int cap, int nth, float *state, float *scratch) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->cap = cap;
    s->chunk = seq_chunk(cap);
    s->nth = nth;
    s->state_floats = seq_state_floats(m, cap);
    s->kv_dt = m->kv_dt;
    s->state_dt = m->cfg.state_dt;
    float *p = state;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        s->state[l] = p;
        p += A16(mixer_state_floats(m, l, cap));
    }
    s->scratch = scratch;
    s->dlogits = m->be->mem.host_visible ? NULL
                                         : scratch + scratch_floats(m, s->chunk, cap, nth);
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
    float *buf = be_allocf(m->be, total);
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
    be_free(s->m->be, s->buf);
    molt__free(s);
}

void molt_seq_reset(molt_seq *s) {
    // the KV caches need no clearing (rows at or past pos are never read); the
    // recurrent state must start at zero
    const molt_model *m = s->m;
    molt_exec         ex = be_exec1(m->be);
    for (int l = 0; l < m->cfg.n_layer; l++)
        be_zero(&ex, s->state[l], layer_mixer(m, l)->rec_floats(m, l) * sizeof(float));
    s->pos = 0;
}

int32_t molt_seq_pos(const molt_seq *s) { return s->pos; }

size_t seq_snap_floats(const molt_seq *s) {
    const molt_model *m = s->m;
    size_t n = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        n += layer_mixer(m, l)->rec_floats(m, l);
    return n;
}

// A layer's recurrent state is the start of its block. The snapshot is host
// memory (the caller's): save downloads, restore uploads.
void seq_snap_save(const molt_seq *s, seq_snap *snap) {
    const molt_model *m = s->m;
    molt_exec         ex = be_exec1(m->be);
    size_t o = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        size_t n = layer_mixer(m, l)->rec_floats(m, l);
        be_download(&ex, snap->rec + o, s->state[l], n * sizeof(float));
        o += n;
    }
    snap->pos = s->pos;
}

void seq_snap_restore(molt_seq *s, const seq_snap *snap) {
    const molt_model *m = s->m;
    molt_exec         ex = be_exec1(m->be);
    size_t o = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        size_t n = layer_mixer(m, l)->rec_floats(m, l);
        be_upload(&ex, s->state[l], snap->rec + o, n * sizeof(float));
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
// one piece of ≤ chunk tokens through the block loop (models/block.c)

static void forward_piece(const molt_exec *ex, molt_seq *s, const int32_t *ids, int T, float *logits,
                          int all_logits) {
    const molt_model *m = s->m;
    const model_cfg *c = &m->cfg;
    int d = c->d_model;
    float *x = s->scratch; // [T,d] residual stream
    float *p = x + A16((size_t)s->chunk * d), *mlp_tmp;
    block_act a;
    float *mix = block_scratch(m, s->chunk, p, x, &a, &mlp_tmp);
    float *work = p + block_scratch_floats(m, s->chunk);
    block_embed(ex, m, ids, T, x);
    block_mix bm = {.mode = BLOCK_SEQ, .cap = s->cap, .nth = s->nth, .pos = s->pos};
    for (int l = 0; l < c->n_layer; l++) {
        bm.state = s->state[l];
        block_forward(ex, m, l, &bm, T, x, &a, mix, mlp_tmp, work);
    }
    s->pos += T;
    if (!logits)
        return;
    int t0 = all_logits ? 0 : T - 1;
    // a device model's logits are computed into its staging rows, then copied out
    block_logits(ex, m, x + (size_t)t0 * d, T - t0, a.u, s->dlogits ? s->dlogits : logits);
    if (s->dlogits)
        be_download(ex, logits, s->dlogits, sizeof(float) * (size_t)(T - t0) * c->vocab);
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

molt_status seq_check_kv(molt_ctx *ctx, const molt_seq *s) {
    if (s->state_dt != s->m->cfg.state_dt)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "the model's recurrent-state type is %s, this sequence was created "
                         "under %s: create it again (or set the type back)",
                         molt_dtype_name(s->m->cfg.state_dt), molt_dtype_name(s->state_dt));
    if (s->kv_dt == s->m->kv_dt)
        return MOLT_OK;
    return molt__err(ctx, MOLT_ERR_ARG,
                     "the model's KV-cache type is %s, this sequence was created under %s: "
                     "create it again (or set the type back)",
                     molt_dtype_name(s->m->kv_dt), molt_dtype_name(s->kv_dt));
}

molt_status molt_seq_feed(molt_ctx *ctx, molt_seq *s, const int32_t *ids, int32_t n,
                          int all_logits, float *logits) {
    if (seq_check_kv(ctx, s) != MOLT_OK)
        return MOLT_ERR_ARG;
    if (n <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "no tokens to feed");
    if ((int64_t)s->pos + n > s->cap)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "sequence full: %d tokens held + %d new exceed the capacity of %d", s->pos,
                         n, s->cap);
    molt_status st = seq_check_ids(ctx, s->m, ids, n);
    if (st != MOLT_OK)
        return st;
    molt_exec ex = model_exec(ctx, s->m, MOLT_MIN(molt_ctx_threads(ctx), s->nth));
    seq_feed(&ex, s, ids, n, all_logits, logits);
    return be_status(ctx, &ex);
}
