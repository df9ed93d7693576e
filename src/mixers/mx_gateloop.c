/*
 * mx_gateloop.c — the GateLoop mixer behind mixer_vt (mixer.h): inference in
 * mixers/gl_mixer.c, training in gl_train.c, kernels in kernels/gateloop.h.
 * Each layer reads its own config, layer_gl(cfg, l). State: rec = the complex
 * state S as floats, [H, P, P] (gl_state_floats: constant in the context
 * length), no KV cache.
 *
 * Parameters: root.mixer.{in_proj.weight [5·Di, d] (rows q | k | v | g | m |
 * φ), a_bias [Di] (magnitude then phase), g_bias [Di], out_proj.weight [d, Di]}.
 * Random init beyond the pass by name (Linear U(±1/√in), out_proj / √L,
 * biases 0): the magnitude biases put each pair's initial decay
 * sigmoid(b) = 1 − 10^U(−3,−1) ∈ [0.9, 0.999] (a spread of time scales, as
 * Mamba-2's dt init), the phase biases are RoPE's frequencies 10000^(−2j/P)
 * (relative positions from the start); g_bias 0 (plain silu(W_g·u)).
 */
#include "mixers/gl_train.h"
#include "kernels/kernels.h"
#include "mixers/mixer.h"

#include <math.h>
#include <string.h>

static size_t rec_floats(const molt_model *m, int l) {
    return gl_state_floats(layer_gl(&m->cfg, l));
}

static int kv_heads(const molt_model *m, int l) { return 0; }

static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    return gl_mixer_work(layer_gl(&m->cfg, l), T);
}

// T == 1 is the decode step (the recurrence); longer pieces the chunked scan.
static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                    int T, int pos, float *state, int cap, float *work, int nth) {
    gl_mixer_forward(ex, y, u, T, layer_gl(&m->cfg, l), &m->layers[l].gl, state,
                     T == 1 ? GL_MODE_RECURRENT : GL_MODE_CHUNKED, work);
}

// the state block of each row starts with its rec part, the complex state itself
static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    return gl_mixer_work(layer_gl(&m->cfg, l), n);
}

static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    gl_mixer_step_rows(ex, y, u, n, layer_gl(&m->cfg, l), &m->layers[l].gl, state, work);
}

static size_t act_floats(const molt_model *m, int l, int B, int T) {
    return gl_train_act_floats(layer_gl(&m->cfg, l), B, T);
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    return gl_train_work_floats(layer_gl(&m->cfg, l), B, T);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    gl_train_forward(ex, y, act, u, B, T, layer_gl(&m->cfg, l), &m->layers[l].gl, work);
}

static void train_backward(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                           const float *dy, const float *act, const float *u, int B, int T,
                           float *work) {
    const gl_weights *w = &m->layers[l].gl;
    gl_grads g = {mixer_grad(m, grad, w->in_proj), mixer_grad(m, grad, w->a_bias),
                  mixer_grad(m, grad, w->g_bias), mixer_grad(m, grad, w->out_proj)};
    gl_train_backward(ex, du, &g, dy, act, u, B, T, layer_gl(&m->cfg, l), w, work);
}

static size_t mat_heads(const molt_model *m, int l) { return (size_t)layer_gl(&m->cfg, l)->H; }

static size_t mat_work_floats(const molt_model *m, int l, int T) {
    return gl_mixer_work(layer_gl(&m->cfg, l), T);
}

static void materialize(const molt_exec *ex, const molt_model *m, int l, float *M, const float *u,
                        int T, float *work) {
    gl_mixer_materialize(ex, M, u, T, layer_gl(&m->cfg, l), &m->layers[l].gl, work);
}

// Heads are units: head h's output is its P columns of out_proj ([d, Di]) (the
// gate is per channel, so zeroing them removes that head alone).
static int units(molt_model *m, int l, mixer_unit *u) {
    const gateloop_cfg *c = layer_gl(&m->cfg, l);
    float *w = m->data + (m->layers[l].gl.out_proj - m->data); // the writable view
    for (int h = 0; u && h < c->H; h++)
        u[h] = (mixer_unit){h, 1, h, w, m->cfg.d_model, c->d_inner, c->P};
    return c->H;
}

static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    p[0] = m->data + (m->layers[l].gl.out_proj - m->data);
    n[0] = (size_t)m->cfg.d_model * (size_t)layer_gl(&m->cfg, l)->d_inner;
    return 1;
}

// ---- parameters

static molt_status check(molt_ctx *ctx, const char *what, const model_cfg *c, int l) {
    const gateloop_cfg *g = layer_gl(c, l);
    const char         *e = gl_cfg_check(g);
    if (e)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: %s", what, e);
    if (g->d_model != c->d_model)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: GateLoop d_model %d differs from hidden size %d", what, g->d_model,
                         c->d_model);
    return MOLT_OK;
}

static molt_status declare(molt_ctx *ctx, molt_model *m, int l, const char *root) {
    const gateloop_cfg *g = layer_gl(&m->cfg, l);
    int64_t d = g->d_model, Di = g->d_inner, R = gl_in_proj_rows(g);
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(R, d), "%s.mixer.in_proj.weight", root));
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(Di), "%s.mixer.a_bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(Di), "%s.mixer.g_bias", root));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(d, Di), "%s.mixer.out_proj.weight", root));
    return MOLT_OK;
}

static void bind(molt_model *m, int l, const char *root) {
    gl_weights *w = &m->layers[l].gl;
    memset(w, 0, sizeof *w);
    w->in_proj = model_paramf(m, "%s.mixer.in_proj.weight", root);
    w->a_bias = model_paramf(m, "%s.mixer.a_bias", root);
    w->g_bias = model_paramf(m, "%s.mixer.g_bias", root);
    w->out_proj = model_paramf(m, "%s.mixer.out_proj.weight", root);
}

static void init(molt_model *m, int l, model_rng *r) {
    const gateloop_cfg *g = layer_gl(&m->cfg, l);
    float *b = (float *)(uintptr_t)m->layers[l].gl.a_bias;
    int    J = g->P / 2, HJ = g->H * J;
    for (int h = 0; h < g->H; h++)
        for (int j = 0; j < J; j++) {
            double keep = 1.0 - pow(10.0, -3.0 + 2.0 * model_rng_unif(r)); // decay per token
            b[h * J + j] = (float)log(keep / (1.0 - keep));               // logit
            b[HJ + h * J + j] = (float)pow(10000.0, -2.0 * j / (double)g->P);
        }
}

static int typed(molt_model *m, int l, model_typed *t) {
    const gateloop_cfg *g = layer_gl(&m->cfg, l);
    gl_weights *w = &m->layers[l].gl;
    size_t d = (size_t)m->cfg.d_model;
    int k = model_typed_add(t, 0, w->in_proj, (size_t)gl_in_proj_rows(g) * d, &w->in_proj_t,
                            false);
    return model_typed_add(t, k, w->out_proj, d * (size_t)g->d_inner, &w->out_proj_t, false);
}

// d_state: the q/k dims per head (P), as an SSM head's N; the state is H × P × P floats
static void info(const model_cfg *c, int l, molt_model_info *in) {
    const gateloop_cfg *g = layer_gl(c, l);
    if (!in->d_state) { // the first recurrent layer's
        in->d_state = g->P;
        in->ssm_heads = g->H;
    }
    in->state_bytes += (int64_t)gl_state_floats(g) * (int64_t)sizeof(float);
}

// the gateloop group of the table is optional (no CUDA kernels yet)
MIXER_RUNS_ON(MOLT_BACKEND_GATELOOP_OPS)

const mixer_vt mixer_gateloop = {
    MIXER_PLAIN("gateloop", mixer_gateloop),
    .recurrent = 1,
    .runs_on = runs_on,
};
