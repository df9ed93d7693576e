/*
 * init.c — new models: random initialisation per architecture, and the
 * retrieval-aware hybrid built from a Llama teacher and a head plan.
 *
 * Random init (ALGORITHMS.md §1.1, §2.3): Linear weights U(±1/√in) (PyTorch's
 * default kaiming_uniform(a=√5)), out_proj additionally / √n_layer (GPT-2
 * style, as mohawk's _init_weights), embeddings N(0, 0.02), norms 1.
 * DiscreteMamba2: conv = identity (last tap 1, bias 0), z rows of in_proj 0 and
 * z_bias = 1.278464542761 so silu(z + z_bias) ≈ 1 ("z: identity"), D = 1.
 * Mamba-2: dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 1e-1] floored at
 * 1e-4; A_log = log(U(1,16)); D = 1. Hybrid adapters: identity, bias 0.
 *
 * Hybrid from teacher (§7, mohawk hybrid_weights_transfer): embeddings, norms,
 * MLPs, final norm and head are copied; a kept head h copies q_proj rows of h,
 * the k/v rows of its GQA group (so each kept head owns its k, v), and o_proj
 * columns of h. Recurrent parts are initialised randomly (seeded).
 */
#include "models/model.h"
#include "tok/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// splitmix64 → uniform / normal
typedef struct rng {
    uint64_t s;
} rng;
static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_normal(rng *r) {
    double u1 = rng_unif(r), u2 = rng_unif(r);
    return sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
}

static void fill_uniform(rng *r, float *x, size_t n, double bound) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2.0 * rng_unif(r) - 1.0) * bound);
}
static void fill_normal(rng *r, float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_normal(r) * sd);
}
static void fill_const(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

#define Z_BIAS_IDENTITY 1.278464542761f

static void init_ssm_layer(rng *r, const model_cfg *c, const ssm_weights *w) {
    const ssm_cfg *s = &c->ssm;
    int Cc = ssm_conv_dim(s), R = ssm_in_proj_rows(s);
    float *conv = (float *)(uintptr_t)w->conv_w;
    memset(conv, 0, sizeof(float) * (size_t)Cc * s->K);
    if (s->kind == SSM_DISCRETE) {
        for (int ch = 0; ch < Cc; ch++)
            conv[(size_t)ch * s->K + s->K - 1] = 1.0f;
        if (w->conv_b)
            memset((float *)(uintptr_t)w->conv_b, 0, sizeof(float) * (size_t)Cc);
        // z rows: after x|B|C (Di + 2·G·N rows)
        float *z = (float *)(uintptr_t)w->in_proj + (size_t)(s->d_inner + 2 * s->G * s->N) * s->d_model;
        memset(z, 0, sizeof(float) * (size_t)s->d_inner * s->d_model);
        if (w->z_bias)
            fill_const((float *)(uintptr_t)w->z_bias, (size_t)s->d_inner, Z_BIAS_IDENTITY);
    } else {
        fill_uniform(r, conv, (size_t)Cc * s->K, 1.0 / sqrt((double)s->K));
        if (w->conv_b)
            fill_uniform(r, (float *)(uintptr_t)w->conv_b, (size_t)Cc, 1.0 / sqrt((double)s->K));
        float *dtb = (float *)(uintptr_t)w->dt_bias, *al = (float *)(uintptr_t)w->A_log;
        for (int h = 0; h < s->H; h++) {
            double dt = exp(rng_unif(r) * (log(0.1) - log(0.001)) + log(0.001));
            if (dt < 1e-4)
                dt = 1e-4;
            dtb[h] = (float)(dt + log(-expm1(-dt)));
            al[h] = (float)log(1.0 + 15.0 * rng_unif(r));
        }
        fill_const((float *)(uintptr_t)w->norm_w, (size_t)s->d_inner, 1.0f);
    }
    (void)R;
    fill_const((float *)(uintptr_t)w->D, (size_t)s->H, 1.0f);
}

void model_init_random(molt_model *m, uint64_t seed) {
    rng r = {seed * 0x9E3779B97F4A7C15ull + 7};
    const model_cfg *c = &m->cfg;
    // generic pass by name and shape
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        float *x = m->data + p->offset;
        if (ends_with(p->name, "norm.weight") || ends_with(p->name, "layernorm.weight"))
            fill_const(x, p->numel, 1.0f);
        else if (ends_with(p->name, "embed_tokens.weight") || ends_with(p->name, "embedding.weight") ||
                 ends_with(p->name, "embeddings.weight"))
            fill_normal(&r, x, p->numel, 0.02);
        else if (p->ndim == 2) {
            double b = 1.0 / sqrt((double)p->shape[1]);
            if (ends_with(p->name, "out_proj.weight") || ends_with(p->name, "o_proj.weight") ||
                ends_with(p->name, "down_proj.weight"))
                b /= sqrt((double)c->n_layer);
            fill_uniform(&r, x, p->numel, b);
        } else
            memset(x, 0, sizeof(float) * p->numel); // biases
    }
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_ATTN)
            init_ssm_layer(&r, c, &m->layers[l].ssm);
        if (c->kind[l] == LAYER_HYBRID) {
            float *a = m->layers[l].adapter_w;
            memset(a, 0, sizeof(float) * (size_t)c->d_model * c->d_model);
            for (int i = 0; i < c->d_model; i++)
                a[(size_t)i * c->d_model + i] = 1.0f;
        }
    }
}

// ----------------------------------------------------------------------------
// hybrid from a Llama teacher

static void copy_param(molt_model *dst, const char *dname, const molt_model *src,
                       const char *sname) {
    param_info *pd = model_param(dst, dname), *ps = model_param(src, sname);
    MOLT_ASSERT(pd && ps && pd->numel == ps->numel);
    memcpy(dst->data + pd->offset, src->data + ps->offset, sizeof(float) * pd->numel);
}

void model_copy_kept_heads(molt_model *dst, int l, const molt_model *teacher) {
    const model_cfg *tc = &teacher->cfg;
    const layer_weights *tw = &teacher->layers[l];
    layer_weights *w = &dst->layers[l];
    int d = tc->d_model, hd = tc->head_dim, grp = tc->n_head / tc->n_kv_head;
    int n = dst->cfg.n_keep[l];
    size_t blk = (size_t)hd * d;
    for (int i = 0; i < n; i++) {
        int h = dst->cfg.keep_heads[l][i], kv = h / grp;
        memcpy(w->wq + i * blk, tw->wq + (size_t)h * blk, sizeof(float) * blk);
        memcpy(w->wk + i * blk, tw->wk + (size_t)kv * blk, sizeof(float) * blk);
        memcpy(w->wv + i * blk, tw->wv + (size_t)kv * blk, sizeof(float) * blk);
        for (int r = 0; r < d; r++) // o_proj [d, n·hd] ← columns of head h
            memcpy(w->wo + (size_t)r * n * hd + (size_t)i * hd,
                   tw->wo + (size_t)r * tc->n_head * hd + (size_t)h * hd, sizeof(float) * hd);
    }
}

molt_status model_hybrid_from_teacher(molt_ctx *ctx, const molt_model *t, const model_cfg *plan,
                                      uint64_t seed, molt_model **out) {
    *out = NULL;
    if (t->cfg.arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(t->cfg.arch));
    if (t->cfg.attn_bias)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "teachers with attention biases are not "
                                                    "supported yet");
    model_cfg c = *plan;
    bool all_ssm = true;
    for (int l = 0; l < t->cfg.n_layer; l++)
        all_ssm &= plan->kind[l] == LAYER_SSM;
    c.arch = all_ssm ? ARCH_LLAMBA : ARCH_HYBRID; // same tensor names either way
    c.d_model = t->cfg.d_model;
    c.n_layer = t->cfg.n_layer;
    c.vocab = t->cfg.vocab;
    c.d_ff = t->cfg.d_ff;
    c.max_seq = t->cfg.max_seq;
    c.norm_eps = t->cfg.norm_eps;
    c.tie_embeddings = t->cfg.tie_embeddings;
    c.has_mlp = true;
    c.n_head = t->cfg.n_head;
    c.n_kv_head = t->cfg.n_kv_head;
    c.head_dim = t->cfg.head_dim;
    c.rope = t->cfg.rope;
    c.bos = t->cfg.bos;
    c.eos = t->cfg.eos;
    c.ssm.d_model = c.d_model;
    molt_status st = model_cfg_check(ctx, "hybrid plan", &c);
    if (st != MOLT_OK)
        return st;
    molt_model *m = NULL;
    if ((st = model_alloc(ctx, &c, &m)) != MOLT_OK)
        return st;
    model_init_random(m, seed);
    copy_param(m, "backbone.embedding.weight", t, "model.embed_tokens.weight");
    copy_param(m, "backbone.final_layernorm.weight", t, "model.norm.weight");
    if (!c.tie_embeddings)
        copy_param(m, "lm_head.weight", t, "lm_head.weight");
    char a[MODEL_NAME_MAX], b[MODEL_NAME_MAX];
    static const char *const per_layer[][2] = {
        {"input_layernorm.weight", "input_layernorm.weight"},
        {"post_attention_layernorm.weight", "post_attention_layernorm.weight"},
        {"mlp.gate_proj.weight", "mlp.gate_proj.weight"},
        {"mlp.up_proj.weight", "mlp.up_proj.weight"},
        {"mlp.down_proj.weight", "mlp.down_proj.weight"},
    };
    static const char *const attn[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight",
                                       "o_proj.weight"};
    for (int l = 0; l < c.n_layer; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            snprintf(a, sizeof a, "backbone.layers.%d.%s", l, per_layer[k][0]);
            snprintf(b, sizeof b, "model.layers.%d.%s", l, per_layer[k][1]);
            copy_param(m, a, t, b);
        }
        if (c.kind[l] == LAYER_ATTN)
            for (int k = 0; k < 4; k++) {
                snprintf(a, sizeof a, "backbone.layers.%d.self_attn.%s", l, attn[k]);
                snprintf(b, sizeof b, "model.layers.%d.self_attn.%s", l, attn[k]);
                copy_param(m, a, t, b);
            }
        else if (c.kind[l] == LAYER_HYBRID)
            model_copy_kept_heads(m, l, t);
    }
    if (t->tok) {
        // the student speaks the teacher's tokenizer: share by reloading its source
        st = molt_tokenizer_load(ctx, tok_source_path(t->tok), c.vocab, &m->tok);
        if (st != MOLT_OK) {
            molt_model_free(m);
            return st;
        }
        tok_set_special(m->tok, molt_tokenizer_bos(t->tok), molt_tokenizer_eos(t->tok));
    }
    *out = m;
    return MOLT_OK;
}
