/*
 * init.c — new models: random initialisation per architecture, and the
 * retrieval-aware hybrid built from a Llama teacher and a head plan.
 *
 * Random init (ALGORITHMS.md §1.1, §2.3): Linear weights U(±1/√in) (PyTorch's
 * default kaiming_uniform(a=√5)), out_proj additionally / √n_layer (GPT-2
 * style, as mohawk's _init_weights), embeddings N(0, 0.02), norms 1, biases 0;
 * then each layer's mixer sets what it initialises otherwise (mixer_vt.init:
 * mx_ssm.c's conv / z / dt / A / D, mx_hybrid.c's identity adapter), drawing
 * from the same stream in layer order.
 *
 * Hybrid from teacher (§7, mohawk hybrid_weights_transfer): embeddings, norms,
 * MLPs, final norm and head are copied; a kept head h copies q_proj rows of h,
 * the k/v rows of its GQA group (so each kept head owns its k, v), and o_proj
 * columns of h. Recurrent parts are initialised randomly (seeded).
 */
#include "mixers/mixer.h"
#include "models/model.h"
#include "tok/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// splitmix64 → uniform / normal (model_rng, model.h: the mixers' init draws from it too)
typedef model_rng rng;
static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
double model_rng_unif(rng *r) {
    return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}
#define rng_unif model_rng_unif
static double rng_normal(rng *r) {
    double u1 = rng_unif(r), u2 = rng_unif(r);
    return sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
}

void model_fill_uniform(rng *r, float *x, size_t n, double bound) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2.0 * rng_unif(r) - 1.0) * bound);
}
#define fill_uniform model_fill_uniform
#define fill_const model_fill_const

static void fill_normal(rng *r, float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_normal(r) * sd);
}
void model_fill_const(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
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
    // then each layer's mixer: what it sets otherwise (mixer_vt.init)
    for (int l = 0; l < c->n_layer; l++)
        mixer_of(c->kind[l])->init(m, l, &r);
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
        all_ssm &= plan->kind[l] == LAYER_SSM && layer_ssm(plan, l)->kind == SSM_DISCRETE;
    // same tensor names either way; a Llamba file's SSM is DiscreteMamba2
    c.arch = all_ssm ? ARCH_LLAMBA : ARCH_HYBRID;
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
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        layer_ssm_mut(&c, l)->d_model = c.d_model;
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
