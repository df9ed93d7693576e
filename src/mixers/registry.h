/*
 * registry.h — the list of token mixers, one X line each:
 *
 *     X(KIND, name, table)
 *
 * KIND gives the layer kind LAYER_KIND (models/model.h's layer_kind), name
 * the spelling of config.json's per-layer "mixer" (and of reports), table the
 * `const mixer_vt` its file src/mixers/mx_NAME.c defines (mixers/mixer.h).
 * The list generates the layer_kind enum, the registry (mixer_of) and the
 * name <-> kind lookup (layer_kind_name / layer_kind_parse). Adding a mixer is
 * its file and one line here. The order is the enum's: append, never reorder.
 */
#ifndef MOLT_MIXER_REGISTRY_H
#define MOLT_MIXER_REGISTRY_H

#define MOLT_MIXERS(X)                                                                             \
    X(ATTN, attention, mixer_attention)                                                            \
    X(SSM, ssm, mixer_ssm)                                                                         \
    X(HYBRID, hybrid, mixer_hybrid)                                                                \
    X(GATELOOP, gateloop, mixer_gateloop)                                                          \
    X(MAMBA3, mamba3, mixer_mamba3)

#endif
