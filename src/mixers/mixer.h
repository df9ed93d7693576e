/*
 * mixer.h — the one token-mixer interface. Every layer of a model has a mixer
 * kind (model_cfg.kind[l]); mixer_of(kind) gives its table of functions, and
 * the block loop (models/block.c), sequences and slots (models/forward.c,
 * slots.c), training (train/model_train.c) and analysis call a layer's mixer
 * only through it. A mixer is found by (model, layer): it reads its own config
 * and weights from there (layer_attn, layer_ssm(cfg, l), m->layers[l]).
 *
 * Adding a mixer: one file src/mixers/mx_NAME.c defining `const mixer_vt
 * mixer_NAME` with every entry below, and one X line in mixers/registry.h
 * (which gives its layer_kind LAYER_NAME, its registry slot and its config
 * name). Its parameters, checks, init, typed matrices and info counts come
 * from its table; nothing else changes. docs/ARCHITECTURE.md ("Mixers").
 *
 * Per-sequence state of a layer is one block of floats, laid out
 *     [ rec | K | V ]      rec: rec_floats (recurrent state: conv + SSM, ...)
 *                          K, V: [kv_heads, cap, hd] append-only caches (hd = cfg head_dim)
 *                          of the model's KV type (f32, or f16: mixer_kv_floats per head)
 * The engine treats the two parts generically: reset zeroes rec (cache rows
 * at or past pos are never read); a snapshot copies rec; a fork copies rec
 * and the first pos rows of every cache head. A mixer with neither (rec 0,
 * kv 0) is stateless.
 *
 * Letters: T tokens of one sequence, n rows of n sequences, B sequences of T
 * tokens (training, from a zero state), d d_model, cap cache capacity.
 */
#ifndef MOLT_MIXER_H
#define MOLT_MIXER_H

#include "core/exec.h"
#include "mixers/attention.h"
#include "models/model.h"

#include <stddef.h>
#include <stdint.h>

// A head the analysis can ablate: zeroing columns slot·width .. +width of
// every row of w (a row-major [rows, stride] output projection) removes it.
typedef struct mixer_unit {
    int    head;    // the head's index in its teacher's numbering (hybrids: keep_heads)
    int    rec;     // 0 attention head, 1 recurrent head
    int    slot;    // column block inside w
    float *w;
    int    rows, stride, width;
} mixer_unit;

typedef struct mixer_vt mixer_vt;
struct mixer_vt {
    const char *name; // as config.json's per-layer "mixer" and the reports spell it

    // ---- parameters (models/model.c, init.c), under root = the layer's name
    // prefix ("model.layers.3", "backbone.layers.3"):
    // check: the layer's part of model_cfg_check (dims its loops rely on);
    // MOLT_ERR_SHAPE with a message that starts with what.
    molt_status (*check)(molt_ctx *ctx, const char *what, const model_cfg *c, int l);
    // declare: its parameters (model_decl; names exactly as the checkpoints
    // it loads, the order is the buffer's layout). bind: the layer_weights
    // views of m->layers[l] (model_paramf; absent ones NULL).
    molt_status (*declare)(molt_ctx *ctx, molt_model *m, int l, const char *root);
    void        (*bind)(molt_model *m, int l, const char *root);
    // init: after model_init_random's pass by name (Linear U(±1/√in), biases
    // 0, norms 1), what this mixer sets otherwise, drawing from r in a fixed
    // order (the stream continues over the layers).
    void (*init)(molt_model *m, int l, model_rng *r);
    // typed: the matrices its forward / step_rows multiply by through typed
    // views (model_typed_add into t, NULL: only counted); returns the count.
    int (*typed)(molt_model *m, int l, model_typed *t);
    // info: adds the layer to molt_model_get_info's counts (attention heads
    // kept, kv_bytes_per_token, state_bytes) and sets the geometry it has
    // (n_head / n_kv_head / head_dim, d_state / ssm_heads).
    void (*info)(const model_cfg *c, int l, molt_model_info *info);

    // ---- per-sequence state (layout above)
    size_t (*rec_floats)(const molt_model *m, int l);
    int    (*kv_heads)(const molt_model *m, int l);

    // ---- inference over one sequence: y[T,d] = mixer(u[T,d]) for tokens at
    // positions pos..pos+T-1, continuing from and updating state (capacity
    // cap); T == 1 is the decode step. work: work_floats(T, cap, nth).
    size_t (*work_floats)(const molt_model *m, int l, int T, int cap, int nth);
    void   (*forward)(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int T, int pos, float *state, int cap, float *work, int nth);

    // ---- batched decode: row r of u[n,d] is the next token of its own
    // sequence, at position pos[r], with state block state[r]. Each row's
    // result equals forward() of that token alone (up to the GEMMs' rounding
    // for another row count).
    size_t (*rows_work_floats)(const molt_model *m, int l, int n, int cap, int nth);
    void   (*step_rows)(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                        int n, const int32_t *pos, float *const *state, int cap, float *work);

    // ---- training / capture: B sequences of T tokens, each from a zero state.
    // train_forward saves what train_backward needs in act; a capture (no
    // gradient, e.g. a distillation teacher) is train_forward alone.
    // train_backward: du[B·T,d] written; the gradients of the layer's weights
    // accumulate (+=) into grad, a buffer with the parameter buffer's layout
    // (mixer_grad). work is shared by both and holds nothing between them.
    size_t (*act_floats)(const molt_model *m, int l, int B, int T);
    size_t (*train_work_floats)(const molt_model *m, int l, int B, int T);
    void   (*train_forward)(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                            const float *u, int B, int T, float *work);
    void   (*train_backward)(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                             const float *dy, const float *act, const float *u, int B, int T,
                             float *work);

    // ---- analysis
    // The L×L mixing matrices of u[T,d] from a zero state, M[heads, T, T]
    // (attention: the softmax probabilities; SSM: the materialized scan).
    // NULL for a composite mixer: analyse its parts.
    size_t (*mat_heads)(const molt_model *m, int l);
    size_t (*mat_work_floats)(const molt_model *m, int l, int T);
    void   (*materialize)(const molt_exec *ex, const molt_model *m, int l, float *M, const float *u,
                          int T, float *work);
    // Head units, listed into u (NULL: only counted); returns the count.
    int (*units)(molt_model *m, int l, mixer_unit *u);
    // The weights whose zeroing makes the mixer's output zero (its output
    // projections and their biases), listed into p / n; returns the count (≤ 8).
    int (*out_weights)(molt_model *m, int l, float **p, size_t *n);
    int recurrent; // its heads are recurrent (a plain mixer; composites: see parts)

    // NULL, or whether backend be has the ops this mixer needs beyond the
    // required ones (kernels.h: MOLT_BACKEND_OPTIONAL_OPS); model_place refuses
    // a model with a mixer (or a part of one) that cannot run on the context's backend
    bool (*runs_on)(const struct molt_backend *be);

    // A composite mixer (the hybrid) lists the mixers it is made of, in the
    // order analysis reports them; a plain mixer lists itself. part[] is the
    // default; a composite whose parts depend on the layer's config (the hybrid's
    // recurrent part: model_cfg.hyb_rec) gives part_at, which mixer_part calls.
    const mixer_vt *part[2];
    int             n_parts;
    const mixer_vt *(*part_at)(const model_cfg *c, int l, int i);
};

// ---- a mixer file's table from its static functions named as the entries
// (check, declare, bind, ..., out_weights): MIXER_ENTRIES every mixer has;
// MIXER_PLAIN(NAME, SELF) those and the analysis entries of a plain mixer
// whose table is SELF. The file adds .recurrent and .runs_on where it has them:
//     const mixer_vt mixer_x = {MIXER_PLAIN("x", mixer_x), .recurrent = 1};
#define MIXER_ENTRIES(NAME)                                                                        \
    .name = NAME, .check = check, .declare = declare, .bind = bind, .init = init, .typed = typed, \
    .info = info, .rec_floats = rec_floats, .kv_heads = kv_heads, .work_floats = work_floats,     \
    .forward = forward, .rows_work_floats = rows_work_floats, .step_rows = step_rows,             \
    .act_floats = act_floats, .train_work_floats = train_work_floats,                             \
    .train_forward = train_forward, .train_backward = train_backward, .units = units,             \
    .out_weights = out_weights
#define MIXER_PLAIN(NAME, SELF)                                                                    \
    MIXER_ENTRIES(NAME), .mat_heads = mat_heads, .mat_work_floats = mat_work_floats,              \
        .materialize = materialize, .part = {&SELF}, .n_parts = 1
// Defines the static runs_on of a mixer whose ops beyond the required ones are
// the optional op group GROUP (an X-macro list of kernels.h, such as
// MOLT_BACKEND_MAMBA3_OPS): whether backend be has every op of the group.
#define MIXER_RUNS_ON(GROUP)                                                                       \
    static bool runs_on(const struct molt_backend *be) { return 1 GROUP(MIXER_HAS_OP_); }
#define MIXER_HAS_OP_(op) &&be->op

// The registry: the mixer of a layer kind (never NULL for a valid kind).
const mixer_vt *mixer_of(layer_kind k);
static inline const mixer_vt *layer_mixer(const molt_model *m, int l) {
    return mixer_of(m->cfg.kind[l]);
}

// Part i (0 .. n_parts-1) of layer l's mixer: part_at's answer when it has one.
static inline const mixer_vt *mixer_part(const model_cfg *c, int l, int i) {
    const mixer_vt *v = mixer_of(c->kind[l]);
    return v->part_at ? v->part_at(c, l, i) : v->part[i];
}

// The gradient slot of weight w in a buffer with the parameter buffer's layout
// (NULL stays NULL: an absent weight has no gradient).
static inline float *mixer_grad(const molt_model *m, float *grad, const float *w) {
    return w ? grad + (w - m->data) : NULL;
}

// Floats of one layer's state block for capacity cap.
size_t mixer_state_floats(const molt_model *m, int l, int cap);
// Floats that the first `rows` rows of one KV-cache head take in the model's
// cache type (molt_model.kv_dt): rows·hd in f32; in f16 ⌈rows/16⌉·16·hd/2
// (kernels/attn.h's f16 layout: rows in blocks of 16, halves). A head's
// cache is mixer_kv_floats(m, cap); a fork or snapshot copies the first
// mixer_kv_floats(m, pos) of each head.
size_t mixer_kv_floats(const molt_model *m, int rows);

// The attention config / weights of layer l (the kept heads for hybrid layers).
void layer_attn(const molt_model *m, int l, attn_cfg *c, attn_weights *w);

// step_rows' per-row pointer tables (each row's conv / SSM state or K / V cache
// for the row ops) are host arrays, never in work (device memory on a GPU):
// the state array step_rows receives holds the n rows' state blocks followed
// by room for MIXER_ROW_TABLES tables of n pointers, and mixer_ptrs(state, n,
// k) is table k. A composite mixer hands a part one of its tables as that
// part's state array; the part's own tables then follow it (so a part's table
// k is the caller's table k + 1 + its index): 8 is room for the hybrid's three
// levels. Whoever calls step_rows allocates n·(1 + MIXER_ROW_TABLES) entries.
#define MIXER_ROW_TABLES 8
float **mixer_ptrs(float *const *state, int n, int k);

// the tables of mixers/registry.h's list
#define MOLT_X_EXTERN(K, name, vt) extern const mixer_vt vt;
MOLT_MIXERS(MOLT_X_EXTERN)
#undef MOLT_X_EXTERN

#endif
