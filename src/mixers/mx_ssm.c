/*
 * mx_ssm.c — the recurrent mixer behind mixer_vt (mixer.h): Mamba-2 or
 * DiscreteMamba2 (Llamba), per cfg->ssm.kind (mixers/ssm_mixer.c for
 * inference, ssm_train.c for training). State: rec = [conv | ssm]
 * (ssm_state_floats, constant in the context length), no KV cache.
 */
#include "mixers/mixer.h"
#include "mixers/ssm_train.h"

static ssm_state state_at(const ssm_cfg *c, float *block) {
    return (ssm_state){block, block + (size_t)ssm_conv_dim(c) * (size_t)(c->K - 1)};
}

static size_t rec_floats(const molt_model *m, int l) { return ssm_state_floats(&m->cfg.ssm); }

static int kv_heads(const molt_model *m, int l) { return 0; }

static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    return ssm_mixer_work(&m->cfg.ssm, T);
}

// T == 1 is the decode step (the recurrence); longer pieces the chunked scan.
static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u, int T,
                    int pos, float *state, int cap, float *work, int nth) {
    const ssm_cfg *c = &m->cfg.ssm;
    ssm_state st = state_at(c, state);
    ssm_mixer_forward(ex, y, u, T, c, &m->layers[l].ssm, &st,
                      T == 1 ? SSM_MODE_RECURRENT : SSM_MODE_CHUNKED, work);
}

// work: [conv state pointers n | ssm state pointers n | ssm_mixer_work(n)]
static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    return 2 * mixer_ptrs_floats(n) + ssm_mixer_work(&m->cfg.ssm, n);
}

static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    const ssm_cfg *c = &m->cfg.ssm;
    float **cs = mixer_ptrs(work, n), **ss = mixer_ptrs(work + mixer_ptrs_floats(n), n);
    for (int r = 0; r < n; r++) {
        ssm_state st = state_at(c, state[r]);
        cs[r] = st.conv;
        ss[r] = st.ssm;
    }
    ssm_mixer_step_rows(ex, y, u, n, c, &m->layers[l].ssm, cs, ss,
                        work + 2 * mixer_ptrs_floats(n));
}

static size_t act_floats(const molt_model *m, int l, int B, int T) {
    return ssm_train_act_floats(&m->cfg.ssm, B, T);
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    return ssm_train_work_floats(&m->cfg.ssm, B, T);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    ssm_train_forward(ex, y, act, u, B, T, &m->cfg.ssm, &m->layers[l].ssm, work);
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
    ssm_train_backward(ex, du, &g, dy, act, u, B, T, &m->cfg.ssm, w, work);
}

static size_t mat_heads(const molt_model *m, int l) { return (size_t)m->cfg.ssm.H; }

static size_t mat_work_floats(const molt_model *m, int l, int T) {
    return ssm_mixer_work(&m->cfg.ssm, T);
}

static void materialize(const molt_exec *ex, const molt_model *m, int l, float *M, const float *u,
                        int T, float *work) {
    ssm_mixer_materialize(ex, M, u, T, &m->cfg.ssm, &m->layers[l].ssm, work);
}

// DiscreteMamba2 heads are units: head h's output is its P columns of
// out_proj ([d, Di]). Mamba-2's are not: its gated RMSNorm normalises over
// groups of heads, so zeroing one head's columns does not remove it alone.
static int units(molt_model *m, int l, mixer_unit *u) {
    const model_cfg *c = &m->cfg;
    if (c->ssm.kind != SSM_DISCRETE)
        return 0;
    float *w = m->data + (m->layers[l].ssm.out_proj - m->data); // the writable view
    for (int h = 0; u && h < c->ssm.H; h++)
        u[h] = (mixer_unit){h, 1, h, w, c->d_model, c->ssm.d_inner, c->ssm.P};
    return c->ssm.H;
}

static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    const ssm_weights *w = &m->layers[l].ssm;
    size_t d = (size_t)m->cfg.d_model;
    int k = 0;
    p[k] = m->data + (w->out_proj - m->data), n[k++] = d * (size_t)m->cfg.ssm.d_inner;
    if (w->out_proj_b)
        p[k] = m->data + (w->out_proj_b - m->data), n[k++] = d;
    return k;
}

const mixer_vt mixer_ssm = {
    .name = "ssm",
    .rec_floats = rec_floats,
    .kv_heads = kv_heads,
    .work_floats = work_floats,
    .forward = forward,
    .rows_work_floats = rows_work_floats,
    .step_rows = step_rows,
    .act_floats = act_floats,
    .train_work_floats = train_work_floats,
    .train_forward = train_forward,
    .train_backward = train_backward,
    .mat_heads = mat_heads,
    .mat_work_floats = mat_work_floats,
    .materialize = materialize,
    .units = units,
    .out_weights = out_weights,
    .recurrent = 1,
    .part = {&mixer_ssm},
    .n_parts = 1,
};
