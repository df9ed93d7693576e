/*
 * slots.c — state slots: n sequences of one model in one object, decoded
 * together. One call advances any subset of the slots by one token each, at
 * whatever position each one is (ragged): the embedding, norms, projections,
 * MLP and head run as [n, ·] GEMMs over the batch; attention reads each row's
 * own KV cache, the recurrent step each row's own state. A recurrent layer's
 * slot is a constant few KB whatever the context, so many slots fit where a
 * Transformer's KV caches would not — the memory becomes throughput.
 *
 *     x[n,d] = embed[tok]                        row r: slot slot[r] at pos[r]
 *     per layer: the block loop (models/block.c) in BLOCK_ROWS mode: each
 *                mixer's step_rows over the rows' own state blocks
 *     logits[n,V] = rmsnorm(x) · headᵀ
 *
 * Every row's result equals feeding that token to its sequence alone, up to the
 * GEMMs' rounding for a different row count (the per-row attention and state
 * updates are the same calls; tests/test_slots.c checks both).
 *
 * Recorded steps (kernels/mem.h: graphs, on a backend that has them): the
 * layers and the head of a step are a few hundred small launches, a host
 * cost that exceeds the GPU's at small batches. When a step feeds the same
 * slots in the same order as the step before, the second such step is
 * recorded and the later ones replay it in one launch; the embedding (host
 * ids) and the sampling (host coins) stay outside. Only for models whose step
 * reads no positions (no layer keeps a KV cache: attention's rows take theirs
 * by value). A replay runs the same kernels on the same memory: the same bits
 * (tests/test_device.c).
 *
 * Memory: one backend allocation (kernels/mem.h) — the slots' states (seq_state_floats each), the
 * prefill scratch (shared: one prefill runs at a time) and the batch scratch.
 * A slot's prefill uses a molt_seq view of its state (forward.c's block loop).
 */
#include "kernels/kernels.h"
#include "mixers/mixer.h"
#include "models/block.h"
#include "models/forward.h"

#include <string.h>

struct molt_slots {
    const molt_model *m;
    int32_t           n, cap;
    int               nth;
    size_t            state_floats; // per slot
    molt_seq         *view;         // [n] one-slot views (state + shared prefill scratch)
    float            *batch;        // batch scratch, batch_floats(m, n, cap, nth)
    float           **st;           // [n] per-call row state blocks (one layer)
    int32_t          *pos;          // [n] per-call row positions
    uint8_t          *seen;         // [n] duplicate check
    float            *buf;
    float            *lg;           // [n,V] host logits of feed_sample (CPU models; lazy)
    int32_t          *idx;          // [n] its sampled ids in device memory (device models; lazy)
    // the recorded step (graph_step): its key (rows, slots, exec flags, logits or not, the
    // model's typed weights) and how many times in a row that key ran (recorded at the second)
    bool              replayable;   // the backend records, and no layer keeps a KV cache
    void             *graph;
    int32_t           g_n, *g_slot;
    unsigned          g_flags;
    bool              g_logits;
    const void       *g_wbuf;       // m->wbuf and m->weight_dt: molt_model_set_weight_dtype
    molt_dtype        g_wdt;        // changes the views a step reads without freeing anything
    int               g_runs;
};

#define A16(n) (((size_t)(n) + 15) & ~(size_t)15)

// x [n,d] | the block scratch | the mixers' rows work
static size_t batch_floats(const molt_model *m, int n, int cap, int nth) {
    size_t work = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        work = MOLT_MAX(work, layer_mixer(m, l)->rows_work_floats(m, l, n, cap, nth));
    return A16((size_t)n * (size_t)m->cfg.d_model) + block_scratch_floats(m, n) + work +
           seq_logits_stage_floats(m, n);
}

// a slot that exists, of slots laid out under the model's KV type
static molt_status check_slot(molt_ctx *ctx, const molt_slots *s, int32_t slot, const char *what) {
    if (slot < 0 || slot >= s->n)
        return molt__err(ctx, MOLT_ERR_ARG, "%s slot %d does not exist (the slots are 0..%d)",
                         what, slot, s->n - 1);
    return seq_check_kv(ctx, &s->view[slot]);
}

molt_status molt_slots_new(molt_ctx *ctx, const molt_model *m, int32_t n_slots, int32_t max_len,
                           molt_slots **out) {
    *out = NULL;
    const model_cfg *c = &m->cfg;
    if (n_slots < 1 || n_slots > (1 << 20))
        return molt__err(ctx, MOLT_ERR_ARG, "the number of slots must be in 1..%d, not %d",
                         1 << 20, n_slots);
    if (max_len < 0)
        return molt__err(ctx, MOLT_ERR_ARG, "slot length %d is negative", max_len);
    int cap = max_len ? max_len : c->max_seq;
    if (cap > c->max_seq)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "slot length %d exceeds the model's maximum of %d positions", cap,
                         c->max_seq);
    molt_slots *s = molt__calloc(1, sizeof *s);
    if (!s)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d slots", n_slots);
    s->m = m;
    s->n = n_slots;
    s->cap = cap;
    s->nth = molt_ctx_threads(ctx);
    s->state_floats = seq_state_floats(m, cap);
    s->replayable = m->be->mem.graph_begin != NULL;
    for (int l = 0; l < c->n_layer; l++)
        if (layer_mixer(m, l)->kv_heads(m, l))
            s->replayable = false;
    size_t n = (size_t)n_slots;
    size_t prefill = seq_scratch_floats(m, cap, s->nth), batch = batch_floats(m, n_slots, cap, s->nth);
    size_t total = s->state_floats * n + prefill + batch;
    s->view = molt__calloc(n, sizeof *s->view);
    s->st = molt__calloc(n * (1 + MIXER_ROW_TABLES), sizeof *s->st); // + the mixers' row tables
    s->pos = molt__calloc(n, sizeof *s->pos);
    s->seen = molt__calloc(n, 1);
    s->g_slot = molt__calloc(n, sizeof *s->g_slot);
    s->buf = be_allocf(m->be, total);
    if (!s->view || !s->st || !s->pos || !s->seen || !s->g_slot || !s->buf) {
        molt_slots_free(s);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d slots of %d tokens (%.1f MB)",
                         n_slots, cap, (double)total * 4e-6);
    }
    float *prefill_scratch = s->buf + s->state_floats * n;
    s->batch = prefill_scratch + prefill;
    for (int32_t i = 0; i < n_slots; i++) {
        seq_view(&s->view[i], m, cap, s->nth, s->buf + s->state_floats * (size_t)i,
                 prefill_scratch);
        molt_seq_reset(&s->view[i]);
    }
    *out = s;
    return MOLT_OK;
}

void molt_slots_free(molt_slots *s) {
    if (!s)
        return;
    if (s->graph)
        s->m->be->mem.graph_free(s->graph);
    molt__free(s->g_slot);
    be_free(s->m->be, s->buf);
    be_free(s->m->be, s->idx);
    molt__free(s->lg);
    molt__free(s->view);
    molt__free(s->st);
    molt__free(s->pos);
    molt__free(s->seen);
    molt__free(s);
}

int32_t molt_slots_count(const molt_slots *s) { return s->n; }
int32_t molt_slots_capacity(const molt_slots *s) { return s->cap; }
int64_t molt_slots_state_bytes(const molt_slots *s) {
    return (int64_t)(s->state_floats * (size_t)s->n * sizeof(float));
}

int32_t molt_slot_pos(const molt_slots *s, int32_t slot) {
    return slot >= 0 && slot < s->n ? s->view[slot].pos : -1;
}

molt_status molt_slot_reset(molt_ctx *ctx, molt_slots *s, int32_t slot) {
    molt_status st = check_slot(ctx, s, slot, "reset:");
    if (st == MOLT_OK)
        molt_seq_reset(&s->view[slot]);
    return st;
}

// The KV cache rows below pos and the whole recurrent state; attention rows at
// or past pos are never read, so they are not copied.
molt_status molt_slot_copy(molt_ctx *ctx, molt_slots *s, int32_t src, int32_t dst) {
    molt_status st = check_slot(ctx, s, src, "copy: source");
    if (st != MOLT_OK || (st = check_slot(ctx, s, dst, "copy: destination")) != MOLT_OK)
        return st;
    if (src == dst)
        return MOLT_OK;
    const molt_model *m = s->m;
    molt_seq *a = &s->view[src], *b = &s->view[dst];
    size_t rows = mixer_kv_floats(m, a->pos), head = mixer_kv_floats(m, s->cap);
    molt_exec ex = be_exec1(m->be);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *v = layer_mixer(m, l);
        size_t rec = v->rec_floats(m, l);
        be_copy(&ex, b->state[l], a->state[l], sizeof(float) * rec);
        // K then V: 2·kv heads of [cap, hd] (in the KV type) after rec
        for (int j = 0, kv = v->kv_heads(m, l); j < 2 * kv; j++) {
            size_t o = rec + (size_t)j * head;
            be_copy(&ex, b->state[l] + o, a->state[l] + o, sizeof(float) * rows);
        }
    }
    b->pos = a->pos;
    return MOLT_OK;
}

molt_status molt_slot_prefill(molt_ctx *ctx, molt_slots *s, int32_t slot, const int32_t *ids,
                              int32_t n, int all_logits, float *logits) {
    molt_status st = check_slot(ctx, s, slot, "prefill:");
    if (st != MOLT_OK)
        return st;
    molt_seq *v = &s->view[slot];
    if (n <= 0)
        return molt__err(ctx, MOLT_ERR_ARG, "no tokens to feed slot %d", slot);
    if ((int64_t)v->pos + n > s->cap)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "slot %d full: %d tokens held + %d new exceed the capacity of %d", slot,
                         v->pos, n, s->cap);
    if ((st = seq_check_ids(ctx, s->m, ids, n)) != MOLT_OK)
        return st;
    molt_exec ex = model_exec(ctx, s->m, MOLT_MIN(molt_ctx_threads(ctx), s->nth));
    seq_feed(&ex, v, ids, n, all_logits, logits);
    return be_status(ctx, &ex);
}

// ----------------------------------------------------------------------------
// one token for each of n slots

// the device logits stage at the end of the batch scratch (NULL on host-visible backends)
static float *logits_stage(const molt_slots *s) {
    size_t f = seq_logits_stage_floats(s->m, s->n);
    return f ? s->batch + batch_floats(s->m, s->n, s->cap, s->nth) - f : NULL;
}

// the layers and (into `out`, when not NULL) the logits of one step over the
// residual streams x [n,d] that the embedding filled: the part a graph records
static void step_body(const molt_exec *ex, molt_slots *s, int n, const int32_t *slot, float *out) {
    const molt_model *m = s->m;
    float *x = s->batch; // [n,d] residual streams
    float *p = x + A16((size_t)n * m->cfg.d_model), *mlp_tmp;
    block_act a;
    float *mix = block_scratch(m, n, p, x, &a, &mlp_tmp);
    float *work = p + block_scratch_floats(m, n);
    for (int r = 0; r < n; r++)
        s->pos[r] = s->view[slot[r]].pos;
    block_mix bm = {.mode = BLOCK_ROWS, .cap = s->cap, .nth = s->nth, .rpos = s->pos,
                    .rstate = s->st};
    for (int l = 0; l < m->cfg.n_layer; l++) {
        for (int r = 0; r < n; r++)
            s->st[r] = s->view[slot[r]].state[l];
        block_forward(ex, m, l, &bm, n, x, &a, mix, mlp_tmp, work);
    }
    if (out)
        block_logits(ex, m, x, n, a.u, out);
}

static void graph_drop(molt_slots *s) {
    if (s->graph)
        s->m->be->mem.graph_free(s->graph);
    s->graph = NULL;
}

// step_body through a recorded graph (see the top): replays the graph of this
// key, or records it at the key's second step in a row; false when the step
// must run directly (first of its key, not replayable, a recording refused)
static bool graph_step(const molt_exec *ex, molt_slots *s, int n, const int32_t *slot,
                       float *out) {
    const molt_mem_ops *mo = &s->m->be->mem;
    if (!s->replayable)
        return false;
    const molt_model *m = s->m;
    if (n != s->g_n || ex->flags != s->g_flags || (out != NULL) != s->g_logits ||
        m->wbuf != s->g_wbuf || m->weight_dt != s->g_wdt ||
        memcmp(slot, s->g_slot, sizeof(int32_t) * (size_t)n)) {
        graph_drop(s); // a new key
        s->g_n = n, s->g_flags = ex->flags, s->g_logits = out != NULL, s->g_runs = 0;
        s->g_wbuf = m->wbuf, s->g_wdt = m->weight_dt;
        memcpy(s->g_slot, slot, sizeof(int32_t) * (size_t)n);
    }
    if (s->graph && mo->graph_run(ex, s->graph))
        return true;
    graph_drop(s); // none, or stale: memory it reads was freed since
    if (s->g_runs < 0 || s->g_runs++ < 1) // refused before, or the first step of the key
        return false;
    molt_exec gx = *ex;
    if (!mo->graph_begin(&gx))
        return false;
    step_body(&gx, s, n, slot, out);
    if (!(s->graph = mo->graph_end(&gx))) {
        s->g_runs = -1; // not recordable: this key runs directly
        return false;
    }
    return mo->graph_run(ex, s->graph);
}

// the step; logits [n,V] into `logits` (host), or left in the device stage
// when `keep` (device models), or not computed (neither)
static void decode_rows(const molt_exec *ex, molt_slots *s, int n, const int32_t *slot,
                        const int32_t *tok, float *logits, int keep) {
    const molt_model *m = s->m;
    float *stage = logits_stage(s);
    float *out = stage && (logits || keep) ? stage : logits;
    block_embed(ex, m, tok, n, s->batch);
    if (!graph_step(ex, s, n, slot, out))
        step_body(ex, s, n, slot, out);
    for (int r = 0; r < n; r++)
        s->view[slot[r]].pos++;
    if (stage && logits && !keep)
        be_download(ex, logits, stage, sizeof(float) * (size_t)n * m->cfg.vocab);
}

// the checks of one step's rows (distinct existing slots with room, ids in the vocab)
static molt_status feed_check(molt_ctx *ctx, molt_slots *s, int32_t n, const int32_t *slot,
                              const int32_t *tok) {
    if (n < 1 || n > s->n)
        return molt__err(ctx, MOLT_ERR_ARG, "a step feeds 1..%d slots, not %d", s->n, n);
    molt_status st = MOLT_OK;
    memset(s->seen, 0, (size_t)s->n);
    for (int32_t r = 0; r < n && st == MOLT_OK; r++) {
        if ((st = check_slot(ctx, s, slot[r], "feed:")) != MOLT_OK)
            break;
        if (s->seen[slot[r]])
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "slot %d appears twice in one step (each slot takes one token)",
                           slot[r]);
        else if (s->view[slot[r]].pos >= s->cap)
            st = molt__err(ctx, MOLT_ERR_ARG, "slot %d is full (%d tokens, its capacity)",
                           slot[r], s->cap);
        else if (tok[r] < 0 || tok[r] >= s->m->cfg.vocab)
            st = molt__err(ctx, MOLT_ERR_ARG, "token id %d for slot %d is outside the vocab (0..%d)",
                           tok[r], slot[r], s->m->cfg.vocab - 1);
        s->seen[slot[r]] = 1;
    }
    return st;
}

molt_status molt_slots_feed(molt_ctx *ctx, molt_slots *s, int32_t n, const int32_t *slot,
                            const int32_t *tok, float *logits) {
    molt_status st = feed_check(ctx, s, n, slot, tok);
    if (st != MOLT_OK)
        return st;
    molt_exec ex = model_exec(ctx, s->m, MOLT_MIN(molt_ctx_threads(ctx), s->nth));
    decode_rows(&ex, s, n, slot, tok, logits, 0);
    return be_status(ctx, &ex);
}

molt_status molt_slots_feed_sample(molt_ctx *ctx, molt_slots *s, int32_t n, const int32_t *slot,
                                   const int32_t *tok, float temperature, const float *coin,
                                   int32_t *next) {
    molt_status st = feed_check(ctx, s, n, slot, tok);
    if (st != MOLT_OK)
        return st;
    if (!next || (temperature > 0.0f && !coin))
        return molt__err(ctx, MOLT_ERR_ARG, "feed_sample: %s is NULL", next ? "coin" : "next");
    if (temperature > 0.0f)
        for (int32_t r = 0; r < n; r++)
            if (!(coin[r] >= 0.0f && coin[r] < 1.0f))
                return molt__err(ctx, MOLT_ERR_ARG,
                                 "feed_sample: coin %g of row %d is not in [0,1)",
                                 (double)coin[r], r);
    const molt_model *m = s->m;
    size_t V = (size_t)m->cfg.vocab;
    float *stage = logits_stage(s);
    if (!stage && !s->lg && !(s->lg = molt__malloc(sizeof(float) * V * (size_t)s->n)))
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the logits of %d slots", s->n);
    if (stage && !s->idx && !(s->idx = (int32_t *)be_allocf(m->be, A16(s->n))))
        return molt__err(ctx, MOLT_ERR_OOM, "out of device memory for %d sampled ids", s->n);
    molt_exec ex = model_exec(ctx, m, MOLT_MIN(molt_ctx_threads(ctx), s->nth));
    decode_rows(&ex, s, n, slot, tok, stage ? NULL : s->lg, 1);
    k_sample_rows(&ex, stage ? s->idx : next, stage ? stage : s->lg, coin, temperature, n,
                  (int)V);
    if (stage)
        be_download(&ex, next, s->idx, sizeof(int32_t) * (size_t)n);
    if ((st = be_status(ctx, &ex)) != MOLT_OK)
        return st;
    for (int32_t r = 0; r < n; r++)
        if (next[r] < 0)
            return molt__err(ctx, MOLT_ERR_NUMERIC,
                             "feed_sample: non-finite logits (NaN or inf) for slot %d", slot[r]);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// slot snapshots (molt serve's prompt cache): a header, then per layer the
// recurrent state (rec floats) and the 2·kv_heads KV heads' rows below pos.

typedef struct snap_hdr {
    uint32_t magic, version;
    int32_t  n_layer, cap, pos, d_model;
    uint64_t state_floats;
} snap_hdr;
#define SNAP_MAGIC 0x544c534du // "MSLT"

static size_t snap_floats(const molt_slots *s, int32_t pos) {
    const molt_model *m = s->m;
    size_t f = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *v = layer_mixer(m, l);
        f += v->rec_floats(m, l) + 2 * (size_t)v->kv_heads(m, l) * mixer_kv_floats(m, pos);
    }
    return f;
}

size_t molt_slot_save_bytes(const molt_slots *s, int32_t slot) {
    if (slot < 0 || slot >= s->n)
        return 0;
    return sizeof(snap_hdr) + sizeof(float) * snap_floats(s, s->view[slot].pos);
}

// dir 0: slot → host buf, 1: host buf → slot
static void snap_move(const molt_slots *s, molt_seq *v, float *buf, int dir) {
    const molt_model *m = s->m;
    size_t rows = mixer_kv_floats(m, v->pos), head = mixer_kv_floats(m, s->cap), o = 0;
    molt_exec ex = be_exec1(m->be);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *mv = layer_mixer(m, l);
        size_t rec = mv->rec_floats(m, l);
        if (dir)
            be_upload(&ex, v->state[l], buf + o, sizeof(float) * rec);
        else
            be_download(&ex, buf + o, v->state[l], sizeof(float) * rec);
        o += rec;
        for (int j = 0, kv = mv->kv_heads(m, l); j < 2 * kv; j++) {
            float *at = v->state[l] + rec + (size_t)j * head;
            if (dir)
                be_upload(&ex, at, buf + o, sizeof(float) * rows);
            else
                be_download(&ex, buf + o, at, sizeof(float) * rows);
            o += rows;
        }
    }
}

molt_status molt_slot_save(molt_ctx *ctx, const molt_slots *s, int32_t slot, void *buf,
                           size_t cap, size_t *len) {
    molt_status st = check_slot(ctx, s, slot, "save:");
    if (st != MOLT_OK)
        return st;
    size_t need = molt_slot_save_bytes(s, slot);
    if (!buf || cap < need)
        return molt__err(ctx, MOLT_ERR_ARG, "save: slot %d needs %zu bytes, the buffer holds %zu",
                         slot, need, cap);
    molt_seq *v = &s->view[slot];
    snap_hdr h = {SNAP_MAGIC, 1, s->m->cfg.n_layer, s->cap, v->pos, s->m->cfg.d_model,
                  s->state_floats};
    memcpy(buf, &h, sizeof h);
    snap_move(s, v, (float *)((char *)buf + sizeof h), 0);
    if (len)
        *len = need;
    return MOLT_OK;
}

molt_status molt_slot_load(molt_ctx *ctx, molt_slots *s, int32_t slot, const void *buf,
                           size_t len) {
    molt_status st = check_slot(ctx, s, slot, "load:");
    if (st != MOLT_OK)
        return st;
    snap_hdr h;
    if (!buf || len < sizeof h)
        return molt__err(ctx, MOLT_ERR_FORMAT, "load: %zu bytes are not a slot snapshot", len);
    memcpy(&h, buf, sizeof h);
    if (h.magic != SNAP_MAGIC || h.version != 1 || h.n_layer != s->m->cfg.n_layer ||
        h.cap != s->cap || h.d_model != s->m->cfg.d_model || h.state_floats != s->state_floats ||
        h.pos < 0 || h.pos > s->cap ||
        len != sizeof h + sizeof(float) * snap_floats(s, h.pos))
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "load: the bytes are not a snapshot of slots of this model and capacity");
    molt_seq *v = &s->view[slot];
    molt_seq_reset(v);
    v->pos = h.pos;
    // buf is only read (dir 1)
    snap_move(s, v, (float *)(uintptr_t)((const char *)buf + sizeof h), 1);
    return MOLT_OK;
}
