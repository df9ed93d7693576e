/*
 * mx_mamba3.c — the Mamba-3 mixer behind mixer_vt (mixer.h), SISO or MIMO per
 * layer_m3(cfg, l) (mixers/mamba3.c for inference, mamba3_train.c for
 * training). State: rec = the Mamba-3 state block (ssm, k_prev, v_prev,
 * angle: m3_state_floats), constant in the context length; no KV cache.
 *
 * Parameters, named as state-spaces/mamba's Mamba3 module (so its native
 * checkpoints map by name): root.mixer.{in_proj.weight, dt_bias, B_bias,
 * C_bias, B_norm.weight, C_norm.weight, mimo_x, mimo_z, mimo_o (MIMO), D,
 * norm.weight (is_outproj_norm), out_proj.weight}. No biases on the
 * projections (the module has none).
 * Random init beyond the pass by name (ALGORITHMS.md §8.1, Mamba3.__init__):
 * dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 1e-1] floored at 1e-4;
 * B_bias = C_bias = 1; mimo_x = mimo_o = 1/R, mimo_z = 1; D = 1 (norms 1 and
 * Linear U(±1/√in) come from the pass by name).
 */
#include "kernels/kernels.h"
#include "mixers/mixer.h"

#include <math.h>
#include <string.h>

static size_t rec_floats(const molt_model *m, int l) {
    return mamba3_state_floats(layer_m3(&m->cfg, l));
}

static int kv_heads(const molt_model *m, int l) { return 0; }

static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    return mamba3_work(layer_m3(&m->cfg, l), T);
}

// T == 1 is the decode step (the recurrence); longer pieces the chunked form.
static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                    int T, int pos, float *state, int cap, float *work, int nth) {
    mamba3_forward(ex, y, u, T, layer_m3(&m->cfg, l), &m->layers[l].m3, state,
                   T == 1 ? M3_RECURRENT : M3_CHUNKED, work);
}

static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    return mamba3_rows_work(layer_m3(&m->cfg, l), n);
}

// each slot's state block starts with the recurrent part: the Mamba-3 block
static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    mamba3_step_rows(ex, y, u, n, layer_m3(&m->cfg, l), &m->layers[l].m3, state, work);
}

static size_t act_floats(const molt_model *m, int l, int B, int T) {
    return mamba3_train_act_floats(layer_m3(&m->cfg, l), B, T);
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    return mamba3_train_work_floats(layer_m3(&m->cfg, l), B, T);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    mamba3_train_forward(ex, y, act, u, B, T, layer_m3(&m->cfg, l), &m->layers[l].m3, work);
}

static void train_backward(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                           const float *dy, const float *act, const float *u, int B, int T,
                           float *work) {
    const mamba3_weights *w = &m->layers[l].m3;
    mamba3_grads g = {mixer_grad(m, grad, w->in_proj), mixer_grad(m, grad, w->dt_bias),
                      mixer_grad(m, grad, w->B_bias),  mixer_grad(m, grad, w->C_bias),
                      mixer_grad(m, grad, w->B_norm),  mixer_grad(m, grad, w->C_norm),
                      mixer_grad(m, grad, w->mimo_x),  mixer_grad(m, grad, w->mimo_z),
                      mixer_grad(m, grad, w->mimo_o),  mixer_grad(m, grad, w->D),
                      mixer_grad(m, grad, w->norm),    mixer_grad(m, grad, w->out_proj)};
    mamba3_train_backward(ex, du, &g, dy, act, u, B, T, layer_m3(&m->cfg, l), w, work);
}

static size_t mat_heads(const molt_model *m, int l) { return (size_t)layer_m3(&m->cfg, l)->H; }

static size_t mat_work_floats(const molt_model *m, int l, int T) {
    return mamba3_work(layer_m3(&m->cfg, l), T);
}

static void materialize(const molt_exec *ex, const molt_model *m, int l, float *M, const float *u,
                        int T, float *work) {
    mamba3_materialize(ex, M, u, T, layer_m3(&m->cfg, l), &m->layers[l].m3, work);
}

// Every head is a unit: its output (after the per-head norm and the rank sum)
// is its P columns of out_proj [d, Di].
static int units(molt_model *m, int l, mixer_unit *u) {
    const mamba3_cfg *c = layer_m3(&m->cfg, l);
    float *w = m->data + (m->layers[l].m3.out_proj - m->data); // the writable view
    for (int h = 0; u && h < c->H; h++)
        u[h] = (mixer_unit){h, 1, h, w, m->cfg.d_model, c->d_inner, c->P};
    return c->H;
}

static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    p[0] = m->data + (m->layers[l].m3.out_proj - m->data);
    n[0] = (size_t)m->cfg.d_model * (size_t)layer_m3(&m->cfg, l)->d_inner;
    return 1;
}

// ---- parameters

static molt_status check(molt_ctx *ctx, const char *what, const model_cfg *c, int l) {
    const mamba3_cfg *s = layer_m3(c, l);
    const char *e = mamba3_cfg_check(s);
    if (e)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: layer %d: %s", what, l, e);
    if (s->d_model != c->d_model)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: Mamba-3 d_model %d differs from hidden size %d",
                         what, s->d_model, c->d_model);
    return MOLT_OK;
}

static molt_status declare(molt_ctx *ctx, molt_model *m, int l, const char *root) {
    const mamba3_cfg *s = layer_m3(&m->cfg, l);
    int64_t d = s->d_model, Di = s->d_inner, H = s->H, R = s->R, N = s->N, P = s->P;
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(mamba3_in_rows(s), d), "%s.mixer.in_proj.weight",
                        root));
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(H), "%s.mixer.dt_bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 3, D3(H, R, N), "%s.mixer.B_bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 3, D3(H, R, N), "%s.mixer.C_bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(N), "%s.mixer.B_norm.weight", root));
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(N), "%s.mixer.C_norm.weight", root));
    if (s->mimo) {
        MOLT_TRY(model_decl(ctx, m, false, 3, D3(H, R, P), "%s.mixer.mimo_x", root));
        MOLT_TRY(model_decl(ctx, m, false, 3, D3(H, R, P), "%s.mixer.mimo_z", root));
        MOLT_TRY(model_decl(ctx, m, false, 3, D3(H, R, P), "%s.mixer.mimo_o", root));
    }
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(H), "%s.mixer.D", root));
    if (s->outproj_norm)
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(Di), "%s.mixer.norm.weight", root));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(d, Di), "%s.mixer.out_proj.weight", root));
    return MOLT_OK;
}

static void bind(molt_model *m, int l, const char *root) {
    mamba3_weights *w = &m->layers[l].m3;
    memset(w, 0, sizeof *w);
    w->in_proj = model_paramf(m, "%s.mixer.in_proj.weight", root);
    w->dt_bias = model_paramf(m, "%s.mixer.dt_bias", root);
    w->B_bias = model_paramf(m, "%s.mixer.B_bias", root);
    w->C_bias = model_paramf(m, "%s.mixer.C_bias", root);
    w->B_norm = model_paramf(m, "%s.mixer.B_norm.weight", root);
    w->C_norm = model_paramf(m, "%s.mixer.C_norm.weight", root);
    w->mimo_x = model_paramf(m, "%s.mixer.mimo_x", root);
    w->mimo_z = model_paramf(m, "%s.mixer.mimo_z", root);
    w->mimo_o = model_paramf(m, "%s.mixer.mimo_o", root);
    w->D = model_paramf(m, "%s.mixer.D", root);
    w->norm = model_paramf(m, "%s.mixer.norm.weight", root);
    w->out_proj = model_paramf(m, "%s.mixer.out_proj.weight", root);
}

static float *wr(const float *p) { return (float *)(uintptr_t)p; }

static void init(molt_model *m, int l, model_rng *r) {
    const mamba3_cfg *s = layer_m3(&m->cfg, l);
    const mamba3_weights *w = &m->layers[l].m3;
    float *dtb = wr(w->dt_bias);
    for (int h = 0; h < s->H; h++) {
        double dt = exp(model_rng_unif(r) * (log(0.1) - log(0.001)) + log(0.001));
        if (dt < 1e-4)
            dt = 1e-4;
        dtb[h] = (float)(dt + log(-expm1(-dt)));
    }
    size_t hrn = (size_t)s->H * s->R * s->N, hrp = (size_t)s->H * s->R * s->P;
    model_fill_const(wr(w->B_bias), hrn, 1.0f);
    model_fill_const(wr(w->C_bias), hrn, 1.0f);
    if (s->mimo) {
        model_fill_const(wr(w->mimo_x), hrp, 1.0f / (float)s->R);
        model_fill_const(wr(w->mimo_z), hrp, 1.0f);
        model_fill_const(wr(w->mimo_o), hrp, 1.0f / (float)s->R);
    }
    model_fill_const(wr(w->D), (size_t)s->H, 1.0f);
}

static int typed(molt_model *m, int l, model_typed *t) {
    const mamba3_cfg *s = layer_m3(&m->cfg, l);
    mamba3_weights *w = &m->layers[l].m3;
    size_t d = (size_t)m->cfg.d_model;
    int k = model_typed_add(t, 0, w->in_proj, (size_t)mamba3_in_rows(s) * d, &w->in_proj_t, false);
    return model_typed_add(t, k, w->out_proj, d * (size_t)s->d_inner, &w->out_proj_t, false);
}

static void info(const model_cfg *c, int l, molt_model_info *in) {
    const mamba3_cfg *s = layer_m3(c, l);
    if (!in->d_state) { // the first recurrent layer's
        in->d_state = s->N;
        in->ssm_heads = s->H;
    }
    in->state_bytes += (int64_t)mamba3_state_floats(s) * (int64_t)sizeof(float);
}

// the mamba3 group of the table is optional (no CUDA kernels yet)
MIXER_RUNS_ON(MOLT_BACKEND_MAMBA3_OPS)

const mixer_vt mixer_mamba3 = {
    MIXER_PLAIN("mamba3", mixer_mamba3),
    .recurrent = 1,
    .runs_on = runs_on,
};
