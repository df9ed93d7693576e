/*
 * mx_hybrid.c — the per-head hybrid mixer behind mixer_vt (mixer.h): a
 * composition of a recurrent mixer and the kept attention heads of the same
 * layer, joined by the combiner (ALGORITHMS.md §7, mohawk's
 * DoubleBlockAdapter; mixers/hybrid_train.c):
 *
 *     s = Rec(u);  a = Attn_kept(u)
 *     a' = (a − mean a)/(std a + 1e-5)·(std s + 1e-5) + mean s   per token (unbiased std)
 *     y  = 0.5·(s + adapter(a'))
 *
 * The recurrent part Rec is a plain recurrent mixer of the registry, by the
 * layer's config: layer_hybrid_rec(cfg, l) (model_cfg.hyb_rec; the Llamba SSM
 * mx_ssm.c by default, Mamba-3 mx_mamba3.c, GateLoop mx_gateloop.c). It is
 * reached only through its table, so a new recurrent mixer needs nothing here.
 * State: rec = the recurrent part's rec (SSM: [conv | ssm]), then the kept
 * heads' KV cache. Each part runs through its own mixer_vt on the same (model,
 * layer): layer_attn gives the kept heads for a hybrid layer. Inference and
 * training use the same combiner code (hybrid_combine_forward), so prefill and
 * training agree bit for bit on it.
 *
 * Parameters: the recurrent part's root.mixer.*, the kept heads'
 * root.attn.{q,k,v,o}_proj (mx_attention.c names a hybrid layer's heads
 * attn.*), root.adapter.{weight, bias}, initialised to the identity and 0.
 * Config: the recurrent part's (layer_ssm / layer_m3 / layer_gl (cfg, l)) and
 * the kept heads n_keep[l] / keep_heads[l] (1..n_head distinct teacher heads).
 */
#include "kernels/kernels.h"
#include "mixers/hybrid_train.h"
#include "mixers/mixer.h"

#include <string.h>

#define A16(n) (((size_t)(n) + 15) & ~(size_t)15)

static const mixer_vt *const A = &mixer_attention;

// the recurrent part of layer l (check() refuses anything but a plain recurrent mixer)
static const mixer_vt *rec_of(const model_cfg *c, int l) {
    return mixer_of(layer_hybrid_rec(c, l));
}
static const mixer_vt *R(const molt_model *m, int l) { return rec_of(&m->cfg, l); }

static size_t rec_floats(const molt_model *m, int l) { return R(m, l)->rec_floats(m, l); }

static int kv_heads(const molt_model *m, int l) { return A->kv_heads(m, l); }

// the combiner's buffers for n rows: s, a [n,d], its activations
static size_t comb_floats(const molt_model *m, int n) {
    int d = m->cfg.d_model;
    return 2 * A16((size_t)n * d) + A16(hybrid_combine_act_floats(n, d));
}

// carves comb_floats(m, n) at buf
static void comb_bufs(const molt_model *m, float *buf, int n, float **s, float **a, float **act) {
    size_t nd = A16((size_t)n * (size_t)m->cfg.d_model);
    *s = buf;
    *a = buf + nd;
    *act = buf + 2 * nd;
}

// work: [s | a | combiner act | the parts' work]
static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    return comb_floats(m, T) +
           MOLT_MAX(R(m, l)->work_floats(m, l, T, cap, nth), A->work_floats(m, l, T, cap, nth));
}

static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u, int T,
                    int pos, float *state, int cap, float *work, int nth) {
    const layer_weights *w = &m->layers[l];
    int d = m->cfg.d_model;
    float *s, *a, *act, *part = work + comb_floats(m, T);
    comb_bufs(m, work, T, &s, &a, &act);
    R(m, l)->forward(ex, m, l, s, u, T, pos, state, cap, part, nth);
    A->forward(ex, m, l, a, u, T, pos, state + R(m, l)->rec_floats(m, l), cap, part, nth);
    hybrid_combine_forward(ex, y, act, s, a, w->adapter_w, w->adapter_b, T, d);
}

// work: [s | a | combiner act | the parts' work] (the attention part's state
// pointers: mixer_ptrs table 0, filled after the recurrent part has used its tables)
static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    return comb_floats(m, n) +
           MOLT_MAX(R(m, l)->rows_work_floats(m, l, n, cap, nth),
                    A->rows_work_floats(m, l, n, cap, nth));
}

static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    const layer_weights *w = &m->layers[l];
    int d = m->cfg.d_model;
    float *s, *a, *act, *part = work + comb_floats(m, n);
    comb_bufs(m, work, n, &s, &a, &act);
    R(m, l)->step_rows(ex, m, l, s, u, n, pos, state, cap, part);
    float **ast = mixer_ptrs(state, n, 0); // the recurrent part is done with its tables
    size_t rec = R(m, l)->rec_floats(m, l);
    for (int r = 0; r < n; r++)
        ast[r] = state[r] + rec;
    A->step_rows(ex, m, l, a, u, n, pos, ast, cap, part);
    hybrid_combine_forward(ex, y, act, s, a, w->adapter_w, w->adapter_b, n, d);
}

// act: [recurrent part's act | attention act | s | a | combiner act]
static size_t act_floats(const molt_model *m, int l, int B, int T) {
    return A16(R(m, l)->act_floats(m, l, B, T)) + A16(A->act_floats(m, l, B, T)) +
           comb_floats(m, B * T);
}

typedef struct hy_act {
    float *rec, *attn, *s, *a, *comb;
} hy_act;

static hy_act act_at(const molt_model *m, int l, int B, int T, const float *act) {
    size_t Nd = (size_t)B * T * (size_t)m->cfg.d_model;
    hy_act h;
    h.rec = (float *)(uintptr_t)act;
    h.attn = h.rec + A16(R(m, l)->act_floats(m, l, B, T));
    h.s = h.attn + A16(A->act_floats(m, l, B, T));
    h.a = h.s + A16(Nd);
    h.comb = h.a + A16(Nd);
    return h;
}

// work: [the parts' work | ds | da | du2]  (the last three for the backward)
static size_t part_train_work(const molt_model *m, int l, int B, int T) {
    return A16(MOLT_MAX(R(m, l)->train_work_floats(m, l, B, T), A->train_work_floats(m, l, B, T)));
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    return part_train_work(m, l, B, T) + 3 * A16((size_t)B * T * (size_t)m->cfg.d_model);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    const layer_weights *w = &m->layers[l];
    hy_act h = act_at(m, l, B, T, act);
    R(m, l)->train_forward(ex, m, l, h.s, h.rec, u, B, T, work);
    A->train_forward(ex, m, l, h.a, h.attn, u, B, T, work);
    hybrid_combine_forward(ex, y, h.comb, h.s, h.a, w->adapter_w, w->adapter_b, B * T,
                           m->cfg.d_model);
}

static void train_backward(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                           const float *dy, const float *act, const float *u, int B, int T,
                           float *work) {
    const layer_weights *w = &m->layers[l];
    hy_act h = act_at(m, l, B, T, act);
    int N = B * T, d = m->cfg.d_model;
    float *ds = work + part_train_work(m, l, B, T), *da = ds + A16((size_t)N * d),
          *du2 = da + A16((size_t)N * d);
    hybrid_combine_backward(ex, ds, da, mixer_grad(m, grad, w->adapter_w),
                            mixer_grad(m, grad, w->adapter_b), dy, h.comb, h.s, h.a, w->adapter_w,
                            N, d);
    A->train_backward(ex, m, l, du, grad, da, h.attn, u, B, T, work);
    R(m, l)->train_backward(ex, m, l, du2, grad, ds, h.rec, u, B, T, work);
    k_add(ex, du, du, du2, (size_t)N * d);
}

static int units(molt_model *m, int l, mixer_unit *u) {
    int n = A->units(m, l, u);
    return n + R(m, l)->units(m, l, u ? u + n : NULL);
}

// both parts' outputs and the adapter
static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    int k = A->out_weights(m, l, p, n);
    k += R(m, l)->out_weights(m, l, p + k, n + k);
    size_t d = (size_t)m->cfg.d_model;
    p[k] = m->layers[l].adapter_w, n[k++] = d * d;
    if (m->layers[l].adapter_b)
        p[k] = m->layers[l].adapter_b, n[k++] = d;
    return k;
}

// ---- parameters: the parts', then the adapter

static molt_status check(molt_ctx *ctx, const char *what, const model_cfg *c, int l) {
    molt_status st;
#define BAD(...) return molt__err(ctx, MOLT_ERR_SHAPE, __VA_ARGS__)
    layer_kind rk = layer_hybrid_rec(c, l);
    if ((unsigned)rk >= LAYER_KIND_COUNT || !mixer_of(rk)->recurrent ||
        mixer_of(rk)->n_parts != 1)
        BAD("%s: layer %d: a hybrid's recurrent part must be a recurrent mixer (ssm, mamba3, "
            "gateloop), not %s",
            what, l, layer_kind_name(rk));
    if ((st = A->check(ctx, what, c, l)) != MOLT_OK ||
        (st = rec_of(c, l)->check(ctx, what, c, l)) != MOLT_OK)
        return st;
    if (c->n_keep[l] <= 0 || c->n_keep[l] > c->n_head)
        BAD("%s: layer %d keeps %d attention heads (1..%d)", what, l, c->n_keep[l], c->n_head);
    for (int i = 0; i < c->n_keep[l]; i++) {
        int h = c->keep_heads[l][i];
        if (h < 0 || h >= c->n_head)
            BAD("%s: layer %d keeps head %d, but the teacher has heads 0..%d", what, l, h,
                c->n_head - 1);
        for (int j = 0; j < i; j++)
            if (c->keep_heads[l][j] == h)
                BAD("%s: layer %d lists head %d twice", what, l, h);
    }
    return MOLT_OK;
#undef BAD
}

static molt_status declare(molt_ctx *ctx, molt_model *m, int l, const char *root) {
    int64_t d = m->cfg.d_model;
    molt_status st;
    if ((st = R(m, l)->declare(ctx, m, l, root)) != MOLT_OK ||
        (st = A->declare(ctx, m, l, root)) != MOLT_OK ||
        (st = model_decl(ctx, m, false, 2, (const int64_t[]){d, d}, "%s.adapter.weight", root)) !=
            MOLT_OK)
        return st;
    return model_decl(ctx, m, false, 1, (const int64_t[]){d}, "%s.adapter.bias", root);
}

static void bind(molt_model *m, int l, const char *root) {
    R(m, l)->bind(m, l, root);
    A->bind(m, l, root);
    m->layers[l].adapter_w = model_paramf(m, "%s.adapter.weight", root);
    m->layers[l].adapter_b = model_paramf(m, "%s.adapter.bias", root);
}

static void init(molt_model *m, int l, model_rng *r) {
    R(m, l)->init(m, l, r);
    A->init(m, l, r);
    float *a = m->layers[l].adapter_w; // identity (the bias is 0 from the pass by name)
    size_t d = (size_t)m->cfg.d_model;
    memset(a, 0, sizeof(float) * d * d);
    for (size_t i = 0; i < d; i++)
        a[i * d + i] = 1.0f;
}

static int typed(molt_model *m, int l, model_typed *t) {
    int k = A->typed(m, l, t);
    return k + R(m, l)->typed(m, l, t ? t + k : NULL);
}

static void info(const model_cfg *c, int l, molt_model_info *in) {
    A->info(c, l, in);
    rec_of(c, l)->info(c, l, in);
}

// analysis' parts: the kept heads, then the layer's recurrent mixer
static const mixer_vt *part_at(const model_cfg *c, int l, int i) {
    return i == 0 ? A : rec_of(c, l);
}

const mixer_vt mixer_hybrid = {
    MIXER_ENTRIES("hybrid"),
    .part = {&mixer_attention, &mixer_ssm},
    .n_parts = 2,
    .part_at = part_at,
};
