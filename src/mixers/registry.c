/*
 * registry.c — the mixer of each layer kind and the kind <-> name lookup,
 * both generated from the one list MOLT_MIXERS (mixers/registry.h).
 */
#include "kernels/attn.h"
#include "mixers/mixer.h"

#include <string.h>

static const mixer_vt *const registry[LAYER_KIND_COUNT] = {
#define MOLT_X_VT(K, name, vt) [LAYER_##K] = &vt,
    MOLT_MIXERS(MOLT_X_VT)
#undef MOLT_X_VT
};

static const char *const names[LAYER_KIND_COUNT] = {
#define MOLT_X_NAME(K, name, vt) [LAYER_##K] = #name,
    MOLT_MIXERS(MOLT_X_NAME)
#undef MOLT_X_NAME
};

const mixer_vt *mixer_of(layer_kind k) {
    MOLT_ASSERT((unsigned)k < LAYER_KIND_COUNT && registry[k]);
    return registry[k];
}

const char *layer_kind_name(layer_kind k) {
    return (unsigned)k < LAYER_KIND_COUNT ? names[k] : "?";
}

bool layer_kind_parse(const char *s, layer_kind *out) {
    for (int k = 0; s && k < LAYER_KIND_COUNT; k++)
        if (strcmp(s, names[k]) == 0) {
            *out = (layer_kind)k;
            return true;
        }
    return false;
}

size_t mixer_kv_floats(const molt_model *m, int rows) {
    if (m->kv_dt == MOLT_F16) // halves, rows padded to 16 (hd is even where a cache exists)
        return k_kv_f16_halves(rows, m->cfg.head_dim) / 2;
    return (size_t)(rows > 0 ? rows : 0) * (size_t)m->cfg.head_dim;
}

size_t mixer_state_floats(const molt_model *m, int l, int cap) {
    const mixer_vt *v = layer_mixer(m, l);
    return v->rec_floats(m, l) + 2 * (size_t)v->kv_heads(m, l) * mixer_kv_floats(m, cap);
}
