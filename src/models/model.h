/*
 * model.h — the internal shape of molt_model: a config, one contiguous fp32
 * parameter buffer with a named table of views (llm.c style), and a list of
 * blocks.  Every architecture molt runs is the same stack:
 *
 *     x = embed[ids]
 *     for each layer:  x += mixer(rmsnorm(x))          mixer: attention | SSM | hybrid
 *                      x += mlp(rmsnorm(x))            (absent for HF Mamba-2)
 *     logits = head(rmsnorm(x))
 *
 * Letters: T tokens, d d_model, V vocab, F d_ff, H query heads, KV key/value
 * heads, hd head dim, L layers.
 */
#ifndef MOLT_MODEL_H
#define MOLT_MODEL_H

#include "core/core.h"
#include "mixers/gl_mixer.h"
#include "mixers/mamba3.h"
#include "mixers/registry.h"
#include "mixers/ssm_mixer.h"

#define MODEL_NAME_MAX 96
#define MODEL_MAX_LAYERS 256

typedef enum model_arch {
    ARCH_LLAMA = 0,  // HF LlamaForCausalLM (and llama2.c checkpoints, converted on load)
    ARCH_LLAMBA,     // cartesia Llamba: Llama blocks with DiscreteMamba2 mixers
    ARCH_MAMBA2,     // HF Mamba2ForCausalLM: norm → Mamba-2 mixer → residual, no MLP
    ARCH_HYBRID,     // molt_hybrid: per layer attention / SSM / SSM ‖ kept attention heads
    ARCH_COUNT
} model_arch;

// A layer's mixer (mixers/registry.h lists them): LAYER_ATTN, LAYER_SSM, LAYER_HYBRID, ...
typedef enum layer_kind {
#define MOLT_X_KIND(K, name, vt) LAYER_##K,
    MOLT_MIXERS(MOLT_X_KIND)
#undef MOLT_X_KIND
    LAYER_KIND_COUNT
} layer_kind;

// A layer kind's name as config.json's per-layer "mixer" spells it ("?" if
// invalid), and back (mixers/registry.c).
const char *layer_kind_name(layer_kind k);
bool        layer_kind_parse(const char *s, layer_kind *out);

typedef enum rope_kind { ROPE_DEFAULT = 0, ROPE_LLAMA3, ROPE_LINEAR, ROPE_KIND_COUNT } rope_kind;

typedef struct rope_cfg {
    rope_kind kind;
    float     theta;
    float     factor;            // llama3 / linear
    float     low_freq_factor;   // llama3
    float     high_freq_factor;  // llama3
    int       orig_max_pos;      // llama3 original_max_position_embeddings
} rope_cfg;

typedef struct model_cfg {
    model_arch arch;
    int   d_model, n_layer, vocab, d_ff, max_seq;
    float norm_eps;       // every block's RMSNorms (and the final one unless final_norm_eps)
    float final_norm_eps; // the final RMSNorm's when > 0 (cartesia Llamba: norm_epsilon,
                          // its blocks' norms are fixed at 1e-5); 0: norm_eps
    bool  tie_embeddings;
    bool  has_mlp;
    // attention (teacher layers, and the kept heads of hybrid layers)
    int      n_head, n_kv_head, head_dim;
    bool     attn_bias, mlp_bias;
    rope_cfg rope;
    // recurrent mixers: each layer's own config (layer_ssm; the file formats
    // have one ssm_cfg block, which fills every layer: model_cfg_set_ssm)
    ssm_cfg ssm_layer[MODEL_MAX_LAYERS];
    // Mamba-3 layers: each layer's own config (layer_m3; config.json's one
    // "mamba3_cfg" block fills every layer, models/config_mamba3.c)
    mamba3_cfg m3_layer[MODEL_MAX_LAYERS];
    bool    ssm_bias;   // in_proj / out_proj biases
    bool    conv_bias;  // conv1d bias
    // GateLoop layers: each layer's own config (layer_gl; config.json has one
    // "gateloop_cfg" block, which fills every layer: model_cfg_set_gl)
    gateloop_cfg gl_layer[MODEL_MAX_LAYERS];
    // per layer
    layer_kind kind[MODEL_MAX_LAYERS];
    int        n_keep[MODEL_MAX_LAYERS];       // hybrid: number of kept attention heads
    int       *keep_heads[MODEL_MAX_LAYERS];   // hybrid: which teacher heads (owned)
    // hybrid: the recurrent part's mixer (LAYER_SSM, LAYER_MAMBA3, LAYER_GATELOOP; the
    // zero value LAYER_ATTN means the default, the Llamba SSM): layer_hybrid_rec
    layer_kind hyb_rec[MODEL_MAX_LAYERS];
    int   bos, eos;
    char  src_format[16]; // "hf", "llama2c", "mamba_ssm" (state-spaces' native layout)
    // run time, not from a file (molt_model_set_state_dtype): the element type
    // of the SSM mixers' recurrent state (MOLT_F32, or MOLT_BF16: mx_ssm.c)
    molt_dtype state_dt;
} model_cfg;

static inline float model_final_eps(const model_cfg *c) {
    return c->final_norm_eps > 0 ? c->final_norm_eps : c->norm_eps;
}

// A named view into the parameter buffer.
typedef struct param_info {
    char    name[MODEL_NAME_MAX];
    int     ndim;
    int64_t shape[4];
    size_t  offset, numel; // in floats
    bool    optional;      // may be absent from a checkpoint (tied head, ...)
} param_info;

typedef struct layer_weights {
    // attention
    float *attn_norm;       // [d]
    float *wq, *wk, *wv;    // [H*hd, d], [KV*hd, d], [KV*hd, d]   (kept heads only in hybrids)
    float *wo;              // [d, H*hd]
    float *bq, *bk, *bv, *bo;
    // recurrent mixer
    ssm_weights ssm;
    // GateLoop mixer
    gl_weights gl;
    // Mamba-3 mixer (mx_mamba3.c)
    mamba3_weights m3;
    // hybrid combiner
    float *adapter_w, *adapter_b; // [d, d], [d]
    // MLP
    float *ffn_norm;        // [d]
    float *w_gate, *w_up;   // [F, d]
    float *w_down;          // [d, F]
    // Typed views of the matrices the inference paths multiply by (prefill,
    // decode, batched slots): {MOLT_F32, the parameter above} by default, or
    // into molt_model.wbuf after molt_model_set_weight_dtype. Training,
    // analysis and saving read the f32 parameters (the master). The SSM's are
    // ssm.in_proj_t / ssm.out_proj_t. t_gate and t_up are adjacent whenever
    // w_gate and w_up are (f32), and always in wbuf: then one [2F, d] GEMM.
    molt_w t_q, t_k, t_v, t_o;
    molt_w t_gate, t_up, t_down;
} layer_weights;

struct molt_backend;

struct molt_model {
    model_cfg      cfg;
    const struct molt_backend *be; // owns data and the RoPE tables (kernels/mem.h)
    param_info    *params;
    int            n_params, cap_params;
    float         *data;        // all parameters, 64-byte aligned, on be
    size_t         n_floats;
    float         *embed;       // [V, d]
    float         *final_norm;  // [d]
    float         *lm_head;     // [V, d] (== embed when tied)
    molt_w         lm_head_t;   // its typed view (inference logits), see layer_weights
    molt_dtype     weight_dt;   // the typed views' dtype (MOLT_F32: they are the parameters)
    void          *wbuf;        // bf16/f16/q8_0 copies of the typed matrices, on be (NULL: f32)
    size_t         wbuf_bytes;
    molt_dtype     kv_dt;       // KV-cache element type: MOLT_F32 (default) or MOLT_F16
                                // (molt_model_set_kv_dtype; mixers/mixer.h: mixer_kv_floats)
    layer_weights  layers[MODEL_MAX_LAYERS];
    float         *rope_cos, *rope_sin; // [max_seq, hd/2]
    molt_tokenizer *tok;        // owned, may be NULL
};

// ----------------------------------------------------------------------------
// What a mixer's file uses to declare, bind and initialise its layer's
// parameters (mixers/mixer.h: check, declare, bind, init, typed, info).

// The recurrent config of layer l (every recurrent layer reads its own).
static inline const ssm_cfg *layer_ssm(const model_cfg *c, int l) { return &c->ssm_layer[l]; }
static inline ssm_cfg *layer_ssm_mut(model_cfg *c, int l) { return &c->ssm_layer[l]; }
// The Mamba-3 config of layer l.
static inline const mamba3_cfg *layer_m3(const model_cfg *c, int l) { return &c->m3_layer[l]; }
// The recurrent part of hybrid layer l (the SSM unless hyb_rec names another).
static inline layer_kind layer_hybrid_rec(const model_cfg *c, int l) {
    return c->hyb_rec[l] == LAYER_ATTN ? LAYER_SSM : c->hyb_rec[l];
}
// The recurrent mixer layer l runs: its own kind, or a hybrid's recurrent part
// (LAYER_ATTN for an attention layer).
static inline layer_kind layer_rec_kind(const model_cfg *c, int l) {
    return c->kind[l] == LAYER_HYBRID ? layer_hybrid_rec(c, l) : c->kind[l];
}
// Gives every layer (all MODEL_MAX_LAYERS) the recurrent config s.
static inline void model_cfg_set_ssm(model_cfg *c, const ssm_cfg *s) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        c->ssm_layer[l] = *s;
}
// The GateLoop config of layer l, and the same for every layer.
static inline const gateloop_cfg *layer_gl(const model_cfg *c, int l) { return &c->gl_layer[l]; }
static inline void model_cfg_set_gl(model_cfg *c, const gateloop_cfg *g) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        c->gl_layer[l] = *g;
}

// Declares one parameter (name from fmt) after the last: its offset is the
// next 64-byte boundary. The declaration order is the buffer's layout.
// shape: D1(n), D2(rows, cols), D3(...) build it in place.
#define D1(a)       (const int64_t[]){(a)}
#define D2(a, b)    (const int64_t[]){(a), (b)}
#define D3(a, b, c) (const int64_t[]){(a), (b), (c)}
molt_status model_decl(molt_ctx *ctx, molt_model *m, bool optional, int ndim,
                       const int64_t *shape, const char *fmt, ...) MOLT_PRINTF(6, 7);
// The parameter named by fmt, or NULL when the model has none of that name.
float      *model_paramf(const molt_model *m, const char *fmt, ...) MOLT_PRINTF(2, 3);

// A matrix the inference paths multiply by (model.h's typed views): its f32
// parameter src of n elements and the typed view that points at it or at its
// bf16 / f16 copy; joined: it follows the previous one with no gap (MLP up
// after gate, one [2F, d] GEMM); off: bytes into the typed buffer (model.c).
typedef struct model_typed {
    const float *src;
    size_t       n;
    molt_w      *view;
    bool         joined;
    size_t       off;
    // filled by model.c from the parameter table: which parameter, its
    // [rows, cols] (cols: the input size, the shape's last dimension)
    int          param;
    size_t       rows, cols;
} model_typed;

// Appends {src, n, view} at t[k] unless src is NULL (absent); t NULL only
// counts. Returns the new count.
static inline int model_typed_add(model_typed *t, int k, const float *src, size_t n, molt_w *view,
                                  bool joined) {
    if (!src)
        return k;
    if (t)
        t[k] = (model_typed){src, n, view, joined, 0, -1, 0, 0};
    return k + 1;
}

// The random stream of model_init_random (init.c: splitmix64).
typedef struct model_rng {
    uint64_t s;
} model_rng;
double model_rng_unif(model_rng *r); // U[0, 1)
void   model_fill_uniform(model_rng *r, float *x, size_t n, double bound); // U(±bound)
void   model_fill_const(float *x, size_t n, float v);

const char *model_arch_name(model_arch a);
bool        model_arch_parse(const char *s, model_arch *out);

// Config → parameter table → one allocation → views. Parameters are zeroed.
molt_status model_alloc(molt_ctx *ctx, const model_cfg *cfg, molt_model **out);
void        model_free_cfg(model_cfg *cfg);
param_info *model_param(const molt_model *m, const char *name);
float      *model_param_data(const molt_model *m, const char *name);
// Validates cfg (head counts divide, dims positive, ...). msg names the key.
molt_status model_cfg_check(molt_ctx *ctx, const char *what, const model_cfg *cfg);
// Points every typed view (layer_weights t_*, ssm in_proj_t / out_proj_t,
// lm_head_t) at its f32 parameter; does not free wbuf.
void        model_bind_typed_f32(molt_model *m);
// Moves m whole to backend be (parameters, RoPE tables, a typed copy; one of
// the two backends host-visible): models are built on the host (model_alloc)
// and run where their context says. model_place: to ctx's backend
// (molt_ctx_set_device). On error m stays where it was, whole.
molt_status model_to_backend(molt_ctx *ctx, molt_model *m, const struct molt_backend *be);
molt_status model_place(molt_ctx *ctx, molt_model *m);
// A host copy of m as a new model (to build on the host from a device model:
// students, hybrids); its tokenizer is m's, borrowed: free it with
// model_host_clone_free (NULL is fine), never molt_model_free.
molt_status model_host_clone(molt_ctx *ctx, const molt_model *m, molt_model **out);
void        model_host_clone_free(molt_model *c);
// dst's parameters ← src's (same layout; src is moved to dst's backend first,
// so it may be changed), and dst's typed copy made again.
molt_status model_copy_params(molt_ctx *ctx, molt_model *dst, molt_model *src);
// n floats at p of backend be readable on the host: p itself when be is
// host-visible, else a malloc'd copy (*owned, the caller frees it). NULL
// (error in ctx) when the copy cannot be allocated.
const float *model_host_floats(molt_ctx *ctx, const struct molt_backend *be, const float *p,
                               size_t n, float **owned);
// The typed matrices of m in wbuf's order (model.c: typed_list), shapes filled
// in; *t is molt__malloc'ed (free with molt__free). MOLT_ERR_OOM.
molt_status model_typed_list(molt_ctx *ctx, molt_model *m, model_typed **t, int *n);
// whether backend be has the bf16 recurrent state's ops (molt_model_set_state_dtype)
bool model_state_dt_runs_on(const struct molt_backend *be);

// molt_model_set_weight_dtype for dt (bf16, f16, q8_0). packed: NULL, or per
// parameter index the q8_0 rows of that matrix already quantized (the loader's,
// from a q8_0 file; NULL entries are quantized from the f32 parameter).
molt_status model_set_typed(molt_ctx *ctx, molt_model *m, molt_dtype dt,
                            const uint8_t *const *packed);
// Recomputes RoPE tables (after cfg change).
molt_status model_init_rope(molt_ctx *ctx, molt_model *m);

// Loaders (model_load.c, llama2c.c, config.c)
molt_status model_cfg_from_json(molt_ctx *ctx, const char *what, const char *json, size_t len,
                                model_cfg *cfg);
// torch_dtype: the weights' type as HF names it ("float32", "bfloat16", "float16")
molt_status model_cfg_to_json(molt_ctx *ctx, const model_cfg *cfg, const char *torch_dtype,
                              char **json);
molt_status model_load_hf(molt_ctx *ctx, const char *dir, molt_model **out);
molt_status model_load_llama2c(molt_ctx *ctx, const char *path, molt_model **out);

// New models (init.c)
// Random init per architecture (Linear U(±1/√in), Llamba conv/z identity, ...).
void        model_init_random(molt_model *m, uint64_t seed);
// A molt_hybrid model from a Llama teacher: plan gives kind[], n_keep[],
// keep_heads[] and the ssm cfg (d_state, heads, ...); everything else is the
// teacher's. Embeddings, norms, MLPs, head and kept attention heads are copied.
molt_status model_hybrid_from_teacher(molt_ctx *ctx, const molt_model *teacher,
                                      const model_cfg *plan, uint64_t seed, molt_model **out);
// Copies the kept heads of layer l (q rows, the GQA group's k/v rows, o columns).
void        model_copy_kept_heads(molt_model *dst, int l, const molt_model *teacher);

// Sizes
int64_t model_kv_bytes_per_token(const model_cfg *cfg);
int64_t model_state_bytes(const model_cfg *cfg);

#endif
