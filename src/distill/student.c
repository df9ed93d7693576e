/*
 * student.c — building a MOHAWK student from a Llama teacher, and sampling
 * training text from the teacher itself (so a teacher whose corpus is not at
 * hand still provides as much in-distribution data as needed).
 *
 * Attention transfer (mohawk utils/init_weights.py init_ssm_from_attention_layer,
 * MambaInLlama): the SSD head h is softmax-free attention with a decay, so
 * C_t·B_s plays q_t·k_s and x plays v. With d_state N ≠ head_dim, the first
 * min(N, hd) state dimensions are transferred and the rest keep their random init.
 */
#include "distill/mohawk.h"
#include "distill/student.h"
#include "infer/sample.h"
#include "kernels/kernels.h"
#include "mixers/mixer.h"
#include "mixers/gl_train.h"
#include "mixers/ssm_train.h"
#include "models/forward.h"

#include <math.h>
#include <string.h>

#define A_LOG_BIAS_INIT (-4.0f) // softplus(−4) ≈ 0.018: decay ≈ 0.98 per token

molt_status student_check_heads(molt_ctx *ctx, const model_cfg *tc, const molt_distill_opts *o,
                                const char *what, int *H, bool *transfer) {
    if (tc->arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(tc->arch));
    int d = tc->d_model, Di = tc->n_head * tc->head_dim;
    *H = o->n_heads > 0 ? o->n_heads : tc->n_head;
    if (Di % d)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "teacher heads × head_dim = %d is not a multiple of hidden size %d: a "
                         "%s student needs d_inner = expand · d_model",
                         Di, d, what);
    if (Di % *H)
        return molt__err(ctx, MOLT_ERR_SHAPE, "d_inner %d is not divisible by %d student heads", Di,
                         *H);
    *transfer = !o->init || !strcmp(o->init, "transfer");
    if (*transfer && *H != tc->n_head)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "attention transfer needs one student head per teacher query head (%d, "
                         "got %d): use --init random",
                         tc->n_head, *H);
    if (!*transfer && strcmp(o->init, "random"))
        return molt__err(ctx, MOLT_ERR_ARG, "init \"%s\" (transfer or random)", o->init);
    return MOLT_OK;
}

// The kept-head plan: the layers holding kept heads (keep_layer[i]:keep_head[i],
// validated against teacher config tc) become LAYER_HYBRID with recurrent part
// rec; buf holds the head lists plan points to.
static molt_status plan_heads(molt_ctx *ctx, const model_cfg *tc, const int32_t *keep_layer,
                              const int32_t *keep_head, int n_keep, layer_kind rec,
                              model_cfg *plan, int buf[][64]) {
    for (int i = 0; i < n_keep; i++) {
        int l = keep_layer[i], h = keep_head[i];
        if (l < 0 || l >= tc->n_layer || h < 0 || h >= tc->n_head)
            return molt__err(ctx, MOLT_ERR_ARG,
                             "kept head %d:%d does not exist (the teacher has layers 0..%d, heads "
                             "0..%d)",
                             l, h, tc->n_layer - 1, tc->n_head - 1);
        if (tc->n_head > 64)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "hybrids support at most 64 heads a layer");
        for (int j = 0; j < plan->n_keep[l]; j++)
            if (buf[l][j] == h)
                return molt__err(ctx, MOLT_ERR_ARG, "head %d:%d is listed twice", l, h);
        buf[l][plan->n_keep[l]++] = h;
        plan->kind[l] = LAYER_HYBRID;
        plan->hyb_rec[l] = rec;
        plan->keep_heads[l] = buf[l];
    }
    if (tc->n_kv_head <= 0 || (n_keep > 0 && tc->attn_bias))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "this teacher's attention cannot be kept");
    return MOLT_OK;
}

molt_status student_from_plan(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                              layer_kind kind, model_cfg *plan, molt_model **out) {
    *out = NULL;
    for (int l = 0; l < t->cfg.n_layer; l++)
        plan->kind[l] = kind;
    int heads_buf[MODEL_MAX_LAYERS][64]; // model_alloc copies the lists
    molt_status st = plan_heads(ctx, &t->cfg, o->keep_layer, o->keep_head, o->n_keep, kind, plan,
                                heads_buf);
    if (st == MOLT_OK)
        st = model_hybrid_from_teacher(ctx, t, plan, o->seed, out);
    for (int l = 0; l < t->cfg.n_layer; l++)
        plan->keep_heads[l] = NULL; // heads_buf ends here
    return st;
}

molt_status mohawk_student(molt_ctx *ctx, const molt_model *t, int n_heads, int d_state,
                           const char *init, bool ssm_bias, const int32_t *keep_layer,
                           const int32_t *keep_head, int n_keep, uint64_t seed, molt_model **out) {
    *out = NULL;
    const model_cfg *tc = &t->cfg;
    if (tc->arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(tc->arch));
    int Di = tc->n_head * tc->head_dim;
    if (Di % tc->d_model)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "teacher heads × head_dim = %d is not a multiple of hidden size %d: a "
                         "Llamba student needs d_inner = expand · d_model",
                         Di, tc->d_model);
    if (d_state <= 0 || d_state > 4096)
        return molt__err(ctx, MOLT_ERR_ARG, "d_state %d out of range", d_state);
    int H = n_heads > 0 ? n_heads : tc->n_head;
    if (Di % H)
        return molt__err(ctx, MOLT_ERR_SHAPE, "d_inner %d is not divisible by %d student heads", Di,
                         H);
    bool transfer = !init || !strcmp(init, "transfer");
    if (transfer && H != tc->n_head)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "attention transfer needs one student head per teacher query head (%d, "
                         "got %d): use --init random",
                         tc->n_head, H);
    if (!transfer && strcmp(init, "random"))
        return molt__err(ctx, MOLT_ERR_ARG, "init \"%s\" (transfer or random)", init);
    model_cfg plan;
    memset(&plan, 0, sizeof plan);
    model_cfg_set_ssm(&plan, &(ssm_cfg){SSM_DISCRETE, tc->d_model, Di, H, Di / H, d_state, H, 4,
                                        0, 64, tc->norm_eps, 0.0f, INFINITY});
    plan.conv_bias = true;
    plan.ssm_bias = ssm_bias;
    molt_distill_opts ko = {.keep_layer = keep_layer, .keep_head = keep_head, .n_keep = n_keep,
                            .seed = seed};
    molt_model *m = NULL; // the head plan is validated there, before any work
    molt_status st = student_from_plan(ctx, t, &ko, LAYER_SSM, &plan, &m);
    if (st != MOLT_OK)
        return st;
    int d = tc->d_model, hd = tc->head_dim, grp = tc->n_head / tc->n_kv_head;
    size_t row = (size_t)d;
    for (int l = 0; l < tc->n_layer; l++) {
        int N = layer_ssm(&m->cfg, l)->N, nb = N < hd ? N : hd;
        const layer_weights *tw = &t->layers[l];
        ssm_weights *w = &m->layers[l].ssm;
        float *in = (float *)(uintptr_t)w->in_proj;
        float *xr = in, *Br = in + (size_t)Di * row, *Cr = Br + (size_t)H * N * row;
        if (ssm_bias) { // A_log bias: rows after x|B|C|z
            float *b = (float *)(uintptr_t)w->in_proj_b;
            for (int h = 0; h < H; h++)
                b[(size_t)Di + 2 * (size_t)H * N + (size_t)Di + h] = A_LOG_BIAS_INIT;
        }
        if (!transfer)
            continue;
        for (int h = 0; h < H; h++) {
            int kv = h / grp;
            memcpy(xr + (size_t)h * hd * row, tw->wv + (size_t)kv * hd * row,
                   sizeof(float) * (size_t)hd * row);
            for (int n = 0; n < nb; n++) {
                memcpy(Br + ((size_t)h * N + n) * row, tw->wk + ((size_t)kv * hd + n) * row,
                       sizeof(float) * row);
                memcpy(Cr + ((size_t)h * N + n) * row, tw->wq + ((size_t)h * hd + n) * row,
                       sizeof(float) * row);
            }
        }
        memcpy((float *)(uintptr_t)w->out_proj, tw->wo, sizeof(float) * (size_t)d * Di);
    }
    *out = m;
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// the student by kind, and stage 1 by the layer's mixer (student.h)

static molt_status student_on_host(molt_ctx *ctx, const molt_model *t,
                                   const molt_distill_opts *o, molt_model **out) {
    const char *kind = o->student ? o->student : "llamba";
    if (!strcmp(kind, "mamba2"))
        return student_mamba2(ctx, t, o, out);
    if (!strcmp(kind, "mamba3") || !strcmp(kind, "mamba3-mimo"))
        return student_mamba3(ctx, t, o, out);
    if (!strcmp(kind, "gateloop"))
        return mohawk_student_gateloop(ctx, t, o->n_heads, o->init, o->keep_layer, o->keep_head,
                                       o->n_keep, o->seed, out);
    if (strcmp(kind, "llamba")) {
        *out = NULL;
        return molt__err(ctx, MOLT_ERR_ARG,
                         "student \"%s\" (llamba, mamba2, mamba3, mamba3-mimo or gateloop)",
                         kind);
    }
    return mohawk_student(ctx, t, o->n_heads, o->d_state, o->init, o->ssm_bias != 0,
                          o->keep_layer, o->keep_head, o->n_keep, o->seed, out);
}

// The student is built on the host from a host view of the teacher (a copy
// when the teacher is on a device), then placed where ctx runs models.
molt_status mohawk_make_student(molt_ctx *ctx, const molt_model *t, const molt_distill_opts *o,
                                molt_model **out) {
    *out = NULL;
    molt_model *clone = NULL;
    molt_status st = t->be->mem.host_visible ? MOLT_OK : model_host_clone(ctx, t, &clone);
    if (st == MOLT_OK)
        st = student_on_host(ctx, clone ? clone : t, o, out);
    model_host_clone_free(clone);
    if (st == MOLT_OK && (st = model_place(ctx, *out)) != MOLT_OK) {
        molt_model_free(*out);
        *out = NULL;
    }
    return st;
}

// the layer's recurrent mixer (a hybrid layer's recurrent part)
static bool is_m3(const molt_model *s, int l) { return layer_rec_kind(&s->cfg, l) == LAYER_MAMBA3; }
static bool is_gl(const molt_model *s, int l) {
    return layer_rec_kind(&s->cfg, l) == LAYER_GATELOOP;
}

int student_mat_heads(const molt_model *s, int l) {
    return is_m3(s, l)   ? layer_m3(&s->cfg, l)->H
           : is_gl(s, l) ? layer_gl(&s->cfg, l)->H
                         : layer_ssm(&s->cfg, l)->H;
}

size_t student_mat_act_floats(const molt_model *s, int l, int B, int T) {
    return is_m3(s, l)   ? mamba3_mat_act_floats(layer_m3(&s->cfg, l), B, T)
           : is_gl(s, l) ? gl_mat_act_floats(layer_gl(&s->cfg, l), B, T)
                         : ssm_mat_act_floats(layer_ssm(&s->cfg, l), B, T);
}

size_t student_mat_work_floats(const molt_model *s, int l, int B, int T) {
    return is_m3(s, l)   ? mamba3_mat_work_floats(layer_m3(&s->cfg, l), B, T)
           : is_gl(s, l) ? gl_mat_work_floats(layer_gl(&s->cfg, l), B, T)
                         : ssm_mat_work_floats(layer_ssm(&s->cfg, l), B, T);
}

void student_mat_forward(const molt_exec *ex, const molt_model *s, int l, float *M, float *act,
                         const float *u, int B, int T, float *work) {
    if (is_gl(s, l)) // GateLoop: its surrogate attention (gl_train.h)
        gl_mat_forward(ex, M, act, u, B, T, layer_gl(&s->cfg, l), &s->layers[l].gl, work);
    else if (is_m3(s, l))
        mamba3_mat_forward(ex, M, act, u, B, T, layer_m3(&s->cfg, l), &s->layers[l].m3, work);
    else
        ssm_mat_forward(ex, M, act, u, B, T, layer_ssm(&s->cfg, l), &s->layers[l].ssm, work);
}

void student_mat_backward(const molt_exec *ex, const molt_model *s, int l, float *grad,
                          float *du, const float *dM, const float *act, const float *u, int B,
                          int T, float *work) {
    if (is_gl(s, l)) {
        const gl_weights *w = &s->layers[l].gl;
        gl_grads g = {mixer_grad(s, grad, w->in_proj), mixer_grad(s, grad, w->a_bias),
                      mixer_grad(s, grad, w->g_bias), mixer_grad(s, grad, w->out_proj)};
        gl_mat_backward(ex, du, &g, dM, act, u, B, T, layer_gl(&s->cfg, l), w, work);
        return;
    }
    if (is_m3(s, l)) {
        const mamba3_weights *w = &s->layers[l].m3;
        mamba3_grads g = {mixer_grad(s, grad, w->in_proj), mixer_grad(s, grad, w->dt_bias),
                          mixer_grad(s, grad, w->B_bias),  mixer_grad(s, grad, w->C_bias),
                          mixer_grad(s, grad, w->B_norm),  mixer_grad(s, grad, w->C_norm),
                          NULL, NULL, NULL, mixer_grad(s, grad, w->D), NULL, NULL};
        mamba3_mat_backward(ex, du, &g, dM, act, u, B, T, layer_m3(&s->cfg, l), w, work);
        return;
    }
    const ssm_weights *w = &s->layers[l].ssm;
    ssm_grads g = {mixer_grad(s, grad, w->in_proj), mixer_grad(s, grad, w->in_proj_b),
                   mixer_grad(s, grad, w->conv_w),  mixer_grad(s, grad, w->conv_b),
                   mixer_grad(s, grad, w->dt_bias), mixer_grad(s, grad, w->A_log),
                   mixer_grad(s, grad, w->D),       mixer_grad(s, grad, w->norm_w),
                   mixer_grad(s, grad, w->z_bias),  mixer_grad(s, grad, w->out_proj),
                   mixer_grad(s, grad, w->out_proj_b)};
    ssm_mat_backward(ex, du, &g, dM, act, u, B, T, layer_ssm(&s->cfg, l), w, work);
}

// ----------------------------------------------------------------------------
// teacher samples

// Sequences are decoded up to SAMPLE_BATCH at a time over state slots (fewer
// when their KV caches would pass SAMPLE_STATE_BYTES): every step is one
// molt_slots_feed (one [n, ·] GEMM per projection for all of them). Each
// sequence keeps its own sampler (seed + q·7919 + 1), so its tokens are those
// of decoding it alone up to the GEMMs' rounding for another row count.
#define SAMPLE_BATCH       64
#define SAMPLE_STATE_BYTES ((size_t)256 << 20)

molt_status mohawk_teacher_samples(molt_ctx *ctx, const molt_model *t, int64_t n_tokens,
                                   int seq_len, uint64_t seed, token_stream *out) {
    memset(out, 0, sizeof *out);
    int T = seq_len < t->cfg.max_seq ? seq_len : t->cfg.max_seq - 1;
    int nseq = (int)((n_tokens + T) / (T + 1));
    if (nseq < 2)
        nseq = 2;
    int V = t->cfg.vocab, bos = t->cfg.bos >= 0 ? t->cfg.bos : 1;
    size_t fit = SAMPLE_STATE_BYTES / MOLT_MAX(seq_state_floats(t, T) * sizeof(float), 1);
    int    nb = fit < SAMPLE_BATCH ? (int)MOLT_MAX(fit, 1) : SAMPLE_BATCH;
    nb = nseq < nb ? nseq : nb;
    out->ids = molt__malloc(sizeof(int32_t) * (size_t)nseq * (T + 1));
    float *lg = molt__malloc(sizeof(float) * (size_t)V * nb);
    struct prob_index *pi = molt__malloc(sizeof(*pi) * (size_t)V * nb);
    sampler *smp = molt__malloc(sizeof(sampler) * (size_t)nb);
    int32_t *slot = molt__malloc(sizeof(int32_t) * 2 * (size_t)nb), *tok = slot + nb;
    molt_slots *sl = NULL;
    molt_status st = MOLT_OK;
    if (!out->ids || !lg || !pi || !smp || !slot) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d teacher samples", nseq);
        goto done;
    }
    out->n = (size_t)nseq * (T + 1);
    if ((st = molt_slots_new(ctx, t, nb, T, &sl)) != MOLT_OK)
        goto done;
    for (int q0 = 0; q0 < nseq; q0 += nb) {
        int n = nseq - q0 < nb ? nseq - q0 : nb;
        // BOS once into slot 0 (every sequence starts there), forked into the others
        if ((st = molt_slot_reset(ctx, sl, 0)) != MOLT_OK ||
            (st = molt_slot_prefill(ctx, sl, 0, &(int32_t){bos}, 1, 0, lg)) != MOLT_OK)
            goto done;
        for (int r = 0; r < n; r++) {
            if (r > 0 && ((st = molt_slot_copy(ctx, sl, 0, r)) != MOLT_OK))
                goto done;
            if (r > 0)
                memcpy(lg + (size_t)r * V, lg, sizeof(float) * (size_t)V);
            sampler_init(&smp[r], V, 1.0f, 1.0f, 0, seed + (uint64_t)(q0 + r) * 7919u + 1,
                         pi + (size_t)r * V);
            slot[r] = r;
            out->ids[(size_t)(q0 + r) * (T + 1)] = bos;
        }
        for (int i = 1; i <= T; i++) {
            for (int r = 0; r < n; r++) {
                tok[r] = sampler_sample(&smp[r], lg + (size_t)r * V);
                if (tok[r] < 0) {
                    st = molt__err(ctx, MOLT_ERR_NUMERIC,
                                   "teacher sample %d: non-finite logits (NaN or inf) at "
                                   "position %d",
                                   q0 + r, i);
                    goto done;
                }
                // a generated BOS starts the next story, as in the training data
                out->ids[(size_t)(q0 + r) * (T + 1) + i] = tok[r];
            }
            if (i < T && (st = molt_slots_feed(ctx, sl, n, slot, tok, lg)) != MOLT_OK)
                goto done;
        }
    }
done:
    molt_slots_free(sl);
    molt__free(lg);
    molt__free(pi);
    molt__free(smp);
    molt__free(slot);
    if (st != MOLT_OK)
        data_free(out);
    return st;
}
