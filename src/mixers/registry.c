/*
 * registry.c — the mixer of each layer kind. A new mixer adds its layer_kind
 * (models/model.h) and one line here.
 */
#include "mixers/mixer.h"

static const mixer_vt *const registry[LAYER_KIND_COUNT] = {
    [LAYER_ATTN] = &mixer_attention,
    [LAYER_SSM] = &mixer_ssm,
    [LAYER_HYBRID] = &mixer_hybrid,
};

const mixer_vt *mixer_of(layer_kind k) {
    MOLT_ASSERT((unsigned)k < LAYER_KIND_COUNT && registry[k]);
    return registry[k];
}

size_t mixer_state_floats(const molt_model *m, int l, int cap) {
    const mixer_vt *v = layer_mixer(m, l);
    return v->rec_floats(m, l) +
           2 * (size_t)v->kv_heads(m, l) * (size_t)cap * (size_t)m->cfg.head_dim;
}
