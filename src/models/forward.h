/*
 * forward.h — internals of running a model: the molt_seq layout and helpers
 * the training / analysis code reuses.
 */
#ifndef MOLT_FORWARD_H
#define MOLT_FORWARD_H

#include "mixers/mixer.h"
#include "models/model.h"

struct molt_seq {
    const molt_model *m;
    int32_t cap, pos, chunk;
    int     nth;                                        // threads the scratch is sized for
    float  *state[MODEL_MAX_LAYERS];                    // per layer [rec | K | V] (mixers/mixer.h)
    size_t  state_floats;                               // KV + recurrent state
    molt_dtype kv_dt;                                   // the model's KV type when laid out
    molt_dtype state_dt;                                // the model's SSM-state type then
    float  *scratch;
    float  *dlogits;                                    // device models: logits staging [chunk, V]
    float  *buf;                                        // one allocation for all of it
};

// A sequence's state at one position, to return to after feeding more tokens
// (scoring several continuations of one prompt). Attention layers need only
// pos: their KV cache is append-only, entries below pos are never rewritten.
// Recurrent layers (SSM, hybrid) need their conv + SSM state copied.
// Restoring is valid while the tokens below snap.pos are still those fed when
// it was saved: only restore snapshots taken on the current path.
typedef struct seq_snap {
    int32_t pos;
    float  *rec; // [seq_snap_floats] conv + SSM state of every recurrent layer, layer order
} seq_snap;
size_t seq_snap_floats(const molt_seq *s); // 0 for pure attention models
void   seq_snap_save(const molt_seq *s, seq_snap *snap);
void   seq_snap_restore(molt_seq *s, const seq_snap *snap);

// Layout of one sequence's state: KV caches of capacity cap for attention
// layers, [conv | ssm] for recurrent ones, in layer order.
size_t seq_state_floats(const molt_model *m, int cap);
int    seq_chunk(int cap); // tokens per forward piece
// Floats of logits staging for rows rows: 0 on a host-visible backend (logits
// go straight to the caller's buffer), else rows·V (computed there, then copied out).
size_t seq_logits_stage_floats(const molt_model *m, int rows);
// An exec on m's backend with nth threads (a library call's: ctx threads, capped) and ctx's
// GEMM precision flags (molt_ctx_set_matmul; ctx may be NULL: fp32).
molt_exec model_exec(const molt_ctx *ctx, const molt_model *m, int nth);
size_t seq_scratch_floats(const molt_model *m, int cap, int nth);
// s = a view of the state block `state` (seq_state_floats) with `scratch`
// (seq_scratch_floats); owns nothing (s->buf = NULL). pos is left at 0.
void seq_view(molt_seq *s, const molt_model *m, int cap, int nth, float *state, float *scratch);
// Feeds n ≥ 1 valid tokens (capacity checked by the caller), as molt_seq_feed.
void seq_feed(const molt_exec *ex, molt_seq *s, const int32_t *ids, int n, int all_logits,
              float *logits);
molt_status seq_check_ids(molt_ctx *ctx, const molt_model *m, const int32_t *ids, int32_t n);
// MOLT_ERR_ARG when the model's KV type or recurrent-state type changed since s
// was laid out (molt_model_set_kv_dtype / _state_dtype): its caches or states
// have the other size and layout.
molt_status seq_check_kv(molt_ctx *ctx, const molt_seq *s);

// In place: a ← (a − mean a)/(std a + 1e-5)·(std s + 1e-5) + mean s, per row of d.
void hybrid_match_stats(float *a, const float *s, int T, int d);

#endif
