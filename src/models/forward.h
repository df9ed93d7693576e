/*
 * forward.h — internals of running a model: the molt_seq layout and helpers
 * the training / analysis code reuses.
 */
#ifndef MOLT_FORWARD_H
#define MOLT_FORWARD_H

#include "mixers/attention.h"
#include "models/model.h"

struct molt_seq {
    const molt_model *m;
    int32_t cap, pos, chunk;
    int     nth;                                        // threads the scratch is sized for
    float  *k[MODEL_MAX_LAYERS], *v[MODEL_MAX_LAYERS]; // [KV, cap, hd] (attention layers)
    ssm_state ssm[MODEL_MAX_LAYERS];                    // (recurrent layers)
    size_t  state_floats;                               // KV + recurrent state
    float  *scratch;
    float  *buf;                                        // one allocation for all of it
};

// The attention config / weights of layer l (the kept heads for hybrid layers).
void layer_attn(const molt_model *m, int l, attn_cfg *c, attn_weights *w);
// In place: a ← (a − mean a)/(std a + 1e-5)·(std s + 1e-5) + mean s, per row of d.
void hybrid_match_stats(float *a, const float *s, int T, int d);

#endif
