/*
 * mx_ssm.c — the recurrent mixer behind mixer_vt (mixer.h): Mamba-2 or
 * DiscreteMamba2 (Llamba), per layer_ssm(cfg, l)->kind (mixers/ssm_mixer.c for
 * inference, ssm_train.c for training). State: rec = [conv | ssm]
 * (ssm_state_floats, constant in the context length), no KV cache. Each
 * layer reads its own config, layer_ssm(cfg, l).
 *
 * Parameters: root.mixer.{in_proj, conv1d, dt_bias, A_log, D, norm, z_bias,
 * out_proj} as the kind has them (HF Mamba-2 / cartesia Llamba names).
 * Random init beyond the pass by name (ALGORITHMS.md §1.1, §2.3):
 * DiscreteMamba2: conv = identity (last tap 1, bias 0), z rows of in_proj 0
 * and z_bias = 1.278464542761 so silu(z + z_bias) ≈ 1 ("z: identity"), D = 1.
 * Mamba-2: conv U(±1/√K), dt_bias = softplus⁻¹(dt), dt log-uniform in
 * [1e-3, 1e-1] floored at 1e-4; A_log = log(U(1,16)); gated norm 1; D = 1.
 */
#include "mixers/mixer.h"
#include "mixers/ssm_train.h"

#include <math.h>
#include <string.h>

static ssm_state state_at(const ssm_cfg *c, float *block) {
    return (ssm_state){block, block + (size_t)ssm_conv_dim(c) * (size_t)(c->K - 1)};
}

// ---- bf16 recurrent state (model_cfg.state_dt, molt_model_set_state_dtype):
// rec = [conv (f32) | ssm as H·P·N bf16, padded to whole floats]
static bool state16(const model_cfg *cfg) { return cfg->state_dt == MOLT_BF16; }
static size_t ssm_elems(const ssm_cfg *c) { return (size_t)c->H * (size_t)c->P * (size_t)c->N; }
static size_t conv_floats(const ssm_cfg *c) {
    return (size_t)ssm_conv_dim(c) * (size_t)(c->K - 1);
}

static size_t rec_floats(const molt_model *m, int l) {
    const ssm_cfg *c = layer_ssm(&m->cfg, l);
    return state16(&m->cfg) ? conv_floats(c) + (ssm_elems(c) + 1) / 2 : ssm_state_floats(c);
}

static int kv_heads(const molt_model *m, int l) { return 0; }

// bf16 state: room for the widened state after the mixer's own work
static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    const ssm_cfg *c = layer_ssm(&m->cfg, l);
    return ssm_mixer_work(c, T) + (state16(&m->cfg) ? ssm_elems(c) : 0);
}

// bf16 state: a decode step is the batched step of one row (the same
// computation as the recurrent mode, on the bf16 state); a longer piece widens
// the state into work, runs the f32 chunked scan and rounds the state back.
static void forward16(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int T, float *state, float *work) {
    const ssm_cfg *c = layer_ssm(&m->cfg, l);
    ssm_state      st = state_at(c, state);
    uint16_t      *s16 = (uint16_t *)st.ssm;
    if (T == 1) {
        ssm_mixer_step_rows_bf16(ex, y, u, 1, c, &m->layers[l].ssm, &st.conv, &s16, work);
        return;
    }
    st.ssm = work + ssm_mixer_work(c, T);
    k_bf16_widen(ex, st.ssm, s16, ssm_elems(c));
    ssm_mixer_forward(ex, y, u, T, c, &m->layers[l].ssm, &st, SSM_MODE_CHUNKED, work);
    k_bf16_narrow(ex, s16, st.ssm, ssm_elems(c));
}

// T == 1 is the decode step (the recurrence); longer pieces the chunked scan.
static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u, int T,
                    int pos, float *state, int cap, float *work, int nth) {
    if (state16(&m->cfg)) {
        forward16(ex, m, l, y, u, T, state, work);
        return;
    }
    const ssm_cfg *c = layer_ssm(&m->cfg, l);
    ssm_state st = state_at(c, state);
    ssm_mixer_forward(ex, y, u, T, c, &m->layers[l].ssm, &st,
                      T == 1 ? SSM_MODE_RECURRENT : SSM_MODE_CHUNKED, work);
}

// work: ssm_mixer_work(n) (the conv / SSM state pointer tables: mixer_ptrs tables 0, 1)
static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    return ssm_mixer_work(layer_ssm(&m->cfg, l), n);
}

static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    const ssm_cfg *c = layer_ssm(&m->cfg, l);
    float **cs = mixer_ptrs(state, n, 0), **ss = mixer_ptrs(state, n, 1);
    if (state16(&m->cfg)) { // table 1 holds the rows' bf16 state pointers
        uint16_t **s16 = (uint16_t **)(void *)ss;
        for (int r = 0; r < n; r++) {
            ssm_state st = state_at(c, state[r]);
            cs[r] = st.conv;
            s16[r] = (uint16_t *)st.ssm;
        }
        ssm_mixer_step_rows_bf16(ex, y, u, n, c, &m->layers[l].ssm, cs, s16, work);
        return;
    }
    for (int r = 0; r < n; r++) {
        ssm_state st = state_at(c, state[r]);
        cs[r] = st.conv;
        ss[r] = st.ssm;
    }
    ssm_mixer_step_rows(ex, y, u, n, c, &m->layers[l].ssm, cs, ss, work);
}

static size_t act_floats(const molt_model *m, int l, int B, int T) {
    return ssm_train_act_floats(layer_ssm(&m->cfg, l), B, T);
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    return ssm_train_work_floats(layer_ssm(&m->cfg, l), B, T);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    ssm_train_forward(ex, y, act, u, B, T, layer_ssm(&m->cfg, l), &m->layers[l].ssm, work);
}

static void train_backward(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                           const float *dy, const float *act, const float *u, int B, int T,
                           float *work) {
    const ssm_weights *w = &m->layers[l].ssm;
    ssm_grads g = {mixer_grad(m, grad, w->in_proj), mixer_grad(m, grad, w->in_proj_b),
                   mixer_grad(m, grad, w->conv_w),  mixer_grad(m, grad, w->conv_b),
                   mixer_grad(m, grad, w->dt_bias), mixer_grad(m, grad, w->A_log),
                   mixer_grad(m, grad, w->D),       mixer_grad(m, grad, w->norm_w),
                   mixer_grad(m, grad, w->z_bias),  mixer_grad(m, grad, w->out_proj),
                   mixer_grad(m, grad, w->out_proj_b)};
    ssm_train_backward(ex, du, &g, dy, act, u, B, T, layer_ssm(&m->cfg, l), w, work);
}

static size_t mat_heads(const molt_model *m, int l) { return (size_t)layer_ssm(&m->cfg, l)->H; }

static size_t mat_work_floats(const molt_model *m, int l, int T) {
    return ssm_mixer_work(layer_ssm(&m->cfg, l), T);
}

static void materialize(const molt_exec *ex, const molt_model *m, int l, float *M, const float *u,
                        int T, float *work) {
    ssm_mixer_materialize(ex, M, u, T, layer_ssm(&m->cfg, l), &m->layers[l].ssm, work);
}

// DiscreteMamba2 heads are units: head h's output is its P columns of
// out_proj ([d, Di]). Mamba-2's are not: its gated RMSNorm normalises over
// groups of heads, so zeroing one head's columns does not remove it alone.
static int units(molt_model *m, int l, mixer_unit *u) {
    const ssm_cfg *s = layer_ssm(&m->cfg, l);
    if (s->kind != SSM_DISCRETE)
        return 0;
    float *w = m->data + (m->layers[l].ssm.out_proj - m->data); // the writable view
    for (int h = 0; u && h < s->H; h++)
        u[h] = (mixer_unit){h, 1, h, w, m->cfg.d_model, s->d_inner, s->P};
    return s->H;
}

static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    const ssm_weights *w = &m->layers[l].ssm;
    size_t d = (size_t)m->cfg.d_model;
    int k = 0;
    p[k] = m->data + (w->out_proj - m->data), n[k++] = d * (size_t)layer_ssm(&m->cfg, l)->d_inner;
    if (w->out_proj_b)
        p[k] = m->data + (w->out_proj_b - m->data), n[k++] = d;
    return k;
}

// ---- parameters

static molt_status check(molt_ctx *ctx, const char *what, const model_cfg *c, int l) {
    const ssm_cfg *s = layer_ssm(c, l);
    const char *e = ssm_cfg_check(s);
    if (e)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: %s", what, e);
    if (s->d_model != c->d_model)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: SSM d_model %d differs from hidden size %d",
                         what, s->d_model, c->d_model);
    return MOLT_OK;
}


static molt_status declare(molt_ctx *ctx, molt_model *m, int l, const char *root) {
    const ssm_cfg *s = layer_ssm(&m->cfg, l);
    int64_t d = s->d_model, Di = s->d_inner, R = ssm_in_proj_rows(s), Cc = ssm_conv_dim(s);
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(R, d), "%s.mixer.in_proj.weight", root));
    if (m->cfg.ssm_bias)
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(R), "%s.mixer.in_proj.bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 3, D3(Cc, 1, s->K), "%s.mixer.conv1d.weight", root));
    if (m->cfg.conv_bias)
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(Cc), "%s.mixer.conv1d.bias", root));
    if (s->kind == SSM_MAMBA2) {
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(s->H), "%s.mixer.dt_bias", root));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(s->H), "%s.mixer.A_log", root));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(s->H), "%s.mixer.D", root));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(Di), "%s.mixer.norm.weight", root));
    } else {
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(Di), "%s.mixer.z_bias", root));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(s->H), "%s.mixer.D", root));
    }
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(d, Di), "%s.mixer.out_proj.weight", root));
    if (m->cfg.ssm_bias)
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(d), "%s.mixer.out_proj.bias", root));
    return MOLT_OK;
}

static void bind(molt_model *m, int l, const char *root) {
    ssm_weights *w = &m->layers[l].ssm;
    memset(w, 0, sizeof *w);
    w->in_proj = model_paramf(m, "%s.mixer.in_proj.weight", root);
    w->in_proj_b = model_paramf(m, "%s.mixer.in_proj.bias", root);
    w->conv_w = model_paramf(m, "%s.mixer.conv1d.weight", root);
    w->conv_b = model_paramf(m, "%s.mixer.conv1d.bias", root);
    w->dt_bias = model_paramf(m, "%s.mixer.dt_bias", root);
    w->A_log = model_paramf(m, "%s.mixer.A_log", root);
    w->D = model_paramf(m, "%s.mixer.D", root);
    w->norm_w = model_paramf(m, "%s.mixer.norm.weight", root);
    w->z_bias = model_paramf(m, "%s.mixer.z_bias", root);
    w->out_proj = model_paramf(m, "%s.mixer.out_proj.weight", root);
    w->out_proj_b = model_paramf(m, "%s.mixer.out_proj.bias", root);
}

#define Z_BIAS_IDENTITY 1.278464542761f

static void init(molt_model *m, int l, model_rng *r) {
    const ssm_cfg *s = layer_ssm(&m->cfg, l);
    const ssm_weights *w = &m->layers[l].ssm;
    int Cc = ssm_conv_dim(s);
    float *conv = (float *)(uintptr_t)w->conv_w;
    memset(conv, 0, sizeof(float) * (size_t)Cc * s->K);
    if (s->kind == SSM_DISCRETE) {
        for (int ch = 0; ch < Cc; ch++)
            conv[(size_t)ch * s->K + s->K - 1] = 1.0f;
        if (w->conv_b)
            memset((float *)(uintptr_t)w->conv_b, 0, sizeof(float) * (size_t)Cc);
        // z rows: after x|B|C (Di + 2·G·N rows)
        float *z = (float *)(uintptr_t)w->in_proj +
                   (size_t)(s->d_inner + 2 * s->G * s->N) * s->d_model;
        memset(z, 0, sizeof(float) * (size_t)s->d_inner * s->d_model);
        if (w->z_bias)
            model_fill_const((float *)(uintptr_t)w->z_bias, (size_t)s->d_inner, Z_BIAS_IDENTITY);
    } else {
        model_fill_uniform(r, conv, (size_t)Cc * s->K, 1.0 / sqrt((double)s->K));
        if (w->conv_b)
            model_fill_uniform(r, (float *)(uintptr_t)w->conv_b, (size_t)Cc,
                               1.0 / sqrt((double)s->K));
        float *dtb = (float *)(uintptr_t)w->dt_bias, *al = (float *)(uintptr_t)w->A_log;
        for (int h = 0; h < s->H; h++) {
            double dt = exp(model_rng_unif(r) * (log(0.1) - log(0.001)) + log(0.001));
            if (dt < 1e-4)
                dt = 1e-4;
            dtb[h] = (float)(dt + log(-expm1(-dt)));
            al[h] = (float)log(1.0 + 15.0 * model_rng_unif(r));
        }
        model_fill_const((float *)(uintptr_t)w->norm_w, (size_t)s->d_inner, 1.0f);
    }
    model_fill_const((float *)(uintptr_t)w->D, (size_t)s->H, 1.0f);
}

static int typed(molt_model *m, int l, model_typed *t) {
    const ssm_cfg *s = layer_ssm(&m->cfg, l);
    ssm_weights *w = &m->layers[l].ssm;
    size_t d = (size_t)m->cfg.d_model;
    int k = model_typed_add(t, 0, w->in_proj, (size_t)ssm_in_proj_rows(s) * d, &w->in_proj_t,
                            false);
    return model_typed_add(t, k, w->out_proj, d * (size_t)s->d_inner, &w->out_proj_t, false);
}

static void info(const model_cfg *c, int l, molt_model_info *in) {
    const ssm_cfg *s = layer_ssm(c, l);
    if (!in->d_state) { // the first recurrent layer's
        in->d_state = s->N;
        in->ssm_heads = s->H;
    }
    in->state_bytes += state16(c) ? (int64_t)(conv_floats(s) * sizeof(float) +
                                              ssm_elems(s) * sizeof(uint16_t))
                                  : (int64_t)ssm_state_floats(s) * (int64_t)sizeof(float);
}

const mixer_vt mixer_ssm = {
    MIXER_PLAIN("ssm", mixer_ssm),
    .recurrent = 1,
};
